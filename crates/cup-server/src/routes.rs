//! The resource routes: `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`.
//!
//! As in the original, group, version and plural are literals fixed at startup (one route
//! set per bound definition and version); only `{ns}` and `{name}` vary. Routes are looked
//! up in a table built once controllers are loaded, because definitions embedded in
//! modules are only known then.

use std::collections::HashMap;
use std::sync::Arc;

use cup_runtime::LoadedController;
use cup_template::TemplateController;

/// How a controller serves requests.
#[derive(Clone)]
pub enum Backend {
    Template(Arc<TemplateController>),
    Wasm(LoadedController),
}

/// A controller as routes see it: ready, or unavailable with the reason (503).
pub struct ControllerHandle {
    pub name: String,
    pub backend: Result<Backend, String>,
}

/// One served (definition, version).
pub struct Route {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// `names.kind`, what controllers are told (never the plural).
    pub kind: String,
    /// The version's schema, compiled once.
    pub validator: Arc<jsonschema::Validator>,
    pub controller: Arc<ControllerHandle>,
}

impl Route {
    /// The route template used as a metrics label.
    pub fn template(&self, item: bool) -> String {
        let base = format!(
            "/apis/{}/{}/namespaces/{{ns}}/{}",
            self.group, self.version, self.plural
        );
        if item { base + "/{name}" } else { base }
    }
}

/// `(group, version, plural)` → route.
#[derive(Default)]
pub struct RouteTable {
    routes: HashMap<(String, String, String), Arc<Route>>,
}

impl RouteTable {
    /// Adds a route. If the key is taken the first registration is kept and the owner's
    /// controller name is returned.
    pub fn insert(&mut self, route: Route) -> Result<(), String> {
        let key = (
            route.group.clone(),
            route.version.clone(),
            route.plural.clone(),
        );
        if let Some(existing) = self.routes.get(&key) {
            return Err(existing.controller.name.clone());
        }
        self.routes.insert(key, Arc::new(route));
        Ok(())
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Route>> {
        self.routes
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
            .cloned()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.routes.len()
    }
}

/// A request path under `/apis/` that has the shape of a resource route. The literals are
/// decoded; namespace and name are still raw (checked by [`variable`] once the route is
/// known, so an unknown route is a 404 whatever its names).
#[derive(Debug, PartialEq, Eq)]
pub struct ApiPath<'a> {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

/// Parses the raw (still percent-encoded) path; `None` if it is no resource route. Segments
/// are split before decoding, so an encoded `/` can never create a segment.
pub fn parse(raw_path: &str) -> Option<ApiPath<'_>> {
    let rest = raw_path.strip_prefix("/apis/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (group, version, namespaces, namespace, plural, name) = match segments.as_slice() {
        [g, v, n, ns, p] => (*g, *v, *n, *ns, *p, None),
        [g, v, n, ns, p, name] => (*g, *v, *n, *ns, *p, Some(*name)),
        _ => return None,
    };
    if namespaces != "namespaces" || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    Some(ApiPath {
        group: decode(group)?,
        version: decode(version)?,
        plural: decode(plural)?,
        namespace,
        name,
    })
}

/// Decodes and checks a namespace or name: no `/` (once decoded), `.`, `..` or control
/// characters, which could not name a resource and could confuse path templates.
pub fn variable(what: &str, raw: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid {what} {raw:?}: {why}");
    let value = decode(raw).ok_or_else(|| bad("bad percent-encoding or not UTF-8"))?;
    if value == "." || value == ".." {
        return Err(bad("\".\" and \"..\" are not names"));
    }
    if value.contains('/') || value.chars().any(char::is_control) {
        return Err(bad("it cannot contain '/' or control characters"));
    }
    Ok(value)
}

/// Percent-decoding of one path segment.
pub fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_collection_and_item_paths() {
        let p = parse("/apis/flipt.io/v1alpha1/namespaces/default/flags").unwrap();
        assert_eq!(
            (p.group.as_str(), p.namespace, p.name),
            ("flipt.io", "default", None)
        );
        let p = parse("/apis/g/v/namespaces/ns/p/my%20name").unwrap();
        assert_eq!(variable("name", p.name.unwrap()).unwrap(), "my name");
    }

    #[test]
    fn other_shapes_are_not_routes() {
        for path in [
            "/apis",
            "/apis/",
            "/apis/g",
            "/apis/g/v/namespaces/ns",
            "/apis/g/v/namespaces/ns/p/",
            "/apis/g/v/ns/default/p",
            "/apis/g/v/namespaces/ns/p/n/extra",
            "/apis/g//namespaces/ns/p",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    #[test]
    fn dangerous_names_are_refused() {
        for raw in ["..", "%2e%2e", "a%2Fb", "a%00b", "%zz", "."] {
            assert!(variable("name", raw).is_err(), "{raw}");
        }
    }
}

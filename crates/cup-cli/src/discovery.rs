//! What `/apis` says, and how a user's `<type>` argument becomes a route.
//!
//! `/apis` maps `group/version/plural` to the whole definition, so a definition with N
//! versions appears N times; [`Discovery`] folds the keys back into one entry per
//! definition (identified by group + plural, which is what routes are made of).
//!
//! Resolution rules (documented in `cup get --help`):
//! * `group/version/plural`: that exact route (the plural part may also be the Kind or
//!   singular, case-insensitively);
//! * `group/NAME` or `NAME.group`: NAME in that group;
//! * `NAME`: any group.
//!
//! NAME matches a definition's Kind, plural or singular, case-insensitively. Two groups
//! with the same NAME are ambiguous and the error lists the `group/Kind` forms to use. The
//! version, unless given, is the highest by Kubernetes' rule (GA > beta > alpha, then the
//! larger number: `v2` > `v1` > `v1beta2` > `v1beta1` > `v1alpha1`; versions outside that
//! scheme rank last, alphabetically), so the choice never depends on map order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use cup_model::ResourceDefinition;
use serde_json::value::RawValue;

/// One served definition.
#[derive(Debug)]
pub struct Def {
    pub group: String,
    pub kind: String,
    pub singular: String,
    pub plural: String,
    /// Versions that have routes, highest priority first.
    pub versions: Vec<String>,
    /// The definition as the server sent it (for `-o json`).
    pub raw: Box<RawValue>,
}

impl Def {
    /// The version `get` uses when none is named.
    pub fn preferred(&self) -> &str {
        self.versions.first().map_or("", String::as_str)
    }

    fn matches(&self, name: &str) -> bool {
        [&self.kind, &self.plural, &self.singular]
            .iter()
            .any(|n| !n.is_empty() && n.eq_ignore_ascii_case(name))
    }

    fn group_is(&self, group: &str) -> bool {
        self.group.eq_ignore_ascii_case(group)
    }
}

/// A definition at one version: everything a URL needs.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    pub def: &'a Def,
    pub version: &'a str,
}

impl Route<'_> {
    /// `group/version`, as in a resource's `apiVersion`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.def.group, self.version)
    }
}

/// All definitions the server serves, sorted by plural then group.
#[derive(Debug)]
pub struct Discovery {
    pub defs: Vec<Def>,
}

impl Discovery {
    /// Reads a `/apis` body.
    pub fn parse(body: &[u8]) -> Result<Discovery> {
        let map: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body)
            .context("the server's /apis answer is not a JSON object of definitions")?;
        let mut by_route: BTreeMap<(String, String), Def> = BTreeMap::new();
        for (key, raw) in map {
            let def: ResourceDefinition = serde_json::from_str(raw.get())
                .with_context(|| format!("/apis entry {key:?} is not a ResourceDefinition"))?;
            // The key names the version that has a route; fall back to the definition's own
            // versions if a server ever uses another key shape.
            let version = match key.split('/').collect::<Vec<_>>().as_slice() {
                [_, version, _] => vec![(*version).to_owned()],
                _ => def.spec.versions.keys().cloned().collect(),
            };
            let entry = by_route
                .entry((def.spec.group.clone(), def.names.plural.clone()))
                .or_insert_with(|| Def {
                    group: def.spec.group.clone(),
                    kind: def.names.kind.clone(),
                    singular: def.names.singular.clone(),
                    plural: def.names.plural.clone(),
                    versions: Vec::new(),
                    raw,
                });
            for v in version {
                if !entry.versions.contains(&v) {
                    entry.versions.push(v);
                }
            }
        }
        let mut defs: Vec<Def> = by_route.into_values().collect();
        for d in &mut defs {
            d.versions.sort_by(|a, b| version_priority(a, b));
        }
        defs.sort_by(|a, b| (&a.plural, &a.group).cmp(&(&b.plural, &b.group)));
        Ok(Discovery { defs })
    }

    /// `Flag (flags), Segment (segments)` or `none`, for error messages.
    pub fn kinds(&self) -> String {
        if self.defs.is_empty() {
            return "none".into();
        }
        let ambiguous = |d: &Def| self.defs.iter().filter(|o| o.kind == d.kind).count() > 1;
        self.defs
            .iter()
            .map(|d| {
                if ambiguous(d) {
                    format!("{}/{} ({})", d.group, d.kind, d.plural)
                } else {
                    format!("{} ({})", d.kind, d.plural)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Resolves a `<type>` argument (see the module docs).
    pub fn resolve(&self, ty: &str) -> Result<Route<'_>> {
        let unknown = || {
            anyhow::anyhow!(
                "unknown resource type {ty:?} (the server has: {})",
                self.kinds()
            )
        };
        let parts: Vec<&str> = ty.split('/').collect();
        if parts.iter().any(|p| p.trim().is_empty()) || parts.len() > 3 {
            bail!(
                "invalid resource type {ty:?}: expected NAME, GROUP/NAME or GROUP/VERSION/PLURAL"
            );
        }
        if let [group, version, plural] = parts.as_slice() {
            let def = self.unique(ty, |d| d.group_is(group) && d.matches(plural))?;
            let def = def.ok_or_else(unknown)?;
            let version = def
                .versions
                .iter()
                .find(|v| v.as_str() == *version)
                .with_context(|| {
                    format!(
                        "{}/{} has no version {version:?} (versions: {})",
                        def.group,
                        def.plural,
                        def.versions.join(", ")
                    )
                })?;
            return Ok(Route { def, version });
        }
        let def = match parts.as_slice() {
            [group, name] => self.unique(ty, |d| d.group_is(group) && d.matches(name))?,
            _ => match self.unique(ty, |d| d.matches(ty))? {
                Some(d) => Some(d),
                // kubectl's NAME.GROUP form, e.g. flags.flipt.io.
                None => match ty.split_once('.') {
                    Some((name, group)) => {
                        self.unique(ty, |d| d.group_is(group) && d.matches(name))?
                    }
                    None => None,
                },
            },
        };
        let def = def.ok_or_else(unknown)?;
        Ok(Route {
            def,
            version: def.preferred(),
        })
    }

    /// The only definition matching, None when none does, an error when several do.
    fn unique(&self, ty: &str, pred: impl Fn(&Def) -> bool) -> Result<Option<&Def>> {
        let found: Vec<&Def> = self.defs.iter().filter(|d| pred(d)).collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => bail!(
                "resource type {ty:?} is ambiguous; use one of: {}",
                many.iter()
                    .map(|d| format!("{}/{}", d.group, d.kind))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The route for a document's `apiVersion` and `kind` (exact, as the server's schemas
    /// compare them), for `apply` and `edit`.
    pub fn for_document(&self, api_version: &str, kind: &str) -> Result<Route<'_>> {
        let (group, version) = api_version.split_once('/').with_context(|| {
            format!("apiVersion {api_version:?} is not of the form GROUP/VERSION")
        })?;
        let def = self
            .defs
            .iter()
            .find(|d| d.group == group && d.kind == kind)
            .with_context(|| {
                let served: Vec<String> = self
                    .defs
                    .iter()
                    .flat_map(|d| {
                        d.versions
                            .iter()
                            .map(move |v| format!("{}/{v} {}", d.group, d.kind))
                    })
                    .collect();
                format!(
                    "unknown kind {kind:?} in {api_version} (the server has: {})",
                    if served.is_empty() {
                        "none".to_owned()
                    } else {
                        served.join(", ")
                    }
                )
            })?;
        let version = def
            .versions
            .iter()
            .find(|v| v.as_str() == version)
            .with_context(|| {
                format!(
                    "{kind} has no version {version:?} (apiVersions: {})",
                    def.versions
                        .iter()
                        .map(|v| format!("{group}/{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        Ok(Route { def, version })
    }
}

/// Kubernetes version priority: `Less` means `a` comes first (is preferred).
pub fn version_priority(a: &str, b: &str) -> Ordering {
    match (parse_version(a), parse_version(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `v<major>[(alpha|beta)<minor>]` → (stability, major, minor); GA is the most stable.
fn parse_version(v: &str) -> Option<(u8, u64, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, tail) = rest.split_at(digits);
    let major: u64 = major.parse().ok().filter(|m| *m > 0)?;
    if tail.is_empty() {
        return Some((2, major, 0));
    }
    let (stability, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else {
        (0, tail.strip_prefix("alpha")?)
    };
    let minor: u64 = minor.parse().ok().filter(|m| *m > 0)?;
    Some((stability, major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(group: &str, kind: &str, plural: &str, versions: &[&str]) -> (String, String) {
        let versions: serde_json::Map<String, serde_json::Value> = versions
            .iter()
            .map(|v| ((*v).to_owned(), serde_json::json!({"type": "object"})))
            .collect();
        let body = serde_json::json!({
            "apiVersion": "cup.flipt.io/v1alpha1",
            "kind": "ResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}")},
            "names": {"kind": kind, "singular": kind.to_lowercase(), "plural": plural},
            "spec": {"group": group, "versions": versions},
        });
        (format!("{group}/{plural}"), body.to_string())
    }

    fn discovery(defs: &[(&str, &str, &str, &[&str])]) -> Discovery {
        let mut map = serde_json::Map::new();
        for (group, kind, plural, versions) in defs {
            let (_, body) = def(group, kind, plural, versions);
            for v in *versions {
                map.insert(
                    format!("{group}/{v}/{plural}"),
                    serde_json::from_str(&body).unwrap(),
                );
            }
        }
        Discovery::parse(serde_json::Value::Object(map).to_string().as_bytes()).unwrap()
    }

    fn flipt() -> Discovery {
        discovery(&[
            ("flipt.io", "Flag", "flags", &["v1alpha1"]),
            ("flipt.io", "Segment", "segments", &["v1alpha1"]),
        ])
    }

    fn route(d: &Discovery, ty: &str) -> String {
        match d.resolve(ty) {
            Ok(r) => format!("{}/{}", r.api_version(), r.def.plural),
            Err(e) => format!("error: {e:#}"),
        }
    }

    #[test]
    fn kind_plural_singular_any_case() {
        let d = flipt();
        for ty in [
            "Flag",
            "flag",
            "FLAGS",
            "flags",
            "flipt.io/flag",
            "flipt.io/Flag",
            "flipt.io/v1alpha1/flags",
            "flags.flipt.io",
            "Flag.flipt.io",
        ] {
            assert_eq!(route(&d, ty), "flipt.io/v1alpha1/flags", "{ty}");
        }
        assert_eq!(route(&d, "segment"), "flipt.io/v1alpha1/segments");
    }

    #[test]
    fn unknown_types_list_what_exists() {
        let d = flipt();
        assert_eq!(
            route(&d, "flog"),
            r#"error: unknown resource type "flog" (the server has: Flag (flags), Segment (segments))"#
        );
        assert_eq!(
            route(&d, "other.io/flags"),
            r#"error: unknown resource type "other.io/flags" (the server has: Flag (flags), Segment (segments))"#
        );
        assert_eq!(
            route(&d, "flipt.io/v9/flags"),
            r#"error: flipt.io/flags has no version "v9" (versions: v1alpha1)"#
        );
        assert!(route(&d, "a/b/c/d").starts_with("error: invalid resource type"));
        assert!(route(&d, "flipt.io/").starts_with("error: invalid resource type"));
        let empty = Discovery::parse(b"{}").unwrap();
        assert_eq!(
            route(&empty, "flags"),
            r#"error: unknown resource type "flags" (the server has: none)"#
        );
    }

    #[test]
    fn the_highest_version_wins_whatever_the_order() {
        let d = discovery(&[(
            "g.io",
            "Thing",
            "things",
            &[
                "v1alpha1",
                "v2beta1",
                "v1",
                "v1beta2",
                "v1beta1",
                "v10alpha1",
                "foo",
            ],
        )]);
        assert_eq!(d.defs.len(), 1, "one entry per definition, not per key");
        assert_eq!(
            d.defs[0].versions,
            [
                "v1",
                "v2beta1",
                "v1beta2",
                "v1beta1",
                "v10alpha1",
                "v1alpha1",
                "foo"
            ]
        );
        let mut sorted = vec![
            "v1alpha1",
            "foo",
            "v2",
            "v1beta1",
            "v10alpha1",
            "v1",
            "v2beta1",
            "v11",
        ];
        sorted.sort_by(|a, b| version_priority(a, b));
        assert_eq!(
            sorted,
            [
                "v11",
                "v2",
                "v1",
                "v2beta1",
                "v1beta1",
                "v10alpha1",
                "v1alpha1",
                "foo"
            ]
        );
        assert_eq!(route(&d, "things"), "g.io/v1/things");
        assert_eq!(route(&d, "g.io/v1alpha1/things"), "g.io/v1alpha1/things");
    }

    #[test]
    fn the_same_kind_in_two_groups_needs_a_group() {
        let d = discovery(&[
            ("a.io", "Flag", "flags", &["v1"]),
            ("b.io", "Flag", "flags", &["v1"]),
        ]);
        assert_eq!(
            route(&d, "flag"),
            r#"error: resource type "flag" is ambiguous; use one of: a.io/Flag, b.io/Flag"#
        );
        assert_eq!(route(&d, "b.io/flag"), "b.io/v1/flags");
        assert_eq!(d.kinds(), "a.io/Flag (flags), b.io/Flag (flags)");
    }

    #[test]
    fn documents_resolve_by_exact_api_version_and_kind() {
        let d = flipt();
        let r = d.for_document("flipt.io/v1alpha1", "Flag").unwrap();
        assert_eq!(r.def.plural, "flags");
        let e = |a: &str, k: &str| format!("{:#}", d.for_document(a, k).unwrap_err());
        assert_eq!(
            e("flipt.io/v1alpha1", "Flog"),
            r#"unknown kind "Flog" in flipt.io/v1alpha1 (the server has: flipt.io/v1alpha1 Flag, flipt.io/v1alpha1 Segment)"#
        );
        assert_eq!(
            e("flipt.io/v2", "Flag"),
            r#"Flag has no version "v2" (apiVersions: flipt.io/v1alpha1)"#
        );
        assert_eq!(
            e("flipt.io", "Flag"),
            r#"apiVersion "flipt.io" is not of the form GROUP/VERSION"#
        );
    }
}

//! The authorisation policy: rules that allow; everything else is denied.
//!
//! ```json
//! {"rules": [
//!   {"groups": ["editors"], "verbs": ["get", "list", "put", "delete"],
//!    "resources": ["flipt.io/flags"], "namespaces": ["default", "staging"]},
//!   {"users": ["alice"], "verbs": ["list", "get", "merge"], "resources": ["proposals"]},
//!   {"groups": ["ops"], "verbs": ["get"], "paths": ["/metrics", "/status"]}
//! ]}
//! ```
//!
//! A rule names its subjects (`users`, `groups`: at least one), its `verbs`, and either
//! `resources` (`group/plural`, `group/*`, `*`, or `proposals`) with the `namespaces` it
//! covers (names or `*`; proposals have no namespace), or `paths` (`/metrics`, `/status`,
//! or a prefix ending in `*`). A request is allowed when one rule covers it. Unknown fields
//! are errors, so a misspelt key cannot silently widen or narrow a rule.

use std::path::Path;

use serde::Deserialize;

use crate::error::{AccessError, read_bounded};
use crate::identity::Caller;

/// Largest policy file read.
pub const MAX_POLICY_FILE: u64 = 4 * 1024 * 1024;
/// Most rules in one policy.
pub const MAX_RULES: usize = 10_000;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Read one resource or proposal, or a path.
    Get,
    /// List resources or proposals.
    List,
    /// Create or replace a resource.
    Put,
    /// Delete a resource.
    Delete,
    /// Merge a proposal.
    Merge,
}

impl Verb {
    /// The verb's name in rules and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Put => "put",
            Verb::Delete => "delete",
            Verb::Merge => "merge",
        }
    }

    /// Parses a verb's name.
    pub fn parse(text: &str) -> Option<Verb> {
        Some(match text {
            "get" => Verb::Get,
            "list" => Verb::List,
            "put" => Verb::Put,
            "delete" => Verb::Delete,
            "merge" => Verb::Merge,
            _ => return None,
        })
    }

    /// Whether the verb changes something (and is audited).
    pub fn writes(self) -> bool {
        matches!(self, Verb::Put | Verb::Delete | Verb::Merge)
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attributes<'a> {
    /// A verb on resources of one type in one namespace.
    Resource {
        /// The verb.
        verb: Verb,
        /// The definition's group.
        group: &'a str,
        /// The definition's plural.
        resource: &'a str,
        /// The namespace.
        namespace: &'a str,
        /// The resource's name (none for a list).
        name: Option<&'a str>,
    },
    /// A verb on the Git source's proposals.
    Proposals {
        /// The verb.
        verb: Verb,
        /// The proposal's id (none for a list).
        name: Option<&'a str>,
    },
    /// A request to an operations path.
    Path {
        /// The verb (`get`).
        verb: Verb,
        /// The path.
        path: &'a str,
    },
}

impl Attributes<'_> {
    /// The request's verb.
    pub fn verb(&self) -> Verb {
        match *self {
            Attributes::Resource { verb, .. }
            | Attributes::Proposals { verb, .. }
            | Attributes::Path { verb, .. } => verb,
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// Why, in words: the rule that allowed it, or what the caller may not do.
    pub reason: String,
}

/// One rule as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Users the rule applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups the rule applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Verbs allowed (`*` for all).
    pub verbs: Vec<String>,
    /// Resources covered.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// Namespaces covered.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// Paths covered.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<Rule>,
}

/// A checked policy.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// Whether `pattern` (a list entry that may be `*`) matches `value`.
fn any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| p == "*" || p == value)
}

impl Rule {
    fn applies_to(&self, caller: &Caller) -> bool {
        self.users.contains(&caller.user) || self.groups.iter().any(|g| caller.in_group(g))
    }

    fn allows_verb(&self, verb: Verb) -> bool {
        any(&self.verbs, verb.as_str())
    }

    fn covers(&self, attributes: &Attributes<'_>) -> bool {
        match *attributes {
            Attributes::Resource {
                group,
                resource,
                namespace,
                ..
            } => {
                let resources = self.resources.as_deref().unwrap_or_default();
                let namespaces = self.namespaces.as_deref().unwrap_or_default();
                any(namespaces, namespace)
                    && resources
                        .iter()
                        .any(|r| resource_matches(r, group, resource))
            }
            Attributes::Proposals { .. } => self
                .resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r == "proposals" || r == "*"),
            Attributes::Path { path, .. } => {
                self.paths.as_deref().unwrap_or_default().iter().any(|p| {
                    match p.strip_suffix('*') {
                        Some(prefix) => path.starts_with(prefix),
                        None => p == path,
                    }
                })
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.users.is_empty() && self.groups.is_empty() {
            return Err("names no users and no groups".into());
        }
        if self.verbs.is_empty() {
            return Err("allows no verbs".into());
        }
        for verb in &self.verbs {
            if verb != "*" && Verb::parse(verb).is_none() {
                return Err(format!(
                    "unknown verb {verb:?} (get, list, put, delete, merge or *)"
                ));
            }
        }
        match (&self.resources, &self.paths) {
            (Some(_), Some(_)) => Err("has both resources and paths: use two rules".into()),
            (None, None) => Err("names neither resources nor paths".into()),
            (None, Some(paths)) => {
                if self.namespaces.is_some() {
                    return Err("paths have no namespaces".into());
                }
                if let Some(verb) = self.verbs.iter().find(|v| *v != "get" && *v != "*") {
                    return Err(format!("paths are only read: verb {verb:?} does not apply"));
                }
                for path in paths {
                    if !path.starts_with('/') && path != "*" {
                        return Err(format!("path {path:?} must start with '/'"));
                    }
                }
                Ok(())
            }
            (Some(resources), None) => {
                if resources.is_empty() {
                    return Err("names an empty list of resources".into());
                }
                for resource in resources {
                    let shaped = resource == "*"
                        || resource == "proposals"
                        || resource.split_once('/').is_some_and(|(g, p)| {
                            !g.is_empty() && !p.is_empty() && !p.contains('/')
                        });
                    if !shaped {
                        return Err(format!(
                            "resource {resource:?} is not group/plural, group/*, * or proposals"
                        ));
                    }
                }
                let namespaced = resources.iter().any(|r| r != "proposals");
                match &self.namespaces {
                    None if namespaced => Err(
                        "resources need \"namespaces\" (names, or [\"*\"] for every namespace)"
                            .into(),
                    ),
                    Some(list) if list.is_empty() => {
                        Err("names an empty list of namespaces".into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

fn resource_matches(pattern: &str, group: &str, plural: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((g, "*")) => g == group,
        Some((g, p)) => g == group && p == plural,
        None => false,
    }
}

impl Policy {
    /// Reads and checks a policy file; an error names the rule (by its position) and fault.
    pub fn load(path: &Path) -> Result<Policy, AccessError> {
        let bytes = read_bounded(path, MAX_POLICY_FILE)?;
        let invalid = |line: usize, message: String| AccessError::Invalid {
            path: path.to_owned(),
            line,
            message,
        };
        let file: PolicyFile =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.line(), e.to_string()))?;
        Policy::from_rules(file.rules).map_err(|m| invalid(0, m))
    }

    /// A policy of these rules, checked.
    pub fn from_rules(rules: Vec<Rule>) -> Result<Policy, String> {
        if rules.len() > MAX_RULES {
            return Err(format!("more than {MAX_RULES} rules"));
        }
        for (index, rule) in rules.iter().enumerate() {
            rule.check()
                .map_err(|m| format!("rule {} {m}", index + 1))?;
        }
        Ok(Policy { rules })
    }

    /// Whether `caller` may do what `attributes` describe.
    pub fn decide(&self, caller: &Caller, attributes: &Attributes<'_>) -> Decision {
        let verb = attributes.verb();
        let allowing = self.rules.iter().position(|rule| {
            rule.applies_to(caller) && rule.allows_verb(verb) && rule.covers(attributes)
        });
        match allowing {
            Some(index) => Decision {
                allowed: true,
                reason: format!("allowed by rule {}", index + 1),
            },
            None => Decision {
                allowed: false,
                reason: denial(caller, attributes),
            },
        }
    }

    /// Whether `caller` may read (get or list) resources of this type in some namespace:
    /// what discovery shows it.
    pub fn may_read_type(&self, caller: &Caller, group: &str, plural: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.applies_to(caller)
                && (rule.allows_verb(Verb::Get) || rule.allows_verb(Verb::List))
                && rule
                    .resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|r| resource_matches(r, group, plural))
        })
    }

    /// How many rules the policy has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy has no rule (and so allows nothing).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// A 403's message, as kube-apiserver words it.
fn denial(caller: &Caller, attributes: &Attributes<'_>) -> String {
    let who = format!("user {:?}", caller.user);
    match *attributes {
        Attributes::Resource {
            verb,
            group,
            resource,
            namespace,
            name,
        } => {
            let subject = match name {
                Some(name) => format!("{resource}.{group} {name:?}"),
                None => format!("{resource}.{group}"),
            };
            format!(
                "{subject} is forbidden: {who} cannot {} resource {resource:?} in API group {group:?} in the namespace {namespace:?}",
                verb.as_str()
            )
        }
        Attributes::Proposals { verb, name } => {
            let subject = match name {
                Some(id) => format!("proposal {id:?}"),
                None => "proposals".to_owned(),
            };
            format!(
                "{subject} is forbidden: {who} cannot {} proposals",
                verb.as_str()
            )
        }
        Attributes::Path { verb, path } => {
            format!("forbidden: {who} cannot {} path {path:?}", verb.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Method;

    fn policy(json: &str) -> Result<Policy, String> {
        let file: PolicyFile = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Policy::from_rules(file.rules)
    }

    fn user(name: &str, groups: &[&str]) -> Caller {
        Caller::authenticated(
            name.into(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
            Method::Token,
        )
    }

    fn flags<'a>(verb: Verb, namespace: &'a str) -> Attributes<'a> {
        Attributes::Resource {
            verb,
            group: "flipt.io",
            resource: "flags",
            namespace,
            name: Some("f"),
        }
    }

    const EXAMPLE: &str = r#"{"rules": [
        {"groups": ["editors"], "verbs": ["get", "list", "put", "delete"],
         "resources": ["flipt.io/flags"], "namespaces": ["default", "staging"]},
        {"users": ["viewer"], "verbs": ["get", "list"], "resources": ["flipt.io/*"], "namespaces": ["*"]},
        {"users": ["alice"], "verbs": ["list", "get", "merge"], "resources": ["proposals"]},
        {"groups": ["ops"], "verbs": ["get"], "paths": ["/metrics", "/status"]},
        {"users": ["root"], "verbs": ["*"], "resources": ["*"], "namespaces": ["*"]}
    ]}"#;

    #[test]
    fn a_matrix_of_callers_verbs_and_namespaces() {
        let p = policy(EXAMPLE).unwrap();
        let editor = user("ed", &["editors"]);
        let viewer = user("viewer", &[]);
        let alice = user("alice", &[]);
        let root = user("root", &[]);
        let ops = user("o", &["ops"]);
        let anon = Caller::anonymous();
        let cases: &[(&Caller, Verb, &str, bool)] = &[
            (&editor, Verb::Put, "default", true),
            (&editor, Verb::Delete, "staging", true),
            (&editor, Verb::Put, "prod", false),
            (&editor, Verb::Merge, "default", false),
            (&viewer, Verb::Get, "prod", true),
            (&viewer, Verb::List, "x", true),
            (&viewer, Verb::Put, "default", false),
            (&alice, Verb::Get, "default", false),
            (&root, Verb::Delete, "anything", true),
            (&ops, Verb::Get, "default", false),
            (&anon, Verb::Get, "default", false),
        ];
        for (caller, verb, ns, allowed) in cases {
            let decision = p.decide(caller, &flags(*verb, ns));
            assert_eq!(
                decision.allowed, *allowed,
                "{} {verb:?} {ns}: {decision:?}",
                caller.user
            );
        }
        let merge = Attributes::Proposals {
            verb: Verb::Merge,
            name: Some("01J"),
        };
        assert!(p.decide(&alice, &merge).allowed);
        assert!(!p.decide(&editor, &merge).allowed);
        assert!(p.decide(&root, &merge).allowed);
        let metrics = Attributes::Path {
            verb: Verb::Get,
            path: "/metrics",
        };
        assert!(p.decide(&ops, &metrics).allowed);
        assert!(!p.decide(&editor, &metrics).allowed);
        assert!(
            !p.decide(&root, &metrics).allowed,
            "resource rules do not cover paths"
        );
    }

    #[test]
    fn denials_read_like_kubernetes() {
        let p = policy(EXAMPLE).unwrap();
        let d = p.decide(&user("ed", &["editors"]), &flags(Verb::Put, "prod"));
        assert_eq!(
            d.reason,
            "flags.flipt.io \"f\" is forbidden: user \"ed\" cannot put resource \"flags\" in API group \"flipt.io\" in the namespace \"prod\""
        );
        assert_eq!(
            p.decide(&user("ed", &["editors"]), &flags(Verb::Put, "default"))
                .reason,
            "allowed by rule 1"
        );
    }

    #[test]
    fn discovery_shows_readable_types() {
        let p = policy(EXAMPLE).unwrap();
        assert!(p.may_read_type(&user("ed", &["editors"]), "flipt.io", "flags"));
        assert!(!p.may_read_type(&user("ed", &["editors"]), "flipt.io", "segments"));
        assert!(p.may_read_type(&user("viewer", &[]), "flipt.io", "segments"));
        assert!(!p.may_read_type(&user("o", &["ops"]), "flipt.io", "flags"));
        assert!(!p.may_read_type(&Caller::anonymous(), "flipt.io", "flags"));
    }

    #[test]
    fn bad_rules_are_named() {
        for (json, wanted) in [
            (
                r#"{"rules":[{"verbs":["get"],"paths":["/x"]}]}"#,
                "rule 1 names no users",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["patch"],"paths":["/x"]}]}"#,
                "unknown verb \"patch\"",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["get"],"resources":["flags"],"namespaces":["*"]}]}"#,
                "not group/plural",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["get"],"resources":["g/p"]}]}"#,
                "need \"namespaces\"",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["put"],"paths":["/metrics"]}]}"#,
                "only read",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["get"]}]}"#,
                "neither resources nor paths",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["get"],"resource":["*"]}]}"#,
                "unknown field `resource`",
            ),
            (
                r#"{"rules":[{"users":["a"],"verbs":["get"],"paths":["metrics"]}]}"#,
                "must start with '/'",
            ),
        ] {
            let error = policy(json).unwrap_err();
            assert!(error.contains(wanted), "{json}: {error}");
        }
        let ok = r#"{"rules":[{"users":["a"],"verbs":["list"],"resources":["proposals"]}]}"#;
        assert!(policy(ok).is_ok(), "proposals need no namespaces");
    }

    #[test]
    fn load_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(
            &path,
            "{\"rules\": [\n  {\"users\": [\"a\"],\n   \"verbs\": 3}]}",
        )
        .unwrap();
        let error = Policy::load(&path).unwrap_err().to_string();
        assert!(error.contains("policy.json:3: "), "{error}");
    }
}

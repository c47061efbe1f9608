//! `cup auth can-i` and `cup auth whoami`: the server's answer to "what may I do" and "who
//! am I", through the Kubernetes-shaped review endpoints of cupd's access control.

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::Reply;
use crate::resources::Session;
use crate::{Output, json, log, table};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Ask whether the context's credentials may do VERB on TYPE (or NAME of it, or a path).
    #[command(after_help = "Examples:
  cup auth can-i list flags               # in the context's namespace (or -n)
  cup auth can-i put flag new-login -n production
  cup auth can-i delete flipt.io/v1alpha1/segments
  cup auth can-i merge proposals          # Git sources: may I merge proposals?
  cup auth can-i get /metrics             # a path outside /apis
  cup -o json auth can-i get flags        # the whole review, as cupd answered it

Prints yes or no (the server's reason for a no goes to stderr) and exits 0 for yes, 1 for
no, as `kubectl auth can-i` does. VERB is get, list, put or delete for resources; list,
get or merge for proposals; for a path (starting with /), an HTTP method in lower case.
TYPE is resolved as `cup get` resolves it (Kind, plural or singular, with or without a
group or version). Needs a cupd with access control; an older one answers 404.")]
    CanI {
        /// The action: get, list, put, delete (resources); list, get, merge (proposals).
        verb: String,
        /// The resource type, `proposals`, or a path such as /metrics.
        #[arg(value_name = "TYPE|PATH")]
        target: String,
        /// One resource (or proposal id); none asks about every one.
        name: Option<String>,
    },
    /// Show the user name and groups that cupd sees for the context's credentials.
    #[command(after_help = "Examples:
  cup auth whoami
  cup -o json auth whoami | jq -r .status.userInfo.username

Needs a cupd with access control; an older one answers 404.")]
    Whoami,
}

/// The verbs of resource types, as cupd's policy names them.
const RESOURCE_VERBS: [&str; 4] = ["get", "list", "put", "delete"];
/// The verbs of `/proposals`.
const PROPOSAL_VERBS: [&str; 3] = ["list", "get", "merge"];

/// What `can-i` asks about, as the `spec` of a SelfSubjectAccessReview.
fn review_spec(verb: &str, resource: Resource<'_>, name: Option<&str>) -> Result<Value> {
    let verb = verb.to_ascii_lowercase();
    match resource {
        Resource::Path(path) => {
            if name.is_some() {
                bail!("a path takes no NAME: cup auth can-i {verb} {path}");
            }
            if verb.is_empty() || !verb.chars().all(|c| c.is_ascii_alphabetic()) {
                bail!("invalid verb {verb:?} for a path: expected an HTTP method such as get");
            }
            Ok(json!({"nonResourceAttributes": {"path": path, "verb": verb}}))
        }
        Resource::Proposals => {
            check_verb(&verb, &PROPOSAL_VERBS, "proposals")?;
            check_name(&verb, name)?;
            let mut attributes = json!({"verb": verb, "group": "", "resource": "proposals"});
            if let Some(name) = name {
                attributes["name"] = name.into();
            }
            Ok(json!({"resourceAttributes": attributes}))
        }
        Resource::Typed {
            namespace,
            group,
            plural,
        } => {
            check_verb(&verb, &RESOURCE_VERBS, plural)?;
            check_name(&verb, name)?;
            let mut attributes = json!({
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": plural,
            });
            if let Some(name) = name {
                attributes["name"] = name.into();
            }
            Ok(json!({"resourceAttributes": attributes}))
        }
    }
}

/// What a `can-i` TYPE names, once resolved.
#[derive(Clone, Copy)]
enum Resource<'a> {
    Typed {
        namespace: &'a str,
        group: &'a str,
        plural: &'a str,
    },
    Proposals,
    Path(&'a str),
}

fn check_verb(verb: &str, allowed: &[&str], what: &str) -> Result<()> {
    if !allowed.contains(&verb) {
        bail!(
            "unknown verb {verb:?} for {what}: expected one of {}",
            allowed.join(", ")
        );
    }
    Ok(())
}

fn check_name(verb: &str, name: Option<&str>) -> Result<()> {
    if verb == "list" && name.is_some() {
        bail!("list is about every resource of a type: drop NAME, or ask about get");
    }
    Ok(())
}

/// Whether `ty` names the proposals of a Git source rather than a resource type.
fn is_proposals(ty: &str) -> bool {
    ty.eq_ignore_ascii_case("proposals") || ty.eq_ignore_ascii_case("proposal")
}

#[derive(Deserialize)]
struct AccessReview {
    status: Option<AccessStatus>,
}

#[derive(Deserialize)]
struct AccessStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct SubjectReview {
    status: Option<SubjectStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubjectStatus {
    user_info: Option<UserInfo>,
}

#[derive(Deserialize)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    groups: Vec<String>,
}

impl Session {
    pub fn can_i(&self, verb: &str, ty: &str, name: Option<&str>) -> Result<i32> {
        let discovery;
        let resource = if ty.starts_with('/') {
            Resource::Path(ty)
        } else if is_proposals(ty) {
            Resource::Proposals
        } else {
            discovery = self.discover()?;
            let route = discovery.resolve(ty)?;
            Resource::Typed {
                namespace: &self.target.namespace,
                group: &route.def.group,
                plural: &route.def.plural,
            }
        };
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": review_spec(verb, resource, name)?,
        });
        let reply = self.review("authorization.k8s.io", "selfsubjectaccessreviews", &review)?;
        let parsed: AccessReview = serde_json::from_slice(&reply.body)
            .ok()
            .filter(|r: &AccessReview| r.status.is_some())
            .with_context(|| {
                format!(
                    "{} {}: the answer is not an access review with a status: {}",
                    reply.method,
                    reply.url,
                    reply.text()
                )
            })?;
        let status = parsed.status.context("checked above")?;
        match self.output {
            Output::Json => json::emit(&json::pretty(&String::from_utf8_lossy(&reply.body)))?,
            Output::Table => {
                json::emit(if status.allowed { "yes\n" } else { "no\n" })?;
                if !status.reason.is_empty() {
                    log::info(format_args!("reason: {}", status.reason));
                }
            }
        }
        Ok(if status.allowed { 0 } else { 1 })
    }

    pub fn whoami(&self) -> Result<i32> {
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
        });
        let reply = self.review("authentication.k8s.io", "selfsubjectreviews", &review)?;
        let user = serde_json::from_slice::<SubjectReview>(&reply.body)
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.user_info)
            .with_context(|| {
                format!(
                    "{} {}: the answer is not a subject review with status.userInfo: {}",
                    reply.method,
                    reply.url,
                    reply.text()
                )
            })?;
        match self.output {
            Output::Json => json::emit(&json::pretty(&String::from_utf8_lossy(&reply.body)))?,
            Output::Table => {
                let mut rows = vec![vec!["Username".to_owned(), user.username]];
                if !user.uid.is_empty() {
                    rows.push(vec!["UID".to_owned(), user.uid]);
                }
                rows.push(vec![
                    "Groups".to_owned(),
                    format!("[{}]", user.groups.join(" ")),
                ]);
                json::emit(&table::render(&["ATTRIBUTE", "VALUE"], &rows))?;
            }
        }
        Ok(0)
    }

    /// POSTs a review to `/apis/{group}/v1/{plural}` and returns the 200/201 answer; a 404
    /// means the server has no access control to ask.
    fn review(&self, group: &str, plural: &str, review: &Value) -> Result<Reply> {
        let body = serde_json::to_vec(review)?;
        let reply = self
            .client
            .send(Method::POST, &["apis", group, "v1", plural], Some(body))?;
        match reply.status {
            200 | 201 => Ok(reply),
            404 | 405 => bail!(
                "cupd at {} does not answer {} ({} on {} {}): it is an older cupd, or one serving without access control",
                self.client.address(),
                plural,
                reply.status,
                reply.method,
                reply.url.path()
            ),
            status => bail!(
                "{} {}: unexpected status {status}: {}",
                reply.method,
                reply.url,
                reply.text()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_are_kubernetes_shaped() {
        let typed = Resource::Typed {
            namespace: "default",
            group: "flipt.io",
            plural: "flags",
        };
        assert_eq!(
            review_spec("GET", typed, Some("x")).unwrap(),
            json!({"resourceAttributes": {"namespace": "default", "verb": "get", "group": "flipt.io", "resource": "flags", "name": "x"}})
        );
        assert_eq!(
            review_spec("list", typed, None).unwrap(),
            json!({"resourceAttributes": {"namespace": "default", "verb": "list", "group": "flipt.io", "resource": "flags"}})
        );
        assert_eq!(
            review_spec("merge", Resource::Proposals, Some("01J")).unwrap(),
            json!({"resourceAttributes": {"verb": "merge", "group": "", "resource": "proposals", "name": "01J"}})
        );
        assert_eq!(
            review_spec("get", Resource::Path("/metrics"), None).unwrap(),
            json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}})
        );
        let err = |r: Result<Value>| format!("{:#}", r.unwrap_err());
        assert_eq!(
            err(review_spec("merge", typed, None)),
            "unknown verb \"merge\" for flags: expected one of get, list, put, delete"
        );
        assert_eq!(
            err(review_spec("put", Resource::Proposals, None)),
            "unknown verb \"put\" for proposals: expected one of list, get, merge"
        );
        assert!(err(review_spec("list", typed, Some("x"))).contains("drop NAME"));
        assert!(err(review_spec("get", Resource::Path("/metrics"), Some("x"))).contains("no NAME"));
        assert!(is_proposals("Proposals") && is_proposals("proposal") && !is_proposals("flags"));
    }
}

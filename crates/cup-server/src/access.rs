//! Access control on the HTTP side: who is calling (`cup_access::Authenticator`), whether
//! they may (`cup_access::Policy`), and the audit line of every write.
//!
//! With no authentication configured cupd is **open**: every request is served, as before
//! access control existed (startup warns when such a server listens beyond loopback). Once
//! any authentication is configured it is **guarded**: every request but `/healthz` and
//! `/readyz` needs a caller, and every request that names a verb needs a policy rule that
//! allows it (deny by default). The forge webhooks (`POST /hooks/*`) are the exception:
//! forges cannot present the API's credentials, so a delivery is authenticated by its
//! signature in `hooks` and every one is audited (verb `webhook`, resource `hooks`). The
//! audit log works in both modes.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cup_access::{
    AccessError, Attributes, AuditEvent, AuditLog, AuditTarget, Authenticator,
    AuthenticatorOptions, Caller, Credentials, Policy, Verb, Watched,
};
use serde::{Deserialize, Serialize};

use crate::error::text;
use crate::hooks::{HookOutcome, forge_of_path};
use crate::routes;
use crate::serve::Peer;
use crate::state::AppState;
use cup_scm::Forge;

/// How the Git source records who asked for a change (`--git-record-user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordUser {
    /// A `Requested-by: USER` trailer in the commit message.
    #[default]
    Trailer,
    /// The caller as the commit's author (cupd stays the committer).
    Author,
    /// Nothing.
    Off,
}

impl std::str::FromStr for RecordUser {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trailer" => Ok(RecordUser::Trailer),
            "author" => Ok(RecordUser::Author),
            "off" => Ok(RecordUser::Off),
            other => Err(format!(
                "unknown value {other:?} (expected trailer, author or off)"
            )),
        }
    }
}

/// Access control as configured by flags.
#[derive(Debug, Clone, Default)]
pub struct AccessOptions {
    /// The authenticators; none configured (and no anonymous access) means an open server.
    pub authentication: AuthenticatorOptions,
    /// The policy file (`--authorization-policy-file`), required once callers are checked.
    pub policy_file: Option<PathBuf>,
    /// Where audit lines go (`--audit-log-path`).
    pub audit: Option<AuditTarget>,
    /// How Git commits name the caller.
    pub record_user: RecordUser,
}

/// Why access control cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessSetupError {
    /// A token file, policy file or audit log that cannot be used.
    #[error(transparent)]
    File(#[from] AccessError),
    /// Callers are checked but nothing says what they may do.
    #[error(
        "authentication is configured but no --authorization-policy-file: every request would be refused \
         (to let every authenticated caller do everything, use a policy with the rule \
         {{\"groups\": [\"system:authenticated\"], \"verbs\": [\"*\"], \"resources\": [\"*\"], \"namespaces\": [\"*\"]}})"
    )]
    NoPolicy,
    /// A policy with nobody to apply it to.
    #[error(
        "--authorization-policy-file needs a way to identify callers (--token-auth-file, --client-ca-file, \
         --requestheader-username-headers) or --anonymous"
    )]
    PolicyWithoutAuthentication,
}

/// The access control of a running server.
pub struct AccessControl {
    guard: Option<Guard>,
    audit: Option<AuditLog>,
    /// How Git commits name the caller.
    pub record_user: RecordUser,
}

struct Guard {
    authenticator: Authenticator,
    policy: Watched<Policy>,
}

impl AccessControl {
    /// Loads the files the options name.
    pub fn new(options: &AccessOptions) -> Result<AccessControl, AccessSetupError> {
        let checks_callers =
            options.authentication.anonymous || authenticates(&options.authentication);
        let guard = match (&options.policy_file, checks_callers) {
            (None, false) => None,
            (None, true) => return Err(AccessSetupError::NoPolicy),
            (Some(_), false) => return Err(AccessSetupError::PolicyWithoutAuthentication),
            (Some(path), true) => Some(Guard {
                authenticator: Authenticator::new(options.authentication.clone())?,
                policy: Watched::open(path, Policy::load)?,
            }),
        };
        let audit = options.audit.clone().map(AuditLog::open).transpose()?;
        Ok(AccessControl {
            guard,
            audit,
            record_user: options.record_user,
        })
    }

    /// Whether callers are identified (a guarded server).
    pub fn identifies_callers(&self) -> bool {
        self.guard
            .as_ref()
            .is_some_and(|g| g.authenticator.identifies_callers())
    }

    /// Whether any request is checked at all.
    pub fn guarded(&self) -> bool {
        self.guard.is_some()
    }

    /// Files whose newest version is not in use, for `/status`.
    pub fn problems(&self) -> Vec<String> {
        let Some(guard) = &self.guard else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        if let Some(p) = guard.authenticator.problem() {
            problems.push(format!("token file not reloaded: {p}"));
        }
        if let Some(p) = guard.policy.problem() {
            problems.push(format!("policy file not reloaded: {p}"));
        }
        problems
    }

    /// Whether `caller` sees the type `(group, plural)` in discovery (always, on an open
    /// server), the policy read once for every type asked about.
    pub fn readable_types<'a>(
        &self,
        caller: Option<&'a Caller>,
    ) -> impl Fn(&str, &str) -> bool + 'a {
        let policy = self.guard.as_ref().map(|guard| guard.policy.get());
        move |group, plural| match (&policy, caller) {
            (None, _) => true,
            (Some(policy), Some(caller)) => policy.may_read_type(caller, group, plural),
            (Some(_), None) => false,
        }
    }
}

fn authenticates(options: &AuthenticatorOptions) -> bool {
    options.token_file.is_some() || options.client_certificates || options.request_header.is_some()
}

/// What a request asks for, read off its method and path.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Probes: served to anyone.
    Open,
    /// Needs a caller; what it shows depends on the caller (`/apis`, the self reviews,
    /// a method a route does not serve).
    Authenticated,
    /// Needs a rule allowing it.
    Checked(Requested),
    /// A forge's webhook delivery: authenticated by its signature (checked by the handler),
    /// never by the API's authenticators, and audited.
    Hook(Forge),
}

#[derive(Debug, PartialEq, Eq)]
enum Requested {
    Resource {
        verb: Verb,
        group: String,
        plural: String,
        namespace: String,
        name: Option<String>,
    },
    Proposals {
        verb: Verb,
        id: Option<String>,
    },
    Path {
        path: String,
    },
}

impl Requested {
    fn attributes(&self) -> Attributes<'_> {
        match self {
            Requested::Resource {
                verb,
                group,
                plural,
                namespace,
                name,
            } => Attributes::Resource {
                verb: *verb,
                group,
                resource: plural,
                namespace,
                name: name.as_deref(),
            },
            Requested::Proposals { verb, id } => Attributes::Proposals {
                verb: *verb,
                name: id.as_deref(),
            },
            Requested::Path { path } => Attributes::Path {
                verb: Verb::Get,
                path,
            },
        }
    }
}

/// Paths of the self reviews, as Kubernetes names them.
pub const ACCESS_REVIEW_PATH: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
/// See [`ACCESS_REVIEW_PATH`].
pub const SUBJECT_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

fn classify(method: &Method, path: &str) -> Target {
    let read = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/healthz" | "/readyz" => return Target::Open,
        "/apis" | ACCESS_REVIEW_PATH | SUBJECT_REVIEW_PATH => return Target::Authenticated,
        _ => {}
    }
    if *method == Method::POST
        && let Some(forge) = forge_of_path(path)
    {
        return Target::Hook(forge);
    }
    if let Some(api) = routes::parse(path) {
        let verb = match (method, api.name.is_some()) {
            (m, false) if *m == Method::GET || *m == Method::HEAD => Verb::List,
            (m, true) if *m == Method::GET || *m == Method::HEAD => Verb::Get,
            (&Method::PUT, true) => Verb::Put,
            (&Method::DELETE, true) => Verb::Delete,
            _ => return Target::Authenticated,
        };
        // Undecodable names are checked as written: only a `*` rule covers them, and the
        // handler then refuses them with a 400.
        let decode = |raw: &str| routes::decode(raw).unwrap_or_else(|| raw.to_owned());
        return Target::Checked(Requested::Resource {
            verb,
            group: api.group,
            plural: api.plural,
            namespace: decode(api.namespace),
            name: api.name.map(decode),
        });
    }
    if let Some(rest) = path
        .strip_prefix("/proposals")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        let segments: Vec<&str> = rest.split('/').skip(1).collect();
        let proposals = |verb, id: Option<&str>| {
            Target::Checked(Requested::Proposals {
                verb,
                id: id.map(|raw| routes::decode(raw).unwrap_or_else(|| raw.to_owned())),
            })
        };
        return match (segments.as_slice(), read, method) {
            ([], true, _) => proposals(Verb::List, None),
            ([id], true, _) => proposals(Verb::Get, Some(id)),
            ([id, "merge"], _, &Method::POST) => proposals(Verb::Merge, Some(id)),
            _ => Target::Authenticated,
        };
    }
    // `/metrics`, `/status` and every unknown path: a 404 is given only to callers allowed
    // to look, so the absence of a rule never tells what exists.
    Target::Checked(Requested::Path {
        path: path.to_owned(),
    })
}

/// What the handler of a write tells the audit line about the Git proposal it made.
#[derive(Debug, Clone, Default)]
pub struct AuditDetail {
    /// The proposal branch pushed.
    pub branch: Option<String>,
    /// The commit pushed or merged.
    pub commit: Option<String>,
}

/// The access middleware: authenticate, authorise, audit.
pub async fn check(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = &state.access;
    if access.guard.is_none() && access.audit.is_none() {
        return next.run(request).await;
    }
    let target = classify(request.method(), request.uri().path());
    if target == Target::Open {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<Peer>().cloned();
    let source = peer
        .as_ref()
        .map_or_else(String::new, |p| p.addr.to_string());
    if let Target::Hook(forge) = target {
        let response = next.run(request).await;
        if let Some(log) = &access.audit {
            let refusal = response
                .extensions()
                .get::<HookOutcome>()
                .and_then(|o| o.refusal.clone());
            log.record(&AuditEvent {
                user: None,
                groups: &[],
                verb: "webhook",
                group: None,
                resource: "hooks",
                namespace: None,
                name: Some(forge.as_str()),
                status: response.status().as_u16(),
                reason: refusal.as_deref(),
                source: &source,
                branch: None,
                commit: None,
            });
        }
        return response;
    }
    let requested = match &target {
        Target::Checked(requested) => Some(requested),
        _ => None,
    };
    let audited = requested.filter(|r| r.attributes().verb().writes());
    let audit = |caller: Option<&Caller>,
                 status: StatusCode,
                 reason: Option<&str>,
                 detail: &AuditDetail| {
        if let (Some(log), Some(requested)) = (&access.audit, audited) {
            log.record(&event(caller, requested, status, reason, &source, detail));
        }
    };

    let caller = match &access.guard {
        None => None,
        Some(guard) => {
            let credentials = Credentials {
                headers: request.headers(),
                peer: peer
                    .as_ref()
                    .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.addr.ip()),
                client_certificate: peer.as_ref().and_then(|p| p.client_certificate.as_deref()),
            };
            let caller = match guard.authenticator.authenticate(&credentials) {
                Ok(caller) => caller,
                Err(refused) => {
                    let message = format!("Unauthorized: {refused}");
                    audit(
                        None,
                        StatusCode::UNAUTHORIZED,
                        Some(&message),
                        &AuditDetail::default(),
                    );
                    state.metrics.access_refused(StatusCode::UNAUTHORIZED);
                    return unauthorized(&message);
                }
            };
            if let Some(requested) = requested {
                let decision = guard.policy.get().decide(&caller, &requested.attributes());
                if !decision.allowed {
                    audit(
                        Some(&caller),
                        StatusCode::FORBIDDEN,
                        Some(&decision.reason),
                        &AuditDetail::default(),
                    );
                    state.metrics.access_refused(StatusCode::FORBIDDEN);
                    return text(StatusCode::FORBIDDEN, &decision.reason);
                }
            }
            Some(caller)
        }
    };
    if let Some(caller) = &caller {
        request.extensions_mut().insert(caller.clone());
    }
    let response = next.run(request).await;
    if audited.is_some() {
        let detail = response
            .extensions()
            .get::<AuditDetail>()
            .cloned()
            .unwrap_or_default();
        audit(caller.as_ref(), response.status(), None, &detail);
    }
    response
}

fn event<'a>(
    caller: Option<&'a Caller>,
    requested: &'a Requested,
    status: StatusCode,
    reason: Option<&'a str>,
    source: &'a str,
    detail: &'a AuditDetail,
) -> AuditEvent<'a> {
    let (group, resource, namespace, name) = match requested {
        Requested::Resource {
            group,
            plural,
            namespace,
            name,
            ..
        } => (
            Some(group.as_str()),
            plural.as_str(),
            Some(namespace.as_str()),
            name.as_deref(),
        ),
        Requested::Proposals { id, .. } => (None, "proposals", None, id.as_deref()),
        Requested::Path { path } => (None, path.as_str(), None, None),
    };
    AuditEvent {
        user: caller.map(|c| c.user.as_str()),
        groups: caller.map_or(&[], |c| c.groups.as_slice()),
        verb: requested.attributes().verb().as_str(),
        group,
        resource,
        namespace,
        name,
        status: status.as_u16(),
        reason,
        source,
        branch: detail.branch.as_deref(),
        commit: detail.commit.as_deref(),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cupd\""),
    );
    response
}

// ---- The self reviews, in the shapes of Kubernetes' authorization.k8s.io and
// authentication.k8s.io groups, so users can ask what they may do.

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessReview {
    #[serde(default = "access_review_version")]
    api_version: String,
    #[serde(default = "access_review_kind")]
    kind: String,
    spec: AccessReviewSpec,
    #[serde(default)]
    status: Option<AccessReviewStatus>,
}

fn access_review_version() -> String {
    "authorization.k8s.io/v1".into()
}
fn access_review_kind() -> String {
    "SelfSubjectAccessReview".into()
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct AccessReviewSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_attributes: Option<ResourceAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    non_resource_attributes: Option<NonResourceAttributes>,
}

#[derive(Deserialize, Serialize)]
struct ResourceAttributes {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    verb: String,
    #[serde(default)]
    group: String,
    resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
}

#[derive(Deserialize, Serialize)]
struct NonResourceAttributes {
    path: String,
    verb: String,
}

#[derive(Deserialize, Serialize)]
struct AccessReviewStatus {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: whether the caller may
/// do what the body describes (201 with `status.allowed` and `status.reason`).
pub async fn access_review(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Response {
    let mut review: AccessReview = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("not a SelfSubjectAccessReview: {error}"),
            );
        }
    };
    let requested = match requested_of(&review.spec) {
        Ok(requested) => requested,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let (allowed, reason) = match (&state.access.guard, caller) {
        (None, _) => (
            true,
            "access control is off: no authentication is configured, every request is served"
                .to_owned(),
        ),
        (Some(guard), Some(axum::Extension(caller))) => {
            let decision = guard.policy.get().decide(&caller, &requested.attributes());
            (decision.allowed, decision.reason)
        }
        // The middleware authenticates every request to this path first.
        (Some(_), None) => return text(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    review.status = Some(AccessReviewStatus {
        allowed,
        reason: Some(reason),
    });
    json(StatusCode::CREATED, &review)
}

fn requested_of(spec: &AccessReviewSpec) -> Result<Requested, String> {
    let verb = |text: &str| {
        Verb::parse(text)
            .ok_or_else(|| format!("unknown verb {text:?} (get, list, put, delete or merge)"))
    };
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) if r.resource == "proposals" && r.group.is_empty() => {
            Ok(Requested::Proposals {
                verb: verb(&r.verb)?,
                id: (!r.name.is_empty()).then(|| r.name.clone()),
            })
        }
        (Some(r), None) => {
            if r.group.is_empty() || r.resource.is_empty() || r.namespace.is_empty() {
                return Err("resourceAttributes needs group, resource and namespace".into());
            }
            Ok(Requested::Resource {
                verb: verb(&r.verb)?,
                group: r.group.clone(),
                plural: r.resource.clone(),
                namespace: r.namespace.clone(),
                name: (!r.name.is_empty()).then(|| r.name.clone()),
            })
        }
        (None, Some(n)) => {
            if verb(&n.verb)? != Verb::Get {
                return Err("paths are only read: the verb must be get".into());
            }
            Ok(Requested::Path {
                path: n.path.clone(),
            })
        }
        _ => Err("spec needs exactly one of resourceAttributes and nonResourceAttributes".into()),
    }
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the server takes the
/// caller for (201 with `status.userInfo`).
pub async fn subject_review(
    State(state): State<Arc<AppState>>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    let caller = match (&state.access.guard, caller) {
        (Some(_), Some(axum::Extension(caller))) => caller,
        _ => Caller::anonymous(),
    };
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "status": {"userInfo": {"username": caller.user, "groups": caller.groups}},
    });
    json(StatusCode::CREATED, &body)
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response()
        }
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// The commit message of a Git write and the author to record, for `caller`.
pub fn commit_identity(
    record: RecordUser,
    caller: Option<&Caller>,
    message: String,
) -> (String, Option<cup_git::Author>) {
    let Some(caller) = caller else {
        return (message, None);
    };
    // A user name comes from a token file, a certificate or a proxy header: keep it to one
    // line without the characters a signature or trailer cannot hold.
    let user: String = caller
        .user
        .chars()
        .filter(|c| !c.is_control() && *c != '<' && *c != '>')
        .collect();
    match record {
        RecordUser::Off => (message, None),
        RecordUser::Trailer => (format!("{message}\n\nRequested-by: {user}"), None),
        RecordUser::Author => {
            let email = if user.contains('@') {
                user.clone()
            } else {
                String::new()
            };
            (message, Some(cup_git::Author { name: user, email }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(verb: Verb, name: Option<&str>) -> Target {
        Target::Checked(Requested::Resource {
            verb,
            group: "flipt.io".into(),
            plural: "flags".into(),
            namespace: "default".into(),
            name: name.map(str::to_owned),
        })
    }

    #[test]
    fn requests_are_classified_by_method_and_path() {
        let base = "/apis/flipt.io/v1/namespaces/default/flags";
        let item = format!("{base}/a%20b");
        assert_eq!(classify(&Method::GET, "/healthz"), Target::Open);
        assert_eq!(classify(&Method::GET, "/apis"), Target::Authenticated);
        assert_eq!(classify(&Method::GET, base), resource(Verb::List, None));
        assert_eq!(
            classify(&Method::GET, &item),
            resource(Verb::Get, Some("a b"))
        );
        assert_eq!(
            classify(&Method::PUT, &item),
            resource(Verb::Put, Some("a b"))
        );
        assert_eq!(
            classify(&Method::DELETE, &item),
            resource(Verb::Delete, Some("a b"))
        );
        assert_eq!(classify(&Method::POST, &item), Target::Authenticated);
        assert_eq!(
            classify(&Method::GET, "/proposals"),
            Target::Checked(Requested::Proposals {
                verb: Verb::List,
                id: None
            })
        );
        assert_eq!(
            classify(&Method::POST, "/proposals/01J/merge"),
            Target::Checked(Requested::Proposals {
                verb: Verb::Merge,
                id: Some("01J".into())
            })
        );
        assert_eq!(
            classify(&Method::GET, "/metrics"),
            Target::Checked(Requested::Path {
                path: "/metrics".into()
            })
        );
        assert_eq!(
            classify(&Method::GET, "/proposalsX"),
            Target::Checked(Requested::Path {
                path: "/proposalsX".into()
            })
        );
        assert_eq!(
            classify(&Method::POST, "/hooks/gitea"),
            Target::Hook(Forge::Gitea)
        );
        // Only a POST is a delivery; anything else is checked as any path.
        assert_eq!(
            classify(&Method::GET, "/hooks/gitea"),
            Target::Checked(Requested::Path {
                path: "/hooks/gitea".into()
            })
        );
    }

    #[test]
    fn git_commits_name_the_caller() {
        let caller = Caller::authenticated("alice\n<x>".into(), vec![], cup_access::Method::Token);
        let (message, author) =
            commit_identity(RecordUser::Trailer, Some(&caller), "feat: x".into());
        assert_eq!(message, "feat: x\n\nRequested-by: alicex");
        assert!(author.is_none());
        let mail =
            Caller::authenticated("bob@example.com".into(), vec![], cup_access::Method::Token);
        let (message, author) = commit_identity(RecordUser::Author, Some(&mail), "m".into());
        assert_eq!(message, "m");
        let author = author.unwrap();
        assert_eq!(
            (author.name.as_str(), author.email.as_str()),
            ("bob@example.com", "bob@example.com")
        );
        assert_eq!(
            commit_identity(RecordUser::Trailer, None, "m".into()).0,
            "m"
        );
    }
}

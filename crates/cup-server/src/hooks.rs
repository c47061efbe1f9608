//! Forge webhooks: `POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab`.
//!
//! A forge tells cupd that the remote changed (a push, a pull request opened, merged or
//! closed) so that the next read need not wait for `--git-fetch-interval`. The hooks exist
//! only on the Git source and only when `--api-git-webhook-secret-file` names a secret;
//! otherwise the paths are 404s like any unknown path.
//!
//! A delivery is trusted because of its signature, never because of who sends it:
//!
//! * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//!   Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`;
//!   GitLab: `X-Gitlab-Token: <secret>`. Compared in constant time; anything else is a 401.
//! * The signature covers the body only, not the delivery id or the event name. So a
//!   delivery is a replay when its id **or** its body was seen before: a captured body sent
//!   again under a new id is recognised too. The last [`REMEMBERED_DELIVERIES`] accepted
//!   deliveries are remembered (ids and body digests; nothing older is forgotten by age,
//!   since no forge signs a timestamp that would make an old delivery refusable). A replay is
//!   answered 200 "already handled" and does nothing: a forge that retries a delivery whose
//!   answer it lost must not see a failure (GitLab disables hooks that keep failing).
//! * The body is at most [`MAX_HOOK_BODY`] bytes (413 beyond), read whole before anything
//!   else. It is parsed into small structs of the fields used; other fields are ignored; a
//!   body that does not parse is a 400 (JSON only: a GitHub hook must use
//!   `application/json`).
//!
//! What a delivery does: a push or a pull-request event wakes the background fetcher
//! (`GitSource::nudge_fetch`; bursts coalesce into one fetch) and is answered 202 at once,
//! never waiting for the fetch. A pull-request event whose head is a proposal branch
//! (`cup/proposal/…`) is recorded in the book of pull requests (`/proposals` shows it).
//! Other events (GitHub's `ping` included) are answered 200 and do nothing.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cup_git::{PROPOSAL_PREFIX, PullRequest, PullRequestState};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::text;
use crate::source::Source;
use crate::state::AppState;

/// The largest delivery accepted: pushes and pull requests of a repository that cupd
/// serves are far smaller; a forge's largest payloads (many commits) only list more files.
pub const MAX_HOOK_BODY: usize = 1024 * 1024;

/// How many accepted deliveries are remembered to refuse replays.
pub const REMEMBERED_DELIVERIES: usize = 4096;

/// The longest delivery id accepted (forges send UUIDs, 36 characters).
const MAX_DELIVERY_ID: usize = 128;

/// The largest secret file read (a secret is a line; this only bounds a wrong path).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The paths of the hooks, one per forge.
pub const HOOK_PATHS: [&str; 3] = ["/hooks/github", "/hooks/gitea", "/hooks/gitlab"];

/// The shared secret of the webhooks (`--api-git-webhook-secret-file`). Never shown: its
/// `Debug` is redacted.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Why the webhook secret cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookSecretError {
    /// The file cannot be read.
    #[error("webhook secret file {}: {source}", path.display())]
    Read {
        /// The file named.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file holds nothing but white space (or is too large, or not UTF-8).
    #[error("webhook secret file {}: {why}", path.display())]
    Unusable {
        /// The file named.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl WebhookSecret {
    /// Reads the secret from `path`: its text, white space around it trimmed, not empty.
    pub fn from_file(path: &Path) -> Result<WebhookSecret, WebhookSecretError> {
        use std::io::Read;
        let read_error = |source| WebhookSecretError::Read {
            path: path.to_owned(),
            source,
        };
        let unusable = |why| WebhookSecretError::Unusable {
            path: path.to_owned(),
            why,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_SECRET_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_SECRET_FILE {
            return Err(unusable("larger than 64 KiB: not a secret"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| unusable("not UTF-8 text"))?;
        WebhookSecret::new(text).ok_or_else(|| unusable("empty"))
    }

    /// `text` trimmed, or `None` when nothing is left.
    pub fn new(text: &str) -> Option<WebhookSecret> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| WebhookSecret(trimmed.as_bytes().into()))
    }
}

/// The webhooks of a Git source: the secret and the deliveries seen.
#[derive(Debug)]
pub struct Webhooks {
    secret: WebhookSecret,
    seen: Mutex<Seen>,
}

/// The last accepted deliveries: their ids and the digests of their bodies.
#[derive(Debug, Default)]
struct Seen {
    ids: HashSet<String>,
    bodies: HashSet<[u8; 32]>,
    order: VecDeque<(String, [u8; 32])>,
}

impl Webhooks {
    /// Hooks verified with `secret`.
    pub fn new(secret: WebhookSecret) -> Webhooks {
        Webhooks {
            secret,
            seen: Mutex::default(),
        }
    }

    /// Remembers a delivery; `false` when its id or its body was seen before.
    fn remember(&self, id: &str, body: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.ids.contains(id) || seen.bodies.contains(&digest) {
            return false;
        }
        if seen.order.len() >= REMEMBERED_DELIVERIES
            && let Some((old_id, old_digest)) = seen.order.pop_front()
        {
            seen.ids.remove(&old_id);
            seen.bodies.remove(&old_digest);
        }
        seen.ids.insert(id.to_owned());
        seen.bodies.insert(digest);
        seen.order.push_back((id.to_owned(), digest));
        true
    }
}

/// The forge a hook path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    /// The forge of a hook path.
    pub fn of_path(path: &str) -> Option<Forge> {
        match path {
            "/hooks/github" => Some(Forge::GitHub),
            "/hooks/gitea" => Some(Forge::Gitea),
            "/hooks/gitlab" => Some(Forge::GitLab),
            _ => None,
        }
    }

    /// Its name in paths, logs, metrics and the audit log.
    pub fn name(self) -> &'static str {
        match self {
            Forge::GitHub => "github",
            Forge::Gitea => "gitea",
            Forge::GitLab => "gitlab",
        }
    }

    /// The headers that carry the delivery's id, in order of preference.
    fn delivery_headers(self) -> &'static [&'static str] {
        match self {
            Forge::GitHub => &["x-github-delivery"],
            Forge::Gitea => &["x-gitea-delivery", "x-forgejo-delivery"],
            // The idempotency key stays the same across GitLab's retries of one delivery;
            // older versions send only the UUIDs.
            Forge::GitLab => &[
                "idempotency-key",
                "x-gitlab-webhook-uuid",
                "x-gitlab-event-uuid",
            ],
        }
    }

    fn event_headers(self) -> &'static [&'static str] {
        match self {
            Forge::GitHub => &["x-github-event"],
            Forge::Gitea => &["x-gitea-event", "x-forgejo-event"],
            Forge::GitLab => &["x-gitlab-event"],
        }
    }
}

/// Why a delivery was not taken: its status and a short reason (shown to the sender and
/// written to the audit log; never the secret or a signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason: reason.into(),
        }
    }

    fn unauthorized(reason: &str) -> Refusal {
        Refusal::new(StatusCode::UNAUTHORIZED, reason)
    }
}

/// The first of `names` present in `headers`, as text.
fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Result<Option<&'a str>, Refusal> {
    for name in names {
        if let Some(value) = headers.get(*name) {
            return value.to_str().map(|v| Some(v.trim())).map_err(|_| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("header {name} is not text"),
                )
            });
        }
    }
    Ok(None)
}

/// Checks the delivery's signature (or token) against `secret`.
pub fn verify(
    forge: Forge,
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    let secret = &secret.0;
    match forge {
        Forge::GitHub => {
            let signature = header(headers, &["x-hub-signature-256"])?
                .ok_or_else(|| Refusal::unauthorized("no X-Hub-Signature-256 header"))?;
            let hex = signature
                .strip_prefix("sha256=")
                .ok_or_else(|| Refusal::unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
            hmac_matches(secret, body, hex)
                .then_some(())
                .ok_or_else(|| Refusal::unauthorized("X-Hub-Signature-256 does not match"))
        }
        Forge::Gitea => {
            let signature = header(headers, &["x-gitea-signature", "x-forgejo-signature"])?
                .ok_or_else(|| Refusal::unauthorized("no X-Gitea-Signature header"))?;
            hmac_matches(secret, body, signature)
                .then_some(())
                .ok_or_else(|| Refusal::unauthorized("X-Gitea-Signature does not match"))
        }
        Forge::GitLab => {
            let token = header(headers, &["x-gitlab-token"])?
                .ok_or_else(|| Refusal::unauthorized("no X-Gitlab-Token header"))?;
            token_matches(secret, token.as_bytes())
                .then_some(())
                .ok_or_else(|| Refusal::unauthorized("X-Gitlab-Token does not match"))
        }
    }
}

/// Whether `hex` is the HMAC-SHA256 of `body` under `secret` (compared in constant time).
fn hmac_matches(secret: &[u8], body: &[u8], hex: &str) -> bool {
    let Ok(expected) = hex::decode(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Whether `token` is `secret`: their digests are compared in constant time, so neither
/// the content nor the length of the secret shows in the time taken.
fn token_matches(secret: &[u8], token: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(secret), Sha256::digest(token));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// What a delivery asks for, once parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Refs moved (branches or tags).
    Push,
    /// A pull request (merge request) changed: where it stands now.
    PullRequest(PullRequest),
    /// Anything else (GitHub's `ping` included): nothing to do.
    Ignored(String),
}

/// Where a push payload says the refs moved: parsed only to refuse what is no push payload.
#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    _ref: String,
}

/// GitHub's and Gitea's `pull_request` payload, the fields used.
#[derive(Deserialize)]
struct PullRequestPayload {
    pull_request: PullRequestObject,
}

#[derive(Deserialize)]
struct PullRequestObject {
    number: u64,
    html_url: String,
    /// `open` or `closed`.
    state: String,
    #[serde(default)]
    merged: Option<bool>,
    head: Head,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "ref")]
    branch: String,
}

/// GitLab's `Merge Request Hook` payload, the fields used.
#[derive(Deserialize)]
struct MergeRequestPayload {
    object_attributes: MergeRequestAttributes,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: u64,
    /// The merge request's web page.
    url: String,
    /// `opened`, `closed`, `locked` or `merged`.
    state: String,
    source_branch: String,
}

fn bad_payload(what: &str, error: serde_json::Error) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        format!("not a {what} payload (the hook must send application/json): {error}"),
    )
}

/// Parses the body of a `forge` delivery of event `event`.
pub fn parse(forge: Forge, event: &str, body: &[u8]) -> Result<Event, Refusal> {
    let push = |what| {
        serde_json::from_slice::<PushPayload>(body)
            .map(|_| Event::Push)
            .map_err(|e| bad_payload(what, e))
    };
    match (forge, event) {
        (Forge::GitHub | Forge::Gitea, "push") => push("push"),
        (Forge::GitLab, "Push Hook" | "Tag Push Hook") => push(event),
        // Gitea names some pull-request actions in the event itself (`pull_request_sync`).
        (Forge::GitHub, "pull_request") | (Forge::Gitea, "pull_request" | "pull_request_sync") => {
            let payload: PullRequestPayload =
                serde_json::from_slice(body).map_err(|e| bad_payload("pull_request", e))?;
            let pr = payload.pull_request;
            let state = match (pr.state.as_str(), pr.merged.unwrap_or(false)) {
                ("open", _) => PullRequestState::Open,
                ("closed", true) => PullRequestState::Merged,
                ("closed", false) => PullRequestState::Closed,
                (other, _) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("unknown pull request state {:?}", truncated(other)),
                    ));
                }
            };
            Ok(Event::PullRequest(PullRequest {
                number: pr.number,
                url: pr.html_url,
                state,
                head: pr.head.branch,
            }))
        }
        (Forge::GitLab, "Merge Request Hook") => {
            let payload: MergeRequestPayload =
                serde_json::from_slice(body).map_err(|e| bad_payload("Merge Request Hook", e))?;
            let mr = payload.object_attributes;
            let state = match mr.state.as_str() {
                "opened" | "locked" => PullRequestState::Open,
                "merged" => PullRequestState::Merged,
                "closed" => PullRequestState::Closed,
                other => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("unknown merge request state {:?}", truncated(other)),
                    ));
                }
            };
            Ok(Event::PullRequest(PullRequest {
                number: mr.iid,
                url: mr.url,
                state,
                head: mr.source_branch,
            }))
        }
        _ => Ok(Event::Ignored(event.to_owned())),
    }
}

/// At most 64 characters of a value the sender chose, for a message.
fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

/// What the access layer's audit line says about a hook request (set on the response).
#[derive(Debug, Clone)]
pub struct HookOutcome {
    /// Why it was refused, when it was.
    pub refusal: Option<String>,
}

/// The handler of the three hook paths.
pub async fn deliver(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(forge) = Forge::of_path(uri.path()) else {
        return crate::api::not_found_page();
    };
    let git = match &*state.source {
        Source::Git(git) => git,
        Source::Local(_) => return crate::api::not_found_page(),
    };
    let Some(hooks) = git.webhooks() else {
        return crate::api::not_found_page();
    };
    let (response, outcome) = match handle(forge, hooks, git, &headers, &body) {
        Ok(Handled {
            status,
            message,
            outcome,
        }) => {
            state.metrics.webhook_delivery(forge.name(), outcome);
            (text(status, &message), HookOutcome { refusal: None })
        }
        Err(refusal) => {
            state
                .metrics
                .webhook_delivery(forge.name(), outcome_of(refusal.status));
            tracing::warn!(
                forge = forge.name(),
                status = refusal.status.as_u16(),
                reason = refusal.reason,
                "webhook delivery refused"
            );
            (
                text(refusal.status, &refusal.reason),
                HookOutcome {
                    refusal: Some(refusal.reason),
                },
            )
        }
    };
    let mut response = response;
    response.extensions_mut().insert(outcome);
    response
}

/// The metrics outcome of a refusal.
fn outcome_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "bad_request",
    }
}

struct Handled {
    status: StatusCode,
    message: String,
    /// `accepted`, `ignored` or `replayed` (a metrics label).
    outcome: &'static str,
}

fn handle(
    forge: Forge,
    hooks: &Webhooks,
    git: &crate::git::GitSource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Handled, Refusal> {
    if body.len() > MAX_HOOK_BODY {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("webhook body larger than {MAX_HOOK_BODY} bytes"),
        ));
    }
    verify(forge, &hooks.secret, headers, body)?;
    let id = header(headers, forge.delivery_headers())?
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "no delivery id ({}): each delivery must be identifiable to refuse replays",
                    forge.delivery_headers().join(", ")
                ),
            )
        })?;
    if id.len() > MAX_DELIVERY_ID || id.chars().any(|c| c.is_control()) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("delivery id longer than {MAX_DELIVERY_ID} characters or not printable"),
        ));
    }
    let event = header(headers, forge.event_headers())?
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("no event header ({})", forge.event_headers().join(", ")),
            )
        })?;
    let parsed = parse(forge, event, body)?;
    if !hooks.remember(id, body) {
        tracing::info!(
            forge = forge.name(),
            delivery = id,
            "webhook delivery already handled"
        );
        return Ok(Handled {
            status: StatusCode::OK,
            message: format!("delivery {id} already handled"),
            outcome: "replayed",
        });
    }
    match parsed {
        Event::Push => {
            git.nudge_fetch();
            tracing::info!(forge = forge.name(), delivery = id, event, "webhook: fetch");
            Ok(Handled {
                status: StatusCode::ACCEPTED,
                message: "accepted: fetching".into(),
                outcome: "accepted",
            })
        }
        Event::PullRequest(pull_request) => {
            // Merged: the base branch moved; opened or closed: the proposal list changes.
            git.nudge_fetch();
            let proposal = pull_request.head.starts_with(PROPOSAL_PREFIX);
            tracing::info!(
                forge = forge.name(),
                delivery = id,
                event,
                number = pull_request.number,
                state = pull_request.state.as_str(),
                head = truncated(&pull_request.head),
                recorded = proposal,
                "webhook: pull request"
            );
            let message = if proposal {
                let message = format!(
                    "accepted: pull request {} of {} is {}; fetching",
                    pull_request.number,
                    pull_request.head,
                    pull_request.state.as_str()
                );
                git.pull_request_book().record(pull_request);
                message
            } else {
                "accepted: not a proposal's pull request; fetching".into()
            };
            Ok(Handled {
                status: StatusCode::ACCEPTED,
                message,
                outcome: "accepted",
            })
        }
        Event::Ignored(event) => {
            tracing::info!(
                forge = forge.name(),
                delivery = id,
                event = truncated(&event),
                "webhook: event ignored"
            );
            Ok(Handled {
                status: StatusCode::OK,
                message: format!("event {:?} ignored", truncated(&event)),
                outcome: "ignored",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn secret(text: &str) -> WebhookSecret {
        WebhookSecret::new(text).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// The vector GitHub gives for its signatures: secret "It's a Secret to Everybody",
    /// body "Hello, World!".
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_signatures_are_checked_against_the_known_vector() {
        let s = secret(GITHUB_SECRET);
        let ok = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        assert_eq!(verify(Forge::GitHub, &s, &ok, GITHUB_BODY), Ok(()));
        // Another body, another secret, no prefix, not hex, missing: all refused.
        let refused = |h: &HeaderMap, body: &[u8], s: &WebhookSecret| {
            verify(Forge::GitHub, s, h, body).unwrap_err().status
        };
        assert_eq!(refused(&ok, b"Hello, World?", &s), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused(&ok, GITHUB_BODY, &secret("another")),
            StatusCode::UNAUTHORIZED
        );
        let bare = headers(&[(
            "x-hub-signature-256",
            GITHUB_SIGNATURE.trim_start_matches("sha256="),
        )]);
        assert_eq!(refused(&bare, GITHUB_BODY, &s), StatusCode::UNAUTHORIZED);
        let junk = headers(&[("x-hub-signature-256", "sha256=zz")]);
        assert_eq!(refused(&junk, GITHUB_BODY, &s), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused(&HeaderMap::new(), GITHUB_BODY, &s),
            StatusCode::UNAUTHORIZED
        );
        // The SHA-1 header alone is not enough.
        let sha1 = headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert_eq!(refused(&sha1, GITHUB_BODY, &s), StatusCode::UNAUTHORIZED);
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_HMAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn gitea_and_forgejo_signatures_are_bare_hex_hmacs() {
        let s = secret("Jefe");
        let body = b"what do ya want for nothing?";
        for name in ["x-gitea-signature", "x-forgejo-signature"] {
            let ok = headers(&[(name, RFC4231_HMAC)]);
            assert_eq!(verify(Forge::Gitea, &s, &ok, body), Ok(()), "{name}");
            let upper = headers(&[(name, &RFC4231_HMAC.to_uppercase())]);
            assert_eq!(verify(Forge::Gitea, &s, &upper, body), Ok(()), "{name}");
        }
        let prefixed = headers(&[("x-gitea-signature", &format!("sha256={RFC4231_HMAC}"))]);
        assert!(verify(Forge::Gitea, &s, &prefixed, body).is_err());
        let ok = headers(&[("x-gitea-signature", RFC4231_HMAC)]);
        assert!(verify(Forge::Gitea, &s, &ok, b"what do ya want for nothing!").is_err());
        // A GitHub signature does not open the Gitea hook.
        let github = headers(&[("x-hub-signature-256", &format!("sha256={RFC4231_HMAC}"))]);
        assert!(verify(Forge::Gitea, &s, &github, body).is_err());
    }

    #[test]
    fn gitlab_tokens_must_equal_the_secret() {
        let s = secret("  a-token\n");
        let ok = headers(&[("x-gitlab-token", "a-token")]);
        assert_eq!(verify(Forge::GitLab, &s, &ok, b"{}"), Ok(()));
        for wrong in ["a-toke", "a-token2", "A-TOKEN", ""] {
            let h = headers(&[("x-gitlab-token", wrong)]);
            assert!(verify(Forge::GitLab, &s, &h, b"{}").is_err(), "{wrong:?}");
        }
        assert!(verify(Forge::GitLab, &s, &HeaderMap::new(), b"{}").is_err());
    }

    #[test]
    fn secrets_are_trimmed_never_empty_and_never_shown() {
        assert!(WebhookSecret::new(" \n\t").is_none());
        let s = secret("hunter2\n");
        assert_eq!(&*s.0, b"hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(matches!(
            WebhookSecret::from_file(&empty),
            Err(WebhookSecretError::Unusable { .. })
        ));
        assert!(matches!(
            WebhookSecret::from_file(&tmp.path().join("missing")),
            Err(WebhookSecretError::Read { .. })
        ));
        let good = tmp.path().join("good");
        std::fs::write(&good, "s3cret\n").unwrap();
        assert_eq!(&*WebhookSecret::from_file(&good).unwrap().0, b"s3cret");
    }

    #[test]
    fn deliveries_are_remembered_by_id_and_by_body_within_a_bound() {
        let hooks = Webhooks::new(secret("s"));
        assert!(hooks.remember("a", b"one"));
        assert!(!hooks.remember("a", b"two"), "same id");
        assert!(!hooks.remember("b", b"one"), "same body, new id");
        assert!(hooks.remember("b", b"two"));
        for i in 0..REMEMBERED_DELIVERIES {
            assert!(hooks.remember(&format!("n{i}"), format!("body {i}").as_bytes()));
        }
        let seen = hooks.seen.lock().unwrap();
        assert_eq!(seen.order.len(), REMEMBERED_DELIVERIES);
        assert_eq!(seen.ids.len(), REMEMBERED_DELIVERIES);
        assert_eq!(seen.bodies.len(), REMEMBERED_DELIVERIES);
        drop(seen);
        // The oldest were forgotten.
        assert!(hooks.remember("a", b"one"));
    }

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// A Git source on a bare repository holding one commit on `main`, with webhooks.
    fn git_source(tmp: &Path) -> crate::git::GitSource {
        git(tmp, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(tmp, &["init", "-q", "-b", "main", "seed"]);
        let seed = tmp.join("seed");
        std::fs::write(seed.join("a"), "a").unwrap();
        git(&seed, &["add", "a"]);
        git(&seed, &["commit", "-q", "-m", "seed"]);
        git(&seed, &["push", "-q", "../remote.git", "main"]);
        let options = crate::git::GitOptions {
            url: tmp.join("remote.git").to_str().unwrap().to_owned(),
            cache: tmp.join("cache"),
            author: cup_git::Author {
                name: "cup".into(),
                email: "cup@localhost".into(),
            },
            fetch_interval: std::time::Duration::ZERO,
            credentials: None,
            known_hosts: None,
            pull_requests: Arc::new(cup_git::BranchesOnly),
            write_limits: cup_git::WriteLimits::default(),
            snapshot_limits: cup_git::SnapshotLimits::default(),
            snapshot_retention: cup_git::SnapshotRetention::default(),
            gc_interval: std::time::Duration::ZERO,
            proposal_retention: None,
            webhook_secret: Some(secret(GITHUB_SECRET)),
        };
        crate::git::GitSource::open(&options).unwrap()
    }

    fn signed_github(event: &str, id: &str, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers(&[
            ("x-github-event", event),
            ("x-github-delivery", id),
            ("x-hub-signature-256", &signature),
        ])
    }

    fn github_pull_request(head: &str, state: &str, merged: bool) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "action": "closed",
            "number": 9,
            "pull_request": {"number": 9, "html_url": "https://github.example/o/r/pull/9",
                "state": state, "merged": merged, "head": {"ref": head}},
        }))
        .unwrap()
    }

    #[test]
    fn pull_request_deliveries_of_proposals_update_the_book_once() {
        let tmp = tempfile::tempdir().unwrap();
        let git = git_source(tmp.path());
        let hooks = git.webhooks().expect("webhooks enabled");
        let branch = "cup/proposal/01JBOOK0000000000000000000";
        let deliver = |body: &[u8], headers: &HeaderMap| {
            handle(Forge::GitHub, hooks, &git, headers, body).map(|h| h.status)
        };

        let closed = github_pull_request(branch, "closed", false);
        let status = deliver(&closed, &signed_github("pull_request", "d1", &closed));
        assert_eq!(status, Ok(StatusCode::ACCEPTED));
        let recorded = git.pull_request_book().get(branch).expect("recorded");
        assert_eq!(
            (recorded.number, recorded.state, recorded.url.as_str()),
            (
                9,
                PullRequestState::Closed,
                "https://github.example/o/r/pull/9"
            )
        );

        // Merged later: the book follows.
        let merged = github_pull_request(branch, "closed", true);
        let status = deliver(&merged, &signed_github("pull_request", "d2", &merged));
        assert_eq!(status, Ok(StatusCode::ACCEPTED));
        assert_eq!(
            git.pull_request_book().get(branch).unwrap().state,
            PullRequestState::Merged
        );

        // The first delivery replayed (same id; then same body, new id): nothing changes.
        for id in ["d1", "d3"] {
            let status = deliver(&closed, &signed_github("pull_request", id, &closed));
            assert_eq!(status, Ok(StatusCode::OK), "{id}");
            assert_eq!(
                git.pull_request_book().get(branch).unwrap().state,
                PullRequestState::Merged,
                "{id}"
            );
        }

        // A bad signature, or a branch that is not a proposal's: not recorded.
        let other = "cup/proposal/01JOTHER000000000000000000";
        let open = github_pull_request(other, "open", false);
        let mut forged = signed_github("pull_request", "d4", &open);
        forged.insert("x-hub-signature-256", HeaderValue::from_static("sha256=00"));
        let refused = deliver(&open, &forged).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(git.pull_request_book().get(other).is_none());
        let feature = github_pull_request("feature", "open", false);
        let status = deliver(&feature, &signed_github("pull_request", "d5", &feature));
        assert_eq!(status, Ok(StatusCode::ACCEPTED));
        assert!(git.pull_request_book().get("feature").is_none());
        assert_eq!(git.pull_request_book().len(), 1);
    }

    #[test]
    fn payloads_become_pull_requests() {
        let github = br#"{"action":"closed","number":5,"pull_request":{"number":5,
            "html_url":"https://github.example/o/r/pull/5","state":"closed","merged":true,
            "head":{"ref":"cup/proposal/01J","sha":"abc"},"extra":[1,2]}}"#;
        assert_eq!(
            parse(Forge::GitHub, "pull_request", github),
            Ok(Event::PullRequest(PullRequest {
                number: 5,
                url: "https://github.example/o/r/pull/5".into(),
                state: PullRequestState::Merged,
                head: "cup/proposal/01J".into(),
            }))
        );
        let gitlab = br#"{"object_kind":"merge_request","object_attributes":{"iid":3,
            "url":"https://gitlab.example/o/r/-/merge_requests/3","state":"closed",
            "source_branch":"cup/proposal/01K"}}"#;
        let Ok(Event::PullRequest(mr)) = parse(Forge::GitLab, "Merge Request Hook", gitlab) else {
            panic!("a merge request");
        };
        assert_eq!((mr.number, mr.state), (3, PullRequestState::Closed));
        assert_eq!(
            parse(Forge::GitHub, "ping", b"anything").unwrap(),
            Event::Ignored("ping".into())
        );
        for (forge, event, body) in [
            (Forge::GitHub, "push", &b"payload=%7B%7D"[..]),
            (Forge::GitHub, "pull_request", b"{}"),
            (Forge::Gitea, "push", b"[1]"),
            (Forge::GitLab, "Merge Request Hook", b"{\"object_attributes\":{}}"),
            (
                Forge::GitHub,
                "pull_request",
                br#"{"pull_request":{"number":1,"html_url":"u","state":"weird","head":{"ref":"x"}}}"#,
            ),
        ] {
            let refusal = parse(forge, event, body).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST, "{event}: {body:?}");
        }
    }
}

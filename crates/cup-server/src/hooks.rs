//! Forge webhooks: `POST /hooks/github`, `/hooks/gitea`, `/hooks/gitlab`.
//!
//! A forge tells cupd that the remote changed (a push, a pull request opened, merged or
//! closed) so that the next read need not wait for `--git-fetch-interval`. The hooks exist
//! only on the Git source and only when `--api-git-webhook-secret-file` names a secret;
//! otherwise the paths are 404s like any unknown path.
//!
//! A delivery is trusted because of its signature, never because of who sends it. The
//! forges' protocols (which headers, which signature, which payload fields) are cup-scm's
//! (`verify_webhook`, `parse_webhook`); what is served here:
//!
//! * The signature covers the body only, not the delivery id or the event name. So a
//!   delivery is a replay when its id **or** its body was seen before: a captured body sent
//!   again under a new id is recognised too. The last [`REMEMBERED_DELIVERIES`] accepted
//!   deliveries are remembered (ids and body digests; nothing older is forgotten by age,
//!   since no forge signs a timestamp that would make an old delivery refusable). A replay is
//!   answered 200 "already handled" and does nothing: a forge that retries a delivery whose
//!   answer it lost must not see a failure (GitLab disables hooks that keep failing).
//! * The body is at most [`MAX_HOOK_BODY`] bytes (413 beyond), read whole before anything
//!   else, then checked (401 when the signature does not match) and parsed (400 when it does
//!   not parse).
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
use cup_git::PROPOSAL_PREFIX;
use cup_scm::{
    Forge, WebhookError, WebhookEvent, parse_webhook, truncated, verify_webhook, webhook_header,
};
use sha2::{Digest, Sha256};

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
}

impl From<WebhookError> for Refusal {
    fn from(error: WebhookError) -> Refusal {
        let status = match &error {
            WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Refusal::new(status, error.to_string())
    }
}

/// The forge a hook path is for.
pub fn forge_of_path(path: &str) -> Option<Forge> {
    HOOK_PATHS
        .iter()
        .zip([Forge::GitHub, Forge::Gitea, Forge::GitLab])
        .find_map(|(hook, forge)| (*hook == path).then_some(forge))
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
    let Some(forge) = forge_of_path(uri.path()) else {
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
            state.metrics.webhook_delivery(forge.as_str(), outcome);
            (text(status, &message), HookOutcome { refusal: None })
        }
        Err(refusal) => {
            state
                .metrics
                .webhook_delivery(forge.as_str(), outcome_of(refusal.status));
            tracing::warn!(
                forge = forge.as_str(),
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
    verify_webhook(forge, &hooks.secret.0, headers, body)?;
    let id = webhook_header(headers, forge.delivery_headers())?
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
    let event = webhook_header(headers, forge.event_headers())?
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("no event header ({})", forge.event_headers().join(", ")),
            )
        })?;
    let parsed = parse_webhook(forge, event, body)?;
    if !hooks.remember(id, body) {
        tracing::info!(
            forge = forge.as_str(),
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
        WebhookEvent::Push => {
            git.nudge_fetch();
            tracing::info!(
                forge = forge.as_str(),
                delivery = id,
                event,
                "webhook: fetch"
            );
            Ok(Handled {
                status: StatusCode::ACCEPTED,
                message: "accepted: fetching".into(),
                outcome: "accepted",
            })
        }
        WebhookEvent::PullRequest(pull_request) => {
            // Merged: the base branch moved; opened or closed: the proposal list changes.
            git.nudge_fetch();
            let proposal = pull_request.head.starts_with(PROPOSAL_PREFIX);
            tracing::info!(
                forge = forge.as_str(),
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
        WebhookEvent::Ignored(event) => {
            tracing::info!(
                forge = forge.as_str(),
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
    use cup_git::PullRequestState;
    use hmac::{Hmac, KeyInit, Mac};

    const GITHUB_SECRET: &str = "It's a Secret to Everybody";

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
}

//! The forges' webhook protocols: which headers carry a delivery's id, event and signature,
//! how the signature is checked, and the fields of the push and pull-request payloads that
//! cupd uses. Serving the hooks (body cap, replays, what a delivery does) is cup-server's.
//!
//! * GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//!   Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`;
//!   GitLab: `X-Gitlab-Token: <secret>` (it signs no body). Compared in constant time.
//! * Payloads are parsed into small structs of the fields used; other fields are ignored.
//!   JSON only (a GitHub hook must use `application/json`).

use cup_git::{PullRequest, PullRequestState};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Forge;
use crate::pull::Pull;

/// Why a delivery cannot be taken. The text is short, names no secret or signature, and
/// may be shown to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The signature or token is missing or does not match.
    #[error("{0}")]
    Unauthorized(String),
    /// A header or the payload is not what the forge sends.
    #[error("{0}")]
    BadRequest(String),
}

fn unauthorized(reason: &str) -> WebhookError {
    WebhookError::Unauthorized(reason.to_owned())
}

impl Forge {
    /// The headers that carry a delivery's id, in order of preference.
    pub fn delivery_headers(self) -> &'static [&'static str] {
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

    /// The headers that name a delivery's event, in order of preference.
    pub fn event_headers(self) -> &'static [&'static str] {
        match self {
            Forge::GitHub => &["x-github-event"],
            Forge::Gitea => &["x-gitea-event", "x-forgejo-event"],
            Forge::GitLab => &["x-gitlab-event"],
        }
    }
}

/// The first of `names` present in `headers`, as trimmed text.
pub fn webhook_header<'a>(
    headers: &'a HeaderMap,
    names: &[&str],
) -> Result<Option<&'a str>, WebhookError> {
    for name in names {
        if let Some(value) = headers.get(*name) {
            return value
                .to_str()
                .map(|v| Some(v.trim()))
                .map_err(|_| WebhookError::BadRequest(format!("header {name} is not text")));
        }
    }
    Ok(None)
}

/// Checks a `forge` delivery's signature (or token) against `secret`.
pub fn verify_webhook(
    forge: Forge,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), WebhookError> {
    match forge {
        Forge::GitHub => {
            let signature = webhook_header(headers, &["x-hub-signature-256"])?
                .ok_or_else(|| unauthorized("no X-Hub-Signature-256 header"))?;
            let hex = signature
                .strip_prefix("sha256=")
                .ok_or_else(|| unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
            hmac_matches(secret, body, hex)
                .then_some(())
                .ok_or_else(|| unauthorized("X-Hub-Signature-256 does not match"))
        }
        Forge::Gitea => {
            let signature = webhook_header(headers, &["x-gitea-signature", "x-forgejo-signature"])?
                .ok_or_else(|| unauthorized("no X-Gitea-Signature header"))?;
            hmac_matches(secret, body, signature)
                .then_some(())
                .ok_or_else(|| unauthorized("X-Gitea-Signature does not match"))
        }
        Forge::GitLab => {
            let token = webhook_header(headers, &["x-gitlab-token"])?
                .ok_or_else(|| unauthorized("no X-Gitlab-Token header"))?;
            token_matches(secret, token.as_bytes())
                .then_some(())
                .ok_or_else(|| unauthorized("X-Gitlab-Token does not match"))
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
pub enum WebhookEvent {
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
    pull_request: Pull,
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

fn bad_payload(what: &str, error: serde_json::Error) -> WebhookError {
    WebhookError::BadRequest(format!(
        "not a {what} payload (the hook must send application/json): {error}"
    ))
}

/// Parses the body of a `forge` delivery of event `event`.
pub fn parse_webhook(forge: Forge, event: &str, body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let push = |what| {
        serde_json::from_slice::<PushPayload>(body)
            .map(|_| WebhookEvent::Push)
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
            if !matches!(pr.state.as_str(), "open" | "closed") {
                return Err(WebhookError::BadRequest(format!(
                    "unknown pull request state {:?}",
                    truncated(&pr.state)
                )));
            }
            Ok(WebhookEvent::PullRequest(pr.to_pull_request()))
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
                    return Err(WebhookError::BadRequest(format!(
                        "unknown merge request state {:?}",
                        truncated(other)
                    )));
                }
            };
            Ok(WebhookEvent::PullRequest(PullRequest {
                number: mr.iid,
                url: mr.url,
                state,
                head: mr.source_branch,
            }))
        }
        _ => Ok(WebhookEvent::Ignored(event.to_owned())),
    }
}

/// At most 64 characters of a value the sender chose, for a message.
pub fn truncated(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn is_unauthorized(error: WebhookError) -> bool {
        matches!(error, WebhookError::Unauthorized(_))
    }

    /// The vector GitHub gives for its signatures: secret "It's a Secret to Everybody",
    /// body "Hello, World!".
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_signatures_are_checked_against_the_known_vector() {
        let s = GITHUB_SECRET.as_bytes();
        let ok = headers(&[("x-hub-signature-256", GITHUB_SIGNATURE)]);
        assert_eq!(verify_webhook(Forge::GitHub, s, &ok, GITHUB_BODY), Ok(()));
        // Another body, another secret, no prefix, not hex, missing: all refused.
        let refused = |h: &HeaderMap, body: &[u8], s: &[u8]| {
            verify_webhook(Forge::GitHub, s, h, body).unwrap_err()
        };
        assert!(is_unauthorized(refused(&ok, b"Hello, World?", s)));
        assert!(is_unauthorized(refused(&ok, GITHUB_BODY, b"another")));
        let bare = headers(&[(
            "x-hub-signature-256",
            GITHUB_SIGNATURE.trim_start_matches("sha256="),
        )]);
        assert!(is_unauthorized(refused(&bare, GITHUB_BODY, s)));
        let junk = headers(&[("x-hub-signature-256", "sha256=zz")]);
        assert!(is_unauthorized(refused(&junk, GITHUB_BODY, s)));
        assert!(is_unauthorized(refused(&HeaderMap::new(), GITHUB_BODY, s)));
        // The SHA-1 header alone is not enough.
        let sha1 = headers(&[(
            "x-hub-signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert!(is_unauthorized(refused(&sha1, GITHUB_BODY, s)));
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC4231_HMAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn gitea_and_forgejo_signatures_are_bare_hex_hmacs() {
        let s = b"Jefe";
        let body = b"what do ya want for nothing?";
        for name in ["x-gitea-signature", "x-forgejo-signature"] {
            let ok = headers(&[(name, RFC4231_HMAC)]);
            assert_eq!(verify_webhook(Forge::Gitea, s, &ok, body), Ok(()), "{name}");
            let upper = headers(&[(name, &RFC4231_HMAC.to_uppercase())]);
            assert_eq!(
                verify_webhook(Forge::Gitea, s, &upper, body),
                Ok(()),
                "{name}"
            );
        }
        let prefixed = headers(&[("x-gitea-signature", &format!("sha256={RFC4231_HMAC}"))]);
        assert!(verify_webhook(Forge::Gitea, s, &prefixed, body).is_err());
        let ok = headers(&[("x-gitea-signature", RFC4231_HMAC)]);
        assert!(verify_webhook(Forge::Gitea, s, &ok, b"what do ya want for nothing!").is_err());
        // A GitHub signature does not open the Gitea hook.
        let github = headers(&[("x-hub-signature-256", &format!("sha256={RFC4231_HMAC}"))]);
        assert!(verify_webhook(Forge::Gitea, s, &github, body).is_err());
    }

    #[test]
    fn gitlab_tokens_must_equal_the_secret() {
        let s = b"a-token";
        let ok = headers(&[("x-gitlab-token", "a-token")]);
        assert_eq!(verify_webhook(Forge::GitLab, s, &ok, b"{}"), Ok(()));
        for wrong in ["a-toke", "a-token2", "A-TOKEN", ""] {
            let h = headers(&[("x-gitlab-token", wrong)]);
            assert!(
                verify_webhook(Forge::GitLab, s, &h, b"{}").is_err(),
                "{wrong:?}"
            );
        }
        assert!(verify_webhook(Forge::GitLab, s, &HeaderMap::new(), b"{}").is_err());
    }

    #[test]
    fn payloads_become_pull_requests() {
        let github = br#"{"action":"closed","number":5,"pull_request":{"number":5,
            "html_url":"https://github.example/o/r/pull/5","state":"closed","merged":true,
            "head":{"ref":"cup/proposal/01J","sha":"abc"},"extra":[1,2]}}"#;
        assert_eq!(
            parse_webhook(Forge::GitHub, "pull_request", github),
            Ok(WebhookEvent::PullRequest(PullRequest {
                number: 5,
                url: "https://github.example/o/r/pull/5".into(),
                state: PullRequestState::Merged,
                head: "cup/proposal/01J".into(),
            }))
        );
        let gitlab = br#"{"object_kind":"merge_request","object_attributes":{"iid":3,
            "url":"https://gitlab.example/o/r/-/merge_requests/3","state":"closed",
            "source_branch":"cup/proposal/01K"}}"#;
        let Ok(WebhookEvent::PullRequest(mr)) =
            parse_webhook(Forge::GitLab, "Merge Request Hook", gitlab)
        else {
            panic!("a merge request");
        };
        assert_eq!((mr.number, mr.state), (3, PullRequestState::Closed));
        assert_eq!(
            parse_webhook(Forge::GitHub, "ping", b"anything").unwrap(),
            WebhookEvent::Ignored("ping".into())
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
            let refusal = parse_webhook(forge, event, body).unwrap_err();
            assert!(
                matches!(refusal, WebhookError::BadRequest(_)),
                "{event}: {body:?}"
            );
        }
    }
}

//! One forge API's HTTP client: timeouts, a cap on what is read, typed JSON, and retries of
//! rate limits and server errors within a time budget.
//!
//! The calls run while cupd holds the repository's write lock, so the budget is modest: a
//! forge asking to wait longer than what is left of it ends the call with an error rather
//! than a sleep.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;

use crate::token::Token;

/// Bounds of every call to a forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for one request, from sending it to the end of its response body.
    pub request_timeout: Duration,
    /// The most of a response body read; a longer one is an error.
    pub max_body_bytes: u64,
    /// Attempts of one call, the first included.
    pub max_attempts: u32,
    /// Time one call may take, its retries and their waits included.
    pub budget: Duration,
    /// The first backoff after a server error or a failed connection; doubled each attempt.
    pub base_backoff: Duration,
    /// The longest backoff chosen by cup (a forge's `Retry-After` may ask for longer, within
    /// the budget).
    pub max_backoff: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_attempts: 5,
            budget: Duration::from_secs(30),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// What went wrong talking to a forge. Never holds a header, so never the token.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The forge answered with an error status.
    #[error("{method} {path}: HTTP {status}{}", message_suffix(.message))]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Path below the API base (with its query).
        path: String,
        /// HTTP status.
        status: u16,
        /// The forge's `message` (or `error`), cut short; empty when it gave none.
        message: String,
    },
    /// No answer: connection refused or reset, a timeout, a TLS failure.
    #[error("{method} {path}: {reason}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Path below the API base.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The response body is larger than [`HttpLimits::max_body_bytes`].
    #[error("{method} {path}: the response body is larger than {limit} bytes")]
    TooLarge {
        /// HTTP method.
        method: &'static str,
        /// Path below the API base.
        path: String,
        /// The cap.
        limit: u64,
    },
    /// The body is not the JSON expected.
    #[error("{method} {path}: unexpected response: {reason}")]
    Decode {
        /// HTTP method.
        method: &'static str,
        /// Path below the API base.
        path: String,
        /// What did not match.
        reason: String,
    },
    /// Retries ran out (attempts or time budget); `last` is the last failure.
    #[error("gave up after {attempts} attempt(s) in {:.1}s ({why}); last: {last}", elapsed.as_secs_f64())]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// Which bound was reached.
        why: String,
        /// The last failure.
        last: Box<ApiError>,
    },
    /// The HTTP client could not be built (TLS roots, resolver).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

impl ApiError {
    /// The HTTP status of the (last) failure, when the forge answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// HTTP methods the clients use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// How a forge wants its token.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuthScheme {
    /// `Authorization: Bearer <token>` (GitHub).
    Bearer,
    /// `Authorization: token <token>` (Gitea, Forgejo).
    Token,
    /// `PRIVATE-TOKEN: <token>` (GitLab).
    PrivateToken,
}

/// A forge's API at one base URL.
pub(crate) struct Api {
    scm: &'static str,
    base: String,
    token: Option<Token>,
    auth: AuthScheme,
    headers: &'static [(&'static str, &'static str)],
    limits: HttpLimits,
    /// Built on first use: a blocking client may not be built or dropped inside an async
    /// runtime, and the first use is on one of cupd's blocking threads.
    client: OnceLock<Result<Client, String>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("scm", &self.scm)
            .field("base", &self.base)
            .field("token", &self.token)
            .field("limits", &self.limits)
            .finish()
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as `T`.
    pub fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::Decode {
            method: method.as_str(),
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

impl Api {
    pub fn new(
        scm: &'static str,
        base: &str,
        token: Option<Token>,
        auth: AuthScheme,
        headers: &'static [(&'static str, &'static str)],
        limits: HttpLimits,
    ) -> Api {
        Api {
            scm,
            base: base.trim_end_matches('/').to_owned(),
            token,
            auth,
            headers,
            limits,
            client: OnceLock::new(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn client(&self) -> Result<&Client, ApiError> {
        self.client
            .get_or_init(|| {
                Client::builder()
                    .connect_timeout(self.limits.connect_timeout)
                    .timeout(self.limits.request_timeout)
                    // A redirect could carry the token's header to another host.
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("cupd/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| ApiError::Client(e.clone()))
    }

    fn headers(&self, json_body: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in self.headers {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        if json_body {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
        }
        if let Some(token) = &self.token {
            let (name, value) = match self.auth {
                AuthScheme::Bearer => ("authorization", format!("Bearer {}", token.secret())),
                AuthScheme::Token => ("authorization", format!("token {}", token.secret())),
                AuthScheme::PrivateToken => ("private-token", token.secret().to_owned()),
            };
            // Token::new refuses control characters, so this only fails on non-ASCII.
            if let Ok(mut value) = HeaderValue::from_str(&value) {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
        }
        headers
    }

    /// Sends one call (`path` starts with `/` and is already percent-encoded; `query` pairs are
    /// encoded here), retrying rate limits, server errors and failed connections.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, ApiError> {
        let client = self.client()?;
        let mut shown = path.to_owned();
        if !query.is_empty() {
            let encoded: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode_query(v)))
                .collect();
            shown = format!("{path}?{}", encoded.join("&"));
        }
        let url = format!("{}{shown}", self.base);
        let body = body.map(|b| b.to_string());
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let left = self.limits.budget.saturating_sub(started.elapsed());
            let timeout = self
                .limits
                .request_timeout
                .min(left)
                .max(Duration::from_millis(1));
            let mut request = match method {
                Method::Get => client.get(&url),
                Method::Post => client.post(&url),
                Method::Put => client.put(&url),
            }
            .headers(self.headers(body.is_some()))
            .timeout(timeout);
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            let outcome = request.send();
            let (failure, wait) = match outcome {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry = retry_wait(status, response.headers(), SystemTime::now());
                    let read = self.read_body(method, &shown, response);
                    tracing::debug!(scm = self.scm, method = method.as_str(), path = %shown, status, attempt, "forge API call");
                    let body = read?;
                    if (200..300).contains(&status) {
                        return Ok(Answer { body });
                    }
                    let failure = ApiError::Status {
                        method: method.as_str(),
                        path: shown.clone(),
                        status,
                        message: forge_message(&body),
                    };
                    match retry {
                        Some(wait) => (failure, wait),
                        None => return Err(failure),
                    }
                }
                Err(e) => {
                    let failure = ApiError::Transport {
                        method: method.as_str(),
                        path: shown.clone(),
                        reason: transport_reason(&e),
                    };
                    tracing::debug!(scm = self.scm, method = method.as_str(), path = %shown, attempt, error = %failure, "forge API call failed");
                    (failure, Wait::Backoff)
                }
            };
            let wait = match wait {
                Wait::Told(d) => d,
                Wait::Backoff => backoff(&self.limits, attempt),
            };
            let elapsed = started.elapsed();
            let give_up = |why: String| ApiError::GaveUp {
                attempts: attempt,
                elapsed,
                why,
                last: Box::new(failure),
            };
            if attempt >= self.limits.max_attempts {
                return Err(give_up(format!(
                    "at most {} attempts",
                    self.limits.max_attempts
                )));
            }
            if elapsed + wait >= self.limits.budget {
                return Err(give_up(format!(
                    "waiting {:.1}s more would pass the {}s budget",
                    wait.as_secs_f64(),
                    self.limits.budget.as_secs()
                )));
            }
            tracing::info!(
                scm = self.scm,
                method = method.as_str(),
                path = %shown,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying a forge API call"
            );
            std::thread::sleep(wait);
        }
    }

    /// Like [`Api::call`], then decodes the body.
    pub fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ApiError> {
        self.call(method, path, query, body)?.json(method, path)
    }

    fn read_body(
        &self,
        method: Method,
        path: &str,
        response: Response,
    ) -> Result<Vec<u8>, ApiError> {
        let limit = self.limits.max_body_bytes;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(ApiError::TooLarge {
                method: method.as_str(),
                path: path.to_owned(),
                limit,
            });
        }
        let mut body = Vec::new();
        response
            .take(limit + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::Transport {
                method: method.as_str(),
                path: path.to_owned(),
                reason: format!("reading the response: {e}"),
            })?;
        if body.len() as u64 > limit {
            return Err(ApiError::TooLarge {
                method: method.as_str(),
                path: path.to_owned(),
                limit,
            });
        }
        Ok(body)
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(crate) fn encode_query(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// Percent-encodes one path segment (GitLab's `group/project` becomes `group%2Fproject`).
pub(crate) fn encode_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Whether to retry, and how long to wait first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// The forge said how long.
    Told(Duration),
    /// cup's exponential backoff.
    Backoff,
}

/// Rate limits (429; 403 with no requests left or a `Retry-After`) and server errors (5xx but
/// 501) are retried; anything else is final.
fn retry_wait(status: u16, headers: &HeaderMap, now: SystemTime) -> Option<Wait> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(v, now));
    let reset = header("x-ratelimit-reset")
        .or_else(|| header("ratelimit-reset"))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|epoch| {
            (SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))
                .duration_since(now)
                .unwrap_or(Duration::ZERO)
        });
    let exhausted = header("x-ratelimit-remaining")
        .or_else(|| header("ratelimit-remaining"))
        .is_some_and(|v| v == "0");
    let rate_limited = status == 429 || (status == 403 && (exhausted || retry_after.is_some()));
    if rate_limited {
        return Some(match retry_after.or(reset) {
            Some(wait) => Wait::Told(wait),
            None => Wait::Backoff,
        });
    }
    if (500..600).contains(&status) && status != 501 {
        return Some(match retry_after {
            Some(wait) => Wait::Told(wait),
            None => Wait::Backoff,
        });
    }
    None
}

/// `Retry-After`: delta-seconds or an HTTP date.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `base * 2^(attempt-1)`, capped, then drawn uniformly from its upper half so that
/// clients that failed together do not retry together.
fn backoff(limits: &HttpLimits, attempt: u32) -> Duration {
    let exp = limits
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(limits.max_backoff);
    let half = exp / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1) from the standard library's per-process random hasher keys.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The forge's error message: GitHub and Gitea `message`, GitLab `message` (a string, a list
/// or an object of lists) or `error`; cut to 300 characters, control characters dropped.
fn forge_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let text = match value.get("message").or_else(|| value.get("error")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
    if let Some(errors) = value.get("errors").filter(|e| !e.is_null()) {
        let errors: String = errors.to_string().chars().take(300).collect();
        text = format!("{text} {errors}").trim().to_owned();
    }
    text
}

fn transport_reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    // The URL is shown by the caller (path only); reqwest's source chain never holds headers.
    let mut reason = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_wait(429, &headers(&[("retry-after", "3")]), now),
            Some(Wait::Told(Duration::from_secs(3)))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_wait(503, &headers(&[("retry-after", &date)]), now),
            Some(Wait::Told(Duration::from_secs(7)))
        );
        assert_eq!(retry_wait(429, &HeaderMap::new(), now), Some(Wait::Backoff));
    }

    #[test]
    fn rate_limit_resets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let gh = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000002"),
        ]);
        assert_eq!(
            retry_wait(403, &gh, now),
            Some(Wait::Told(Duration::from_secs(2)))
        );
        let gl = headers(&[
            ("ratelimit-remaining", "0"),
            ("ratelimit-reset", "1700000005"),
        ]);
        assert_eq!(
            retry_wait(429, &gl, now),
            Some(Wait::Told(Duration::from_secs(5)))
        );
        // A reset in the past: retry now.
        let past = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")]);
        assert_eq!(
            retry_wait(403, &past, now),
            Some(Wait::Told(Duration::ZERO))
        );
    }

    #[test]
    fn other_statuses_are_final() {
        let now = SystemTime::now();
        for status in [400, 401, 403, 404, 409, 422, 501] {
            assert_eq!(retry_wait(status, &HeaderMap::new(), now), None, "{status}");
        }
        assert_eq!(retry_wait(502, &HeaderMap::new(), now), Some(Wait::Backoff));
    }

    #[test]
    fn backoff_grows_within_bounds() {
        let limits = HttpLimits::default();
        for attempt in 1..10 {
            let d = backoff(&limits, attempt);
            assert!(d <= limits.max_backoff, "{d:?}");
            let full = limits
                .base_backoff
                .saturating_mul(1 << (attempt - 1))
                .min(limits.max_backoff);
            assert!(d >= full / 2, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn forge_messages() {
        assert_eq!(
            forge_message(br#"{"message":"Validation Failed","errors":[{"code":"custom"}]}"#),
            r#"Validation Failed [{"code":"custom"}]"#
        );
        assert_eq!(
            forge_message(br#"{"message":["Another open merge request"]}"#),
            r#"["Another open merge request"]"#
        );
        assert_eq!(
            forge_message(br#"{"error":"insufficient_scope"}"#),
            "insufficient_scope"
        );
        assert_eq!(forge_message(b"<html>"), "");
        assert_eq!(
            forge_message(format!(r#"{{"message":"{}"}}"#, "x".repeat(1000)).as_bytes()).len(),
            300
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_segment("g/sub/p"), "g%2Fsub%2Fp");
        assert_eq!(encode_query("o:cup/proposal/01"), "o%3Acup%2Fproposal%2F01");
    }
}

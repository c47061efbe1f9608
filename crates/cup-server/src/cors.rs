//! Cross-origin requests: CORS for the origins the operator lists (`--cors-allowed-origins`,
//! none by default), and a 403 for any state-changing request from another origin.
//!
//! Browsers put `Origin` on every cross-origin request and on every request whose method is
//! neither GET nor HEAD; cup, curl and other non-browser clients send none, so they are not
//! affected. CORS headers only decide whether a page may *read* an answer: a "simple"
//! cross-origin request (GET, HEAD, or a POST of a form or `text/plain`) is sent without a
//! preflight and runs whatever the answer says. `POST /proposals/{id}/merge` reads no body
//! and would accept such a POST, so a page could merge a proposal without CORS's consent;
//! refusing every request that carries a foreign `Origin` and is not GET, HEAD or OPTIONS
//! closes that, and also covers writes through DNS rebinding (the page's `Origin` is then
//! its own host name, which is not listed either).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::text;

/// Methods a preflight may be granted: the ones cupd's routes answer.
const METHODS: &str = "GET, HEAD, PUT, DELETE, POST";

/// A listed origin is not an origin.
#[derive(Debug, thiserror::Error)]
#[error("--cors-allowed-origins: {0:?} is not an origin (scheme://host[:port] with no path, or *)")]
pub struct BadOrigin(String);

/// Which origins may use the API from a browser.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// `*` was listed: every origin, as the original cupd.
    any: bool,
    /// Lower-cased `scheme://host[:port]`.
    origins: Vec<String>,
}

impl CorsPolicy {
    /// From the flag's values; empty entries are ignored.
    pub fn new(list: &[String]) -> Result<CorsPolicy, BadOrigin> {
        let mut policy = CorsPolicy::default();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                policy.any = true;
            } else if is_origin(entry) {
                policy.origins.push(entry.to_ascii_lowercase());
            } else {
                return Err(BadOrigin(entry.to_owned()));
            }
        }
        Ok(policy)
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any
            || origin.to_str().is_ok_and(|o| {
                self.origins
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(o))
            })
    }

    /// What `Access-Control-Allow-Origin` says to an allowed `origin`.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }
}

/// `scheme://host[:port]` as browsers serialise an origin: no user, path, query or fragment.
fn is_origin(entry: &str) -> bool {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    scheme_ok && host_ok && HeaderValue::from_str(entry).is_ok()
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware (see the module documentation).
pub async fn guard(
    State(policy): State<Arc<CorsPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let vary = !policy.any && !policy.origins.is_empty();
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return with_vary(next.run(request).await, vary);
    };
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !policy.allows(&origin) {
        if preflight || !is_safe(request.method()) {
            // The Origin is not echoed: it is the client's text, of any length.
            return with_vary(
                text(
                    StatusCode::FORBIDDEN,
                    "cross-origin request refused: its Origin is not in --cors-allowed-origins",
                ),
                vary,
            );
        }
        // The browser will not let the page read the answer (no CORS headers).
        return with_vary(next.run(request).await, vary);
    }
    if preflight {
        return with_vary(preflight_answer(&policy, &origin, request.headers()), vary);
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        policy.allow_origin(&origin),
    );
    with_vary(response, vary)
}

fn preflight_answer(policy: &CorsPolicy, origin: &HeaderValue, request: &HeaderMap) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        policy.allow_origin(origin),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(METHODS),
    );
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    headers.append(
        header::VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    response
}

/// Answers that depend on `Origin` say so, for caches.
fn with_vary(mut response: Response, vary: bool) -> Response {
    if vary {
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn origins_are_checked_and_matched_without_case() {
        let policy = CorsPolicy::new(&list(&[
            "https://UI.example:8443",
            " ",
            "http://[::1]:3000",
        ]))
        .unwrap();
        assert!(policy.allows(&HeaderValue::from_static("https://ui.example:8443")));
        assert!(policy.allows(&HeaderValue::from_static("http://[::1]:3000")));
        assert!(!policy.allows(&HeaderValue::from_static("https://ui.example")));
        assert!(!policy.allows(&HeaderValue::from_static("null")));
        let none = CorsPolicy::new(&[]).unwrap();
        assert!(!none.allows(&HeaderValue::from_static("http://127.0.0.1:8181")));
        assert!(
            CorsPolicy::new(&list(&["*"]))
                .unwrap()
                .allows(&HeaderValue::from_static("x"))
        );
        for bad in [
            "ui.example",
            "https://ui.example/",
            "https://u@ui.example",
            "null",
        ] {
            assert!(CorsPolicy::new(&list(&[bad])).is_err(), "{bad}");
        }
    }
}

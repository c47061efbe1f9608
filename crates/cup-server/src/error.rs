//! Errors of API requests and how they become HTTP responses.
//!
//! Bodies are the original's `http.Error` shape (`text/plain; charset=utf-8`,
//! `X-Content-Type-Options: nosniff`, message + `\n`), except schema violations, which a
//! client that accepts JSON gets as a JSON document listing each error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One schema violation: where (dotted path, `(root)` for the document) and what.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// A failed API request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub violations: Vec<Violation>,
    /// Violations found beyond those listed.
    pub omitted: usize,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            violations: Vec::new(),
            omitted: 0,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 400 listing the violations, one `<path>: <message>` per line, then
    /// `… and N more` when `omitted` were left out.
    pub fn schema(violations: Vec<Violation>, omitted: usize) -> ApiError {
        let mut message = violations
            .iter()
            .map(|v| format!("{}: {}", v.path, v.message))
            .collect::<Vec<_>>()
            .join("\n");
        if omitted > 0 {
            message.push_str(&format!("\n… and {omitted} more"));
        }
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
            violations,
            omitted,
        }
    }

    /// The response; `json` = the client accepts `application/json`.
    pub fn into_response_for(self, json: bool) -> Response {
        if json && !self.violations.is_empty() {
            #[derive(Serialize)]
            struct Body<'a> {
                error: &'static str,
                errors: &'a [Violation],
                /// Violations found beyond those listed.
                #[serde(skip_serializing_if = "is_zero")]
                omitted: usize,
            }
            fn is_zero(n: &usize) -> bool {
                *n == 0
            }
            let body = Body {
                error: "the resource does not match its schema",
                errors: &self.violations,
                omitted: self.omitted,
            };
            let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
            bytes.push(b'\n');
            return (
                self.status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response();
        }
        text(self.status, &self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_for(false)
    }
}

/// Go's `http.Error`: plain text, nosniff, message + newline.
pub fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        format!("{message}\n"),
    )
        .into_response()
}

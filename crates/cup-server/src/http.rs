//! The router, its middleware and the operations endpoints.
//!
//! Layers, outermost first: request log + metrics; cross-origin checks (`cors`: CORS only
//! for listed origins, 403 for state-changing requests from others); access control
//! (`access`: who is calling, whether the policy allows it, the audit line); the request body,
//! read whole within `--http-body-timeout` (2 MiB at most); panic catcher (a panic in a
//! handler becomes a 500 instead of a dropped connection); then the routes, where the
//! resource and proposal routes (not the operations endpoints, so probes still answer on a
//! saturated server) wait for one of `--http-max-requests` slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use crate::access;
use crate::api;
use crate::cors::{self, CorsPolicy};
use crate::error::text;
use crate::hooks::{self, HOOK_PATHS};
use crate::reload::ReloadState;
use crate::source::Source;
use crate::state::{AppState, RouteLabel};
use crate::status::ControllerStatus;

/// Largest request body read (axum's default limit, which cupd always had).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Settings of the HTTP application.
#[derive(Debug, Clone)]
pub struct AppLimits {
    pub cors: CorsPolicy,
    /// The whole request body must arrive within this.
    pub body_timeout: Duration,
    /// Resource and proposal requests served at once; more wait for a slot.
    pub max_requests: usize,
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>, limits: &AppLimits) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_requests));
    let api = Router::new()
        .route("/proposals", get(api::proposals))
        .route("/proposals/{id}", get(api::proposal))
        .route("/proposals/{id}/merge", axum::routing::post(api::merge))
        .route("/apis", get(api::discovery))
        .route(
            access::ACCESS_REVIEW_PATH,
            axum::routing::post(access::access_review),
        )
        .route(
            access::SUBJECT_REVIEW_PATH,
            axum::routing::post(access::subject_review),
        )
        .route("/apis/{*rest}", any(api::resource))
        .route_layer(middleware::from_fn_with_state(slots, limit_requests));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        // Outside the request slots: a forge waits a few seconds at most for its answer,
        // which never waits for a fetch.
        .route(HOOK_PATHS[0], axum::routing::post(hooks::deliver))
        .route(HOOK_PATHS[1], axum::routing::post(hooks::deliver))
        .route(HOOK_PATHS[2], axum::routing::post(hooks::deliver))
        .merge(api)
        .fallback(|| async { api::not_found_page() })
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(
            limits.body_timeout,
            read_body,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), access::check))
        .layer(middleware::from_fn_with_state(
            Arc::new(limits.cors.clone()),
            cors::guard,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Waits for one of the `--http-max-requests` slots.
async fn limit_requests(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match slots.acquire().await {
        Ok(_slot) => next.run(request).await,
        // The semaphore is never closed; answer rather than panic if it were.
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

/// Reads the whole body before the handlers run, so a client sending it slowly holds a
/// connection for `timeout` at most and never holds a request slot.
async fn read_body(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(timeout, Limited::new(body, BODY_LIMIT).collect()).await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => return too_large(),
        Ok(Err(error)) => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {error}"),
            );
        }
        Err(_) => {
            let mut response = text(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} s (--http-body-timeout)",
                    timeout.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large() -> Response {
    let mut response = text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than {BODY_LIMIT} bytes"),
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Logs each request and records its metrics.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|l| l.0.clone())
        .unwrap_or_else(|| fixed_route(&path).to_owned());
    let code = response.status().as_u16();
    state
        .metrics
        .observe_request(&method, &route, code, elapsed.as_secs_f64());
    tracing::info!(
        method = %method,
        path = %path,
        route = %route,
        status = code,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The route label of a response the resource handler did not label: a fixed name, never
/// the path itself (see `metrics`).
fn fixed_route(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/status" => "/status",
        "/metrics" => "/metrics",
        "/apis" => "/apis",
        "/proposals" => "/proposals",
        "/hooks/github" => "/hooks/github",
        "/hooks/gitea" => "/hooks/gitea",
        "/hooks/gitlab" => "/hooks/gitlab",
        _ => match path.strip_prefix("/proposals/").map(|rest| rest.split('/')) {
            Some(mut parts) => match (parts.next(), parts.next(), parts.next()) {
                (Some(id), None, None) if !id.is_empty() => "/proposals/{id}",
                (Some(id), Some("merge"), None) if !id.is_empty() => "/proposals/{id}/merge",
                _ => "unmatched",
            },
            None => "unmatched",
        },
    }
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

/// Ready once every controller has loaded or failed.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.served().is_some() {
        text(StatusCode::OK, "ready")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "loading controllers")
    }
}

#[derive(Serialize)]
struct StatusDoc {
    ready: bool,
    source: SourceDoc,
    routes: usize,
    /// Problems of the configuration as a whole (a config directory with no Controller).
    warnings: Vec<String>,
    /// Reloads of the config directory (SIGHUP); absent until the first one starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    reload: Option<ReloadDoc>,
    controllers: Vec<ControllerStatus>,
}

#[derive(Serialize)]
struct ReloadDoc {
    /// Reloads ended since start, refused or not.
    count: u64,
    /// Whether one runs now (another requested meanwhile runs after it).
    running: bool,
    /// When the last one ended (RFC 3339, UTC); absent until one has.
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    /// Whether the last one's set is served; absent until one has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    /// Why the last one was refused, naming the file (absent when it was not).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Wall time of the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
}

impl From<ReloadState> for ReloadDoc {
    fn from(state: ReloadState) -> Self {
        let last = state.last;
        ReloadDoc {
            count: state.count,
            running: state.running,
            at: last.as_ref().map(|l| rfc3339(l.at)),
            ok: last.as_ref().map(|l| l.error.is_none()),
            duration_ms: last.as_ref().map(|l| l.duration_ms),
            error: last.and_then(|l| l.error),
        }
    }
}

#[derive(Serialize)]
struct SourceDoc {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The directory (local) or the remote URL without credentials (git).
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_branch: Option<String>,
    /// Git: when a fetch of the remote last succeeded (RFC 3339, UTC), in this run or an
    /// earlier one; absent when none ever did.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetched_at: Option<String>,
    /// Git: why the last fetch failed (absent when it succeeded): reads are served from the
    /// cache as of `fetched_at` meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch_error: Option<String>,
    /// Git: when the last fetch failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch_error_at: Option<String>,
    /// Git: the snapshot directories on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshots: Option<SnapshotsDoc>,
    /// Git: the last garbage collection of the cache (absent until one ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    gc: Option<GcDoc>,
}

#[derive(Serialize)]
struct SnapshotsDoc {
    count: usize,
    /// Of those, the ones reads hold now.
    leased: usize,
    /// Bytes of their files.
    bytes: u64,
    files: u64,
}

#[derive(Serialize)]
struct GcDoc {
    /// When it ran (RFC 3339, UTC).
    at: String,
    /// `ok`, or why it failed (no git program included).
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    packs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loose_objects: Option<u64>,
    /// Wall time of the run, in milliseconds (the remote lock is held throughout).
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<f64>,
}

/// A time as RFC 3339 UTC, to the second.
fn rfc3339(at: std::time::SystemTime) -> String {
    let secs = at
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    cup_oci::rfc3339(secs)
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    let served = state.served();
    let doc = StatusDoc {
        ready: served.is_some(),
        source: match &*state.source {
            Source::Local(local) => SourceDoc {
                kind: "local",
                path: local.root().display().to_string(),
                default_branch: None,
                fetched_at: None,
                fetch_error: None,
                fetch_error_at: None,
                snapshots: None,
                gc: None,
            },
            Source::Git(git) => {
                let fetched = git.fetch_status();
                let usage = git.snapshot_usage();
                let gc = git.gc_report();
                SourceDoc {
                    kind: "git",
                    path: git.url().to_owned(),
                    default_branch: git.default_branch(),
                    fetched_at: fetched.last_success.map(rfc3339),
                    fetch_error: fetched.error,
                    fetch_error_at: fetched.error_at.map(rfc3339),
                    snapshots: Some(SnapshotsDoc {
                        count: usage.snapshots,
                        leased: usage.leased,
                        bytes: usage.bytes,
                        files: usage.files,
                    }),
                    gc: gc.at.map(|at| GcDoc {
                        at: rfc3339(at),
                        outcome: gc.outcome.clone().unwrap_or_default(),
                        packs: gc.after.map(|a| a.packs),
                        loose_objects: gc.after.map(|a| a.loose),
                        duration_ms: gc.took.map(|t| t.as_secs_f64() * 1000.0),
                    }),
                }
            }
        },
        routes: served.map_or(0, |s| s.routes.len()),
        warnings: {
            let mut warnings = state.status.warnings();
            warnings.extend(state.access.problems());
            warnings
        },
        reload: state.reload.snapshot().map(ReloadDoc::from),
        controllers: state.status.snapshot(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_fixed_names() {
        assert_eq!(fixed_route("/healthz"), "/healthz");
        assert_eq!(fixed_route("/proposals/01J"), "/proposals/{id}");
        assert_eq!(fixed_route("/proposals/01J/merge"), "/proposals/{id}/merge");
        assert_eq!(fixed_route("/proposals/01J/other"), "unmatched");
        assert_eq!(fixed_route("/proposals//merge"), "unmatched");
        assert_eq!(fixed_route("/anything/else"), "unmatched");
        assert_eq!(fixed_route("/hooks/gitlab"), "/hooks/gitlab");
        assert_eq!(fixed_route("/hooks/other"), "unmatched");
    }
}

//! The router, its middleware and the operations endpoints.
//!
//! Layers, outermost first: request log + metrics, CORS (allow-all, as the original's
//! `cors.AllowAll()`; preflights are answered by the layer), panic catcher (a panic in a
//! handler becomes a 500 instead of a dropped connection), then the routes.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{Any, CorsLayer};

use crate::api;
use crate::error::text;
use crate::source::Source;
use crate::state::{AppState, RouteLabel};
use crate::status::ControllerStatus;

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::HEAD,
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(Any);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/proposals", get(api::proposals))
        .route("/proposals/{id}", get(api::proposal))
        .route("/proposals/{id}/merge", axum::routing::post(api::merge))
        .route("/apis", get(api::discovery))
        .route("/apis/{*rest}", any(api::resource))
        .fallback(|| async { api::not_found_page() })
        .layer(CatchPanicLayer::custom(panicked))
        .layer(cors)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
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
        .observe_request(method.as_str(), &route, code, elapsed.as_secs_f64());
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

fn fixed_route(path: &str) -> &'static str {
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/status" => "/status",
        "/metrics" => "/metrics",
        "/apis" => "/apis",
        _ => "unmatched",
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
    controllers: Vec<ControllerStatus>,
}

#[derive(Serialize)]
struct SourceDoc {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The directory (local) or the remote URL without credentials (git).
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    default_branch: Option<String>,
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
            },
            Source::Git(git) => SourceDoc {
                kind: "git",
                path: git.url().to_owned(),
                default_branch: git.default_branch(),
            },
        },
        routes: served.map_or(0, |s| s.routes.len()),
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

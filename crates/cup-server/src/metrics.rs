//! Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! * `cupd_http_requests_total{method,route,code}` and
//!   `cupd_http_request_duration_seconds{method,route}`: `route` is a template
//!   (`/apis/flipt.io/v1alpha1/namespaces/{ns}/flags/{name}`), never the raw path, so
//!   namespaces and names cannot blow up the series count; unknown paths are `unmatched`.
//!   `method` is one of the standard methods or `other` ([`method_label`]).
//!
//! Every label takes its values from a set fixed by the code or by the server's
//! configuration (route templates, controller names), never from a request: each new label
//! value is a series kept for the life of the process and written out by every scrape, so a
//! client choosing values would grow memory and `/metrics` without bound.
//! * `cupd_controller_loads_total{controller,result}` (`loaded`/`failed`).
//! * `cupd_code_cache_total{status}`: how each wasm load got its machine code (`hit`,
//!   `miss`, `replaced`, `shared`, `disabled`).
//! * `cupd_controller_invocations_total{controller,verb,outcome}` (`ok`, `not_found`,
//!   `error`).
//! * `cupd_http_connections` (open now) and `cupd_http_connection_timeouts_total{timeout}`
//!   (`header`, `idle`: connections closed by the listener's timeouts).
//! * `cupd_access_refused_total{code}`: requests refused by access control (`401`: no or
//!   bad credentials, `403`: not allowed by the policy).
//! * `cupd_tls_handshake_failures_total{reason}`: TLS connections closed before their
//!   first request because the handshake failed: `client_certificate` (untrusted, expired
//!   or revoked), `protocol` (not TLS, no common version or cipher), `io` (the client went
//!   away) or `timeout` (not done within the header timeout).
//! * `cupd_webhook_deliveries_total{forge,outcome}`: forge webhook deliveries (`github`,
//!   `gitea`, `gitlab`) by outcome: `accepted` (a fetch was asked for), `ignored` (an event
//!   cupd does nothing on), `replayed` (seen before, nothing done), `unauthorized`,
//!   `bad_request`, `too_large`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels<const N: usize> = [(&'static str, String); N];

/// All of cupd's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels<3>, Counter>,
    latency: Family<Labels<2>, Histogram, fn() -> Histogram>,
    loads: Family<Labels<2>, Counter>,
    cache: Family<Labels<1>, Counter>,
    invocations: Family<Labels<3>, Counter>,
    connections: Gauge,
    connection_timeouts: Family<Labels<1>, Counter>,
    access_refused: Family<Labels<1>, Counter>,
    tls_handshake_failures: Family<Labels<1>, Counter>,
    webhook_deliveries: Family<Labels<2>, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<Labels<3>, Counter>::default();
        let latency: Family<Labels<2>, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let loads = Family::<Labels<2>, Counter>::default();
        let cache = Family::<Labels<1>, Counter>::default();
        let invocations = Family::<Labels<3>, Counter>::default();
        let connections = Gauge::default();
        let connection_timeouts = Family::<Labels<1>, Counter>::default();
        let access_refused = Family::<Labels<1>, Counter>::default();
        let tls_handshake_failures = Family::<Labels<1>, Counter>::default();
        let webhook_deliveries = Family::<Labels<2>, Counter>::default();
        registry.register(
            "cupd_http_requests",
            "HTTP requests by method, route template and status code",
            requests.clone(),
        );
        registry.register(
            "cupd_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            latency.clone(),
        );
        registry.register(
            "cupd_controller_loads",
            "Controller loads by controller and result",
            loads.clone(),
        );
        registry.register(
            "cupd_code_cache",
            "Compiled-code cache outcomes of wasm controller loads",
            cache.clone(),
        );
        registry.register(
            "cupd_controller_invocations",
            "Controller invocations by controller, verb and outcome",
            invocations.clone(),
        );
        registry.register(
            "cupd_http_connections",
            "HTTP connections open",
            connections.clone(),
        );
        registry.register(
            "cupd_http_connection_timeouts",
            "HTTP connections closed by the header or idle timeout",
            connection_timeouts.clone(),
        );
        registry.register(
            "cupd_access_refused",
            "Requests refused by access control (401: not authenticated, 403: not allowed)",
            access_refused.clone(),
        );
        registry.register(
            "cupd_tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "cupd_webhook_deliveries",
            "Forge webhook deliveries by forge and outcome",
            webhook_deliveries.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            loads,
            cache,
            invocations,
            connections,
            connection_timeouts,
            access_refused,
            tls_handshake_failures,
            webhook_deliveries,
        }
    }
}

/// The `method` label: a standard method's name, else `other` (a request line may carry
/// any token as its method, and every one of them would be a new series).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

impl Metrics {
    /// One answered request; `route` must be a template or a fixed name, never a raw path.
    pub fn observe_request(
        &self,
        method: &axum::http::Method,
        route: &str,
        code: u16,
        seconds: f64,
    ) {
        let method = method_label(method);
        self.requests
            .get_or_create(&[
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("code", code.to_string()),
            ])
            .inc();
        self.latency
            .get_or_create(&[("method", method.to_owned()), ("route", route.to_owned())])
            .observe(seconds);
    }

    pub fn controller_loaded(&self, controller: &str, ok: bool) {
        let result = if ok { "loaded" } else { "failed" };
        self.loads
            .get_or_create(&[
                ("controller", controller.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub fn code_cache(&self, status: &str) {
        self.cache
            .get_or_create(&[("status", status.to_owned())])
            .inc();
    }

    pub fn invocation(&self, controller: &str, verb: &str, outcome: &str) {
        self.invocations
            .get_or_create(&[
                ("controller", controller.to_owned()),
                ("verb", verb.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// `timeout` is `header` or `idle`.
    pub fn connection_timed_out(&self, timeout: &'static str) {
        self.connection_timeouts
            .get_or_create(&[("timeout", timeout.to_owned())])
            .inc();
    }

    /// A request refused with `code` (401 or 403).
    pub fn access_refused(&self, code: axum::http::StatusCode) {
        self.access_refused
            .get_or_create(&[("code", code.as_u16().to_string())])
            .inc();
    }

    /// `reason` is `client_certificate`, `protocol`, `io` or `timeout`.
    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.tls_handshake_failures
            .get_or_create(&[("reason", reason.to_owned())])
            .inc();
    }

    /// One webhook delivery of `forge` (`github`, `gitea`, `gitlab`) and its `outcome`
    /// (see the module documentation).
    pub fn webhook_delivery(&self, forge: &'static str, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&[("forge", forge.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        let metrics = Metrics::default();
        for i in 0..50 {
            let method = Method::from_bytes(format!("X{i:0>100}").as_bytes()).unwrap();
            metrics.observe_request(&method, "unmatched", 405, 0.001);
        }
        metrics.observe_request(&Method::GET, "/healthz", 200, 0.001);
        let text = metrics.render();
        assert!(text.contains(r#"method="other""#), "{text}");
        assert!(!text.contains("X000"), "{text}");
        assert!(text.len() < 8_000, "{} bytes", text.len());
    }
}

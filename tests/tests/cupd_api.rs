//! The original cup's API scenario (its `pkg/api/server_test.go` and the local
//! integration pipeline) through the real `cupd` with the template controller, byte for
//! byte where the original was right, plus the status codes where it was not.

use std::path::Path;

use cup_e2e::cupd::{Cupd, CupdConfig};

const DEFINITION: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io","labels":null,"annotations":null},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object","properties":{"foo":{"type":"string"}},"additionalProperties":false}},"additionalProperties":true}}}}"#;
const FOO: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{"foo":"bar"},"annotations":{}},"spec":{"foo":"bar"}}"#;
const BAR: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"bar","labels":{"bar":"baz"},"annotations":{}},"spec":{"foo":"baz"}}"#;
const BAZ_PAYLOAD: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"baz","namespace":"default","labels":{"foo":"bar"},"annotations":{}},"spec":{}}"#;
const BAZ_FILE: &str = "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\",\n  \"kind\": \"Resource\",\n  \"metadata\": {\n    \"namespace\": \"default\",\n    \"name\": \"baz\",\n    \"labels\": {\n      \"foo\": \"bar\"\n    },\n    \"annotations\": {}\n  },\n  \"spec\": {}\n}\n";
const ZERO_RESULT: &str =
    "{\"id\":\"00000000000000000000000000\",\"empty\":false,\"proposal\":null}\n";
const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";

/// The integration fixture: config (definition, template controller, binding) and base.
pub struct Fixture {
    pub config: tempfile::TempDir,
    pub source: tempfile::TempDir,
    pub store: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let config = tempfile::tempdir().unwrap();
    // Spread over lines on disk: /apis must re-emit it compacted, schema key order kept.
    std::fs::write(config.path().join("resources.json"), indent_raw(DEFINITION)).unwrap();
    std::fs::write(
        config.path().join("template.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"template"},"spec":{"type":"template"}}"#,
    )
    .unwrap();
    std::fs::write(
        config.path().join("api-binding.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"template"},"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}}"#,
    )
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("default")).unwrap();
    write(source.path(), "foo", FOO);
    write(source.path(), "bar", BAR);
    Fixture {
        config,
        source,
        store: tempfile::tempdir().unwrap(),
    }
}

/// Spreads raw JSON over lines without reordering keys (a hand-edited file).
fn indent_raw(json: &str) -> String {
    json.replace(",\"", ",\n  \"").replace('{', "{ ")
}

fn write(source: &Path, name: &str, json: &str) {
    std::fs::write(resource_file(source, name), json).unwrap();
}

fn resource_file(source: &Path, name: &str) -> std::path::PathBuf {
    source.join(format!(
        "default/test.cup.flipt.io-v1alpha1-Resource-{name}.json"
    ))
}

fn start(f: &Fixture) -> Cupd {
    Cupd::start(&CupdConfig::new(
        f.config.path(),
        f.source.path(),
        f.store.path(),
    ))
}

#[test]
fn the_original_api_scenario_byte_for_byte() {
    let f = fixture();
    let cupd = start(&f);

    let apis = cupd.get("/apis");
    assert_eq!(apis.status, 200);
    assert_eq!(apis.header("content-type"), Some("application/json"));
    assert_eq!(
        apis.text(),
        format!("{{\"test.cup.flipt.io/v1alpha1/resources\":{DEFINITION}}}\n")
    );

    let foo = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(foo.status, 200);
    assert_eq!(foo.text(), format!("{FOO}\n"));

    let list = cupd.get(RESOURCES);
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        list.text(),
        format!("{BAR}\n{FOO}\n"),
        "NDJSON, bar then foo"
    );

    let put = cupd.put(&format!("{RESOURCES}/baz"), BAZ_PAYLOAD);
    assert_eq!(put.status, 202, "{}", put.text());
    assert_eq!(put.text(), ZERO_RESULT);
    assert_eq!(
        std::fs::read_to_string(resource_file(f.source.path(), "baz")).unwrap(),
        BAZ_FILE
    );

    let delete = cupd.delete(&format!("{RESOURCES}/baz"));
    assert_eq!(delete.status, 202);
    assert_eq!(delete.text(), ZERO_RESULT);
    assert!(!resource_file(f.source.path(), "baz").exists());
}

#[test]
fn list_as_a_json_array_when_asked() {
    let f = fixture();
    let cupd = start(&f);
    let list = cupd.request("GET", RESOURCES, &[("Accept", "application/json")], b"");
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert_eq!(list.text(), format!("[{BAR},{FOO}]\n"));
    let empty = cupd.request(
        "GET",
        "/apis/test.cup.flipt.io/v1alpha1/namespaces/none/resources",
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!(empty.text(), "[]\n");
    assert_eq!(
        cupd.get("/apis/test.cup.flipt.io/v1alpha1/namespaces/none/resources")
            .text(),
        ""
    );
}

#[test]
fn errors_get_the_right_status_codes() {
    let f = fixture();
    let cupd = start(&f);
    let missing = cupd.get(&format!("{RESOURCES}/nope"));
    assert_eq!(
        missing.status, 404,
        "a missing resource is 404 (the original said 500)"
    );
    assert!(
        missing.text().contains("resource not found"),
        "{}",
        missing.text()
    );
    assert_eq!(cupd.delete(&format!("{RESOURCES}/nope")).status, 404);

    let invalid = cupd.put(&format!("{RESOURCES}/baz"), "{not json");
    assert_eq!(
        invalid.status, 400,
        "invalid JSON is 400 (the original said 500)"
    );
    assert_eq!(cupd.put(&format!("{RESOURCES}/baz"), "").status, 400);

    let violation = cupd.put(
        &format!("{RESOURCES}/baz"),
        &BAZ_PAYLOAD.replace("\"spec\":{}", "\"spec\":{\"foo\":1,\"extra\":true}"),
    );
    assert_eq!(violation.status, 400);
    let text = violation.text();
    assert!(text.lines().any(|l| l.starts_with("spec.foo: ")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("spec: ") && l.contains("extra")),
        "{text}"
    );
    let as_json = cupd.request(
        "PUT",
        &format!("{RESOURCES}/baz"),
        &[("Accept", "application/json")],
        br#"{"spec":{"foo":1}}"#,
    );
    assert_eq!(as_json.status, 400);
    assert_eq!(as_json.json()["errors"][0]["path"], "spec.foo");
    assert!(
        !resource_file(f.source.path(), "baz").exists(),
        "nothing was written"
    );

    let mismatch = cupd.put(&format!("{RESOURCES}/other"), BAZ_PAYLOAD);
    assert_eq!(mismatch.status, 400, "body name differs from the URL");
    assert!(
        mismatch.text().contains("metadata.name"),
        "{}",
        mismatch.text()
    );
    assert!(!resource_file(f.source.path(), "other").exists());

    let unknown = cupd.get("/apis/nope/v1/namespaces/default/things");
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (404, "404 page not found\n")
    );
    assert_eq!(cupd.get("/apis/").status, 404);
    assert_eq!(cupd.get("/nowhere").text(), "404 page not found\n");
    let wrong = cupd.request("POST", &format!("{RESOURCES}/foo"), &[], b"{}");
    assert_eq!(wrong.status, 405);
    assert_eq!(cupd.request("DELETE", RESOURCES, &[], b"").status, 405);
    // Sent as written: a URL client would resolve the `..` away.
    let dots = cup_e2e::http::raw_status(cupd.port(), "GET", &format!("{RESOURCES}/.."));
    assert_eq!(dots, Some(400), "{}", cupd.log());
    assert_eq!(cupd.get(&format!("{RESOURCES}/a%2Fb")).status, 400);
}

const PAGE: &str = "https://page.example";

fn preflight(cupd: &Cupd, origin: &str) -> cup_e2e::cupd::Response {
    cupd.request(
        "OPTIONS",
        &format!("{RESOURCES}/foo"),
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "DELETE"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
}

#[test]
fn cors_is_off_by_default_and_cross_origin_writes_are_refused() {
    let f = fixture();
    let cupd = start(&f);
    let denied = preflight(&cupd, PAGE);
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.header("access-control-allow-origin"), None);

    let read = cupd.request("GET", &format!("{RESOURCES}/foo"), &[("Origin", PAGE)], b"");
    assert_eq!(read.status, 200);
    assert_eq!(
        read.header("access-control-allow-origin"),
        None,
        "the page may not read the answer"
    );

    // What a page could send anyway (a preflighted method, a form post without one).
    for (method, path, content_type) in [
        ("DELETE", format!("{RESOURCES}/foo"), "text/plain"),
        ("PUT", format!("{RESOURCES}/foo"), "application/json"),
        ("POST", "/proposals/x/merge".to_owned(), "text/plain"),
        (
            "POST",
            format!("{RESOURCES}/foo"),
            "application/x-www-form-urlencoded",
        ),
    ] {
        let answer = cupd.request(
            method,
            &path,
            &[("Origin", PAGE), ("Content-Type", content_type)],
            FOO.as_bytes(),
        );
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.text());
        assert!(answer.text().contains("--cors-allowed-origins"));
    }
    assert!(
        resource_file(f.source.path(), "foo").exists(),
        "foo survived"
    );
    // Clients that are not browsers send no Origin.
    assert_eq!(cupd.delete(&format!("{RESOURCES}/foo")).status, 202);
}

#[test]
fn cors_answers_only_the_listed_origins() {
    let f = fixture();
    let mut config = CupdConfig::new(f.config.path(), f.source.path(), f.store.path());
    config.args = vec![
        "--cors-allowed-origins".into(),
        format!("http://localhost:3000,{PAGE}"),
    ];
    let cupd = Cupd::start(&config);
    let allowed = preflight(&cupd, PAGE);
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(PAGE));
    assert!(
        allowed
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("DELETE"))
    );
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("content-type")
    );
    let get = cupd.request("GET", &format!("{RESOURCES}/foo"), &[("Origin", PAGE)], b"");
    assert_eq!(get.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(get.header("vary"), Some("Origin"));
    assert_eq!(preflight(&cupd, "https://other.example").status, 403);
    let foreign = cupd.request(
        "DELETE",
        &format!("{RESOURCES}/foo"),
        &[("Origin", "https://other.example")],
        b"",
    );
    assert_eq!(foreign.status, 403);
    let delete = cupd.request(
        "DELETE",
        &format!("{RESOURCES}/foo"),
        &[("Origin", PAGE)],
        b"",
    );
    assert_eq!(delete.status, 202);
    assert_eq!(delete.header("access-control-allow-origin"), Some(PAGE));
}

#[test]
fn operations_endpoints_report_and_count() {
    let f = fixture();
    let mut cupd = start(&f);
    assert_eq!(cupd.get("/healthz").status, 200);
    assert_eq!(cupd.get("/readyz").text(), "ready\n");
    cupd.get(&format!("{RESOURCES}/foo"));
    cupd.get(&format!("{RESOURCES}/nope"));
    let status = cupd.get("/status").json();
    assert_eq!(status["ready"], true);
    let template = &status["controllers"][0];
    assert_eq!(template["name"], "template");
    assert_eq!(template["state"], "loaded");
    assert_eq!(
        template["definitions"][0],
        "test.cup.flipt.io/v1alpha1/resources"
    );
    let metrics = cupd.get("/metrics").text();
    assert!(
        metrics.contains(r#"cupd_http_requests_total{method="GET",route="/apis/test.cup.flipt.io/v1alpha1/namespaces/{ns}/resources/{name}",code="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("cupd_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cupd_controller_loads_total{controller="template",result="loaded"} 1"#),
        "{metrics}"
    );
    assert_eq!(cupd.terminate(), Some(0), "SIGTERM shuts down cleanly");
}

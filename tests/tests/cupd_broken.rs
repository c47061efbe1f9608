//! Broken controllers do not take cupd down: a tampered package (one byte of an embedded
//! definition changed), a stripped one (a definition section without its manifest), a
//! file that is not wasm at all and a path leaving the config directory.
//! cupd starts, `/status` says what is wrong, their routes answer 503 with the reason, and
//! the template controller keeps serving.

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::repo_root;
use cup_e2e::{flipt_package, shared_code_cache};

const WIDGET_DEF: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"widgets.example.com"},"names":{"kind":"Widget","singular":"widget","plural":"widgets"},"spec":{"group":"example.com","versions":{"v1":{"type":"object"}}}}"#;
const RESOURCE_DEF: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object"}}}}"#;

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"{kind}","metadata":{{"name":"{name}"}},"spec":{spec}}}"#
    )
}

/// The package with one byte of the flags definition's description changed.
fn tampered() -> Vec<u8> {
    let mut bytes = flipt_package().to_vec();
    let needle = b"A Flipt feature flag.";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the flags definition is embedded");
    bytes[at] = b'B';
    bytes
}

/// The plain module with a definition section but no `cup.controller` manifest.
fn stripped() -> Vec<u8> {
    use wasm_encoder::{CustomSection, Section};
    let mut bytes = std::fs::read(cup_e2e::flipt_wasm()).unwrap();
    let def = std::fs::read_to_string(repo_root().join("examples/flipt/defs/flags.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&def).unwrap();
    CustomSection {
        name: "cup.definition".into(),
        data: cup_model::value_to_canonical_json(&value).into(),
    }
    .append_to(&mut bytes);
    bytes
}

#[test]
fn broken_controllers_are_reported_and_answer_503_while_others_serve() {
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    std::fs::write(c.join("tampered.wasm"), tampered()).unwrap();
    std::fs::write(c.join("stripped.wasm"), stripped()).unwrap();
    std::fs::write(
        c.join("stripped.json"),
        object(
            "Controller",
            "stripped",
            r#"{"type":"wasm","spec":{"path":"stripped.wasm"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(c.join("notwasm.wasm"), b"#!/bin/sh\necho not a module\n").unwrap();
    std::fs::copy(
        repo_root().join("examples/flipt/defs/flags.json"),
        c.join("flags.json"),
    )
    .unwrap();
    std::fs::write(c.join("widgets.json"), WIDGET_DEF).unwrap();
    std::fs::write(c.join("resources.json"), RESOURCE_DEF).unwrap();
    std::fs::write(
        c.join("flipt.json"),
        object(
            "Controller",
            "flipt",
            r#"{"type":"wasm","spec":{"path":"tampered.wasm"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("broken.json"),
        object(
            "Controller",
            "broken",
            r#"{"type":"wasm","spec":{"path":"notwasm.wasm"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("escape.json"),
        object(
            "Controller",
            "escape",
            r#"{"type":"wasm","spec":{"path":"../outside.wasm"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("template.json"),
        object("Controller", "template", r#"{"type":"template"}"#),
    )
    .unwrap();
    std::fs::write(
        c.join("b1.json"),
        object(
            "Binding",
            "flipt",
            r#"{"controller":"flipt","resources":["flipt.io/v1alpha1/flags"]}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("b2.json"),
        object(
            "Binding",
            "broken",
            r#"{"controller":"broken","resources":["example.com/v1/widgets"]}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        c.join("b3.json"),
        object(
            "Binding",
            "template",
            r#"{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}"#,
        ),
    )
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(c, source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    let cupd = Cupd::start(&cfg);

    let status = cupd.get("/status").json();
    let by_name = |name: &str| {
        status["controllers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in /status"))
    };
    let flipt = by_name("flipt");
    assert_eq!(flipt["state"], "failed");
    assert!(
        flipt["error"].as_str().unwrap().contains("tampered"),
        "{flipt}"
    );
    let broken = by_name("broken");
    assert_eq!(broken["state"], "failed");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file"),
        "{broken}"
    );
    let escape = by_name("escape");
    assert_eq!(escape["state"], "failed");
    assert!(
        escape["error"]
            .as_str()
            .unwrap()
            .contains("inside the source root")
            || escape["error"].as_str().unwrap().contains("not allowed"),
        "{escape}"
    );
    let stripped = by_name("stripped");
    assert_eq!(stripped["state"], "failed");
    assert!(
        stripped["error"].as_str().unwrap().contains("stripped"),
        "{stripped}"
    );
    assert_eq!(by_name("template")["state"], "loaded");

    let flags = cupd.get("/apis/flipt.io/v1alpha1/namespaces/default/flags");
    assert_eq!(flags.status, 503);
    assert!(flags.text().contains("tampered"), "{}", flags.text());
    let widgets = cupd.get("/apis/example.com/v1/namespaces/default/widgets/w");
    assert_eq!(widgets.status, 503);
    assert!(
        widgets
            .text()
            .contains("controller \"broken\" is unavailable"),
        "{}",
        widgets.text()
    );

    let put = cupd.put(
        "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/ok",
        r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"ok"},"spec":{}}"#,
    );
    assert_eq!(put.status, 202, "{}", put.text());
    assert_eq!(
        cupd.get("/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/ok")
            .status,
        200
    );
    let metrics = cupd.get("/metrics").text();
    assert!(
        metrics.contains(r#"cupd_controller_loads_total{controller="broken",result="failed"} 1"#),
        "{metrics}"
    );
}

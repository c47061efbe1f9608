//! The example Flipt controller (real wasm32-wasip1 build, definitions embedded) served by
//! the real cupd: configured by path with no definition or binding files, and by image
//! digest from a local OCI store with no registry. `/apis` shows its kinds from the module
//! alone; get/list/put/delete change `features.yml`.

use std::path::Path;

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::repo_root;
use cup_e2e::{flipt_package, shared_code_cache};

const FLAGS: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags";
const CHECKOUT: &str = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"checkout-v2","labels":null,"annotations":null},"spec":{"name":"Checkout v2","type":"BOOLEAN_FLAG_TYPE","description":"new checkout","enabled":true}}"#;

struct Setup {
    config: tempfile::TempDir,
    source: tempfile::TempDir,
    store: tempfile::TempDir,
}

fn setup(controller_spec: &str) -> Setup {
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("flipt.json"),
        format!(r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"flipt"}},"spec":{{"type":"wasm","spec":{controller_spec}}}}}"#),
    )
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    Setup {
        config,
        source,
        store: tempfile::tempdir().unwrap(),
    }
}

fn by_path() -> Setup {
    let s = setup(r#"{"path":"ctl/flipt.wasm"}"#);
    std::fs::create_dir(s.config.path().join("ctl")).unwrap();
    std::fs::write(s.config.path().join("ctl/flipt.wasm"), flipt_package()).unwrap();
    s
}

fn start(s: &Setup, extra: &[&str]) -> Cupd {
    let mut cfg = CupdConfig::new(s.config.path(), s.source.path(), s.store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    cfg.args.extend(extra.iter().map(|a| a.to_string()));
    Cupd::start(&cfg)
}

fn features(source: &Path) -> String {
    std::fs::read_to_string(source.join("features.yml")).unwrap()
}

/// Every verb through the API; the files change as the controller's README says.
fn exercise(cupd: &Cupd, source: &Path) {
    let apis = cupd.get("/apis").json();
    let keys: Vec<&String> = apis.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["flipt.io/v1alpha1/flags", "flipt.io/v1alpha1/segments"]
    );
    assert_eq!(apis["flipt.io/v1alpha1/flags"]["names"]["kind"], "Flag");

    let list = cupd.get(FLAGS);
    assert_eq!(list.status, 200, "{}", list.text());
    let names: Vec<String> = list
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["new-login", "dark-mode"]);
    let segment = cupd.get("/apis/flipt.io/v1alpha1/namespaces/default/segments/beta-users");
    assert_eq!(segment.status, 200);
    assert_eq!(segment.json()["spec"]["match_type"], "ALL_MATCH_TYPE");
    let production = cupd.get("/apis/flipt.io/v1alpha1/namespaces/production/flags/new-login");
    assert_eq!(production.json()["spec"]["enabled"], false);

    let missing = cupd.get(&format!("{FLAGS}/nope"));
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(
        cupd.put(&format!("{FLAGS}/checkout-v2"), "{oops").status,
        400
    );
    let before = features(source);
    let invalid = cupd.put(
        &format!("{FLAGS}/checkout-v2"),
        &CHECKOUT.replace("BOOLEAN_FLAG_TYPE", "PURPLE"),
    );
    assert_eq!(invalid.status, 400);
    assert!(
        invalid.text().starts_with("spec.type: "),
        "{}",
        invalid.text()
    );
    assert_eq!(features(source), before, "refused writes change nothing");

    let put = cupd.put(&format!("{FLAGS}/checkout-v2"), CHECKOUT);
    assert_eq!(put.status, 202, "{}", put.text());
    let yaml = features(source);
    assert!(
        yaml.contains("key: checkout-v2") && yaml.contains("name: Checkout v2"),
        "{yaml}"
    );
    let got = cupd.get(&format!("{FLAGS}/checkout-v2"));
    assert_eq!(got.json()["spec"]["enabled"], true);

    let delete = cupd.delete(&format!("{FLAGS}/checkout-v2"));
    assert_eq!(delete.status, 202, "{}", delete.text());
    assert!(!features(source).contains("checkout-v2"));
    assert_eq!(cupd.delete(&format!("{FLAGS}/checkout-v2")).status, 404);

    let elsewhere = cupd.put(
        "/apis/flipt.io/v1alpha1/namespaces/staging/flags/checkout-v2",
        &CHECKOUT.replace("\"default\"", "\"staging\""),
    );
    assert_eq!(elsewhere.status, 202, "{}", elsewhere.text());
    assert!(source.join("staging/features.yml").exists());
}

#[test]
fn embedded_controller_by_path_serves_its_own_definitions() {
    let s = by_path();
    let cupd = start(&s, &[]);
    exercise(&cupd, s.source.path());
    let status = cupd.get("/status").json();
    let flipt = &status["controllers"][0];
    assert_eq!(flipt["state"], "loaded");
    assert_eq!(flipt["path"], "ctl/flipt.wasm");
    assert!(flipt["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        flipt["definitions"],
        serde_json::json!(["flipt.io/v1alpha1/flags", "flipt.io/v1alpha1/segments"])
    );
}

#[test]
fn embedded_controller_by_digest_from_the_store_without_a_registry() {
    let s = setup("null");
    let store = cup_oci::Store::open(s.store.path()).unwrap();
    let digest = store
        .import_wasm(
            flipt_package(),
            Some("flipt:test"),
            &cup_oci::ArtifactOptions::default(),
        )
        .unwrap();
    // Port 9 on loopback: nothing listens there, so any registry access would fail.
    let image = format!("127.0.0.1:9/cup/flipt@{digest}");
    std::fs::write(
        s.config.path().join("flipt.json"),
        format!(r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"flipt"}},"spec":{{"type":"wasm","spec":{{"image":"{image}"}}}}}}"#),
    )
    .unwrap();
    let cupd = start(&s, &["--strict-digests"]);
    exercise(&cupd, s.source.path());
    let status = cupd.get("/status").json();
    assert_eq!(status["controllers"][0]["manifest_digest"], digest.as_str());
    assert_eq!(status["controllers"][0]["image"], image.as_str());
}

#[test]
fn the_compiled_code_cache_is_hit_on_restart() {
    let s = by_path();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().join("code").display().to_string();
    let first = start(&s, &["--code-cache", &cache_arg]);
    assert_eq!(
        first.get("/status").json()["controllers"][0]["cache"],
        "miss"
    );
    drop(first);
    let second = start(&s, &["--code-cache", &cache_arg]);
    assert_eq!(
        second.get("/status").json()["controllers"][0]["cache"],
        "hit"
    );
    assert!(
        second
            .get("/metrics")
            .text()
            .contains(r#"cupd_code_cache_total{status="hit"} 1"#)
    );
}

#[test]
fn config_definitions_must_agree_with_embedded_ones() {
    let s = by_path();
    // The same definition, one description changed: the controller is refused, by name.
    let flags = repo_root().join("examples/flipt/defs/flags.json");
    let edited =
        std::fs::read_to_string(flags)
            .unwrap()
            .replacen("A Flipt feature flag.", "Edited.", 1);
    std::fs::write(s.config.path().join("flags.json"), edited).unwrap();
    let cupd = start(&s, &[]);
    let flipt = &cupd.get("/status").json()["controllers"][0];
    assert_eq!(flipt["state"], "failed");
    let error = flipt["error"].as_str().unwrap();
    assert!(
        error.contains("flags.flipt.io") && error.contains("flags.json"),
        "{error}"
    );
}

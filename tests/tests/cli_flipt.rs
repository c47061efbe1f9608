//! The whole path a user walks, with real everything: the example controller built for
//! wasm32-wasip1 → `cup-embed` → `cup controller push` to a real registry (or `cup
//! controller add` to a local store) → a cupd config naming the printed digest → `cup get`,
//! `apply`, `delete` → the change in the source tree's `features.yml`.

use std::path::Path;
use std::process::Command;

use crate::cli_common::*;
use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::registry::TestRegistry;
use cup_e2e::shared_code_cache;
use cup_e2e::{bin, flipt_definitions, flipt_wasm, repo_root};
use serde_json::Value;

const NEW_FLAG: &str = r#"{
  "apiVersion": "flipt.io/v1alpha1",
  "kind": "Flag",
  "metadata": {"namespace": "default", "name": "quick-start"},
  "spec": {"name": "Quick start", "type": "BOOLEAN_FLAG_TYPE", "description": "from the test", "enabled": true}
}"#;

/// `cup-embed -o DIR/flipt.wasm defs/*.json flipt.wasm`, through the real binary.
fn embed(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("flipt.wasm");
    let status = Command::new(bin("cup-embed"))
        .arg("-o")
        .arg(&out)
        .args(flipt_definitions())
        .arg(flipt_wasm())
        .status()
        .expect("running cup-embed");
    assert!(status.success(), "cup-embed failed");
    out
}

/// A cupd config directory with one Controller loaded from `image`.
fn config_for(dir: &Path, image: &str) -> std::path::PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("flipt.json"),
        serde_json::json!({
            "apiVersion": "cup.flipt.io/v1alpha1",
            "kind": "Controller",
            "metadata": {"name": "flipt"},
            "spec": {"type": "wasm", "spec": {"image": image}},
        })
        .to_string(),
    )
    .expect("write");
    config
}

fn source_copy(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("source");
    copy_tree(&repo_root().join("examples/flipt/repo"), &source);
    source
}

/// The example compiles once per machine, not once per test.
fn with_shared_code_cache(mut config: CupdConfig<'_>) -> CupdConfig<'_> {
    config.args.push("--code-cache".into());
    config
        .args
        .push(shared_code_cache().to_string_lossy().into_owned());
    config
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("an array: {list}"))
        .iter()
        .map(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

/// get / apply / delete against a cupd serving the example over `source`.
fn walk_the_api(cupd: &Cupd, cup: &Cup, source: &Path) {
    let a = cupd.base_url();
    let run = |args: &[&str]| {
        let mut all = vec!["-a", a.as_str()];
        all.extend_from_slice(args);
        cup.run(&all)
    };
    let run_stdin = |args: &[&str], stdin: &str| {
        let mut all = vec!["-a", a.as_str()];
        all.extend_from_slice(args);
        cup.run_stdin(&all, stdin)
    };

    // The definitions come from the module alone (the config names only the image).
    let defs = run(&["definitions"]);
    assert_eq!(
        defs.ok(),
        "PLURAL     APIVERSION          KIND      VERSIONS\n\
         flags      flipt.io/v1alpha1   Flag      v1alpha1\n\
         segments   flipt.io/v1alpha1   Segment   v1alpha1\n"
    );

    let flags = run(&["-o", "json", "get", "flags"]).json();
    assert_eq!(names(&flags), ["dark-mode", "new-login"]);
    assert_eq!(
        names(&run(&["-o", "json", "-n", "production", "get", "Flag"]).json()),
        ["new-login"]
    );
    assert_eq!(
        names(&run(&["-o", "json", "get", "segments"]).json()),
        ["beta-users"]
    );
    let one = run(&["-o", "json", "get", "flag", "dark-mode"]).json();
    assert_eq!(one["spec"]["type"], "BOOLEAN_FLAG_TYPE");
    assert_eq!(
        run(&["get", "flags"]).ok(),
        "NAMESPACE   NAME        LABELS\ndefault     new-login   <none>\ndefault     dark-mode   <none>\n"
    );

    let production_before = std::fs::read(source.join("production/features.yml")).expect("read");

    // apply: a new entry in default's features.yml.
    let applied = run_stdin(&["apply"], NEW_FLAG);
    assert_eq!(applied.ok(), "flag/quick-start applied\n");
    let features = std::fs::read_to_string(source.join("features.yml")).expect("read");
    assert!(features.contains("quick-start"), "{features}");
    let got = run(&["-o", "json", "get", "flag", "quick-start"]).json();
    assert_eq!(got["spec"]["enabled"], true);
    assert_eq!(got["spec"]["description"], "from the test");

    // A schema violation is refused with the field named, and nothing changes.
    let before = snapshot(source);
    let bad = NEW_FLAG.replace("\"enabled\": true", "\"enabled\": \"yes\"");
    let e = run_stdin(&["apply"], &bad);
    let line = e.one_line_error();
    assert!(
        line.starts_with("cup: flags \"quick-start\" was rejected by the server: ")
            && line.contains("enabled"),
        "{line}"
    );
    assert_eq!(snapshot(source), before);

    // delete: the entry leaves the file.
    assert_eq!(
        run(&["delete", "flag", "dark-mode"]).ok(),
        "flag/dark-mode deleted\n"
    );
    let features = std::fs::read_to_string(source.join("features.yml")).expect("read");
    assert!(!features.contains("dark-mode"), "{features}");
    assert_eq!(
        names(&run(&["-o", "json", "get", "flags"]).json()),
        ["new-login", "quick-start"]
    );
    assert_eq!(
        std::fs::read(source.join("production/features.yml")).expect("read"),
        production_before,
        "another namespace's file is untouched"
    );
    assert_eq!(
        run(&["get", "flag", "dark-mode"]).one_line_error(),
        "cup: flags \"dark-mode\" not found in namespace \"default\""
    );
}

#[test]
fn from_source_to_a_change_through_a_real_registry() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let cup = Cup::new(&home);
    let wasm = embed(dir.path());

    let reference = registry.reference("cup/flipt:v1");
    let pushed = cup.run(&[
        "--store",
        &dir.path().join("cup-store").to_string_lossy(),
        "controller",
        "push",
        &wasm.to_string_lossy(),
        &reference,
    ]);
    let pinned = pushed
        .ok()
        .lines()
        .last()
        .expect("push prints the pinned reference")
        .to_owned();
    assert!(
        pinned.starts_with(&format!("{}/cup/flipt@sha256:", registry.host())),
        "{pinned}"
    );

    // cupd's own, empty store: it must pull from the registry by digest.
    let config = config_for(dir.path(), &pinned);
    let source = source_copy(dir.path());
    let cupd_store = dir.path().join("cupd-store");
    let cupd = Cupd::start(&with_shared_code_cache(CupdConfig::new(
        &config,
        &source,
        &cupd_store,
    )));
    walk_the_api(&cupd, &cup, &source);
}

#[test]
fn from_source_to_a_change_through_a_local_store_without_a_registry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let cup = Cup::new(&home);
    let wasm = embed(dir.path());
    let store = dir.path().join("store");

    let digest = cup
        .run(&[
            "--store",
            &store.to_string_lossy(),
            "controller",
            "add",
            &wasm.to_string_lossy(),
            "--tag",
            "flipt:test",
        ])
        .ok()
        .trim()
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");

    // Nothing listens for "localhost/…": the digest is found in the store.
    let config = config_for(dir.path(), &format!("localhost/cup/flipt@{digest}"));
    let source = source_copy(dir.path());
    let cupd = Cupd::start(&with_shared_code_cache(CupdConfig::new(
        &config, &source, &store,
    )));
    walk_the_api(&cupd, &cup, &source);
}

//! The real example controller, built for wasm32-wasip1, embedded with its definitions and
//! run under the real runtime (wasmtime): the package round-trips and every verb works over
//! a temporary copy of `examples/flipt/repo`.

use std::path::Path;
use std::sync::OnceLock;

use cup_e2e::cupd::copy_tree;
use cup_e2e::{flipt_definitions, flipt_package, flipt_wasm, repo_root, shared_code_cache};
use cup_runtime::{Access, Invocation, Limits, LoadedController, Outcome, Runtime};
use cup_sections::{Integrity, read_definition_file};

fn controller() -> &'static LoadedController {
    static CONTROLLER: OnceLock<LoadedController> = OnceLock::new();
    CONTROLLER.get_or_init(|| {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        let cache = cup_runtime::CodeCache::new(shared_code_cache()).expect("code cache");
        runtime
            .load(flipt_package(), Some(&cache))
            .expect("loading the embedded example")
    })
}

fn invoke(root: &Path, args: &[&str], stdin: &str, access: Access) -> Outcome {
    let mut argv = vec!["wasi".to_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    controller()
        .invoke(Invocation {
            args: argv,
            stdin: stdin.as_bytes().to_vec(),
            root: root.to_owned(),
            access,
        })
        .expect("invocation runs")
}

fn stdout_json_lines(out: &Outcome) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 stdout")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON resource per line"))
        .collect()
}

fn sample_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), dir.path());
    dir
}

#[test]
fn embedded_example_round_trips_and_validates() {
    let plain = std::fs::read(flipt_wasm()).expect("reading flipt.wasm");
    let embedded = flipt_package();
    assert!(
        embedded.starts_with(&plain),
        "the module's own bytes are a prefix of the package"
    );
    cup_sections::validate_wasm(embedded).expect("the embedded module still validates");
    let package = cup_sections::read_package(embedded).unwrap();
    assert_eq!(package.integrity, Integrity::Ok);
    let got = package.verified_definitions().unwrap();
    let want: Vec<_> = flipt_definitions()
        .iter()
        .map(|p| read_definition_file(p).unwrap())
        .collect();
    assert_eq!(
        got, want,
        "extracted definitions equal the input files (already in name order)"
    );
    let (again, _) = cup_sections::embed(embedded, &want).unwrap();
    assert_eq!(&again, embedded, "re-embedding is idempotent");
}

#[test]
fn get_and_list_read_the_source_tree() {
    let repo = sample_repo();
    let out = invoke(
        repo.path(),
        &["list", "Flag", "default"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flags = stdout_json_lines(&out);
    let names: Vec<&str> = flags
        .iter()
        .map(|f| f["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new-login", "dark-mode"]);
    assert_eq!(flags[0]["apiVersion"], "flipt.io/v1alpha1");
    assert_eq!(flags[0]["kind"], "Flag");
    assert_eq!(flags[0]["spec"]["rules"][0]["segment_key"], "beta-users");

    let out = invoke(
        repo.path(),
        &["get", "Segment", "default", "beta-users"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(out.exit_code, 0);
    let segment = &stdout_json_lines(&out)[0];
    assert_eq!(segment["spec"]["match_type"], "ALL_MATCH_TYPE");

    let out = invoke(
        repo.path(),
        &["get", "Flag", "production", "new-login"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(stdout_json_lines(&out)[0]["spec"]["enabled"], false);

    let missing = invoke(
        repo.path(),
        &["get", "Flag", "default", "nope"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(missing.exit_code, 2, "not found is exit code 2");
    assert!(missing.stdout.is_empty());
    let unknown = invoke(
        repo.path(),
        &["list", "Widget", "default"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(unknown.exit_code, 1);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unsupported kind"));
}

#[test]
fn put_and_delete_change_the_files() {
    let repo = sample_repo();
    let flag = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"checkout-v2","labels":null,"annotations":null},"spec":{"name":"Checkout v2","type":"BOOLEAN_FLAG_TYPE","description":"new checkout","enabled":true}}"#;
    let out = invoke(
        repo.path(),
        &["put", "Flag", "default", "checkout-v2"],
        flag,
        Access::ReadWrite,
    );
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(repo.path().join("features.yml")).unwrap();
    assert!(
        yaml.contains("key: checkout-v2") && yaml.contains("name: Checkout v2"),
        "{yaml}"
    );

    let got = invoke(
        repo.path(),
        &["get", "Flag", "default", "checkout-v2"],
        "",
        Access::ReadOnly,
    );
    let got = &stdout_json_lines(&got)[0];
    assert_eq!(
        got["spec"]["name"], "Checkout v2",
        "the human name survives a put"
    );
    assert_eq!(got["spec"]["enabled"], true);

    // A put through a read-only mount fails inside the guest and changes nothing.
    let before = std::fs::read(repo.path().join("features.yml")).unwrap();
    let denied = invoke(
        repo.path(),
        &["put", "Flag", "default", "checkout-v3"],
        &flag.replace("checkout-v2", "checkout-v3"),
        Access::ReadOnly,
    );
    assert_ne!(denied.exit_code, 0);
    assert_eq!(
        std::fs::read(repo.path().join("features.yml")).unwrap(),
        before
    );

    let out = invoke(
        repo.path(),
        &["delete", "Flag", "default", "checkout-v2"],
        "",
        Access::ReadWrite,
    );
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = invoke(
        repo.path(),
        &["get", "Flag", "default", "checkout-v2"],
        "",
        Access::ReadOnly,
    );
    assert_eq!(gone.exit_code, 2);
    let again = invoke(
        repo.path(),
        &["delete", "Flag", "default", "checkout-v2"],
        "",
        Access::ReadWrite,
    );
    assert_eq!(
        again.exit_code, 2,
        "deleting what is not there is not found"
    );

    // A new namespace gets its own file.
    let staged = flag.replace("\"default\"", "\"staging\"");
    let out = invoke(
        repo.path(),
        &["put", "Flag", "staging", "checkout-v2"],
        &staged,
        Access::ReadWrite,
    );
    assert_eq!(
        out.exit_code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(repo.path().join("staging/features.yml").exists());
}

#[test]
fn put_with_mismatched_identity_is_refused() {
    let repo = sample_repo();
    let before = std::fs::read(repo.path().join("features.yml")).unwrap();
    let body = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"other"},"spec":{"type":"BOOLEAN_FLAG_TYPE","enabled":true}}"#;
    let out = invoke(
        repo.path(),
        &["put", "Flag", "default", "checkout-v2"],
        body,
        Access::ReadWrite,
    );
    assert_eq!(out.exit_code, 1);
    assert!(!out.stderr.is_empty());
    assert_eq!(
        std::fs::read(repo.path().join("features.yml")).unwrap(),
        before
    );
}

/// The example is its own Cargo workspace (built for wasm32-wasip1 with its own profile), so
/// `cargo test --workspace` would not run its unit tests (YAML handling, patterns, the file
/// writes) by itself: this runs them natively, in the example's own target directory.
#[test]
fn example_unit_tests_pass() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["test", "--quiet", "--manifest-path"])
        .arg(repo_root().join("examples/flipt/Cargo.toml"))
        .arg("--target-dir")
        .arg(repo_root().join("examples/flipt/target"))
        .output()
        .expect("running cargo test for the example");
    assert!(
        output.status.success(),
        "the example's unit tests failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("test result: ok") && !stdout.contains(" 0 passed"),
        "no unit test of the example ran:\n{stdout}"
    );
}

//! End-to-end tests: the whole ABI path (`dispatch`, as the module's `main` runs it) against
//! a copy of the sample tree in `repo/`.

use std::fs;
use std::path::Path;

use cup_controller_sdk::{EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, Resource, dispatch};
use tempfile::TempDir;

use crate::store::Flipt;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A scratch copy of the sample tree.
fn sample() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("repo"),
        dir.path(),
    );
    dir
}

fn run(root: &Path, args: &[&str], stdin: &str) -> Outcome {
    let mut argv = vec!["wasi"];
    argv.extend_from_slice(args);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = dispatch(
        &Flipt::new(root),
        &argv,
        stdin.as_bytes(),
        &mut stdout,
        &mut stderr,
    );
    Outcome {
        code,
        stdout: String::from_utf8(stdout).expect("UTF-8"),
        stderr: String::from_utf8(stderr).expect("UTF-8"),
    }
}

fn ok(root: &Path, args: &[&str], stdin: &str) -> String {
    let out = run(root, args, stdin);
    assert_eq!(out.code, EXIT_OK, "{args:?}: {}", out.stderr);
    assert_eq!(out.stderr, "");
    out.stdout
}

fn fails(root: &Path, args: &[&str], stdin: &str, code: i32, needle: &str) {
    let out = run(root, args, stdin);
    assert_eq!(out.code, code, "{args:?}: {}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(needle),
        "{:?} lacks {needle:?}",
        out.stderr
    );
}

fn names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            let resource: Resource = serde_json::from_str(line).expect("a JSON resource");
            resource.metadata.name
        })
        .collect()
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).expect("readable")
}

const NEW_LOGIN: &str = concat!(
    r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"default","name":"new-login","labels":null,"annotations":null},"#,
    r#""spec":{"key":"","name":"New Login","type":"VARIANT_FLAG_TYPE","description":"The redesigned login page","enabled":true,"#,
    r##""variants":[{"key":"blue","name":"Blue","description":"","attachment":null},{"key":"green","name":"Green","description":"","attachment":{"color":"#00ff00"}}],"##,
    r#""rules":[{"segment_key":"beta-users","rank":1,"distributions":[{"variant_key":"blue","rollout":50},{"variant_key":"green","rollout":50}]}],"rollouts":null}}"#
);

const BETA_USERS: &str = concat!(
    r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Segment","metadata":{"namespace":"default","name":"beta-users","labels":null,"annotations":null},"#,
    r#""spec":{"key":"","name":"Beta Users","description":"Customers on the beta plan","#,
    r#""constraints":[{"type":"STRING_COMPARISON_TYPE","property":"plan","operator":"eq","value":"beta","description":""}],"match_type":"ALL_MATCH_TYPE"}}"#
);

fn flag_body(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{{"namespace":"{namespace}","name":"{name}"}},"spec":{spec}}}"#
    )
}

#[test]
fn get_flag_and_segment() {
    let repo = sample();
    let root = repo.path();
    assert_eq!(
        ok(root, &["get", "Flag", "default", "new-login"], ""),
        format!("{NEW_LOGIN}\n")
    );
    assert_eq!(
        ok(root, &["get", "Segment", "default", "beta-users"], ""),
        format!("{BETA_USERS}\n")
    );
    let prod = ok(root, &["get", "Flag", "production", "new-login"], "");
    assert!(prod.contains(r#""namespace":"production""#), "{prod}");
    assert!(prod.contains(r#""type":"BOOLEAN_FLAG_TYPE""#), "{prod}");
}

#[test]
fn list_per_namespace_in_file_order() {
    let repo = sample();
    let root = repo.path();
    let flags = ok(root, &["list", "Flag", "default"], "");
    assert_eq!(names(&flags), ["new-login", "dark-mode"]);
    assert_eq!(flags.lines().next(), Some(NEW_LOGIN));
    assert_eq!(
        ok(root, &["list", "Segment", "default"], ""),
        format!("{BETA_USERS}\n")
    );
    assert_eq!(
        names(&ok(root, &["list", "Flag", "production"], "")),
        ["new-login"]
    );
    assert_eq!(ok(root, &["list", "Segment", "production"], ""), "");
    assert_eq!(ok(root, &["list", "Flag", "staging"], ""), "");
}

#[test]
fn missing_resources_exit_2() {
    let repo = sample();
    let root = repo.path();
    fails(
        root,
        &["get", "Flag", "default", "nope"],
        "",
        EXIT_NOT_FOUND,
        "has a flag with key \"nope\"",
    );
    // A namespace without any file, and a key of the other kind.
    fails(
        root,
        &["get", "Flag", "staging", "new-login"],
        "",
        EXIT_NOT_FOUND,
        "namespace \"staging\"",
    );
    fails(
        root,
        &["get", "Segment", "default", "new-login"],
        "",
        EXIT_NOT_FOUND,
        "segment",
    );
    fails(
        root,
        &["delete", "Flag", "default", "nope"],
        "",
        EXIT_NOT_FOUND,
        "nope",
    );
}

#[test]
fn unsupported_kind_is_refused() {
    let repo = sample();
    fails(
        repo.path(),
        &["list", "Rollout", "default"],
        "",
        EXIT_ERROR,
        "unsupported kind: \"Rollout\" (this controller serves Flag, Segment)",
    );
}

#[test]
fn put_replaces_in_place_and_keeps_the_human_name() {
    let repo = sample();
    let root = repo.path();
    let production_before = read(root, "production/features.yml");
    let body = flag_body(
        "default",
        "dark-mode",
        r#"{"name":"Dark Mode 2","type":"BOOLEAN_FLAG_TYPE","enabled":true}"#,
    );
    ok(root, &["put", "Flag", "default", "dark-mode"], &body);

    let got = ok(root, &["get", "Flag", "default", "dark-mode"], "");
    assert!(got.contains(r#""name":"Dark Mode 2""#), "{got}");
    assert!(got.contains(r#""enabled":true"#), "{got}");
    assert!(
        got.contains(r#""rollouts":null"#),
        "put replaces the whole entry: {got}"
    );
    // Order and neighbours are unchanged; the other namespace's file is not touched.
    assert_eq!(
        names(&ok(root, &["list", "Flag", "default"], "")),
        ["new-login", "dark-mode"]
    );
    assert_eq!(
        ok(root, &["get", "Flag", "default", "new-login"], ""),
        format!("{NEW_LOGIN}\n")
    );
    assert_eq!(read(root, "production/features.yml"), production_before);
    let file = read(root, "features.yml");
    assert!(
        file.contains(
            "- key: dark-mode\n  name: Dark Mode 2\n  type: BOOLEAN_FLAG_TYPE\n  enabled: true\n"
        ),
        "{file}"
    );
}

#[test]
fn get_then_put_round_trips() {
    let repo = sample();
    let root = repo.path();
    for (kind, name) in [
        ("Flag", "new-login"),
        ("Flag", "dark-mode"),
        ("Segment", "beta-users"),
    ] {
        let before = ok(root, &["get", kind, "default", name], "");
        ok(root, &["put", kind, "default", name], &before);
        assert_eq!(ok(root, &["get", kind, "default", name], ""), before);
    }
    let file = read(root, "features.yml");
    assert!(
        file.contains("rollout: 50\n"),
        "integral rollouts stay integral: {file}"
    );
    assert!(
        file.contains("  - segment: beta-users\n"),
        "YAML rule names are kept: {file}"
    );
}

#[test]
fn put_appends_to_the_first_file_of_the_namespace() {
    let repo = sample();
    let root = repo.path();
    let body = flag_body("production", "", r#"{"name":"Checkout","enabled":true}"#);
    ok(root, &["put", "Flag", "production", "checkout"], &body);
    assert_eq!(
        names(&ok(root, &["list", "Flag", "production"], "")),
        ["new-login", "checkout"]
    );
    let file = read(root, "production/features.yml");
    assert!(
        file.ends_with("- key: checkout\n  name: Checkout\n  enabled: true\n"),
        "{file}"
    );
    assert!(
        file.starts_with("version: '1.0'\nnamespace: production\n"),
        "{file}"
    );
}

#[test]
fn put_creates_a_file_for_a_new_namespace() {
    let repo = sample();
    let root = repo.path();
    let body = r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Segment","metadata":{"namespace":"staging","name":"qa"},"spec":{"match_type":"ANY_MATCH_TYPE"}}"#;
    ok(root, &["put", "Segment", "staging", "qa"], body);
    assert_eq!(
        read(root, "staging/features.yml"),
        "version: '1.0'\nnamespace: staging\nsegments:\n- key: qa\n  match_type: ANY_MATCH_TYPE\n"
    );
    assert_eq!(
        names(&ok(root, &["list", "Segment", "staging"], "")),
        ["qa"]
    );
}

#[test]
fn put_creates_the_default_file_when_missing() {
    let repo = sample();
    let root = repo.path();
    fs::remove_file(root.join("features.yml")).expect("remove");
    ok(root, &["put", "Flag", "default", "a"], "{}");
    assert_eq!(
        read(root, "features.yml"),
        "version: '1.0'\nnamespace: default\nflags:\n- key: a\n  enabled: false\n"
    );
}

#[test]
fn put_refuses_a_file_it_could_not_read_back() {
    let repo = sample();
    let root = repo.path();
    fs::write(root.join(".flipt.yml"), "exclude: [\"staging/*\"]\n").expect("write");
    fails(
        root,
        &["put", "Flag", "staging", "a"],
        "{}",
        EXIT_ERROR,
        "would not be read",
    );
    assert!(!root.join("staging").exists());

    // features.yml exists but belongs to another namespace: it must not be overwritten.
    fs::write(root.join("features.yml"), "namespace: other\n").expect("write");
    fails(
        root,
        &["put", "Flag", "default", "a"],
        "{}",
        EXIT_ERROR,
        "already exists",
    );
    assert_eq!(read(root, "features.yml"), "namespace: other\n");
}

#[test]
fn put_refuses_a_body_for_another_resource() {
    let repo = sample();
    let root = repo.path();
    let before = read(root, "features.yml");
    let args = ["put", "Flag", "default", "dark-mode"];
    let cases = [
        (
            flag_body("default", "other", "{}"),
            "metadata.name \"other\"",
        ),
        (
            flag_body("production", "dark-mode", "{}"),
            "metadata.namespace \"production\"",
        ),
        (
            flag_body("default", "dark-mode", r#"{"key":"other"}"#),
            "spec.key \"other\"",
        ),
        (
            r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Segment","spec":{}}"#.to_owned(),
            "kind \"Segment\"",
        ),
        (
            r#"{"apiVersion":"flipt.io/v2","kind":"Flag","spec":{}}"#.to_owned(),
            "apiVersion \"flipt.io/v2\"",
        ),
        (
            flag_body("default", "dark-mode", r#"{"enabled":"yes"}"#),
            "spec is not a valid flag",
        ),
        ("{\"kind\":".to_owned(), "stdin is not one JSON Resource"),
    ];
    for (body, needle) in cases {
        fails(root, &args, &body, EXIT_ERROR, needle);
    }
    assert_eq!(read(root, "features.yml"), before);
}

#[test]
fn delete_rewrites_only_files_that_held_the_key() {
    let repo = sample();
    let root = repo.path();
    let production_before = read(root, "production/features.yml");
    ok(root, &["delete", "Flag", "default", "new-login"], "");
    assert_eq!(
        names(&ok(root, &["list", "Flag", "default"], "")),
        ["dark-mode"]
    );
    fails(
        root,
        &["get", "Flag", "default", "new-login"],
        "",
        EXIT_NOT_FOUND,
        "new-login",
    );
    assert_eq!(read(root, "production/features.yml"), production_before);
    fails(
        root,
        &["delete", "Flag", "default", "new-login"],
        "",
        EXIT_NOT_FOUND,
        "new-login",
    );

    // Deleting the last segment drops the empty list from the file.
    ok(root, &["delete", "Segment", "default", "beta-users"], "");
    assert!(!read(root, "features.yml").contains("segments"));
}

#[test]
fn duplicate_keys_resolve_to_the_first_file() {
    let repo = sample();
    let root = repo.path();
    fs::write(
        root.join("zz.features.yml"),
        "flags:\n- key: dark-mode\n  name: Shadowed\n- key: extra\n",
    )
    .expect("write");
    let got = ok(root, &["get", "Flag", "default", "dark-mode"], "");
    assert!(got.contains(r#""name":"Dark Mode""#), "{got}");
    assert_eq!(
        names(&ok(root, &["list", "Flag", "default"], "")),
        ["new-login", "dark-mode", "extra"]
    );

    let shadow_before = read(root, "zz.features.yml");
    ok(root, &["put", "Flag", "default", "dark-mode"], "{}");
    assert_eq!(read(root, "zz.features.yml"), shadow_before);

    // Delete removes the key everywhere, so nothing shadowed resurfaces.
    ok(root, &["delete", "Flag", "default", "dark-mode"], "");
    fails(
        root,
        &["get", "Flag", "default", "dark-mode"],
        "",
        EXIT_NOT_FOUND,
        "dark-mode",
    );
    assert_eq!(read(root, "zz.features.yml"), "flags:\n- key: extra\n");
}

#[test]
fn unknown_keys_survive_a_rewrite() {
    let repo = sample();
    let root = repo.path();
    fs::write(
        root.join("production/features.yml"),
        "namespace: production\nowner: team-a\nflags:\n- key: a\n  future_field: 1\n- key: b\n",
    )
    .expect("write");
    ok(
        root,
        &["put", "Flag", "production", "b"],
        r#"{"spec":{"enabled":true}}"#,
    );
    assert_eq!(
        read(root, "production/features.yml"),
        "namespace: production\nflags:\n- key: a\n  future_field: 1\n- key: b\n  enabled: true\nowner: team-a\n"
    );
}

#[test]
fn malformed_entries_fail_reads_but_can_be_deleted() {
    let repo = sample();
    let root = repo.path();
    fs::write(
        root.join("production/features.yml"),
        "namespace: production\nflags:\n- key: good\n- key: bad\n  enabled: maybe\n",
    )
    .expect("write");
    ok(root, &["get", "Flag", "production", "good"], "");
    fails(
        root,
        &["list", "Flag", "production"],
        "",
        EXIT_ERROR,
        "production/features.yml: flags[1] is not a valid flag",
    );
    ok(root, &["delete", "Flag", "production", "bad"], "");
    assert_eq!(
        names(&ok(root, &["list", "Flag", "production"], "")),
        ["good"]
    );
}

#[test]
fn invalid_yaml_names_the_file() {
    let repo = sample();
    let root = repo.path();
    fs::write(root.join("broken.features.yml"), "flags: [\n").expect("write");
    fails(
        root,
        &["list", "Flag", "default"],
        "",
        EXIT_ERROR,
        "broken.features.yml: invalid state file",
    );
}

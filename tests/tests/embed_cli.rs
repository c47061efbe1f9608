//! `cup-embed` and `cup controller inspect|verify` through the real binaries: good input,
//! and every kind of bad input giving a clear error, exit code ≠ 0 and no file written.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use cup_e2e::{bin, dir_listing, wat_module};
use cup_sections::{CONTROLLER_SECTION, DEFINITION_SECTION, Layout};
use predicates::str::contains;

const FLAGS: &str = r#"{
  "apiVersion": "cup.flipt.io/v1alpha1",
  "kind": "ResourceDefinition",
  "metadata": {"name": "flags.flipt.io"},
  "names": {"kind": "Flag", "singular": "flag", "plural": "flags"},
  "spec": {"group": "flipt.io", "versions": {"v1alpha1": {"type": "object"}}}
}"#;

const SEGMENTS: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"segments.flipt.io"},"names":{"kind":"Segment","singular":"segment","plural":"segments"},"spec":{"group":"flipt.io","versions":{"v1alpha1":{"type":"object"}}}}"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flags.json"), FLAGS).unwrap();
        std::fs::write(dir.path().join("segments.json"), SEGMENTS).unwrap();
        std::fs::write(dir.path().join("ctl.wasm"), wat_module()).unwrap();
        Fixture { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
    fn embed(&self, args: &[&Path]) -> assert_cmd::assert::Assert {
        Command::new(bin("cup-embed")).args(args).assert()
    }
    /// Runs a failing embed and checks that nothing in the directory changed.
    fn embed_fails(&self, args: &[&Path], message: &str) {
        let before: Vec<(String, Vec<u8>)> = dir_listing(self.dir.path())
            .into_iter()
            .map(|n| (n.clone(), std::fs::read(self.path(&n)).unwrap()))
            .collect();
        let out = self.embed(args).failure().get_output().clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(message),
            "stderr {stderr:?} should contain {message:?}"
        );
        let after: Vec<(String, Vec<u8>)> = dir_listing(self.dir.path())
            .into_iter()
            .map(|n| (n.clone(), std::fs::read(self.path(&n)).unwrap()))
            .collect();
        assert_eq!(
            before, after,
            "a failed embed must not change or add any file"
        );
    }
}

fn verify(path: &Path) -> assert_cmd::assert::Assert {
    Command::new(bin("cup"))
        .args(["controller", "verify"])
        .arg(path)
        .assert()
}

#[test]
fn embeds_in_place_and_to_another_file() {
    let f = Fixture::new();
    let original = std::fs::read(f.path("ctl.wasm")).unwrap();
    let out = f.path("out.wasm");
    f.embed(&[
        &f.path("flags.json"),
        &f.path("segments.json"),
        &f.path("ctl.wasm"),
        Path::new("-o"),
        &out,
    ])
    .success();
    assert_eq!(
        std::fs::read(f.path("ctl.wasm")).unwrap(),
        original,
        "-o leaves the input alone"
    );
    let embedded = std::fs::read(&out).unwrap();
    assert!(embedded.starts_with(&original));

    f.embed(&[
        &f.path("segments.json"),
        &f.path("flags.json"),
        &f.path("ctl.wasm"),
    ])
    .success();
    assert_eq!(
        std::fs::read(f.path("ctl.wasm")).unwrap(),
        embedded,
        "in place, any order, same bytes"
    );
    f.embed(&[
        &f.path("segments.json"),
        &f.path("flags.json"),
        &f.path("ctl.wasm"),
    ])
    .success();
    assert_eq!(
        std::fs::read(f.path("ctl.wasm")).unwrap(),
        embedded,
        "idempotent"
    );
    verify(&out).success().stdout(contains("ok"));
    assert_eq!(
        dir_listing(f.dir.path()),
        ["ctl.wasm", "flags.json", "out.wasm", "segments.json"]
    );
}

#[test]
fn inspect_reports_definitions_and_integrity_as_json() {
    let f = Fixture::new();
    f.embed(&[
        &f.path("flags.json"),
        &f.path("segments.json"),
        &f.path("ctl.wasm"),
    ])
    .success();
    let out = Command::new(bin("cup"))
        .args(["-o", "json", "controller", "inspect"])
        .arg(f.path("ctl.wasm"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["encoding"], "module");
    assert_eq!(report["abi"], "cup.wasi-p1.v1");
    assert_eq!(report["integrity"]["verdict"], "ok");
    assert_eq!(report["wasi_imports"], serde_json::json!(["proc_exit"]));
    assert_eq!(report["definitions"][0]["name"], "flags.flipt.io");
    assert_eq!(report["definitions"][1]["kind"], "Segment");
    let bytes = std::fs::read(f.path("ctl.wasm")).unwrap();
    assert_eq!(report["digest"], cup_sections::sha256_digest(&bytes));

    let table = Command::new(bin("cup"))
        .args(["controller", "inspect"])
        .arg(f.path("ctl.wasm"))
        .assert()
        .success();
    let text = String::from_utf8(table.get_output().stdout.clone()).unwrap();
    assert!(text.contains("INTEGRITY:     ok"), "{text}");
    assert!(
        text.contains("flags.flipt.io      flipt.io   Flag      flags      v1alpha1"),
        "{text}"
    );
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let f = Fixture::new();
    let bad = f.write(
        "bad.json",
        "{\n  \"apiVersion\": \"cup.flipt.io/v1alpha1\",\n  oops\n}",
    );
    f.embed_fails(
        &[&bad, &f.path("ctl.wasm")],
        "bad.json: invalid JSON: key must be a string at line 3 column 3",
    );
}

#[test]
fn schema_that_does_not_compile_is_refused() {
    let f = Fixture::new();
    let bad = f.write(
        "bad.json",
        FLAGS.replace(r#"{"type": "object"}"#, r#"{"type": "objekt"}"#),
    );
    f.embed_fails(
        &[&bad, &f.path("ctl.wasm")],
        "bad.json: spec.versions.v1alpha1: schema does not compile",
    );
}

#[test]
fn duplicate_names_and_routes_are_refused() {
    let f = Fixture::new();
    let copy = f.write("copy.json", FLAGS);
    f.embed_fails(
        &[&f.path("flags.json"), &copy, &f.path("ctl.wasm")],
        "two definitions are named \"flags.flipt.io\"",
    );
    let same_route = f.write(
        "route.json",
        FLAGS.replace("\"flags.flipt.io\"", "\"other.flipt.io\""),
    );
    f.embed_fails(
        &[&f.path("flags.json"), &same_route, &f.path("ctl.wasm")],
        "definitions \"flags.flipt.io\" and \"other.flipt.io\" both serve flipt.io/v1alpha1/flags",
    );
}

#[test]
fn a_module_out_of_place_or_left_out_is_named() {
    let f = Fixture::new();
    // Swapped: the module first, a definition last.
    f.embed_fails(
        &[&f.path("ctl.wasm"), &f.path("flags.json")],
        "ctl.wasm is a WebAssembly module but was given among the definitions",
    );
    f.embed_fails(
        &[
            &f.path("flags.json"),
            &f.path("ctl.wasm"),
            &f.path("segments.json"),
        ],
        "the module goes last: cup-embed [-o OUT] DEF.json... MODULE.wasm",
    );
    // Left out: the last definition would be taken for the module.
    f.embed_fails(
        &[&f.path("flags.json"), &f.path("segments.json")],
        "segments.json (the last argument) is not a WebAssembly file: was the module left out?",
    );
}

#[test]
fn non_wasm_and_truncated_modules_are_refused() {
    let f = Fixture::new();
    let text = f.write("notes.wasm", "this is not wasm");
    f.embed_fails(&[&f.path("flags.json"), &text], "not a WebAssembly file");
    let module = wat_module();
    let cut = f.write("cut.wasm", &module[..module.len() - 4]);
    f.embed_fails(&[&f.path("flags.json"), &cut], "truncated WebAssembly file");
    f.embed_fails(
        &[&f.path("flags.json"), &f.path("missing.wasm")],
        "missing.wasm",
    );
}

#[test]
fn verify_catches_flipped_removed_and_doubled_sections() {
    let f = Fixture::new();
    f.embed(&[
        &f.path("flags.json"),
        &f.path("segments.json"),
        &f.path("ctl.wasm"),
    ])
    .success();
    let good = std::fs::read(f.path("ctl.wasm")).unwrap();
    let layout = Layout::from_bytes(&good).unwrap();
    let last_def = layout
        .sections
        .iter()
        .rfind(|s| s.custom_name() == Some(DEFINITION_SECTION))
        .unwrap();
    let manifest = layout
        .sections
        .iter()
        .find(|s| s.custom_name() == Some(CONTROLLER_SECTION))
        .unwrap();

    let mut flipped = good.clone();
    let at = last_def.data_range().start as usize + 20;
    flipped[at] ^= 0x01;
    let flipped = f.write("flipped.wasm", flipped);
    verify(&flipped).failure().stderr(contains("tampered"));

    let mut removed = good[..last_def.offset as usize].to_vec();
    removed.extend_from_slice(&good[last_def.end() as usize..]);
    let removed = f.write("removed.wasm", removed);
    verify(&removed).failure().stderr(contains(
        "stripped: definition \"segments.flipt.io\" listed in the manifest is missing",
    ));

    let mut doubled = good.clone();
    doubled.extend_from_slice(&good[manifest.offset as usize..manifest.end() as usize]);
    let doubled = f.write("doubled.wasm", doubled);
    verify(&doubled)
        .failure()
        .stderr(contains("2 cup.controller sections"));

    // Re-embedding over a broken package fixes it (old cup.* sections are dropped).
    f.embed(&[&f.path("flags.json"), &f.path("segments.json"), &doubled])
        .success();
    assert_eq!(std::fs::read(&doubled).unwrap(), good);

    verify(&f.write("plain.wasm", wat_module()))
        .failure()
        .stderr(contains("no cup sections"));
}

/// `cup controller embed` is the same operation as `cup-embed` (one `cup_sections`
/// helper): the same bytes, and bad input changes nothing.
#[test]
fn cup_controller_embed_writes_the_same_bytes_as_cup_embed() {
    let f = Fixture::new();
    let by_cup_embed = f.path("by-cup-embed.wasm");
    f.embed(&[
        &f.path("flags.json"),
        &f.path("segments.json"),
        &f.path("ctl.wasm"),
        Path::new("-o"),
        &by_cup_embed,
    ])
    .success();
    let by_cup = f.path("by-cup.wasm");
    Command::new(bin("cup"))
        .args(["controller", "embed", "-O"])
        .arg(&by_cup)
        .arg(f.path("segments.json"))
        .arg(f.path("flags.json"))
        .arg(f.path("ctl.wasm"))
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&by_cup).unwrap(),
        std::fs::read(&by_cup_embed).unwrap()
    );

    let bad = f.write("bad.json", "{\"apiVersion\": ");
    let before = dir_listing(f.dir.path());
    let module = std::fs::read(f.path("ctl.wasm")).unwrap();
    Command::new(bin("cup"))
        .args(["controller", "embed"])
        .arg(&bad)
        .arg(f.path("ctl.wasm"))
        .assert()
        .failure()
        .stderr(contains("bad.json"));
    assert_eq!(dir_listing(f.dir.path()), before, "no file added");
    assert_eq!(std::fs::read(f.path("ctl.wasm")).unwrap(), module);
}

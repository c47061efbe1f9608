//! `embed_file` and `embed_files` on real files: the bytes they write are pinned, so a faster
//! copy or hash path can never change what a package looks like.

use std::path::{Path, PathBuf};

use cup_model::ResourceDefinition;
use cup_sections::{Error, Integrity, embed, embed_file, embed_files, read_package};
use sha2::{Digest, Sha256};
use wasm_encoder::{CustomSection, Section};

/// sha256 of the package `pinned_package` embeds, as an earlier, simpler copy/hash pipeline
/// wrote it: however the pipeline is arranged for speed, embedding must stay byte-identical.
const PINNED_SHA256: &str = "97aae2f7944e17ff0e81cbbcedb6efa83aa506d6c56675ab4f2fa4099e11617c";

fn definition_json(name: &str, plural: &str, kind: &str) -> String {
    format!(
        r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{{"name":"{name}"}},"names":{{"kind":"{kind}","singular":"{}","plural":"{plural}"}},"spec":{{"group":"flipt.io","versions":{{"v1alpha1":{{"type":"object","properties":{{"spec":{{"type":"object"}}}}}}}}}}}}"#,
        kind.to_lowercase()
    )
}

fn definitions() -> Vec<ResourceDefinition> {
    [
        ("segments.flipt.io", "segments", "Segment"),
        ("flags.flipt.io", "flags", "Flag"),
    ]
    .iter()
    .map(|(name, plural, kind)| {
        serde_json::from_str(&definition_json(name, plural, kind)).expect("test definition")
    })
    .collect()
}

fn append_custom(bytes: &mut Vec<u8>, name: &str, data: &[u8]) {
    CustomSection {
        name: name.into(),
        data: data.into(),
    }
    .append_to(bytes);
}

/// Deterministic filler bytes (a xorshift stream), so big sections are not all zeros.
fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A 3.3 MB module whose kept bytes are several ranges, none a multiple of any buffer size:
/// code, a big custom section, an old `cup.*` section in the middle (dropped), another big
/// section after it, and an old manifest at the end (dropped).
fn pinned_module() -> Vec<u8> {
    let mut module = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "_start"))
            (data (i32.const 0) "hello")
        )"#,
    )
    .expect("test module");
    append_custom(&mut module, "blob.a", &filler(2_100_003, 7));
    append_custom(&mut module, "cup.definition", b"{\"stale\":true}");
    append_custom(&mut module, "blob.b", &filler(1_234_567, 11));
    append_custom(&mut module, "cup.controller", b"{}");
    module
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writing a test file");
    path
}

#[test]
fn embed_file_output_is_pinned_and_equals_the_in_memory_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let module = pinned_module();
    let input = write(dir.path(), "in.wasm", &module);
    let output = dir.path().join("out.wasm");
    let report = embed_file(&input, &output, &definitions()).unwrap();
    let written = std::fs::read(&output).unwrap();
    assert_eq!(sha256_hex(&written), PINNED_SHA256);
    let (in_memory, memory_report) = embed(&module, &definitions()).unwrap();
    assert_eq!(written, in_memory);
    assert_eq!(report, memory_report);
    assert_eq!(report.replaced_sections, 2);
    assert_eq!(report.size, written.len() as u64);
    assert_eq!(read_package(&written).unwrap().integrity, Integrity::Ok);
}

#[test]
fn embed_files_reads_definition_files_and_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let flags = write(
        dir.path(),
        "flags.json",
        definition_json("flags.flipt.io", "flags", "Flag"),
    );
    let segments = write(
        dir.path(),
        "segments.json",
        definition_json("segments.flipt.io", "segments", "Segment"),
    );
    let input = write(dir.path(), "in.wasm", pinned_module());
    // In place, definitions in either order.
    embed_files(&[flags.clone(), segments.clone()], &input, &input).unwrap();
    assert_eq!(sha256_hex(&std::fs::read(&input).unwrap()), PINNED_SHA256);
    embed_files(&[segments, flags], &input, &input).unwrap();
    assert_eq!(
        sha256_hex(&std::fs::read(&input).unwrap()),
        PINNED_SHA256,
        "re-embedding gives identical bytes"
    );
}

#[test]
fn embed_files_refuses_bad_definition_files_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let module = pinned_module();
    let input = write(dir.path(), "in.wasm", &module);
    let good = write(
        dir.path(),
        "flags.json",
        definition_json("flags.flipt.io", "flags", "Flag"),
    );
    let broken = write(dir.path(), "broken.json", "{\"apiVersion\": oops}");
    let bad_schema = write(
        dir.path(),
        "schema.json",
        definition_json("flags.flipt.io", "flags", "Flag").replace(
            r#""type":"object","properties""#,
            r#""type":"objekt","properties""#,
        ),
    );
    let listing = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(dir.path());

    let err = embed_files(&[good.clone(), broken], &input, &input).unwrap_err();
    assert!(matches!(err, Error::DefinitionFile(_)), "{err}");
    assert!(
        err.to_string().contains("broken.json: invalid JSON"),
        "{err}"
    );
    let err = embed_files(std::slice::from_ref(&bad_schema), &input, &input).unwrap_err();
    assert!(
        err.to_string()
            .contains("schema.json: spec.versions.v1alpha1: schema does not compile"),
        "{err}"
    );
    let err = embed_files(&[good.clone(), good.clone()], &input, &input).unwrap_err();
    assert!(matches!(err, Error::DuplicateName(_)), "{err}");
    let missing = dir.path().join("missing.json");
    let err = embed_files(&[missing], &input, &input).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
    let err = embed_files::<PathBuf>(&[], &input, &input).unwrap_err();
    assert!(matches!(err, Error::NoDefinitions), "{err}");

    assert_eq!(std::fs::read(&input).unwrap(), module, "input untouched");
    assert_eq!(listing(dir.path()), before, "no temporary file left");
}

#[test]
fn embed_file_refuses_a_module_cut_short_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let module = pinned_module();
    let cut = write(dir.path(), "cut.wasm", &module[..module.len() - 1_000_000]);
    let output = dir.path().join("out.wasm");
    let err = embed_file(&cut, &output, &definitions()).unwrap_err();
    assert!(matches!(err, Error::Truncated(_)), "{err}");
    assert!(!output.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

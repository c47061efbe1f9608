//! The compiled-code cache holds machine code that cupd runs without verifying it, so a file
//! planted in it must never be loaded. The plant here is real: the cache file cupd itself
//! wrote for a hostile module, put under the harmless module's cache name.
//!
//! * A cache directory writable by group or others is refused (cupd logs it, compiles every
//!   time, and serves the harmless module).
//! * In a private directory the plant is caught by the entries' HMAC: a file from another
//!   cache (the attacker lacks this cache's key) and a genuine file of this cache renamed
//!   over another module's name both fail, are removed, and the module is recompiled.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cup_e2e::cupd::{Cupd, CupdConfig, config_object};
use sha2::{Digest, Sha256};

const THINGS: &str = "/apis/example.com/v1/namespaces/default/things/x";

/// A WASI command that prints one resource named `name` whatever it is asked.
fn guest(name: &str) -> Vec<u8> {
    let text = format!(r#"{{"metadata":{{"name":"{name}"}},"spec":{{}}}}"#);
    let len = text.len() as u32;
    let len_bytes: String = len
        .to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect();
    wat::parse_str(format!(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (data (i32.const 0) "\10\00\00\00{len_bytes}")
             (data (i32.const 16) "{}")
             (func (export "_start")
               (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        text.replace('"', "\\\"")
    ))
    .unwrap()
}

fn harmless() -> Vec<u8> {
    guest("harmless")
}

fn hostile() -> Vec<u8> {
    guest("HOSTILE")
}

/// The config directory of one controller, `ctl`, running `wasm` for `example.com/v1` Things.
fn config_for(wasm: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ctl.wasm"), wasm).unwrap();
    let files = [
        (
            "def.json",
            config_object(
                "ResourceDefinition",
                "things.example.com",
                r#""names":{"kind":"Thing","singular":"thing","plural":"things"},"spec":{"group":"example.com","versions":{"v1":{"type":"object"}}}"#,
            ),
        ),
        (
            "ctl.json",
            config_object(
                "Controller",
                "ctl",
                r#""spec":{"type":"wasm","spec":{"path":"ctl.wasm"}}"#,
            ),
        ),
        (
            "bind.json",
            config_object(
                "Binding",
                "ctl",
                r#""spec":{"controller":"ctl","resources":["example.com/v1/things"]}"#,
            ),
        ),
    ];
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Starts cupd serving `wasm` with `cache` as its code cache; returns it and what
/// `GET …/things/x` answered.
fn serve(wasm: &[u8], cache: &Path) -> (Cupd, String) {
    let (config, source, store) = (
        config_for(wasm),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec!["--code-cache".into(), cache.display().to_string()];
    let cupd = Cupd::start(&cfg);
    let got = cupd.get(THINGS);
    assert_eq!(got.status, 200, "{}", got.text());
    let text = got.text();
    (cupd, text)
}

/// The cache file of `wasm` in `cache`, found by its sha256 (the engine fingerprint is
/// whatever cupd wrote).
fn entry_of(cache: &Path, wasm: &[u8]) -> PathBuf {
    let digest = hex::encode(Sha256::digest(wasm));
    std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&digest) && n.ends_with(".cwasm"))
        })
        .unwrap_or_else(|| panic!("no cache file for {digest} in {}", cache.display()))
}

/// The name `wasm`'s cache file would have, given the name of another module's file.
fn name_for(wasm: &[u8], other_entry: &Path) -> String {
    let other = other_entry.file_name().unwrap().to_str().unwrap();
    let fingerprint = &other[other.find('-').unwrap()..];
    format!("{}{fingerprint}", hex::encode(Sha256::digest(wasm)))
}

/// A cache file of the hostile module, made by a cupd of its own with its own cache.
fn hostile_entry(outer: &Path) -> PathBuf {
    let cache = outer.join("attacker").join("code");
    let (cupd, got) = serve(&hostile(), &cache);
    assert!(got.contains("HOSTILE"), "{got}");
    drop(cupd);
    entry_of(&cache, &hostile())
}

#[test]
fn a_cache_directory_others_can_write_is_refused() {
    let outer = tempfile::tempdir().unwrap();
    let planted = hostile_entry(outer.path());
    let shared = outer.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = shared.join(name_for(&harmless(), &planted));
    std::fs::copy(&planted, &target).unwrap();

    let (cupd, got) = serve(&harmless(), &shared);
    println!("harmless module, planted file in a 0777 cache: {got}");
    assert!(!got.contains("HOSTILE"), "the planted code ran: {got}");
    assert!(got.contains("harmless"), "{got}");
    let log = cupd.log();
    assert!(
        log.contains("compiled-code cache disabled") && log.contains("writable by group or others"),
        "{log}"
    );
    let status = cupd.get("/status").text();
    assert!(status.contains("\"disabled\""), "{status}");
}

#[test]
fn a_planted_entry_in_a_private_cache_fails_its_tag() {
    let outer = tempfile::tempdir().unwrap();
    let from_elsewhere = hostile_entry(outer.path());
    let cache = outer.path().join("victim").join("code");

    // The victim's cache knows both modules; each entry is genuine for its own name.
    let (cupd, got) = serve(&hostile(), &cache);
    assert!(got.contains("HOSTILE"), "{got}");
    drop(cupd);
    let (cupd, got) = serve(&harmless(), &cache);
    assert!(got.contains("harmless"), "{got}");
    drop(cupd);
    let own_hostile = entry_of(&cache, &hostile());
    let target = entry_of(&cache, &harmless());

    for (what, plant) in [
        (
            "a file from another cache (without this key)",
            &from_elsewhere,
        ),
        ("this cache's file of another module, renamed", &own_hostile),
    ] {
        std::fs::copy(plant, &target).unwrap();
        let planted = std::fs::read(&target).unwrap();
        let (cupd, got) = serve(&harmless(), &cache);
        println!("{what}: {got}");
        assert!(
            !got.contains("HOSTILE"),
            "{what}: the planted code ran: {got}"
        );
        assert!(got.contains("harmless"), "{what}: {got}");
        let status = cupd.get("/status").text();
        assert!(status.contains("\"replaced\""), "{what}: {status}");
        assert!(status.contains("refused cache file"), "{what}: {status}");
        drop(cupd);
        // Rewritten with the harmless code: the next start is a plain hit.
        assert_ne!(std::fs::read(&target).unwrap(), planted, "{what}");
        let (cupd, got) = serve(&harmless(), &cache);
        assert!(got.contains("harmless"), "{got}");
        assert!(cupd.get("/status").text().contains("\"hit\""));
    }
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let key = outer.path().join("victim").join("code.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

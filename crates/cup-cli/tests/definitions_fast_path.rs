//! `cup controller definitions` answers the same whether its argv takes the fast path
//! (main.rs `definitions_fast_path`) or goes through clap: forced here by setting
//! CUP_STORE, an option this command does not use but whose environment variable keeps
//! the fast path away.

use std::path::Path;
use std::process::{Command, Output};

const FLAGS: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"flags.flipt.io"},"names":{"kind":"Flag","singular":"flag","plural":"flags"},"spec":{"group":"flipt.io","versions":{"v1alpha1":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}}}}"#;
const SEGMENTS: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"segments.flipt.io"},"names":{"kind":"Segment","singular":"segment","plural":"segments"},"spec":{"group":"flipt.io","versions":{"v1alpha1":{"type":"object"}}}}"#;
/// The smallest core module: magic and version.
const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn cup(args: &[&std::ffi::OsStr], store: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cup"));
    cmd.args(args)
        .env_remove("CUP_CONFIG")
        .env_remove("CUP_STORE");
    if let Some(store) = store {
        cmd.env("CUP_STORE", store);
    }
    cmd.output().expect("run cup")
}

#[test]
fn fast_path_and_clap_give_the_same_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let definitions: Vec<cup_model::ResourceDefinition> = [FLAGS, SEGMENTS]
        .iter()
        .map(|json| serde_json::from_str(json).expect("definition"))
        .collect();
    let (package, _) = cup_sections::embed(EMPTY_MODULE, &definitions).expect("embed");
    let intact = dir.path().join("intact.wasm");
    std::fs::write(&intact, &package).expect("write");
    // Same length, different definition bytes: the manifest's digest no longer matches.
    let at = package
        .windows(6)
        .position(|w| w == b"\"Flag\"")
        .expect("the Flag kind is in the package");
    let mut tampered = package.clone();
    tampered[at + 3] = b'o';
    let tampered_path = dir.path().join("tampered.wasm");
    std::fs::write(&tampered_path, &tampered).expect("write");
    let plain = dir.path().join("plain.wasm");
    std::fs::write(&plain, EMPTY_MODULE).expect("write");
    let text = dir.path().join("text.wasm");
    std::fs::write(&text, "not wasm").expect("write");
    let missing = dir.path().join("missing.wasm");
    let store = dir.path().join("store");

    let mut succeeded = 0;
    for file in [&intact, &tampered_path, &plain, &text, &missing] {
        for prefix in [&[][..], &["-o", "json"], &["--output", "table"]] {
            for controller in ["controller", "ctl"] {
                let mut args: Vec<&std::ffi::OsStr> = prefix.iter().map(|a| a.as_ref()).collect();
                args.extend([
                    controller.as_ref(),
                    "definitions".as_ref(),
                    file.as_os_str(),
                ]);
                let fast = cup(&args, None);
                let clap = cup(&args, Some(&store));
                assert_eq!(fast.status.code(), clap.status.code(), "{args:?}");
                assert_eq!(fast.stdout, clap.stdout, "{args:?}");
                assert_eq!(fast.stderr, clap.stderr, "{args:?}");
                if fast.status.success() {
                    succeeded += 1;
                }
            }
        }
    }
    // Only the intact package is listed, in each of the six argv forms.
    assert_eq!(succeeded, 6);
    assert!(!store.exists(), "neither path touches the store");
}

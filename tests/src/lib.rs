//! Shared helpers for the end-to-end tests: locating the workspace's binaries and building
//! the real example controller for `wasm32-wasip1`.

pub mod cupd;
pub mod fake_registry;
pub mod githttp;
pub mod http;
pub mod load;
pub mod load_client;
pub mod load_model;
pub mod load_report;
pub mod load_verify;
pub mod oras;
pub mod registry;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
}

/// Path of a binary of this workspace (`cup`, `cup-embed`, `cupd`), brought up to date once
/// per test process: `cargo test -p cup-e2e` alone does not rebuild the other packages'
/// binaries, and a stale binary would test old code. Under `cargo test --workspace` the
/// build is a no-op.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        .expect("test executables live in target/<profile>/deps");
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "--bins", "--workspace"])
            .current_dir(repo_root());
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build --bins failed");
    });
    dir.join(name)
}

/// The example Flipt controller, compiled for wasm32-wasip1 in release mode (no cup
/// sections yet). Built once per test process; cargo makes later builds no-ops.
pub fn flipt_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let manifest = repo_root().join("examples/flipt/Cargo.toml");
        // An explicit target dir: a CARGO_TARGET_DIR in the environment must not move it.
        let target_dir = repo_root().join("examples/flipt/target");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("running cargo build for the example");
        assert!(
            status.success(),
            "building examples/flipt for wasm32-wasip1 failed"
        );
        target_dir.join("wasm32-wasip1/release/flipt.wasm")
    })
}

/// The `probe` test/abuse guest of `tests/guests`, built for wasm32-wasip1 once per process.
pub fn probe_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let target_dir = repo_root().join("tests/guests/target");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(repo_root().join("tests/guests/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("running cargo build for tests/guests");
        assert!(
            status.success(),
            "building tests/guests for wasm32-wasip1 failed"
        );
        target_dir.join("wasm32-wasip1/release/probe.wasm")
    })
}

/// The example's definition files, sorted.
pub fn flipt_definitions() -> Vec<PathBuf> {
    let mut defs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/flipt/defs"))
        .expect("examples/flipt/defs exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    defs.sort();
    defs
}

/// A small WASI command module built from WAT, for tests that need "some module".
pub fn wat_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "_start"))
            (@custom "producers" "handmade"))"#,
    )
    .expect("valid WAT")
}

/// Every file name in a directory, sorted: to prove no temporary file was left behind.
pub fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// `git -C dir args…` with a fixed identity (the machine may have none configured); panics
/// with git's stderr on failure; stdout without trailing whitespace.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "seed")
        .env("GIT_AUTHOR_EMAIL", "seed@test")
        .env("GIT_COMMITTER_NAME", "seed")
        .env("GIT_COMMITTER_EMAIL", "seed@test")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

//! Shared helpers for the end-to-end tests: locating the workspace's binaries and building
//! the real example controller for `wasm32-wasip1` (a command) and `wasm32-wasip2` (a
//! component).

pub mod contract;
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
pub mod python;
pub mod referrers_registry;
pub mod registry;
pub mod sshd;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
/// build is a no-op. `CUP_E2E_BIN_DIR` names a directory of binaries to test instead, used
/// as they are (a target directory shared by several checkouts holds whichever was built
/// last under the plain names).
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    if let Some(dir) = std::env::var_os("CUP_E2E_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
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
    WASM.get_or_init(|| build_guest("examples/flipt", "flipt"))
}

/// The `probe` test/abuse guest of `tests/guests`, built for wasm32-wasip1 once per process.
pub fn probe_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_guest("tests/guests", "probe"))
}

/// Builds the Cargo workspace at `dir` (relative to the repository root) for wasm32-wasip1
/// in release mode and returns the path of its `name.wasm`. The target directory is the
/// workspace's own: a CARGO_TARGET_DIR in the environment must not move it.
fn build_guest(dir: &str, name: &str) -> PathBuf {
    let dir = repo_root().join(dir);
    let target_dir = dir.join("target");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo build for {}: {e}", dir.display()));
    assert!(
        status.success(),
        "building {} for wasm32-wasip1 failed",
        dir.display()
    );
    target_dir.join(format!("wasm32-wasip1/release/{name}.wasm"))
}

/// The example Flipt controller as a component for wasm32-wasip2 in release mode (no cup
/// sections yet): the same source as [`flipt_wasm`], exporting
/// `cup:controller/controller@0.1.0`. Built once per test process; cargo makes later builds
/// no-ops.
pub fn flipt_component_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_component("examples/flipt", "flipt"))
}

/// Builds the library of package `package` in the Cargo workspace at `dir` (relative to the
/// repository root) as a component for wasm32-wasip2 in release mode, and returns its path.
///
/// The library is linked as a `cdylib` whatever its declared crate types, so a package can
/// keep `rlib` for its preview 1 command and still be built as a component, without a
/// `wasi:cli/run` export. Same target directory rule as [`build_guest`].
pub fn build_component(dir: &str, package: &str) -> PathBuf {
    let dir = repo_root().join(dir);
    let target_dir = dir.join("target");
    let status = Command::new(env!("CARGO"))
        .args([
            "rustc",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--lib",
            "--crate-type",
            "cdylib",
            "--package",
            package,
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .unwrap_or_else(|e| panic!("running cargo rustc for {}: {e}", dir.display()));
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed",
        dir.display()
    );
    let lib_name = package.replace('-', "_");
    target_dir.join(format!("wasm32-wasip2/release/{lib_name}.wasm"))
}

/// The example Flipt controller with its definitions embedded (built once per process).
pub fn flipt_package() -> &'static [u8] {
    static PACKAGE: OnceLock<Vec<u8>> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        let plain = std::fs::read(flipt_wasm()).expect("reading flipt.wasm");
        let defs: Vec<_> = flipt_definitions()
            .iter()
            .map(|p| cup_sections::read_definition_file(p).expect("example definition"))
            .collect();
        cup_sections::embed(&plain, &defs)
            .expect("embedding the example's definitions")
            .0
    })
}

/// A code cache under `target/` shared by every test, so each module compiles once.
pub fn shared_code_cache() -> PathBuf {
    repo_root().join("target/cup-test-code-cache")
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

/// Why a `git` command failed.
#[derive(Debug, thiserror::Error)]
#[error("git {args}: {why}")]
pub struct GitError {
    /// The arguments, space-separated.
    pub args: String,
    /// git's stderr, or why it could not run.
    pub why: String,
}

/// `git -C dir args…` with `input` on its stdin and a fixed identity (the machine may have
/// none configured); its stdout without trailing whitespace.
pub fn try_git(dir: &Path, args: &[&str], input: &[u8]) -> Result<String, GitError> {
    let failed = |why: String| GitError {
        args: args.join(" "),
        why,
    };
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "seed")
        .env("GIT_AUTHOR_EMAIL", "seed@test")
        .env("GIT_COMMITTER_NAME", "seed")
        .env("GIT_COMMITTER_EMAIL", "seed@test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let mut stdin = child.stdin.take();
    // A writer thread: a large input and a large output must not block each other.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.as_mut().map(|s| s.write_all(&input)));
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// [`try_git`] with nothing on stdin; panics with git's stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_input(dir, args, b"")
}

/// [`try_git`]; panics with git's stderr on failure.
pub fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    try_git(dir, args, input).unwrap_or_else(|e| panic!("{e}"))
}

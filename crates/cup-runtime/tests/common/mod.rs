//! Shared by the tests and the benchmark: the real test guests (a wasm32-wasip1 command and
//! a wasm32-wasip2 component), and requests to them.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use cup_runtime::{Access, Invocation};

/// A request with argv `["wasi", args...]` (what cup passes as argv[0]).
pub fn invocation(args: &[&str], stdin: &[u8], root: &Path, access: Access) -> Invocation {
    let mut argv = vec!["wasi".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    Invocation {
        args: argv,
        stdin: stdin.to_vec(),
        root: root.to_owned(),
        access,
    }
}

/// Builds the `probe` command of `tests/guests` (its own Cargo workspace) for wasm32-wasip1
/// once per process and returns its bytes. Cargo's own incremental build makes this a no-op
/// when nothing changed.
pub fn probe_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build_guest("probe", "wasm32-wasip1", "probe.wasm"))
}

/// The `component-probe` controller component of `tests/guests`, built for wasm32-wasip2
/// once per process.
#[allow(dead_code)] // Each test binary compiles this module; not all use both guests.
pub fn component_probe_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build_guest("component-probe", "wasm32-wasip2", "component_probe.wasm"))
}

fn build_guest(package: &str, target: &str, file: &str) -> Vec<u8> {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/guests");
    let target_dir = guests.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            target,
            "-p",
            package,
        ])
        .arg("--manifest-path")
        .arg(guests.join("Cargo.toml"))
        // Explicit, so a CARGO_TARGET_DIR set for the outer build does not move the output.
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo to build the test guests");
    assert!(
        status.success(),
        "building {package} of tests/guests failed (is the target installed? `rustup target add {target}`)"
    );
    let path = target_dir.join(target).join("release").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

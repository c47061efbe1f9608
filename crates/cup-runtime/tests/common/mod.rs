//! Shared by the tests and the benchmark: the real wasm32-wasip1 test guest, and requests
//! to it.

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

/// Builds `tests/guests` (its own Cargo workspace) for wasm32-wasip1 once per process and
/// returns the probe controller's bytes. Cargo's own incremental build makes this a no-op
/// when nothing changed.
pub fn probe_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/guests");
        let target_dir = guests.join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip1"])
            .arg("--manifest-path")
            .arg(guests.join("Cargo.toml"))
            // Explicit, so a CARGO_TARGET_DIR set for the outer build does not move the output.
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("running cargo to build the test guests");
        assert!(
            status.success(),
            "building tests/guests failed (is the target installed? `rustup target add wasm32-wasip1`)"
        );
        let path = target_dir.join("wasm32-wasip1/release/probe.wasm");
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    })
}

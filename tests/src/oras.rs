//! The independent client: Python `oras` (PyPI, pinned) in a venv under `target/`
//! (`crate::python`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The pinned oras-py release the interop tests were written against.
pub const ORAS_VERSION: &str = "0.2.43";

/// The venv's python, with oras installed.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        crate::python::venv_python("oras-venv", &[&format!("oras=={ORAS_VERSION}")])
    })
}

const PUSH: &str = r#"
import sys, oras.client
host, target, files = sys.argv[1], sys.argv[2], sys.argv[3:]
oras.client.OrasClient(hostname=host, insecure=True).push(target=target, files=files)
"#;

const PULL: &str = r#"
import sys, oras.client
host, target, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
for path in oras.client.OrasClient(hostname=host, insecure=True).pull(target=target, outdir=outdir):
    print(path)
"#;

/// Runs a Python snippet with arguments in `cwd`.
pub fn run(script: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running python")
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `oras push` with no flags beyond `file:mediaType` (files relative to `cwd`): oras picks
/// its own config (`application/vnd.unknown.config.v1+json`).
pub fn push(host: &str, target: &str, files: &[&str], cwd: &Path) {
    let mut args = vec![host, target];
    args.extend_from_slice(files);
    check(run(PUSH, &args, cwd), "oras push");
}

/// `oras pull` into `outdir`; returns the paths it wrote.
pub fn pull(host: &str, target: &str, outdir: &Path) -> Vec<PathBuf> {
    let out = check(
        run(PULL, &[host, target, &outdir.to_string_lossy()], outdir),
        "oras pull",
    );
    out.lines().map(PathBuf::from).collect()
}

//! Independent implementations in Python: a venv under `target/` per set of pinned PyPI
//! packages, created once and shared by every test process (a file lock keeps two from
//! building it at once).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The python of the venv `target/<name>`, with `requirements` (pinned `package==version`
/// lines) installed. A marker file named after the requirements records that they are in,
/// so changing a pin builds the venv's packages again.
pub fn venv_python(name: &str, requirements: &[&str]) -> PathBuf {
    let target = crate::repo_root().join("target");
    let venv = target.join(name);
    let marker = venv.join(format!(".installed-{}", requirements.join("-")));
    std::fs::create_dir_all(&target).expect("target dir");
    let lock = std::fs::File::create(target.join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("locking the venv");
    if !marker.exists() {
        run_ok(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        );
        run_ok(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(requirements),
            "pip install",
        );
        std::fs::write(&marker, "").expect("marker");
    }
    venv.join("bin/python")
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a Python snippet with arguments in `cwd` and returns its stdout; panics with its
/// output when it fails.
pub fn run_script(python: &Path, script: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

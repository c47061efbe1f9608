//! The README's quick start (`just demo` = `examples/quickstart.sh`) runs to the end and
//! shows what it promises: definitions, the flags, an apply, a delete and the diff.

use std::process::Command;

use cup_e2e::{bin, repo_root};

#[test]
fn the_quick_start_script_runs_end_to_end() {
    // Builds the binaries first (the script's own cargo build is then a no-op).
    let cup = bin("cup");
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new("bash")
        .arg(repo_root().join("examples/quickstart.sh"))
        .current_dir(repo_root())
        // The script builds the debug profile into the target dir the tests use.
        .env(
            "CARGO_TARGET_DIR",
            cup.parent()
                .and_then(|debug| debug.parent())
                .expect("target/<profile>/cup"),
        )
        .env("TMPDIR", tmp.path())
        .env("HOME", tmp.path())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("running examples/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "$ cup controller keygen",
        "controller sign localhost/cup/flipt@sha256:",
        "--require-signatures --verify-key",
        "$ cup definitions",
        "flags      flipt.io/v1alpha1   Flag",
        "$ cup get flags",
        "default     dark-mode",
        "$ cup apply -f",
        "flag/quick-start applied",
        "default     quick-start",
        "$ cup delete flag dark-mode",
        "Done: stopping cupd",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // The diff: the new flag added, the deleted one gone (whatever the YAML indentation).
    let diff_lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("What changed on disk"))
        .collect();
    assert!(
        diff_lines
            .iter()
            .any(|l| l.starts_with('+') && l.contains("key: quick-start")),
        "{stdout}"
    );
    assert!(
        diff_lines
            .iter()
            .any(|l| l.starts_with('-') && l.contains("key: dark-mode")),
        "{stdout}"
    );
    // The cleanup trap removed its work directory and stopped cupd; no config was written.
    assert_eq!(cup_e2e::dir_listing(tmp.path()), Vec::<String>::new());
}

//! The load run, short: the real `cup-load` binary with 16 clients against
//! the real cupd serving the example Flipt controller (debug build), ~15 s on the local
//! source and ~10 s on the Git source (a real bare repository). Correctness only: zero
//! unexpected errors and zero lost, mixed or unacknowledged writes; nothing is timed.
//! A third test proves the checks can fail: a writer from outside the load changes a base
//! flag and adds a name no client owns, and cup-load must say so and exit 1.
//! The full run is `bench/load.sh` (`just load`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree, write_flipt_controller};
use cup_e2e::git;
use cup_e2e::repo_root;
use cup_e2e::shared_code_cache;
use serde_json::Value;

const FLAGS: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags";

/// A config directory with the example controller by path, and a private store.
struct Fixture {
    config: tempfile::TempDir,
    store: tempfile::TempDir,
    source: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let config = tempfile::tempdir().unwrap();
    write_flipt_controller(config.path(), "ctl/flipt.wasm");
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    Fixture {
        config,
        store: tempfile::tempdir().unwrap(),
        source,
    }
}

fn start(f: &Fixture, extra: &[String]) -> Cupd {
    let mut cfg = CupdConfig::new(f.config.path(), f.source.path(), f.store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    cfg.args.extend(extra.iter().cloned());
    Cupd::start(&cfg)
}

/// The pid of the cupd serving `base_url` (the harness does not expose it): the process
/// whose command line names its address.
fn cupd_pid(base_url: &str) -> Option<u32> {
    let address = base_url.strip_prefix("http://")?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let serves = args.first()?.ends_with(b"cupd") && args.contains(&address.as_bytes());
            serves.then_some(pid)
        })
}

/// Runs cup-load; returns its output and its JSON report.
fn cup_load(cupd: &Cupd, duration: &str, extra: &[&str]) -> (Output, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut command = Command::new(cup_e2e::bin("cup-load"));
    command
        .args([
            "--url",
            &cupd.base_url(),
            "--clients",
            "16",
            "--duration",
            duration,
        ])
        .args(["--seed", "7", "--warmup", "5s", "--json"])
        .arg(&json)
        .args(extra);
    if let Some(pid) = cupd_pid(&cupd.base_url()) {
        command.args(["--pid", &pid.to_string()]);
    }
    let output = command.output().expect("running cup-load");
    let report = std::fs::read(&json).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); cup-load said:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (
        output,
        serde_json::from_slice(&report).expect("JSON report"),
    )
}

/// Every operation ran and was answered, nothing unexpected, nothing lost or mixed.
fn assert_clean(output: &Output, report: &Value) {
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "cup-load failed:\n{said}");
    assert_eq!(report["passed"], true, "{said}");
    assert_eq!(report["unexpected_error_count"], 0, "{said}");
    for kind in ["lost", "mixed", "unacknowledged"] {
        assert_eq!(report["violations"][kind], 0, "{kind}: {said}");
    }
    for op in ["get", "list", "put", "delete"] {
        assert!(
            report["ops"][op]["ok"].as_u64().unwrap() > 0,
            "no successful {op}: {said}"
        );
    }
    assert!(report["acknowledged_writes"].as_u64().unwrap() > 0);
    assert_eq!(report["verification"]["names_checked"], 16 * 4);
    assert_eq!(report["verification"]["errors"], serde_json::json!([]));
    assert!(
        report["rss"]["samples"].as_u64().unwrap_or(0) > 0,
        "cupd's memory was sampled: {said}"
    );
}

#[test]
fn sixteen_clients_on_the_local_source_lose_and_mix_nothing() {
    let f = fixture();
    let cupd = start(&f, &[]);
    let (output, report) = cup_load(&cupd, "15s", &[]);
    assert_clean(&output, &report);
    let v = &report["verification"];
    assert_eq!(
        v["present"].as_u64().unwrap() + v["absent"].as_u64().unwrap(),
        64
    );
    // The file on disk holds what the final check read through the API.
    let yaml = std::fs::read_to_string(f.source.path().join("features.yml")).unwrap();
    let on_disk = yaml.matches("key: load-c").count() as u64;
    assert_eq!(on_disk, v["present"].as_u64().unwrap(), "{yaml}");
}

/// A bare repository with default branch `main` seeded with the example's files.
fn seeded_remote(dir: &Path) -> PathBuf {
    git(dir, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
    git(dir, &["clone", "-q", "remote.git", "seed"]);
    let seed = dir.join("seed");
    copy_tree(&repo_root().join("examples/flipt/repo"), &seed);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    dir.join("remote.git")
}

#[test]
fn sixteen_clients_on_the_git_source_get_exact_proposals() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let remote = seeded_remote(tmp.path());
    let base = git(&remote, &["rev-parse", "main"]);
    let args: Vec<String> = vec![
        "-api-source".into(),
        "git".into(),
        "-api-git-repo".into(),
        remote.display().to_string(),
        "--git-cache".into(),
        tmp.path().join("cache").display().to_string(),
    ];
    let cupd = start(&f, &args);
    let remote_arg = remote.display().to_string();
    let (output, report) = cup_load(
        &cupd,
        "10s",
        &["--source", "git", "--git-remote", &remote_arg],
    );
    assert_clean(&output, &report);
    let v = &report["verification"];
    assert_eq!(v["base_unchanged"], true);
    let proposals = v["proposals_checked"].as_u64().unwrap();
    assert_eq!(proposals, report["acknowledged_writes"].as_u64().unwrap());
    assert_eq!(
        v["changed_paths"],
        serde_json::json!({"features.yml": proposals})
    );
    // Checked independently of cup-load: one branch per acknowledged write, base untouched.
    let branches = git(
        &remote,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads/cup/proposal/",
        ],
    );
    assert_eq!(branches.lines().count() as u64, proposals);
    assert_eq!(git(&remote, &["rev-parse", "main"]), base);
}

#[test]
fn a_foreign_write_during_the_run_fails_it() {
    let f = fixture();
    let cupd = start(&f, &[]);
    std::thread::scope(|s| {
        let load = s.spawn(|| cup_load(&cupd, "6s", &["--mix", "get=50,put=50"]));
        // Once a load name exists the clients are running (the baseline was taken first).
        while !cupd.get(FLAGS).text().contains("\"load-c") {
            assert!(!load.is_finished(), "cup-load ended before writing");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let dark = cupd.get(&format!("{FLAGS}/dark-mode")).json();
        let mut changed = dark.clone();
        changed["spec"]["description"] = "changed behind the load's back".into();
        assert_eq!(
            cupd.put(&format!("{FLAGS}/dark-mode"), &changed.to_string())
                .status,
            202
        );
        let mut stranger = dark;
        stranger["metadata"]["name"] = "load-c99-n0".into();
        assert_eq!(
            cupd.put(&format!("{FLAGS}/load-c99-n0"), &stranger.to_string())
                .status,
            202
        );
        let (output, report) = load.join().unwrap();
        assert_eq!(output.status.code(), Some(1), "cup-load must fail");
        assert_eq!(report["passed"], false);
        let first = report["violations"]["first"].to_string();
        assert!(first.contains("base resource dark-mode changed"), "{first}");
        assert!(first.contains("shows load-c99-n0 of client 99"), "{first}");
        assert!(report["violations"]["mixed"].as_u64().unwrap() >= 2);
    });
}

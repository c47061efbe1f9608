//! SIGKILL in the middle of registry transfers: `cup controller push`, `cup controller
//! pull` and `cupd` pulling its controller at startup are killed at random points (a
//! proxy slows the transfers so the kill lands mid-way). Afterwards the registry tag names
//! a complete artifact or nothing, the store is consistent (every blob verifies,
//! `index.json` parses, no tag for an incomplete pull), and the next run succeeds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::oci_common::*;
use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::flipt_package;
use cup_e2e::registry::{Action, RegistryProxy, Rule, TestRegistry};
use cup_e2e::{bin, repo_root};

const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";

/// `count` kill delays spread over `[from, to)` milliseconds, in random order each run (the
/// delays are printed so a failure can be reproduced).
fn kill_points(count: u64, from: u64, to: u64) -> Vec<Duration> {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(count);
    let seed = hasher.finish();
    let step = (to - from) / count;
    let points: Vec<Duration> = (0..count)
        .map(|i| {
            let jitter = (seed >> (i % 8 * 8)) % step.max(1);
            Duration::from_millis(from + i * step + jitter)
        })
        .collect();
    eprintln!("kill points: {points:?}");
    points
}

fn kill_after(mut child: Child, delay: Duration) {
    std::thread::sleep(delay);
    // SIGKILL; an already finished process is fine (the kill landed after the end).
    let _ = child.kill();
    let _ = child.wait();
}

fn cup_command(w: &Work, store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("cup"));
    cmd.arg("--store")
        .arg(store)
        .args(args)
        .env("HOME", w.dir.path())
        .env_remove("DOCKER_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The store is consistent: `index.json` parses, every blob verifies, and every tagged
/// entry resolves to its complete wasm.
fn assert_store_consistent(w: &Work, store: &Path) {
    if !store.join("index.json").exists() {
        return;
    }
    let index = std::fs::read_to_string(store.join("index.json")).expect("index.json");
    let parsed: serde_json::Value = serde_json::from_str(&index).expect("index.json parses");
    let opened = cup_oci::Store::open(store).expect("store opens");
    assert_eq!(opened.verify().expect("verify runs"), Vec::<String>::new());
    for entry in parsed["manifests"].as_array().expect("manifests") {
        let digest = entry["digest"].as_str().expect("digest");
        let wasm = opened
            .wasm_for(digest)
            .expect("an entry has its complete wasm");
        assert_eq!(wasm, flipt_package());
    }
    ok(w.cup_in(store, &["controller", "list", "--verify"]));
}

/// A registry holding the example package as `cup/flipt:v1`, and a proxy in front of it that
/// sends the package's layer at `bytes_per_sec`.
fn package_behind_a_throttle(bytes_per_sec: usize) -> (TestRegistry, RegistryProxy) {
    let registry = TestRegistry::start();
    Work::new().push(&registry.reference("cup/flipt:v1"));
    let layer = format!("/blobs/{}", cup_sections::sha256_digest(flipt_package()));
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always(
            "GET",
            &layer,
            Action::Throttle { bytes_per_sec },
        )],
    );
    (registry, proxy)
}

#[test]
fn a_push_killed_anywhere_leaves_no_half_tag_and_a_rerun_succeeds() {
    let registry = TestRegistry::start();
    // Every answer is held 150 ms after the registry did the work: a push (HEAD, POST,
    // PUT per blob, then the manifest PUT) takes about a second, and a kill can land
    // before, during or after any step.
    let proxy = RegistryProxy::start(
        &registry,
        vec![Rule::always("*", "/v2/", Action::Delay { ms: 150 })],
    );
    let mut mid_push = 0;
    for (n, delay) in kill_points(6, 50, 1500).into_iter().enumerate() {
        let w = Work::new();
        let repo = format!("cup/killed{n}");
        let name = format!("{repo}:v1");
        let child = cup_command(
            &w,
            &w.store(),
            &[
                "controller",
                "push",
                &w.wasm().to_string_lossy(),
                &proxy.reference(&name),
            ],
        )
        .spawn()
        .expect("spawn cup push");
        kill_after(child, delay);
        let requests = proxy.count("*", &format!("/{repo}/"));
        let tag = registry.request(
            "GET",
            &format!("/v2/{repo}/manifests/v1"),
            &[("Accept", OCI_MANIFEST)],
            &[],
        );
        eprintln!(
            "kill at {delay:?}: {requests} requests seen, tag {}",
            tag.status
        );
        match tag.status {
            404 => mid_push += usize::from(requests > 0),
            200 => assert_registry_serves_the_package(&registry, &name),
            other => panic!("after a kill at {delay:?}: tag answers {other}"),
        }
        w.push(&proxy.reference(&name));
        assert_registry_serves_the_package(&registry, &name);
    }
    assert!(mid_push > 0, "no kill landed mid-push: slow the proxy down");
}

#[test]
fn a_pull_killed_anywhere_leaves_a_consistent_store_and_the_next_pull_succeeds() {
    // The ~0.5 MB layer trickles at 1 MB/s: the pull takes about half a second.
    let (_registry, proxy) = package_behind_a_throttle(1 << 20);
    let reference = proxy.reference("cup/flipt:v1");
    let w = Work::new();
    let mut mid_download = 0;
    let temp_files = || std::fs::read_dir(w.store().join(".tmp")).map_or(0, |d| d.count());
    for delay in kill_points(6, 20, 800) {
        let before = temp_files();
        let child = cup_command(&w, &w.store(), &["controller", "pull", &reference])
            .spawn()
            .expect("spawn cup pull");
        kill_after(child, delay);
        // A killed download leaves its temp file behind (swept after a day), never a blob.
        let left = temp_files() - before;
        eprintln!("kill at {delay:?}: {left} temp file(s) left");
        mid_download += usize::from(left > 0);
        assert_store_consistent(&w, &w.store());
    }
    assert!(mid_download > 0, "no kill landed mid-download");
    let out = w.path("out.wasm");
    ok(w.cup(&[
        "controller",
        "pull",
        &reference,
        "-O",
        &out.to_string_lossy(),
    ]));
    assert_eq!(std::fs::read(&out).expect("pulled"), flipt_package());
    assert_store_consistent(&w, &w.store());
}

fn write_controller(config: &Path, image: &str) {
    std::fs::write(
        config.join("flipt.json"),
        format!(
            r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"flipt"}},"spec":{{"type":"wasm","spec":{{"image":"{image}"}}}}}}"#
        ),
    )
    .expect("controller config");
}

/// Starts cupd without waiting for it (so it can be killed while it pulls).
fn spawn_cupd(cfg: &CupdConfig<'_>) -> Child {
    Command::new(bin("cupd"))
        .args(["serve", "-api-address", "127.0.0.1:0", "-api-resources"])
        .arg(cfg.config_dir)
        .arg("-api-local-path")
        .arg(cfg.source_dir)
        .arg("--store")
        .arg(cfg.store)
        .args(&cfg.args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn cupd")
}

#[test]
fn cupd_killed_while_pulling_its_controller_restarts_and_serves() {
    // Slow enough that cupd is surely mid-layer when the temp file appears.
    let (_registry, proxy) = package_behind_a_throttle(128 << 10);
    let config = tempfile::tempdir().expect("config dir");
    let source = tempfile::tempdir().expect("source dir");
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().expect("store dir");
    let cache = tempfile::tempdir().expect("cache dir");
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec!["--code-cache".into(), cache.path().display().to_string()];
    write_controller(config.path(), &proxy.reference("cup/flipt:v1"));

    for extra in kill_points(3, 0, 600) {
        let mut child = spawn_cupd(&cfg);
        let deadline = Instant::now() + Duration::from_secs(60);
        let tmp = store.path().join(".tmp");
        while std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0 {
            assert!(Instant::now() < deadline, "cupd never started the pull");
            assert!(
                child.try_wait().expect("try_wait").is_none(),
                "cupd exited before pulling"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_after(child, extra);
        let w = Work::new();
        assert_store_consistent(&w, store.path());
    }
    // One more transient fault on the restart: cupd retries it too, and logs the retry.
    proxy.set_rules(vec![Rule::new(
        "GET",
        "/manifests/",
        Action::Status(503),
        1,
    )]);
    let cupd = Cupd::start(&cfg);
    let status = cupd.get("/status").json();
    assert_eq!(status["controllers"][0]["state"], "loaded", "{status}");
    says(&cupd.log(), &["registry request failed; retrying", "503"]);
    let got = cupd.get(FLAG);
    assert_eq!(got.status, 200, "{}", got.text());
}

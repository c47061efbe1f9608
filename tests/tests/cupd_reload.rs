//! Reloading the config directory on SIGHUP, through the real cupd: definitions, bindings
//! and controllers come and go without a restart; a bad directory is refused with the
//! reason in `/status` while the set before keeps serving; a controller named by another
//! digest is pulled, verified and served; requests in flight finish on the set they
//! started with, and none fails because of a swap; signals during a reload make exactly
//! one more.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cup_e2e::cupd::{
    Cupd, CupdConfig, config_object, copy_tree, request, write_probe_controller,
    write_template_controller,
};
use cup_e2e::registry::{Action, RegistryProxy, Rule, TestRegistry};
use cup_e2e::{flipt_package, probe_wasm, repo_root, shared_code_cache};

const ONE: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/one";
const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";
const EXTRA: &str = "/apis/extra.example.com/v1/namespaces/default/extras";
const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";

fn slow(ms: u64) -> String {
    format!("/apis/example.com/v1/namespaces/default/slows/{ms}")
}

/// A source holding the template resource `one`.
fn source() -> tempfile::TempDir {
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("default")).unwrap();
    std::fs::write(
        source.path().join("default/test.cup.flipt.io-v1alpha1-Resource-one.json"),
        r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"one"},"spec":{}}"#,
    )
    .unwrap();
    source
}

fn start(config: &Path, source: &Path, store: &Path) -> Cupd {
    start_with(config, source, store, &[])
}

fn start_with(config: &Path, source: &Path, store: &Path, args: &[&str]) -> Cupd {
    let mut cfg = CupdConfig::new(config, source, store);
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    cfg.args.extend(args.iter().map(|a| a.to_string()));
    Cupd::start(&cfg)
}

/// The definition of `extra.example.com/v1/extras` and a Binding of it to the template
/// controller.
fn write_extra(dir: &Path) {
    std::fs::write(
        dir.join("extra-def.json"),
        config_object(
            "ResourceDefinition",
            "extras.extra.example.com",
            r#""names":{"kind":"Extra","singular":"extra","plural":"extras"},"spec":{"group":"extra.example.com","versions":{"v1":{"type":"object"}}}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("extra-bind.json"),
        config_object(
            "Binding",
            "extra",
            r#""spec":{"controller":"template","resources":["extra.example.com/v1/extras"]}"#,
        ),
    )
    .unwrap();
}

fn remove(dir: &Path, files: &[&str]) {
    for file in files {
        std::fs::remove_file(dir.join(file)).unwrap();
    }
}

/// `cupd_config_reloads_total{outcome}` now.
fn reloads(cupd: &Cupd, outcome: &str) -> u64 {
    let metrics = cupd.get("/metrics").text();
    let series = format!("cupd_config_reloads_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn assert_ok(reload: &serde_json::Value, cupd: &Cupd) {
    assert_eq!(reload["ok"], true, "{reload}\n{}", cupd.log());
    assert!(reload.get("error").is_none(), "{reload}");
    assert!(reload["at"].as_str().is_some_and(|at| at.ends_with('Z')));
}

fn apis(cupd: &Cupd) -> String {
    let r = cupd.get("/apis");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn definitions_and_bindings_come_and_go_on_sighup() {
    let config = tempfile::tempdir().unwrap();
    let source = source();
    let store = tempfile::tempdir().unwrap();
    write_probe_controller(config.path(), &["Slow"]);
    let cupd = start(config.path(), source.path(), store.path());
    assert!(cupd.reload_status().is_null(), "no reload yet");
    assert_eq!(cupd.get(ONE).status, 404);
    let probe_digest = cupd.controller_status("probe")["digest"].clone();
    assert!(probe_digest.is_string());

    // Added: served, listed under /apis, shown in /status.
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    let reload = cupd.reload();
    assert_ok(&reload, &cupd);
    assert_eq!(reload["count"], 1);
    let got = cupd.get(ONE);
    assert_eq!(got.status, 200, "{}", got.text());
    assert!(apis(&cupd).contains("resources.test.cup.flipt.io"));
    assert_eq!(cupd.controller_status("template")["state"], "loaded");
    // The probe's module did not change: used again, not compiled again.
    let probe = cupd.controller_status("probe");
    assert_eq!(probe["cache"], "reused", "{probe}");
    assert_eq!(probe["digest"], probe_digest);
    assert_eq!(cupd.get(&slow(1)).status, 200);

    // Removed: 404, gone from /apis and /status.
    remove(
        config.path(),
        &["tmpl-def.json", "tmpl-ctl.json", "tmpl-bind.json"],
    );
    assert_ok(&cupd.reload(), &cupd);
    assert_eq!(cupd.get(ONE).status, 404);
    assert!(!apis(&cupd).contains("resources.test.cup.flipt.io"));
    let status = cupd.get("/status").json();
    assert_eq!(
        status["controllers"].as_array().unwrap().len(),
        1,
        "{status}"
    );
    assert_eq!(status["ready"], true);
    assert_eq!(reloads(&cupd, "ok"), 2);
    assert_eq!(reloads(&cupd, "refused"), 0);
    assert!(cupd.log().contains("config directory reloaded"));
}

/// Config files to add: (path relative to the config directory, text).
type Files = Vec<(&'static str, String)>;

#[test]
fn a_bad_config_is_refused_and_the_set_before_keeps_serving() {
    let config = tempfile::tempdir().unwrap();
    let source = source();
    let store = tempfile::tempdir().unwrap();
    write_probe_controller(config.path(), &["Slow"]);
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    let cupd = start(config.path(), source.path(), store.path());
    let before = cupd.get("/status").json()["controllers"].clone();

    let ghost_ctl = config_object(
        "Controller",
        "ghost",
        r#""spec":{"type":"wasm","spec":{"path":"missing.wasm"}}"#,
    );
    let ghost_bind = config_object(
        "Binding",
        "ghost",
        r#""spec":{"controller":"ghost","resources":["test.cup.flipt.io/v1alpha1/resources"]}"#,
    );
    let cases: Vec<(Files, Vec<&str>)> = vec![
        // Not JSON.
        (
            vec![("sub/bad.json", "{nope".to_owned())],
            vec!["\"sub/bad.json\"", "invalid JSON"],
        ),
        // A Binding naming a Controller no file defines.
        (
            vec![("ghost-bind.json", ghost_bind.clone())],
            vec!["ghost-bind.json", "controller \"ghost\" is not defined"],
        ),
        // A controller whose module is missing.
        (
            vec![("ghost-ctl.json", ghost_ctl)],
            vec![
                "controller \"ghost\" (ghost-ctl.json) failed to load",
                "missing.wasm",
            ],
        ),
        // A Binding naming a definition nothing serves.
        (
            vec![(
                "nope-bind.json",
                config_object(
                    "Binding",
                    "nope",
                    r#""spec":{"controller":"template","resources":["example.com/v1/nopes"]}"#,
                ),
            )],
            vec![
                "binding \"nope\" (nope-bind.json)",
                "example.com/v1/nopes, which no definition serves",
            ],
        ),
        // Two Bindings claiming one route.
        (
            vec![(
                "twice-bind.json",
                config_object(
                    "Binding",
                    "twice",
                    r#""spec":{"controller":"probe","resources":["test.cup.flipt.io/v1alpha1/resources"]}"#,
                ),
            )],
            vec![
                "binding \"twice\" (twice-bind.json)",
                "already served by controller \"template\"",
            ],
        ),
    ];
    for (round, (files, wanted)) in cases.into_iter().enumerate() {
        for (file, text) in &files {
            let path = config.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let reload = cupd.reload();
        assert_eq!(reload["ok"], false, "{reload}");
        let error = reload["error"].as_str().expect("a refusal says why");
        for want in wanted {
            assert!(error.contains(want), "{want:?} not in {error:?}");
        }
        assert_eq!(reloads(&cupd, "refused"), round as u64 + 1);
        // The set before, untouched: both controllers serve, /status lists them as before.
        assert_eq!(cupd.get(ONE).status, 200);
        assert_eq!(cupd.get(&slow(1)).status, 200);
        assert_eq!(cupd.get("/status").json()["controllers"], before);
        assert!(
            cupd.log().contains("config reload refused"),
            "{}",
            cupd.log()
        );
        for (file, _) in &files {
            std::fs::remove_file(config.path().join(file)).unwrap();
        }
    }

    // Fixed: the next reload is served, and the refusal is gone from /status.
    write_extra(config.path());
    let reload = cupd.reload();
    assert_ok(&reload, &cupd);
    assert_eq!(reload["count"], 6);
    assert_eq!(cupd.get(EXTRA).status, 200);
    assert_eq!(reloads(&cupd, "ok"), 1);
}

/// The probe with `definitions` (config-directory JSON) embedded: a package, which an
/// image must be.
fn probe_package(definitions: &[String]) -> Vec<u8> {
    let plain = std::fs::read(probe_wasm()).unwrap();
    let definitions: Vec<cup_model::ResourceDefinition> = definitions
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    cup_sections::embed(&plain, &definitions).unwrap().0
}

/// A package pushed to `registry` as `<repo>:v1`; returns the manifest digest.
fn push(registry: &TestRegistry, repo: &str, wasm: &[u8]) -> String {
    let artifact = cup_oci::Artifact::build(wasm, &cup_oci::ArtifactOptions::default()).unwrap();
    registry.put_blob(repo, wasm);
    registry.put_blob(repo, &artifact.config);
    let pushed =
        registry.put_manifest(repo, "v1", &artifact.manifest, cup_oci::media::OCI_MANIFEST);
    assert_eq!(pushed.status, 201, "{pushed:?}");
    artifact.manifest_digest
}

fn image_controller(dir: &Path, image: &str) {
    std::fs::write(
        dir.join("ctl.json"),
        config_object(
            "Controller",
            "ctl",
            &format!(r#""spec":{{"type":"wasm","spec":{{"image":"{image}"}}}}"#),
        ),
    )
    .unwrap();
}

/// The Controller `ctl` moves from one digest to another (pulled through a proxy that
/// makes the pull slow): SIGHUPs during that reload make one more reload, not five, and the
/// change they announce is served. A digest whose blobs do not verify is refused.
#[test]
fn another_digest_is_pulled_verified_and_served_and_sighups_during_a_reload_coalesce() {
    let registry = TestRegistry::start();
    let config = tempfile::tempdir().unwrap();
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    write_probe_controller(config.path(), &["Slow"]);
    write_extra(config.path());
    let slows = std::fs::read_to_string(config.path().join("slows-def.json")).unwrap();
    let extras = std::fs::read_to_string(config.path().join("extra-def.json")).unwrap();
    remove(config.path(), &["extra-def.json", "extra-bind.json"]);

    let probe = push(
        &registry,
        "cup/probe",
        &probe_package(std::slice::from_ref(&slows)),
    );
    let flipt = push(&registry, "cup/flipt", flipt_package());
    let other = push(&registry, "cup/other", &probe_package(&[slows, extras]));
    let proxy = RegistryProxy::start(&registry, Vec::new());

    let source = source();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().unwrap();
    image_controller(
        config.path(),
        &proxy.reference(&format!("cup/probe@{probe}")),
    );
    // The probe by image (`ctl`), not by path: the Binding names `ctl`.
    remove(config.path(), &["probe-ctl.json", "probe.wasm"]);
    let binding = std::fs::read_to_string(config.path().join("probe-bind.json")).unwrap();
    std::fs::write(
        config.path().join("probe-bind.json"),
        binding.replace(r#""controller":"probe""#, r#""controller":"ctl""#),
    )
    .unwrap();
    let cupd = start(config.path(), source.path(), store.path());
    assert_eq!(cupd.get(&slow(1)).status, 200);
    assert_eq!(
        cupd.controller_status("ctl")["manifest_digest"],
        probe.as_str()
    );
    assert_eq!(cupd.get(FLAG).status, 404);

    // To flipt's digest, which embeds its definitions (so no Binding), pulled slowly.
    proxy.set_rules(vec![Rule::always(
        "GET",
        "/blobs/",
        Action::Delay { ms: 3000 },
    )]);
    image_controller(
        config.path(),
        &proxy.reference(&format!("cup/flipt@{flipt}")),
    );
    remove(config.path(), &["probe-bind.json", "slows-def.json"]);
    cupd.hangup();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.faults_injected() == 0 {
        assert!(Instant::now() < deadline, "the reload never pulled");
        std::thread::sleep(Duration::from_millis(10));
    }
    let during = cupd.reload_status();
    assert_eq!(during["running"], true, "{during}");
    assert_eq!(during["count"], 0, "{during}");
    // Mid-pull: the set before still serves.
    assert_eq!(cupd.get(&slow(1)).status, 200);
    write_extra(config.path());
    for _ in 0..5 {
        cupd.hangup();
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = cupd.wait_for_reloads(2);
    assert_ok(&after, &cupd);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cupd.reload_status()["count"],
        2,
        "five signals during a reload make one more"
    );
    assert_eq!(reloads(&cupd, "ok"), 2);
    let ctl = cupd.controller_status("ctl");
    assert_eq!(ctl["manifest_digest"], flipt.as_str(), "{ctl}");
    assert_eq!(ctl["state"], "loaded");
    let flag = cupd.get(FLAG);
    assert_eq!(
        flag.status,
        200,
        "the new controller answers: {}",
        flag.text()
    );
    assert_eq!(flag.json()["metadata"]["name"], "new-login");
    assert_eq!(cupd.get(&slow(1)).status, 404);
    assert_eq!(
        cupd.get(EXTRA).status,
        200,
        "the coalesced change is served"
    );

    // A digest whose blobs arrive corrupted: refused, flipt keeps serving.
    proxy.set_rules(vec![Rule::always("GET", "/blobs/", Action::WrongBytes)]);
    image_controller(
        config.path(),
        &proxy.reference(&format!("cup/other@{other}")),
    );
    let reload = cupd.reload();
    assert_eq!(reload["ok"], false, "{reload}");
    let error = reload["error"].as_str().unwrap();
    assert!(
        error.contains("controller \"ctl\" (ctl.json) failed to load") && error.contains("sha256"),
        "{error}"
    );
    assert_eq!(cupd.get(FLAG).status, 200);
    assert_eq!(
        cupd.controller_status("ctl")["manifest_digest"],
        flipt.as_str()
    );
    assert_eq!(reloads(&cupd, "refused"), 1);
}

/// Many concurrent GETs and some PUTs run across 25 reloads, each changing the set: every
/// response is what it would be without reloads. A slow read started before a reload that
/// removes its controller is answered by that controller.
#[test]
fn reloads_under_load_fail_no_request_and_requests_in_flight_finish_on_the_old_set() {
    let config = tempfile::tempdir().unwrap();
    let source = source();
    let store = tempfile::tempdir().unwrap();
    write_probe_controller(config.path(), &["Slow"]);
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    // The slow read below runs beside PUTs: let it hold them off for all of its 3 s
    // (past the default hold it would be answered 503, as it should, and prove nothing).
    let cupd = Arc::new(start_with(
        config.path(),
        source.path(),
        store.path(),
        &["--max-read-hold", "10s"],
    ));
    let port = cupd.port();
    let stop = Arc::new(AtomicBool::new(false));
    // Set before the reload that removes the probe: its reads may be 404 from then on.
    let probe_going = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..8 {
        let stop = stop.clone();
        let probe_going = probe_going.clone();
        clients.push(std::thread::spawn(move || {
            let mut answered = 0u64;
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let path = match answered % 3 {
                    0 => ONE.to_owned(),
                    1 => RESOURCES.to_owned(),
                    _ => slow(0),
                };
                match request(port, "GET", &path, &[], b"") {
                    Some(r) if r.status == 200 => {}
                    Some(r)
                        if r.status == 404
                            && path == slow(0)
                            && probe_going.load(Ordering::SeqCst) => {}
                    Some(r) => wrong.push(format!(
                        "client {client}: GET {path}: {} {}",
                        r.status,
                        r.text()
                    )),
                    None => wrong.push(format!("client {client}: GET {path}: no response")),
                }
                answered += 1;
            }
            (answered, wrong)
        }));
    }
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut written = 0u64;
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w{}", written % 20);
                let body = format!(
                    r#"{{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{{"namespace":"default","name":"{name}"}},"spec":{{}}}}"#
                );
                match request(
                    port,
                    "PUT",
                    &format!("{RESOURCES}/{name}"),
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                ) {
                    Some(r) if r.status == 202 => {}
                    Some(r) => wrong.push(format!("PUT {name}: {} {}", r.status, r.text())),
                    None => wrong.push(format!("PUT {name}: no response")),
                }
                written += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (written, wrong)
        })
    };

    let started = Instant::now();
    for round in 0..25 {
        if round % 2 == 0 {
            write_extra(config.path());
        } else {
            remove(config.path(), &["extra-def.json", "extra-bind.json"]);
        }
        assert_ok(&cupd.reload(), &cupd);
        let extra = cupd.get(EXTRA).status;
        assert_eq!(
            extra,
            if round % 2 == 0 { 200 } else { 404 },
            "round {round}"
        );
    }
    let reloading = started.elapsed();

    // A 3 s read, then a reload that removes its controller while it runs.
    let in_flight = {
        let cupd = cupd.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            (cupd.get(&slow(3000)), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    probe_going.store(true, Ordering::SeqCst);
    remove(
        config.path(),
        &["probe-ctl.json", "probe-bind.json", "slows-def.json"],
    );
    assert_ok(&cupd.reload(), &cupd);
    assert_eq!(cupd.get(&slow(0)).status, 404, "the new set has no probe");
    assert!(
        !in_flight.is_finished(),
        "the slow read outlived the reload"
    );
    let (slow_read, took) = in_flight.join().unwrap();
    assert_eq!(slow_read.status, 200, "{}", slow_read.text());
    assert_eq!(slow_read.json()["kind"], "Slow");
    assert!(took >= Duration::from_millis(3000), "{took:?}");

    stop.store(true, Ordering::Relaxed);
    let mut wrong = Vec::new();
    let mut answered = 0;
    for client in clients {
        let (n, w) = client.join().unwrap();
        answered += n;
        wrong.extend(w);
    }
    let (written, w) = writer.join().unwrap();
    wrong.extend(w);
    eprintln!(
        "25 reloads in {reloading:?}, then one under a slow read; {answered} GETs and {written} PUTs meanwhile"
    );
    assert!(
        wrong.is_empty(),
        "{} failed: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(
        answered > 200 && written > 10,
        "{answered} GETs, {written} PUTs"
    );
    assert_eq!(reloads(&cupd, "ok"), 26);
}

/// `--watch-config`: a change to the directory reloads it without a signal, once quiet; a
/// bad change is refused as a SIGHUP's would be; reading the directory (every reload does)
/// triggers nothing.
#[test]
fn a_watched_config_directory_reloads_on_change_and_a_bad_change_is_refused() {
    let config = tempfile::tempdir().unwrap();
    let source = source();
    let store = tempfile::tempdir().unwrap();
    write_probe_controller(config.path(), &["Slow"]);
    let cupd = start_with(
        config.path(),
        source.path(),
        store.path(),
        &["--watch-config"],
    );
    assert!(cupd.log().contains("watching the config directory"));
    assert_eq!(cupd.get(ONE).status, 404);

    // Three files written one after another: one reload (two at most, if the directory went
    // quiet between them), and the new type is served.
    write_template_controller(config.path(), r#"{"type":"object"}"#);
    let reload = cupd.wait_for_reloads(1);
    assert_ok(&reload, &cupd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cupd.get(ONE).status != 200 {
        assert!(
            Instant::now() < deadline,
            "not served after a change:\n{}",
            cupd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let ok = reloads(&cupd, "ok");
    assert!((1..=2).contains(&ok), "{ok} reloads for one change");
    assert!(
        cupd.log()
            .contains("config directory changed: reload requested")
    );

    // A file that does not parse: refused, the set before keeps serving.
    std::fs::write(config.path().join("bad.json"), "{nope").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloads(&cupd, "refused") == 0 {
        assert!(
            Instant::now() < deadline,
            "no refused reload:\n{}",
            cupd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reload = cupd.wait_for_reloads(ok + 1);
    assert_eq!(reload["ok"], false, "{reload}");
    assert!(
        reload["error"].as_str().unwrap().contains("bad.json"),
        "{reload}"
    );
    assert_eq!(cupd.get(ONE).status, 200);

    // Mended: served as before; then nothing changes, and nothing is reloaded.
    remove(config.path(), &["bad.json"]);
    let reload = cupd.wait_for_reloads(ok + 2);
    assert_ok(&reload, &cupd);
    assert_eq!(cupd.get(ONE).status, 200);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        cupd.reload_status()["count"],
        ok + 2,
        "a reload reads, and reading triggers none"
    );
}

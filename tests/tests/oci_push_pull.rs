//! `cup controller push|pull|inspect|add|save|load|list` against a real registry (Debian's
//! docker-registry on 127.0.0.1) and a real store: round trips, idempotent pushes, offline
//! use, clear errors, and concurrent writers.

use std::process::Command;

use crate::oci_common::*;
use cup_e2e::bin;
use cup_e2e::flipt_package;
use cup_e2e::registry::TestRegistry;
use serde_json::Value;

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn push_then_pull_by_tag_and_by_digest_gives_identical_bytes() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("cup/flipt:v1");
    let pushed = w.push(&reference);
    let digest = pushed_digest(&pushed);
    assert_eq!(
        pushed.lines().last(),
        Some(format!("{}/cup/flipt@{digest}", registry.host()).as_str()),
        "the last stdout line is REPO@sha256:…"
    );

    let by_tag = w.path("by-tag.wasm");
    let out = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        &reference,
        "-O",
        &by_tag.to_string_lossy(),
    ])));
    assert_eq!(out["digest"], digest.as_str());
    assert_eq!(out["integrity"]["verdict"], "ok");
    assert_eq!(out["definitions"].as_array().map(Vec::len), Some(2));
    assert_eq!(std::fs::read(&by_tag).expect("pulled"), flipt_package());

    let by_digest = w.path("by-digest.wasm");
    let other_store = w.path("store2");
    let pinned = registry.reference(&format!("cup/flipt@{digest}"));
    ok(w.cup_in(
        &other_store,
        &[
            "controller",
            "pull",
            &pinned,
            "-O",
            &by_digest.to_string_lossy(),
        ],
    ));
    assert_eq!(std::fs::read(&by_digest).expect("pulled"), flipt_package());

    // Both stores are sound, and the tag is recorded in the first.
    ok(w.cup(&["controller", "list", "--verify"]));
    ok(w.cup_in(&other_store, &["controller", "list", "--verify"]));
    let list = json(&ok(w.cup(&["-o", "json", "controller", "list"])));
    assert_eq!(list["entries"][0]["reference"], reference.as_str());
    assert_eq!(list["entries"][0]["digest"], digest.as_str());
}

#[test]
fn pushing_twice_gives_the_same_digest_and_uploads_no_blob() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("cup/flipt:v1");
    let push = || {
        json(&ok(w.cup(&[
            "-o",
            "json",
            "controller",
            "push",
            &w.wasm().to_string_lossy(),
            &reference,
        ])))
    };
    let first = push();
    assert_eq!(first["pushed_blobs"], 2);
    let uploads = registry.completed_uploads();
    assert_eq!(uploads, 2, "one upload per blob (layer, config)");
    let second = push();
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["pushed_blobs"], 0);
    assert_eq!(second["skipped_blobs"], 2);
    assert_eq!(
        registry.completed_uploads(),
        uploads,
        "the registry saw no new upload"
    );
    assert_eq!(first["size"], flipt_package().len());
    // Another tag, same content: same digest, nothing uploaded.
    let third = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "push",
        &w.wasm().to_string_lossy(),
        &registry.reference("cup/flipt:v2"),
    ])));
    assert_eq!(third["digest"], first["digest"]);
    assert_eq!(third["pushed_blobs"], 0);
}

#[test]
fn push_refuses_a_module_without_intact_sections_unless_forced() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let plain = w.path("plain.wasm");
    std::fs::write(&plain, cup_e2e::wat_module()).expect("write");
    let reference = registry.reference("cup/plain:v1");
    let err = fails(w.cup(&["controller", "push", &plain.to_string_lossy(), &reference]));
    says(&err, &["not an intact cup controller package", "--force"]);
    assert_eq!(registry.completed_uploads(), 0, "nothing was uploaded");
    ok(w.cup(&[
        "controller",
        "push",
        "--force",
        &plain.to_string_lossy(),
        &reference,
    ]));
}

#[test]
fn remote_inspect_reads_the_manifest_only() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("cup/flipt:v1");
    w.push(&reference);
    let report = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        &reference,
    ])));
    assert_eq!(report["source"], "registry");
    assert_eq!(
        report["manifest"]["annotations"]["io.flipt.cup.definitions"],
        FLIPT_KEYS
    );
    assert_eq!(
        report["manifest"]["layers"][0]["mediaType"],
        "application/wasm"
    );
    assert_eq!(report["config"]["architecture"], "wasm");
    assert_eq!(report["config"]["os"], "wasip1");
    let layer = report["manifest"]["layers"][0]["digest"]
        .as_str()
        .expect("layer digest")
        .to_owned();
    let downloads = registry
        .log()
        .lines()
        .filter(|l| l.contains("http.request.method=GET") && l.contains(&layer))
        .count();
    assert_eq!(downloads, 0, "inspect must not download the wasm");
    assert!(
        !w.store().join("index.json").exists(),
        "a remote inspect does not create a store"
    );
    let table = ok(w.cup(&["controller", "inspect", &reference]));
    says(
        &table,
        &[
            "SOURCE:        registry",
            "flipt.io/v1alpha1/flags, flipt.io/v1alpha1/segments",
        ],
    );
}

#[test]
fn digest_in_the_store_works_offline_and_a_stopped_registry_is_named() {
    let mut registry = TestRegistry::start();
    let w = Work::new();
    let pushed = w.push(&registry.reference("cup/flipt:v1"));
    let pinned = pushed.lines().last().expect("pinned").to_owned();
    ok(w.cup(&["controller", "pull", &pinned]));
    ok(w.cup(&["controller", "pull", &registry.reference("cup/flipt:v1")]));
    registry.stop();

    let again = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        &pinned,
        "-O",
        &w.path("x.wasm").to_string_lossy(),
    ])));
    assert_eq!(again["from_store"], true);
    assert_eq!(
        std::fs::read(w.path("x.wasm")).expect("written"),
        flipt_package()
    );
    let inspect = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        &pinned,
    ])));
    assert_eq!(inspect["source"], "store");
    assert_eq!(inspect["integrity"]["verdict"], "ok");

    // A tag needs the registry: the error names it and the reference; nothing changes.
    let before = snapshot(&w.store());
    let tag = registry.reference("cup/flipt:v1");
    let err = fails(w.cup(&["controller", "pull", &registry.reference("cup/flipt:v2")]));
    says(
        &err,
        &[
            &format!("registry {} is unreachable", registry.host()),
            "cup/flipt:v2",
        ],
    );
    assert_eq!(snapshot(&w.store()), before);
    // The tag pulled before resolves locally for inspect.
    let local = json(&ok(w.cup(&["-o", "json", "controller", "inspect", &tag])));
    assert_eq!(local["source"], "store");
}

#[test]
fn unknown_tag_is_not_found_and_stores_nothing() {
    let registry = TestRegistry::start();
    let w = Work::new();
    w.push(&registry.reference("cup/flipt:v1"));
    for missing in ["cup/flipt:nope", "cup/other:v1"] {
        let err = fails(w.cup(&["controller", "pull", &registry.reference(missing)]));
        says(&err, &["not found", &registry.host(), missing]);
    }
    assert_empty_store(&w.store());
}

#[test]
fn concurrent_pulls_into_one_store_all_succeed_and_keep_every_tag() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let tags: Vec<String> = (0..4)
        .map(|i| registry.reference(&format!("cup/flipt:t{i}")))
        .collect();
    for tag in &tags {
        ok(w.cup(&["controller", "push", &w.wasm().to_string_lossy(), tag]));
    }
    // Twice the same reference and once each tag, all at once, into one fresh store.
    let refs: Vec<&String> = tags.iter().chain([&tags[0], &tags[0]]).collect();
    let children: Vec<_> = refs
        .iter()
        .map(|r| {
            Command::new(bin("cup"))
                .arg("--store")
                .arg(w.store())
                .args(["controller", "pull", r.as_str()])
                .env("HOME", w.dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn cup")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a concurrent pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok(w.cup(&["controller", "list", "--verify"]));
    let list = json(&ok(w.cup(&["-o", "json", "controller", "list"])));
    let mut names: Vec<&str> = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["reference"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        tags.iter().map(String::as_str).collect::<Vec<_>>(),
        "every tag survived"
    );
    assert_eq!(
        cup_e2e::dir_listing(&w.store().join(".tmp")),
        Vec::<String>::new(),
        "no temp file left"
    );
}

#[test]
fn corrupted_store_blob_is_detected_on_read_and_repaired_by_pull() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("cup/flipt:v1");
    w.push(&reference);
    let pulled = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        &reference,
    ])));
    let wasm_digest = pulled["wasm_digest"].as_str().expect("wasm digest");
    let blob = w
        .store()
        .join("blobs/sha256")
        .join(&wasm_digest["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).expect("blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, bytes).expect("corrupt");

    let err = fails(w.cup(&["controller", "inspect", &reference]));
    says(&err, &["corrupted", wasm_digest, "digest mismatch"]);
    let problems = w.cup(&["controller", "list", "--verify"]);
    assert!(
        !problems.status.success(),
        "list --verify reports the corrupt blob"
    );

    // Pulling again replaces the corrupt copy.
    ok(w.cup(&["controller", "pull", &reference]));
    ok(w.cup(&["controller", "list", "--verify"]));
    let inspect = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        &reference,
    ])));
    assert_eq!(inspect["integrity"]["verdict"], "ok");
}

#[test]
fn add_save_and_load_work_without_a_registry() {
    let w = Work::new();
    let digest = ok(w.cup(&[
        "controller",
        "add",
        &w.wasm().to_string_lossy(),
        "--tag",
        "flipt:dev",
    ]));
    let digest = digest.trim();
    let inspect = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        "flipt:dev",
    ])));
    assert_eq!(inspect["source"], "store");
    assert_eq!(inspect["digest"], digest);
    assert_eq!(
        inspect["manifest"]["annotations"]["io.flipt.cup.definitions"],
        FLIPT_KEYS
    );

    // Same module, same digest; SOURCE_DATE_EPOCH adds a creation time (and is stable too).
    assert_eq!(
        ok(w.cup(&["controller", "add", &w.wasm().to_string_lossy()])).trim(),
        digest
    );
    let dated = |epoch: &str| {
        let out = Command::new(bin("cup"))
            .args([
                "--store",
                &w.store().to_string_lossy(),
                "controller",
                "add",
                &w.wasm().to_string_lossy(),
            ])
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .expect("cup");
        ok(out).trim().to_owned()
    };
    let d1 = dated("1700000000");
    assert_ne!(d1, digest);
    assert_eq!(dated("1700000000"), d1);
    let m = json(&ok(w.cup(&["-o", "json", "controller", "inspect", &d1])));
    assert_eq!(
        m["manifest"]["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );

    let tarball = w.path("controllers.tar");
    ok(w.cup(&[
        "controller",
        "save",
        "-O",
        &tarball.to_string_lossy(),
        "flipt:dev",
    ]));
    let other = w.path("airgapped");
    ok(w.cup_in(&other, &["controller", "load", &tarball.to_string_lossy()]));
    ok(w.cup_in(&other, &["controller", "list", "--verify"]));
    let there = json(&ok(w.cup_in(
        &other,
        &["-o", "json", "controller", "inspect", "flipt:dev"],
    )));
    assert_eq!(there["digest"], digest);
    assert_eq!(there["integrity"]["verdict"], "ok");

    // A tampered tarball changes nothing.
    let mut bytes = std::fs::read(&tarball).expect("tar");
    let at = bytes
        .windows(4)
        .rposition(|w| w == b"\0asm")
        .expect("wasm in tar");
    bytes[at + 100] ^= 0xff;
    let bad = w.path("bad.tar");
    std::fs::write(&bad, bytes).expect("write");
    let fresh = w.path("fresh");
    let err = fails(w.cup_in(&fresh, &["controller", "load", &bad.to_string_lossy()]));
    says(&err, &["digest mismatch"]);
    assert_empty_store(&fresh);
}

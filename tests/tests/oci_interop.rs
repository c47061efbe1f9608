//! Interop with an independent client (Python `oras`, PyPI) and with the layouts other
//! tools produce: older wasm media types and the docker-buildable tar+gzip compat image.

use crate::oci_common::*;
use cup_e2e::flipt_package;
use cup_e2e::oras;
use cup_e2e::registry::TestRegistry;
use serde_json::Value;

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Pulls with `-O`, checks the bytes are the package's and its sections intact; returns
/// the pull report.
fn pull_intact(w: &Work, reference: &str) -> Value {
    let out = w.path("pulled.wasm");
    let report = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        reference,
        "-O",
        &out.to_string_lossy(),
    ])));
    assert_eq!(
        std::fs::read(&out).expect("pulled"),
        flipt_package(),
        "{reference}: bytes differ"
    );
    assert_eq!(
        report["integrity"]["verdict"], "ok",
        "{reference}: {report}"
    );
    assert_eq!(report["definitions"].as_array().map(Vec::len), Some(2));
    ok(w.cup(&["controller", "list", "--verify"]));
    report
}

#[test]
fn what_oras_pushes_cup_pulls_inspects_and_verifies() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("oras/ctl:v1");
    // No flags beyond file:mediaType: oras picks its own config type.
    oras::push(
        &registry.host(),
        &reference,
        &["ctl.wasm:application/wasm"],
        w.dir.path(),
    );

    let remote = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        &reference,
    ])));
    assert_eq!(remote["source"], "registry");
    assert_eq!(
        remote["manifest"]["config"]["mediaType"],
        "application/vnd.unknown.config.v1+json"
    );
    assert_eq!(
        remote["problems"],
        serde_json::json!([]),
        "accepted: {remote}"
    );

    let report = pull_intact(&w, &reference);
    assert_eq!(report["layout"]["kind"], "wasm-layer");
    let local = json(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "inspect",
        &reference,
    ])));
    assert_eq!(local["source"], "store");
    assert_eq!(local["integrity"]["verdict"], "ok");
    assert_eq!(local["definitions"].as_array().map(Vec::len), Some(2));
}

#[test]
fn what_cup_pushes_oras_pulls_byte_identical() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let reference = registry.reference("cup/flipt:v1");
    w.push(&reference);
    let outdir = w.path("oras-out");
    std::fs::create_dir(&outdir).expect("outdir");
    let files = oras::pull(&registry.host(), &reference, &outdir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = outdir.join("controller.wasm");
    assert!(
        file.exists(),
        "oras names the file after the title annotation: {files:?}"
    );
    assert_eq!(std::fs::read(file).expect("oras file"), flipt_package());
}

#[test]
fn older_wasm_layer_media_types_are_accepted() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let repo = "legacy/ctl";
    let layer = registry.put_blob(repo, flipt_package());
    let config = empty_config(&registry, repo);
    let size = flipt_package().len() as u64;
    for (tag, media) in [
        ("content", "application/vnd.wasm.content.layer.v1+wasm"),
        (
            "module",
            "application/vnd.module.wasm.content.layer.v1+wasm",
        ),
    ] {
        let manifest = raw_manifest(
            OCI_MANIFEST,
            (config.0, &config.1, config.2),
            &[(media, &layer, size)],
        );
        assert_eq!(
            registry
                .put_manifest(repo, tag, &manifest, OCI_MANIFEST)
                .status,
            201
        );
        let report = pull_intact(&w, &registry.reference(&format!("{repo}:{tag}")));
        assert_eq!(report["layout"]["mediaType"], media);
    }
}

#[test]
fn docker_buildable_compat_images_are_accepted() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let repo = "compat/ctl";
    let docker = (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    let oci = (
        OCI_MANIFEST,
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let cases = [
        ("oci", oci, "controller.wasm"),
        ("docker", docker, "plugin.wasm"),
    ];
    for (tag, (manifest_type, config_type, layer_type), name) in cases {
        // What `FROM scratch` + `COPY <name> /` builds: the module next to other files.
        let (layer, diff_id) = tar_gz(&[("README", b"a cup controller"), (name, flipt_package())]);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm", "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }))
        .expect("json");
        let config_digest = registry.put_blob(repo, &config);
        let layer_digest = registry.put_blob(repo, &layer);
        let manifest = raw_manifest(
            manifest_type,
            (config_type, &config_digest, config.len() as u64),
            &[(layer_type, &layer_digest, layer.len() as u64)],
        );
        assert_eq!(
            registry
                .put_manifest(repo, tag, &manifest, manifest_type)
                .status,
            201
        );
        let report = pull_intact(&w, &registry.reference(&format!("{repo}:{tag}")));
        assert_eq!(report["layout"]["kind"], "compat-image");
        // The unpacked module is a blob of its own, found by inspect without the registry.
        let wasm = cup_sections::sha256_digest(flipt_package());
        assert_eq!(report["wasm_digest"], wasm.as_str());
        assert!(
            w.store()
                .join("blobs/sha256")
                .join(&wasm["sha256:".len()..])
                .exists()
        );
        let local = json(&ok(w.cup(&[
            "-o",
            "json",
            "controller",
            "inspect",
            &registry.reference(&format!("{repo}:{tag}")),
        ])));
        assert_eq!(local["integrity"]["verdict"], "ok");
    }
}

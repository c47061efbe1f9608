//! Pulls that must fail: tampered blobs, lying descriptors, wrong media types, wrong
//! shapes. Each failure names what went wrong and leaves the store without a new blob or
//! tag.

use crate::oci_common::*;
use cup_e2e::flipt_package;
use cup_e2e::registry::{Fault, FaultyProxy, TestRegistry};

/// Pulls `name` from the registry into a fresh store, expects failure, checks the store
/// stayed empty and returns stderr.
fn pull_fails(registry: &TestRegistry, w: &Work, name: &str) -> String {
    let err = fails(w.cup(&["controller", "pull", &registry.reference(name)]));
    says(&err, &[&registry.host(), name]);
    assert_empty_store(&w.store());
    err
}

#[test]
fn tampered_blob_in_the_registry_is_a_digest_mismatch() {
    let registry = TestRegistry::start();
    let w = Work::new();
    w.push(&registry.reference("cup/flipt:v1"));
    let layer = cup_sections::sha256_digest(flipt_package());
    let file = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&file).expect("registry blob");
    let at = bytes.len() / 3;
    bytes[at] ^= 0x20;
    std::fs::write(&file, bytes).expect("tamper");
    let err = pull_fails(&registry, &w, "cup/flipt:v1");
    says(&err, &["digest mismatch", &format!("expected {layer}")]);
}

#[test]
fn layer_size_that_lies_is_a_size_mismatch() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let repo = "cup/liar";
    let wasm = flipt_package();
    let layer = registry.put_blob(repo, wasm);
    let config = empty_config(&registry, repo);
    let real = wasm.len() as u64;
    for (tag, size) in [("short", real - 100), ("long", real + 100)] {
        let manifest = raw_manifest(
            OCI_MANIFEST,
            (config.0, &config.1, config.2),
            &[("application/wasm", &layer, size)],
        );
        let put = registry.put_manifest(repo, tag, &manifest, OCI_MANIFEST);
        assert_eq!(
            put.status, 201,
            "the registry stores manifests without checking sizes: {put:?}"
        );
        let err = pull_fails(&registry, &w, &format!("{repo}:{tag}"));
        says(&err, &["size mismatch", &format!("says {size} bytes")]);
    }
}

/// `(mediaType, digest, size)` of a layer.
type Layer<'a> = (&'a str, &'a str, u64);

#[test]
fn non_wasm_layers_are_refused_listing_the_media_types() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let repo = "cup/odd";
    let config = empty_config(&registry, repo);
    let text = registry.put_blob(repo, b"hello, not wasm");
    let wasm = registry.put_blob(repo, flipt_package());
    let size = flipt_package().len() as u64;
    let cases: [(&str, Vec<Layer>, &[&str]); 3] = [
        (
            "text",
            vec![("text/plain", &text, 15)],
            &[
                "layer text/plain",
                "config application/vnd.oci.empty.v1+json",
                "not a wasm module",
            ],
        ),
        (
            "two",
            vec![
                ("application/wasm", &wasm, size),
                ("application/wasm", &wasm, size),
            ],
            &["2 layers", "layer application/wasm"],
        ),
        // The right media type on content without the wasm magic.
        (
            "fake",
            vec![("application/wasm", &text, 15)],
            &["wasm magic"],
        ),
    ];
    for (tag, layers, expected) in cases {
        let manifest = raw_manifest(OCI_MANIFEST, (config.0, &config.1, config.2), &layers);
        assert_eq!(
            registry
                .put_manifest(repo, tag, &manifest, OCI_MANIFEST)
                .status,
            201
        );
        let err = pull_fails(&registry, &w, &format!("{repo}:{tag}"));
        says(&err, &["not a cup controller artifact"]);
        says(&err, expected);
    }
}

#[test]
fn an_image_index_is_refused() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let repo = "cup/index";
    w.push(&registry.reference(&format!("{repo}:v1")));
    let pushed = w.push(&registry.reference(&format!("{repo}:v1")));
    let digest = pushed_digest(&pushed);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 1,
                       "platform": {"architecture": "wasm", "os": "wasip1"}}],
    });
    let media = "application/vnd.oci.image.index.v1+json";
    let put = registry.put_manifest(
        repo,
        "multi",
        &serde_json::to_vec(&index).expect("json"),
        media,
    );
    assert_eq!(put.status, 201, "{put:?}");
    let err = pull_fails(&registry, &w, &format!("{repo}:multi"));
    says(&err, &["image index", media]);
}

#[test]
fn a_transfer_cut_mid_blob_fails_and_stores_nothing() {
    let registry = TestRegistry::start();
    let w = Work::new();
    w.push(&registry.reference("cup/flipt:v1"));
    // Manifest and config answers are small; the connection breaks inside the wasm layer.
    let proxy = FaultyProxy::start(&registry, Fault::Cut { after: 200_000 });
    let err = fails(w.cup(&[
        "controller",
        "pull",
        &format!("{}/cup/flipt:v1", proxy.host()),
    ]));
    says(&err, &[&proxy.host(), "cup/flipt:v1"]);
    assert_empty_store(&w.store());
}

#[test]
fn a_pull_killed_midway_leaves_a_consistent_store_and_the_next_pull_succeeds() {
    let registry = TestRegistry::start();
    let w = Work::new();
    w.push(&registry.reference("cup/flipt:v1"));
    let proxy = FaultyProxy::start(&registry, Fault::Stall { after: 200_000 });
    let mut child = std::process::Command::new(cup_e2e::bin("cup"))
        .arg("--store")
        .arg(w.store())
        .args([
            "controller",
            "pull",
            &format!("{}/cup/flipt:v1", proxy.host()),
        ])
        .env("HOME", w.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn cup");
    // Wait until the layer is being written (a temp file exists), then kill the pull.
    let tmp = w.store().join(".tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_dir(&tmp).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    child.kill().expect("kill");
    child.wait().expect("wait");

    assert_empty_store(&w.store());
    ok(w.cup(&["controller", "list", "--verify"]));
    let out = w.path("after.wasm");
    ok(w.cup(&[
        "controller",
        "pull",
        &registry.reference("cup/flipt:v1"),
        "-O",
        &out.to_string_lossy(),
    ]));
    assert_eq!(std::fs::read(out).expect("pulled"), flipt_package());
    ok(w.cup(&["controller", "list", "--verify"]));
}

/// oci-client builds a default HTTPS client that panics when the machine has no CA
/// certificates; cup must say so in one line, not crash with a backtrace. A push or a pull
/// builds only its own client, which for a loopback registry (plain HTTP) trusts no system
/// root: it works without certificates, and says what is missing for an HTTPS registry.
#[test]
fn no_ca_certificates_is_a_clear_error_not_a_panic() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let env: &[(&str, &std::ffi::OsStr)] = &[
        ("SSL_CERT_FILE", "/dev/null".as_ref()),
        ("SSL_CERT_DIR", "/nonexistent".as_ref()),
        ("RUST_BACKTRACE", "1".as_ref()),
    ];
    let wasm = w.wasm().to_string_lossy().into_owned();
    let reference = registry.reference("cup/flipt:v1");
    for args in [
        // Never contacted: the client cannot be built.
        vec![
            "controller",
            "push",
            wasm.as_str(),
            "registry.invalid/cup/flipt:v1",
        ],
        vec!["controller", "pull", "registry.invalid/cup/flipt:v1"],
    ] {
        let err = fails(w.cup_with(&args, env, ""));
        says(&err, &["cannot set up the HTTPS client", "ca-certificates"]);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_empty_store(&w.store());
    // A loopback registry is spoken to in plain HTTP: push and pull need no certificates.
    ok(w.cup_with(&["controller", "push", &wasm, &reference], env, ""));
    ok(w.cup_with(&["controller", "pull", &reference], env, ""));
    assert_registry_serves_the_package(&registry, "cup/flipt:v1");
}

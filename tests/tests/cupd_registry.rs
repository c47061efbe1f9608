//! The example controller pushed to a real OCI registry (Debian's docker-registry on
//! loopback) and loaded by digest through the config directory: cupd pulls it into its
//! store, verifies it and serves its kinds. Restarted with the registry stopped, it serves
//! from the store and the compiled-code cache is hit. A corrupted store blob is refused.

use std::path::Path;

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::flipt_package;
use cup_e2e::registry::TestRegistry;
use cup_e2e::repo_root;

const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";

fn controller(config: &Path, image: &str) {
    std::fs::write(
        config.join("flipt.json"),
        format!(r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"flipt"}},"spec":{{"type":"wasm","spec":{{"image":"{image}"}}}}}}"#),
    )
    .unwrap();
}

#[test]
fn pulled_by_digest_then_served_offline_from_the_store() {
    let mut registry = TestRegistry::start();
    let artifact =
        cup_oci::Artifact::build(flipt_package(), &cup_oci::ArtifactOptions::default()).unwrap();
    registry.put_blob("cup/flipt", flipt_package());
    registry.put_blob("cup/flipt", &artifact.config);
    let pushed = registry.put_manifest(
        "cup/flipt",
        "v1",
        &artifact.manifest,
        cup_oci::media::OCI_MANIFEST,
    );
    assert_eq!(pushed.status, 201, "{pushed:?}");
    let digest = artifact.manifest_digest.clone();

    let config = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        cache.path().join("code").display().to_string(),
    ];

    // A tag is resolved once (and allowed without --strict-digests).
    controller(config.path(), &registry.reference("cup/flipt:v1"));
    let cupd = Cupd::start(&cfg);
    let status = cupd.get("/status").json();
    assert_eq!(status["controllers"][0]["state"], "loaded", "{status}");
    assert_eq!(status["controllers"][0]["manifest_digest"], digest.as_str());
    drop(cupd);

    controller(
        config.path(),
        &registry.reference(&format!("cup/flipt@{digest}")),
    );
    let cupd = Cupd::start(&cfg);
    assert_eq!(cupd.get(FLAG).status, 200);
    drop(cupd);

    registry.stop();
    let cupd = Cupd::start(&cfg);
    let status = cupd.get("/status").json();
    assert_eq!(
        status["controllers"][0]["state"], "loaded",
        "no registry needed: {status}"
    );
    assert_eq!(status["controllers"][0]["cache"], "hit", "{status}");
    let got = cupd.get(FLAG);
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["metadata"]["name"], "new-login");
    drop(cupd);

    // Flip one byte of the stored wasm: the store re-verifies on read and the registry is
    // gone, so the controller is refused (and the server still starts).
    let layer = cup_oci::Store::open(store.path())
        .unwrap()
        .blob_path(&artifact.layer.digest)
        .unwrap();
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let cupd = Cupd::start(&cfg);
    let flipt = &cupd.get("/status").json()["controllers"][0];
    assert_eq!(flipt["state"], "failed", "{flipt}");
    let error = flipt["error"].as_str().unwrap();
    assert!(
        error.contains("corrupted") && error.contains("pulling it again failed"),
        "{error}"
    );
    assert_eq!(
        cupd.get(FLAG).status,
        404,
        "an unbound failed image has no routes"
    );
}

//! What runs for a docker-buildable compat (tar+gzip) image is always the module its
//! verified layer holds. An OCI layout whose `index.json` entry claims another module for it
//! (`io.flipt.cup.wasm.digest` naming a hostile module's blob, shipped alongside) is refused
//! by `cup controller load`; a store that already holds such an entry (an older cup loaded
//! it, or `index.json` was edited) is reported by `cup controller list --verify`, and cupd
//! pinned to the manifest digest with `--strict-digests` serves the layer's module, never
//! the one the entry names.

use std::path::Path;

use crate::oci_common::*;
use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::flipt_package;
use cup_e2e::{flipt_definitions, probe_wasm, repo_root};

const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";
const WASM_DIGEST: &str = "io.flipt.cup.wasm.digest";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn digest(bytes: &[u8]) -> String {
    cup_sections::sha256_digest(bytes)
}

/// The probe guest dressed as the example: the example's definitions embedded (an intact
/// package serving flags and segments) around other code.
fn hostile_package() -> Vec<u8> {
    let module = std::fs::read(probe_wasm()).expect("probe.wasm");
    let defs: Vec<_> = flipt_definitions()
        .iter()
        .map(|p| cup_sections::read_definition_file(p).expect("definition"))
        .collect();
    cup_sections::embed(&module, &defs).expect("embed").0
}

/// The crafted layout: a compat manifest whose layer holds the example (harmless), an
/// index entry claiming the hostile module as its unpacked wasm, and the hostile module as
/// a blob. Returns the files (path, content) and the manifest digest.
fn crafted_layout() -> (Vec<(String, Vec<u8>)>, String) {
    let (layer, _) = tar_gz(&[("controller.wasm", flipt_package())]);
    let config = b"{}".to_vec();
    let manifest = raw_manifest(
        OCI_MANIFEST,
        (EMPTY_CONFIG, &digest(&config), config.len() as u64),
        &[(TAR_GZIP, &digest(&layer), layer.len() as u64)],
    );
    let hostile = hostile_package();
    let manifest_digest = digest(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                WASM_DIGEST: digest(&hostile),
                "org.opencontainers.image.ref.name": "local/flipt:compat",
            },
        }],
    });
    let mut files = vec![
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            "index.json".to_owned(),
            serde_json::to_vec(&index).expect("json"),
        ),
    ];
    for blob in [manifest, config, layer, hostile] {
        let name = format!("blobs/sha256/{}", &digest(&blob)["sha256:".len()..]);
        files.push((name, blob));
    }
    (files, manifest_digest)
}

fn write_tarball(files: &[(String, Vec<u8>)], out: &Path) {
    let mut tar = tar::Builder::new(std::fs::File::create(out).expect("tarball"));
    for (name, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_slice())
            .expect("append");
    }
    tar.finish().expect("tar");
}

fn write_layout(files: &[(String, Vec<u8>)], dir: &Path) {
    for (name, data) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(path, data).expect("write");
    }
}

#[test]
fn load_refuses_an_archive_whose_compat_entry_claims_another_wasm() {
    let w = Work::new();
    let (files, manifest_digest) = crafted_layout();
    // `load` unpacks the layer itself and refuses the archive's claim; nothing is stored.
    let tarball = w.path("crafted.tar");
    write_tarball(&files, &tarball);
    let err = fails(w.cup(&["controller", "load", &tarball.to_string_lossy()]));
    says(
        &err,
        &[WASM_DIGEST, &manifest_digest, &digest(flipt_package())],
    );
    assert_empty_store(&w.store());
}

#[test]
fn a_stored_compat_entry_claiming_another_wasm_is_reported_and_never_run() {
    let w = Work::new();
    let (files, manifest_digest) = crafted_layout();
    // A store that holds the entry already (an older cup loaded the archive, or index.json
    // was edited): `list --verify` names it.
    write_layout(&files, &w.store());
    let out = w.cup(&["controller", "list", "--verify"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "list --verify must fail: {out:?}"
    );
    let problems = String::from_utf8_lossy(&out.stderr).into_owned();
    says(
        &problems,
        &[&manifest_digest, WASM_DIGEST, &digest(flipt_package())],
    );

    // cupd pinned to the manifest digest, strict: the layer's module (the example) is
    // what serves, not the module the entry names. No registry is reachable: the store is
    // the only source.
    let config = tempfile::tempdir().expect("tmp");
    let source = tempfile::tempdir().expect("tmp");
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let image = format!("127.0.0.1:9/cup/flipt@{manifest_digest}");
    std::fs::write(
        config.path().join("flipt.json"),
        format!(r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"flipt"}},"spec":{{"type":"wasm","spec":{{"image":"{image}"}}}}}}"#),
    )
    .expect("controller");
    let store = w.store();
    let mut cfg = CupdConfig::new(config.path(), source.path(), &store);
    cfg.args = vec!["--strict-digests".into()];
    let cupd = Cupd::start(&cfg);
    let status = cupd.get("/status").json();
    assert_eq!(status["controllers"][0]["state"], "loaded", "{status}");
    let got = cupd.get(FLAG);
    assert_eq!(
        got.status,
        200,
        "the module that answered is not the example (the hostile one ran?): {}",
        got.text()
    );
    assert_eq!(got.json()["metadata"]["name"], "new-login");
    drop(cupd);

    // Loading the entry again from the store recorded the digest of what the layer holds:
    // the store verifies now.
    ok(w.cup(&["controller", "list", "--verify"]));
}

//! Signatures of controllers where cosign keeps them: the manifest tagged `sha256-<hex>.sig`
//! in the controller's repository, one simple-signing layer per signature. Against a real
//! registry: attached, read back byte for byte, seen by an independent client (Python
//! `oras`), tampered and foreign layers reported, copied by pull and carried by save/load.
//! The payloads and signatures are placeholders: no cryptography is checked here.

use std::collections::BTreeMap;

use crate::oci_common::*;
use cup_e2e::oras;
use cup_e2e::registry::TestRegistry;
use cup_oci::{
    Credentials, Error, Registry, RegistryOptions, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
    Store, StoredSignature, signature_tag,
};
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn registry_client() -> Registry {
    Registry::new(RegistryOptions {
        credentials: Credentials::Anonymous,
        ..Default::default()
    })
}

/// A placeholder signature: any JSON payload naming the digest, any base64-looking string.
fn placeholder(manifest_digest: &str, n: u32) -> StoredSignature {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": "placeholder"},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": "cosign container image signature"
        },
        "optional": {"n": n}
    });
    let mut annotations = BTreeMap::new();
    if n.is_multiple_of(2) {
        annotations.insert(
            "dev.sigstore.cosign/certificate".to_owned(),
            format!("-----BEGIN CERTIFICATE-----\nplaceholder {n}\n"),
        );
    }
    StoredSignature::new(
        serde_json::to_vec(&payload).expect("json"),
        format!("MEUCIQD{n:04}placeholdersignature=="),
        annotations,
    )
}

/// Pushes the example controller to `name` with `cup`; returns its manifest digest.
fn push_controller(w: &Work, registry: &TestRegistry, name: &str) -> String {
    let out = w.push(&registry.reference(name));
    let last = out.lines().last().expect("push output");
    last.rsplit_once('@')
        .expect("pinned reference")
        .1
        .to_owned()
}

/// The registry's `.sig` manifest of `digest` in `repo`, fetched by hand.
fn raw_signature_manifest(registry: &TestRegistry, repo: &str, digest: &str) -> Value {
    let tag = signature_tag(digest).expect("tag");
    let response = registry.request(
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", OCI_MANIFEST)],
        &[],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

const ORAS_MANIFEST: &str = r#"
import json, sys, oras.client
host, target = sys.argv[1], sys.argv[2]
print(json.dumps(oras.client.OrasClient(hostname=host, insecure=True).get_manifest(target)))
"#;

#[test]
fn attached_signatures_are_cosigns_layout_read_back_exactly_and_seen_by_oras() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let digest = push_controller(&w, &registry, "cup/flipt:v1");
    let reference = registry.reference("cup/flipt:v1");
    let client = registry_client();
    let rt = runtime();
    let (one, two) = (placeholder(&digest, 1), placeholder(&digest, 2));

    // Nothing attached yet: no tag, no signatures (not an error).
    let none = rt.block_on(client.signatures(&reference, &digest));
    assert_eq!(none.expect("no .sig tag"), []);
    // Nor in a repository that does not exist.
    let missing = rt.block_on(client.signatures(&registry.reference("cup/none:v1"), &digest));
    assert_eq!(missing.expect("no repository"), []);

    assert!(
        rt.block_on(client.attach_signature(&reference, &digest, one.clone()))
            .expect("attach one")
    );
    assert!(
        rt.block_on(client.attach_signature(&reference, &digest, two.clone()))
            .expect("attach two")
    );
    // The same signature again (even by the pinned reference): not duplicated.
    let pinned = format!("{}@{digest}", registry.reference("cup/flipt"));
    assert!(
        !rt.block_on(client.attach_signature(&pinned, &digest, one.clone()))
            .expect("attach one again")
    );

    let manifest = raw_signature_manifest(&registry, "cup/flipt", &digest);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "{manifest}");
    for (layer, sig) in layers.iter().zip([&one, &two]) {
        assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
        assert_eq!(layer["digest"], sig.layer_digest.as_str());
        assert_eq!(layer["size"], sig.payload.len());
        let mut expected = sig.annotations.clone();
        expected.insert(SIGNATURE_ANNOTATION.to_owned(), sig.signature.clone());
        assert_eq!(layer["annotations"], json!(expected));
    }
    // The config is a valid image config naming each layer as a diff ID.
    let config = registry.request(
        "GET",
        &format!(
            "/v2/cup/flipt/blobs/{}",
            manifest["config"]["digest"]
                .as_str()
                .expect("config digest")
        ),
        &[],
        &[],
    );
    let config = config.json();
    assert_eq!(
        config["rootfs"],
        json!({"type": "layers", "diff_ids": [one.layer_digest, two.layer_digest]})
    );

    let back = rt
        .block_on(client.signatures(&reference, &digest))
        .expect("read back");
    assert_eq!(back, [one.clone(), two.clone()]);

    // An independent client sees the same manifest and the payloads as the layers' files.
    let sig_reference = format!(
        "{}:{}",
        registry.reference("cup/flipt"),
        signature_tag(&digest).expect("tag")
    );
    let out = oras::run(
        ORAS_MANIFEST,
        &[&registry.host(), &sig_reference],
        w.dir.path(),
    );
    assert!(
        out.status.success(),
        "oras get_manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("oras printed JSON");
    assert_eq!(seen["layers"], manifest["layers"]);
    let outdir = w.path("oras-pulled");
    std::fs::create_dir_all(&outdir).expect("outdir");
    let files = oras::pull(&registry.host(), &sig_reference, &outdir);
    assert_eq!(files.len(), 2, "{files:?}");
    for sig in [&one, &two] {
        // Layers without a title are written under their digest.
        let file = files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(&sig.layer_digest))
            .unwrap_or_else(|| panic!("no file for {}: {files:?}", sig.layer_digest));
        assert_eq!(std::fs::read(file).expect("payload file"), sig.payload);
    }
}

#[test]
fn tampered_and_foreign_signature_layers_are_reported() {
    let registry = TestRegistry::start();
    let w = Work::new();
    let digest = push_controller(&w, &registry, "cup/flipt:v1");
    let reference = registry.reference("cup/flipt:v1");
    let client = registry_client();
    let rt = runtime();
    let tag = signature_tag(&digest).expect("tag");

    // A hand-written signature manifest whose payload blob is then changed in the
    // registry's storage (same length): its layer no longer matches its digest.
    let sig = placeholder(&digest, 1);
    let payload_digest = registry.put_blob("cup/flipt", &sig.payload);
    let config =
        br#"{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config_digest = registry.put_blob("cup/flipt", config);
    let layer = json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "digest": payload_digest,
        "size": sig.payload.len(),
        "annotations": {SIGNATURE_ANNOTATION: sig.signature},
    });
    let manifest = |layers: Vec<Value>| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers,
        }))
        .expect("json")
    };
    let put = registry.put_manifest(
        "cup/flipt",
        &tag,
        &manifest(vec![layer.clone()]),
        OCI_MANIFEST,
    );
    assert_eq!(put.status, 201, "{}", put.text());
    assert_eq!(
        rt.block_on(client.signatures(&reference, &digest))
            .expect("intact"),
        std::slice::from_ref(&sig)
    );
    let blob = registry.blob_file(&payload_digest);
    let mut bytes = std::fs::read(&blob).expect("blob");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&blob, &bytes).expect("tamper");
    let err = rt
        .block_on(client.signatures(&reference, &digest))
        .expect_err("tampered");
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    says(
        &err.to_string(),
        &["signature layer", &payload_digest, &tag],
    );
    // Pulling the controller still works; the signatures are not copied, and it says why.
    let store = Store::open(w.store()).expect("store");
    let report = rt
        .block_on(client.pull(&reference, &store, std::sync::Arc::new(cup_oci::NoProgress)))
        .expect("pull");
    assert_eq!(report.signatures, 0);
    let problem = report.signature_problem.expect("a problem");
    says(&problem, &["digest mismatch", &payload_digest]);
    assert_eq!(store.signatures(&digest).expect("store"), []);
    let out = w.cup_in(&w.path("cli-store"), &["controller", "pull", &reference]);
    says(
        &String::from_utf8_lossy(&out.stderr),
        &[
            "warning: the controller's signatures were not copied",
            &payload_digest,
        ],
    );
    ok(out);
    std::fs::write(&blob, {
        bytes[at] ^= 0x20;
        &bytes
    })
    .expect("restore");

    // A signature manifest with a layer that is not a signature: reported, not skipped,
    // and not rewritten without it by an attach.
    let junk = b"not a signature";
    let junk_digest = registry.put_blob("cup/flipt", junk);
    let foreign = json!({
        "mediaType": "text/plain",
        "digest": junk_digest,
        "size": junk.len(),
    });
    let put = registry.put_manifest(
        "cup/flipt",
        &tag,
        &manifest(vec![layer.clone(), foreign]),
        OCI_MANIFEST,
    );
    assert_eq!(put.status, 201, "{}", put.text());
    let err = rt
        .block_on(client.signatures(&reference, &digest))
        .expect_err("foreign");
    assert!(
        matches!(&err, Error::ForeignSignatureLayer { digest, media_type, .. }
            if *digest == junk_digest && media_type == "text/plain"),
        "{err}"
    );
    says(&err.to_string(), &["foreign layer", &junk_digest]);
    let err = rt
        .block_on(client.attach_signature(&reference, &digest, placeholder(&digest, 2)))
        .expect_err("attach to a foreign manifest");
    assert!(matches!(err, Error::ForeignSignatureLayer { .. }), "{err}");

    // A signature layer without its annotation is foreign too.
    let unsigned = json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "digest": payload_digest,
        "size": sig.payload.len(),
    });
    let put = registry.put_manifest("cup/flipt", &tag, &manifest(vec![unsigned]), OCI_MANIFEST);
    assert_eq!(put.status, 201, "{}", put.text());
    let err = rt
        .block_on(client.signatures(&reference, &digest))
        .expect_err("no annotation");
    says(&err.to_string(), &[SIGNATURE_ANNOTATION, &payload_digest]);
}

#[test]
fn pull_copies_signatures_and_save_load_carries_them_offline() {
    let mut registry = TestRegistry::start();
    let w = Work::new();
    let digest = push_controller(&w, &registry, "cup/flipt:v1");
    // Another title makes another manifest digest (the same module would give the same).
    let out = ok(w.cup(&[
        "controller",
        "push",
        "--title",
        "other.wasm",
        &w.wasm().to_string_lossy(),
        &registry.reference("cup/other:v1"),
    ]));
    let unsigned = out
        .lines()
        .last()
        .and_then(|l| l.rsplit_once('@'))
        .expect("pinned reference")
        .1
        .to_owned();
    assert_ne!(unsigned, digest);
    let reference = registry.reference("cup/flipt:v1");
    let client = registry_client();
    let rt = runtime();
    let sigs = [placeholder(&digest, 1), placeholder(&digest, 2)];
    for sig in &sigs {
        assert!(
            rt.block_on(client.attach_signature(&reference, &digest, sig.clone()))
                .expect("attach")
        );
    }

    // `cup controller pull` copies the signature manifest into the store.
    let report: Value = serde_json::from_str(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        &reference,
    ])))
    .expect("json");
    assert_eq!(report["signatures"], 2, "{report}");
    assert!(report.get("signature_problem").is_none(), "{report}");
    let report: Value = serde_json::from_str(&ok(w.cup(&[
        "-o",
        "json",
        "controller",
        "pull",
        &registry.reference("cup/other:v1"),
    ])))
    .expect("json");
    assert_eq!(report["signatures"], 0, "no .sig tag is fine: {report}");
    ok(w.cup(&["controller", "list", "--verify"]));
    let store = Store::open(w.store()).expect("store");
    assert_eq!(store.signatures(&digest).expect("copied"), sigs);
    assert_eq!(store.signatures(&unsigned).expect("none"), []);
    let name = format!(
        "{}:{}",
        registry.reference("cup/flipt"),
        signature_tag(&digest).expect("tag")
    );
    assert!(
        store
            .entries()
            .expect("entries")
            .iter()
            .any(|e| e.annotation(cup_oci::annotations::REF_NAME) == Some(name.as_str())),
        "the store records {name}"
    );

    // A signature attached later is copied on demand (a pull by digest would be served
    // from the store without asking the registry).
    let third = placeholder(&digest, 3);
    assert!(
        rt.block_on(client.attach_signature(&reference, &digest, third.clone()))
            .expect("attach")
    );
    let copied = rt.block_on(client.pull_signatures(&reference, &digest, &store));
    assert_eq!(copied.expect("pull_signatures"), 3);
    let mut all = sigs.to_vec();
    all.push(third);
    assert_eq!(store.signatures(&digest).expect("copied"), all);

    // Saved by the controller's tag alone, its signatures go along; loaded into a fresh
    // store with no registry running, they can be read back.
    let archive = w.path("ctl.tar");
    ok(w.cup(&[
        "controller",
        "save",
        "-O",
        &archive.to_string_lossy(),
        &reference,
    ]));
    registry.stop();
    let fresh = w.path("fresh-store");
    ok(w.cup_in(&fresh, &["controller", "load", &archive.to_string_lossy()]));
    ok(w.cup_in(&fresh, &["controller", "list", "--verify"]));
    let loaded = Store::open(&fresh).expect("fresh store");
    assert_eq!(loaded.signatures(&digest).expect("loaded"), all);
    assert_eq!(loaded.resolve(&reference).expect("resolve"), Some(digest));
}

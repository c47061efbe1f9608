//! Signatures as OCI 1.1 referrers: against a registry with the referrers API (the test's
//! own, `cup_e2e::referrers_registry`: none can be installed here), `attach_signature`
//! writes each signature both under cosign's `.sig` tag and as a referrer of the signed
//! manifest, and reading merges both, so a signature is found even when the tag is gone;
//! a referrer whose subject is another manifest is refused. `cup controller sign` and
//! `verify-signature` work the same there. Against Debian's registry (no referrers API)
//! the tag alone is used: `oci_signatures`.

use std::collections::BTreeMap;

use crate::cli_common::Cup;
use cup_e2e::flipt_package;
use cup_e2e::referrers_registry::ReferrersRegistry;

/// Pushes the example package as `cup/flipt:<tag>` (the `title` makes its manifest
/// distinct); returns the manifest digest.
fn push(
    registry: &ReferrersRegistry,
    runtime: &tokio::runtime::Runtime,
    client: &cup_oci::Registry,
    tag: &str,
    title: &str,
) -> String {
    let wasm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wasm.path(), flipt_package()).unwrap();
    let options = cup_oci::ArtifactOptions {
        title: title.to_owned(),
        ..cup_oci::ArtifactOptions::default()
    };
    let report = runtime
        .block_on(client.push_file(
            wasm.path(),
            &registry.reference(&format!("cup/flipt:{tag}")),
            &options,
            std::sync::Arc::new(cup_oci::NoProgress),
        ))
        .unwrap();
    report.reference.rsplit_once('@').unwrap().1.to_owned()
}

fn signature(n: u8) -> cup_oci::StoredSignature {
    cup_oci::StoredSignature::new(
        format!(r#"{{"critical":{{"type":"test {n}"}}}}"#).into_bytes(),
        format!("c2lnbmF0dXJl{n}"),
        BTreeMap::new(),
    )
}

#[test]
fn signatures_are_attached_and_read_as_referrers_too() {
    let registry = ReferrersRegistry::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = cup_oci::Registry::new(cup_oci::RegistryOptions::default());
    let digest = push(&registry, &runtime, &client, "v1", cup_oci::DEFAULT_TITLE);
    let reference = registry.reference("cup/flipt:v1");

    for n in [1, 2] {
        assert!(
            runtime
                .block_on(client.attach_signature(&reference, &digest, signature(n)))
                .unwrap()
        );
    }
    assert!(
        !runtime
            .block_on(client.attach_signature(&reference, &digest, signature(1)))
            .unwrap(),
        "the same signature is not attached twice"
    );
    let referrers = registry.referrers("cup/flipt", &digest);
    assert_eq!(referrers.len(), 2, "{referrers:?}");
    for r in &referrers {
        assert_eq!(r["artifactType"], cup_oci::SIGNATURE_ARTIFACT_TYPE);
    }
    let read = runtime
        .block_on(client.signatures(&reference, &digest))
        .unwrap();
    assert_eq!(read.len(), 2, "merged, each once");
    assert!(read[0].same_as(&signature(1)) && read[1].same_as(&signature(2)));
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/cup/flipt/referrers/")),
        "{:?}",
        registry.requests()
    );

    // Without the tag, the referrers alone still give both.
    let tag = cup_oci::signature_tag(&digest).unwrap();
    registry.remove_tag("cup/flipt", &tag);
    let read = runtime
        .block_on(client.signatures(&reference, &digest))
        .unwrap();
    assert_eq!(read.len(), 2);

    // A registry listing another manifest's signature as a referrer of this one is refused.
    let other = referrers[0].clone();
    let other_digest = push(&registry, &runtime, &client, "other", "other.wasm");
    registry.list_as_referrer("cup/flipt", &other_digest, other);
    let error = runtime
        .block_on(client.signatures(&registry.reference("cup/flipt:other"), &other_digest))
        .unwrap_err()
        .to_string();
    assert!(error.contains("but its subject is"), "{error}");
}

#[test]
fn cup_signs_and_verifies_through_the_referrers_api() {
    let registry = ReferrersRegistry::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = cup_oci::Registry::new(cup_oci::RegistryOptions::default());
    let digest = push(&registry, &runtime, &client, "v1", cup_oci::DEFAULT_TITLE);
    let home = tempfile::tempdir().unwrap();
    let cup = Cup::new(home.path()).with_env("CUP_SIGNING_PASSWORD", "pw");
    let prefix = home.path().join("key").display().to_string();
    cup.run(&["controller", "keygen", "--prefix", &prefix]).ok();
    let reference = registry.reference("cup/flipt:v1");
    cup.run(&[
        "controller",
        "sign",
        &reference,
        "--key",
        &format!("{prefix}.key"),
    ])
    .ok();
    assert_eq!(registry.referrers("cup/flipt", &digest).len(), 1);
    registry.remove_tag("cup/flipt", &cup_oci::signature_tag(&digest).unwrap());
    let verified = cup.run(&[
        "controller",
        "verify-signature",
        &reference,
        "--key",
        &format!("{prefix}.pub"),
    ]);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains("verified"), "{}", verified.stdout);
}

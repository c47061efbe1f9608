//! Keyless (Sigstore) signed controllers end to end: a signature made as cosign keyless
//! stores it (a short-lived certificate from a test "Fulcio", recorded by a test "Rekor"
//! log), attached to the manifest in a real registry (Debian's docker-registry on loopback),
//! and cupd with `--require-signatures --trusted-root` running a controller only when its
//! certificate chains to the trusted root and names an allowed identity: the identity of the
//! controller's `verify.identities`, or that of the global `--certificate-oidc-issuer` and
//! `--certificate-identity` flags for a controller that names none. A wrong subject or a
//! wrong issuer leaves the controller failed with the reason, never compiled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree};
use cup_e2e::registry::TestRegistry;
use cup_e2e::{flipt_package, repo_root, shared_code_cache};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use sha2::{Digest, Sha256};

const FLAG: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags/new-login";
const SUBJECT: &str = "alice@example.com";
const ISSUER: &str = "https://issuer.example";

/// The Fulcio of the test: a root and the intermediate that issues leaf certificates, both
/// valid from 2025 to 2035.
struct Fulcio {
    root_der: Vec<u8>,
    root_pem: String,
    intermediate_der: Vec<u8>,
    intermediate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Fulcio {
    fn new() -> Fulcio {
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut root = ca_params("test fulcio root", BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut intermediate =
            ca_params("test fulcio intermediate", BasicConstraints::Constrained(0));
        intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // As Fulcio's own intermediate: it carries the code-signing usage itself.
        intermediate.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let intermediate_cert = intermediate.signed_by(&key, &root_issuer).unwrap();
        Fulcio {
            root_der: root_cert.der().to_vec(),
            root_pem: root_cert.pem(),
            intermediate_der: intermediate_cert.der().to_vec(),
            intermediate_pem: intermediate_cert.pem(),
            issuer: Issuer::new(intermediate, key),
        }
    }

    /// A certificate for `key` as Fulcio issues one: empty subject, the e-mail as SAN, code
    /// signing, the OIDC issuer in both of Fulcio's issuer extensions, valid for one day
    /// (2026-03-01) that is long past when cupd checks it.
    fn leaf(&self, key: &KeyPair, email: &str, issuer: &str) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        // 1.3.6.1.4.1.57264.1.8 holds a DER UTF8String, the older .1.1 the raw string.
        let mut utf8_string = vec![0x0c, u8::try_from(issuer.len()).unwrap()];
        utf8_string.extend_from_slice(issuer.as_bytes());
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], utf8_string),
            CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
                issuer.as_bytes().to_vec(),
            ),
        ];
        params.not_before = rcgen::date_time_ymd(2026, 3, 1);
        params.not_after = rcgen::date_time_ymd(2026, 3, 2);
        params.signed_by(key, &self.issuer).unwrap().pem()
    }
}

fn ca_params(name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(constraints);
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    params
}

/// The Rekor of the test: a P-256 log key, its log ID the SHA-256 of its public key.
struct Rekor {
    key: cup_sign::SigningKey,
    spki_der: Vec<u8>,
}

impl Rekor {
    fn new() -> Rekor {
        let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Rekor {
            key: cup_sign::SigningKey::from_pem(key_pair.serialize_pem().as_bytes(), None).unwrap(),
            spki_der: key_pair.subject_public_key_info(),
        }
    }

    fn log_id(&self) -> Vec<u8> {
        Sha256::digest(&self.spki_der).to_vec()
    }

    /// The bundle annotation for a log entry of `body` recorded at `integrated_time`: its
    /// SignedEntryTimestamp is the log's signature over the canonical JSON of the entry (keys
    /// sorted, no spaces), as Rekor makes it and cosign checks it.
    fn bundle(&self, body: &serde_json::Value, integrated_time: i64) -> String {
        let body = STANDARD.encode(body.to_string());
        let log_id = hex::encode(self.log_id());
        let log_index = 42;
        let canonical = format!(
            r#"{{"body":{},"integratedTime":{integrated_time},"logID":{},"logIndex":{log_index}}}"#,
            serde_json::Value::from(body.as_str()),
            serde_json::Value::from(log_id.as_str()),
        );
        serde_json::json!({
            "SignedEntryTimestamp": STANDARD.encode(self.key.sign(canonical.as_bytes())),
            "Payload": {
                "body": body,
                "integratedTime": integrated_time,
                "logIndex": log_index,
                "logID": log_id,
            },
        })
        .to_string()
    }
}

/// A Sigstore trusted_root.json trusting `fulcio` (from 2025) and `rekor`.
fn trusted_root_json(fulcio: &Fulcio, rekor: &Rekor) -> String {
    serde_json::json!({
        "mediaType": cup_sign::TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [{
            "baseUrl": "https://rekor.example",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": STANDARD.encode(&rekor.spki_der),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": {"start": "2025-01-01T00:00:00Z"},
            },
            "logId": {"keyId": STANDARD.encode(rekor.log_id())},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "test", "commonName": "test"},
            "uri": "https://fulcio.example",
            "certChain": {"certificates": [
                {"rawBytes": STANDARD.encode(&fulcio.intermediate_der)},
                {"rawBytes": STANDARD.encode(&fulcio.root_der)},
            ]},
            "validFor": {"start": "2025-01-01T00:00:00Z"},
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    })
    .to_string()
}

/// A keyless signature of `manifest_digest` in `repository` (registry/repository) by
/// `email` of `issuer`, as cosign keyless stores it: the simple-signing payload signed by a
/// fresh key, its certificate, chain and log bundle as layer annotations.
fn keyless_signature(
    fulcio: &Fulcio,
    rekor: &Rekor,
    repository: &str,
    manifest_digest: &str,
) -> cup_oci::StoredSignature {
    let payload = cup_sign::simple_signing_payload(repository, manifest_digest, &BTreeMap::new());
    let key_pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let certificate = fulcio.leaf(&key_pair, SUBJECT, ISSUER);
    let key = cup_sign::SigningKey::from_pem(key_pair.serialize_pem().as_bytes(), None).unwrap();
    let signature = STANDARD.encode(key.sign(&payload));
    let body = serde_json::json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload))}},
            "signature": {
                "content": signature,
                "publicKey": {"content": STANDARD.encode(&certificate)},
            },
        },
    });
    // Five minutes into the certificate's day: within its validity, which is what counts.
    let integrated_time = rcgen::date_time_ymd(2026, 3, 1).unix_timestamp() + 300;
    let annotations = BTreeMap::from([
        (cup_sign::CERTIFICATE_ANNOTATION.to_owned(), certificate),
        (
            cup_sign::CHAIN_ANNOTATION.to_owned(),
            format!("{}{}", fulcio.intermediate_pem, fulcio.root_pem),
        ),
        (
            cup_sign::BUNDLE_ANNOTATION.to_owned(),
            rekor.bundle(&body, integrated_time),
        ),
    ]);
    cup_oci::StoredSignature::new(payload, signature, annotations)
}

/// Pushes the example package to `repo:tag`; returns the manifest digest.
fn push(registry: &TestRegistry, repo: &str, tag: &str) -> String {
    let options = cup_oci::ArtifactOptions {
        title: "flipt.wasm".to_owned(),
        ..cup_oci::ArtifactOptions::default()
    };
    let artifact = cup_oci::Artifact::build(flipt_package(), &options).unwrap();
    registry.put_blob(repo, flipt_package());
    registry.put_blob(repo, &artifact.config);
    let pushed = registry.put_manifest(repo, tag, &artifact.manifest, cup_oci::media::OCI_MANIFEST);
    assert_eq!(pushed.status, 201, "{pushed:?}");
    artifact.manifest_digest
}

/// A config directory holding `controllers` (name, JSON of the wasm spec).
fn config(dir: &Path, name: &str, controllers: &[(&str, String)]) -> PathBuf {
    let config = dir.join(name);
    std::fs::create_dir_all(&config).unwrap();
    for (controller, spec) in controllers {
        std::fs::write(
            config.join(format!("{controller}.json")),
            format!(
                r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{{"name":"{controller}"}},"spec":{{"type":"wasm","spec":{spec}}}}}"#
            ),
        )
        .unwrap();
    }
    config
}

/// cupd requiring signatures, trusting `trusted_root`, serving a copy of the example's repo.
fn start(dir: &Path, config: &Path, trusted_root: &Path, extra: &[&str]) -> Cupd {
    let source = dir.join("source");
    if !source.exists() {
        copy_tree(&repo_root().join("examples/flipt/repo"), &source);
        std::fs::create_dir_all(source.join("default")).unwrap();
    }
    let store = dir.join("cupd-store");
    let mut cfg = CupdConfig::new(config, &source, &store);
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
        "--require-signatures".into(),
        "--trusted-root".into(),
        trusted_root.display().to_string(),
    ];
    cfg.args.extend(extra.iter().map(|s| (*s).to_owned()));
    Cupd::start(&cfg)
}

/// A loaded controller, verified keylessly as `SUBJECT` of `ISSUER`, serving the example.
fn assert_loaded_as_alice(cupd: &Cupd, name: &str) {
    let status = cupd.controller_status(name);
    assert_eq!(
        status["state"],
        "loaded",
        "{name}: {status}\n{}",
        cupd.log()
    );
    assert_eq!(
        status["signature"]["key"],
        format!("keyless {SUBJECT} ({ISSUER})"),
        "{name}: {status}"
    );
    let flag = cupd.get(FLAG);
    assert_eq!(flag.status, 200, "{name}: {}", flag.text());
}

/// A controller refused for its signature's identity: failed with the reason, which names
/// the certificate's identity, and never compiled.
fn assert_refused_identity(cupd: &Cupd, name: &str) {
    let status = cupd.controller_status(name);
    assert_eq!(status["state"], "failed", "{name}: {status}");
    let error = status["error"].as_str().unwrap();
    assert!(error.starts_with("signature required"), "{name}: {error}");
    assert!(error.to_lowercase().contains("identity"), "{name}: {error}");
    assert!(error.contains(SUBJECT), "{name}: {error}");
    assert!(
        status.get("digest").is_none(),
        "{name} was compiled: {status}"
    );
    assert!(status.get("signature").is_none(), "{name}: {status}");
}

#[test]
fn a_keyless_signature_runs_a_controller_only_for_an_allowed_identity() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let digest = push(&registry, "cup/flipt", "v1");
    let repository = registry.reference("cup/flipt");

    let fulcio = Fulcio::new();
    let rekor = Rekor::new();
    let root_json = trusted_root_json(&fulcio, &rekor);
    let trusted_root = dir.path().join("trusted_root.json");
    std::fs::write(&trusted_root, &root_json).unwrap();
    let signature = keyless_signature(&fulcio, &rekor, &repository, &digest);

    // The signature verifies with cup-sign itself, so a refusal by cupd below is cupd's, not
    // a fault of the fixture.
    let mut annotations = signature.annotations.clone();
    annotations.insert(
        cup_sign::SIGNATURE_ANNOTATION.to_owned(),
        signature.signature.clone(),
    );
    let tagged = registry.reference("cup/flipt:v1");
    let verified = cup_sign::verify_keyless(
        &signature.payload,
        &annotations,
        &cup_sign::TrustedRoot::from_json(root_json.as_bytes()).unwrap(),
        &[cup_sign::Identity {
            issuer: ISSUER.into(),
            subject: Some(SUBJECT.into()),
            subject_regexp: None,
        }],
        &cup_sign::Expected {
            manifest_digest: &digest,
            docker_reference: Some(&tagged),
        },
    )
    .unwrap();
    assert_eq!(verified.subject, SUBJECT);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = cup_oci::Registry::new(cup_oci::RegistryOptions::default());
    runtime
        .block_on(client.attach_signature(&tagged, &digest, signature))
        .unwrap();

    // `cup controller verify-signature` checks it the same way, for the right identity only.
    let home = tempfile::tempdir().unwrap();
    let cup = crate::cli_common::Cup::new(home.path());
    let root_arg = trusted_root.display().to_string();
    for (subject, code) in [(SUBJECT, 0), ("mallory@example.com", 1)] {
        let run = cup.run(&[
            "controller",
            "verify-signature",
            &tagged,
            "--trusted-root",
            &root_arg,
            "--certificate-oidc-issuer",
            ISSUER,
            "--certificate-identity",
            subject,
        ]);
        assert_eq!(run.code, code, "{subject}: {}{}", run.stdout, run.stderr);
    }

    let image = registry.reference(&format!("cup/flipt@{digest}"));
    let by =
        |identity: &str| format!(r#"{{"image":"{image}","verify":{{"identities":[{identity}]}}}}"#);

    // The controller's own identities: the signer's loads; another subject or another
    // issuer is refused, though the signature itself is sound.
    let identities = config(
        dir.path(),
        "identities",
        &[
            (
                "alice",
                by(&format!(r#"{{"issuer":"{ISSUER}","subject":"{SUBJECT}"}}"#)),
            ),
            (
                "wrong-subject",
                by(&format!(
                    r#"{{"issuer":"{ISSUER}","subject":"mallory@example.com"}}"#
                )),
            ),
            (
                "wrong-issuer",
                by(&format!(
                    r#"{{"issuer":"https://other-issuer.example","subject":"{SUBJECT}"}}"#
                )),
            ),
        ],
    );
    let cupd = start(dir.path(), &identities, &trusted_root, &[]);
    assert_loaded_as_alice(&cupd, "alice");
    assert_refused_identity(&cupd, "wrong-subject");
    assert_refused_identity(&cupd, "wrong-issuer");
    drop(cupd);

    // A regexp must match the whole subject: `alice` alone is refused, `alice@.*` loads.
    let regexps = config(
        dir.path(),
        "regexps",
        &[
            (
                "partial",
                by(&format!(
                    r#"{{"issuer":"{ISSUER}","subject_regexp":"alice"}}"#
                )),
            ),
            (
                "whole",
                by(&format!(
                    r#"{{"issuer":"{ISSUER}","subject_regexp":"alice@.*"}}"#
                )),
            ),
        ],
    );
    let cupd = start(dir.path(), &regexps, &trusted_root, &[]);
    assert_loaded_as_alice(&cupd, "whole");
    assert_refused_identity(&cupd, "partial");
    drop(cupd);

    // The global identity, for a controller that names none.
    let global = config(
        dir.path(),
        "global",
        &[("flipt", format!(r#"{{"image":"{image}"}}"#))],
    );
    let cupd = start(
        dir.path(),
        &global,
        &trusted_root,
        &[
            "--certificate-oidc-issuer",
            ISSUER,
            "--certificate-identity",
            SUBJECT,
        ],
    );
    assert_loaded_as_alice(&cupd, "flipt");
    drop(cupd);

    // The same controller under another global identity is refused.
    let cupd = start(
        dir.path(),
        &global,
        &trusted_root,
        &[
            "--certificate-oidc-issuer",
            ISSUER,
            "--certificate-identity",
            "mallory@example.com",
        ],
    );
    assert_refused_identity(&cupd, "flipt");
}

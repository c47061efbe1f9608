//! Verifying a signature and the payload it signs.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use serde::Deserialize;

use crate::keys::PublicKey;
use crate::payload::SIMPLE_SIGNING_TYPE;
use crate::{MAX_PAYLOAD_BYTES, MAX_SIGNATURE_BYTES};

/// What a signature must be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The manifest digest the payload must name (`sha256:…`), compared exactly.
    pub manifest_digest: &'a str,
    /// The repository the payload must name; `None` accepts any repository. A tag or digest
    /// on either side is ignored and Docker Hub's short names are expanded, as cosign's
    /// references are: `nginx:1`, `docker.io/library/nginx` and
    /// `index.docker.io/library/nginx@sha256:…` are one repository.
    pub docker_reference: Option<&'a str>,
}

/// What a verified signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The payload's `critical.identity.docker-reference`, as signed.
    pub docker_reference: String,
    /// The payload's `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
    /// The payload's `optional` annotations (empty when `null`). A value that is not a
    /// string (cosign's CLI only writes strings) is given as its compact JSON text.
    pub annotations: BTreeMap<String, String>,
    /// The [`PublicKey::fingerprint`] of the key the signature verified with.
    pub key_fingerprint: String,
}

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The payload or the signature is larger than this crate reads.
    #[error("the {what} is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// `payload`, `signature`, or the name of a keyless signature's annotation.
        what: &'static str,
        /// Its size in bytes (for the signature, of its base64 text).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signature is not standard base64.
    #[error("the signature is not base64")]
    NotBase64,
    /// The signature does not verify with this key: another key made it, or the payload or
    /// the signature was changed.
    #[error("the signature does not verify with this key")]
    BadSignature,
    /// The signed payload is not JSON.
    #[error("the signed payload is not JSON: {0}")]
    PayloadNotJson(String),
    /// The signed payload is JSON but not a cosign simple-signing payload.
    #[error("the signed payload is not a cosign image signature: {0}")]
    NotASimpleSigningPayload(String),
    /// The signature is for another manifest.
    #[error("signed for {signed}, not {expected}")]
    DigestMismatch {
        /// The digest the payload names.
        signed: String,
        /// The digest expected.
        expected: String,
    },
    /// The signature is for another repository.
    #[error("signed for repository {signed}, not {expected}")]
    ReferenceMismatch {
        /// The repository the payload names.
        signed: String,
        /// The repository expected.
        expected: String,
    },
    /// A keyless signature without one of the annotations it needs.
    #[error("no {0} annotation: not a keyless signature")]
    MissingAnnotation(&'static str),
    /// An identity constraint that cannot be used: none given, both or neither of
    /// `subject` and `subject_regexp`, or a regexp that does not compile. The caller's
    /// mistake, not the signature's.
    #[error("unusable identity constraint: {0}")]
    BadIdentity(String),
    /// The certificate or chain annotation is not PEM certificates, or has too many.
    #[error("the signature's certificate cannot be read: {0}")]
    BadCertificate(String),
    /// The certificate does not chain to a certificate authority of the trusted root.
    #[error("the certificate does not chain to a certificate authority of the trusted root: {0}")]
    UntrustedCertificate(String),
    /// A certificate of the chain was not valid at the transparency log's integrated time
    /// (a Fulcio certificate lives ten minutes: it must have been valid when the log
    /// recorded the signature).
    #[error(
        "the certificate was not valid at the log's integrated time {integrated_time}: {detail}"
    )]
    CertificateNotValidAtIntegratedTime {
        /// The bundle's `integratedTime` (Unix seconds).
        integrated_time: i64,
        /// Which bound was crossed.
        detail: String,
    },
    /// The certificate is not for code signing (extended key usage 1.3.6.1.5.5.7.3.3).
    #[error("the certificate is not for code signing (no extended key usage 1.3.6.1.5.5.7.3.3)")]
    NotForCodeSigning,
    /// The certificate's key is not an ECDSA P-256 key.
    #[error("the certificate's key is not an ECDSA P-256 key: {0}")]
    CertificateKeyNotP256(String),
    /// The bundle annotation is not the JSON cosign writes.
    #[error("the transparency log bundle cannot be read: {0}")]
    BadBundle(String),
    /// The bundle names a transparency log the trusted root has no usable key for at the
    /// integrated time.
    #[error("the bundle's transparency log is not trusted: {0}")]
    UnknownLog(String),
    /// The bundle's SignedEntryTimestamp does not verify with the log's key over the entry:
    /// another key made it, or the entry (its time, index or body) was changed.
    #[error("the bundle's SignedEntryTimestamp does not verify with the transparency log's key")]
    BadSignedEntryTimestamp,
    /// The transparency log entry is not for this signature, certificate or payload.
    #[error("the transparency log entry is not for this signature: {0}")]
    LogEntryMismatch(String),
    /// The certificate's identity (subject and OIDC issuer) matches no allowed identity.
    #[error("the certificate's identity {subject:?} (issuer {issuer:?}) is not allowed")]
    IdentityMismatch {
        /// The certificate's subjects (email and URI names), comma-separated.
        subject: String,
        /// The certificate's OIDC issuer, empty when it names none.
        issuer: String,
    },
}

#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
    #[serde(default)]
    optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    manifest_digest: String,
}

/// The longest base64 text of a [`MAX_SIGNATURE_BYTES`] signature.
const MAX_SIGNATURE_BASE64: usize = MAX_SIGNATURE_BYTES.div_ceil(3) * 4;

/// Verifies `signature_base64` (standard base64 of an ASN.1 DER ECDSA signature, surrounding
/// whitespace ignored) over `payload` with `key`, and only then reads the payload: JSON, of
/// cosign's simple-signing type, for `expected.manifest_digest`, and for
/// `expected.docker_reference`'s repository when one is given.
pub fn verify(
    payload: &[u8],
    signature_base64: &str,
    key: &PublicKey,
    expected: &Expected<'_>,
) -> Result<Verified, Refusal> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Refusal::TooLarge {
            what: "payload",
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let signature_base64 = signature_base64.trim_ascii();
    if signature_base64.len() > MAX_SIGNATURE_BASE64 {
        return Err(Refusal::TooLarge {
            what: "signature",
            len: signature_base64.len(),
            max: MAX_SIGNATURE_BASE64,
        });
    }
    let signature = STANDARD
        .decode(signature_base64)
        .map_err(|_| Refusal::NotBase64)?;
    // A signature that is not DER cannot have been made by the key either.
    let signature =
        p256::ecdsa::Signature::from_der(&signature).map_err(|_| Refusal::BadSignature)?;
    key.verifying_key()
        .verify(payload, &signature)
        .map_err(|_| Refusal::BadSignature)?;

    // From here on the payload is the key holder's: reading it is safe.
    let json: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Refusal::PayloadNotJson(e.to_string()))?;
    let simple: SimpleSigning = serde_json::from_value(json)
        .map_err(|e| Refusal::NotASimpleSigningPayload(e.to_string()))?;
    let critical = simple.critical;
    if critical.kind != SIMPLE_SIGNING_TYPE {
        return Err(Refusal::NotASimpleSigningPayload(format!(
            "type {:?}, expected {SIMPLE_SIGNING_TYPE:?}",
            critical.kind
        )));
    }
    if critical.image.manifest_digest != expected.manifest_digest {
        return Err(Refusal::DigestMismatch {
            signed: critical.image.manifest_digest,
            expected: expected.manifest_digest.to_owned(),
        });
    }
    if let Some(reference) = expected.docker_reference {
        let signed = repository_of(&critical.identity.docker_reference);
        let wanted = repository_of(reference);
        if signed != wanted {
            return Err(Refusal::ReferenceMismatch {
                signed,
                expected: wanted,
            });
        }
    }
    let annotations = simple
        .optional
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => (key, text),
            other => (key, other.to_string()),
        })
        .collect();
    Ok(Verified {
        docker_reference: critical.identity.docker_reference,
        manifest_digest: critical.image.manifest_digest,
        annotations,
        key_fingerprint: key.fingerprint(),
    })
}

/// The repository of an image reference, as go-containerregistry (cosign's reference parser)
/// names it: without tag or digest, the registry given when the first component has a `.` or
/// a `:`, else Docker Hub (`index.docker.io`, which `docker.io` also means), whose
/// one-component names are in `library/`.
fn repository_of(reference: &str) -> String {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let name = match name.rsplit_once(':') {
        Some((before, tag)) if !tag.contains('/') => before,
        _ => name,
    };
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) => (first, rest),
        _ => ("index.docker.io", name),
    };
    let registry = if registry == "docker.io" {
        "index.docker.io"
    } else {
        registry
    };
    if registry == "index.docker.io" && !path.contains('/') {
        format!("{registry}/library/{path}")
    } else {
        format!("{registry}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::payload::simple_signing_payload;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER_DIGEST: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn signed(key: &SigningKey, payload: &[u8]) -> String {
        STANDARD.encode(key.sign(payload))
    }

    fn expected(reference: Option<&str>) -> Expected<'_> {
        Expected {
            manifest_digest: DIGEST,
            docker_reference: reference,
        }
    }

    #[test]
    fn a_signature_round_trips() {
        let key = SigningKey::generate();
        let annotations = BTreeMap::from([("commit".to_owned(), "abc".to_owned())]);
        let payload = simple_signing_payload("registry.example/team/flags", DIGEST, &annotations);
        let signature = signed(&key, &payload);
        let verified = verify(
            &payload,
            &format!("{signature}\n"),
            &key.public_key(),
            &expected(Some("registry.example/team/flags:v1")),
        )
        .unwrap();
        assert_eq!(
            verified,
            Verified {
                docker_reference: "registry.example/team/flags".into(),
                manifest_digest: DIGEST.into(),
                annotations,
                key_fingerprint: key.public_key().fingerprint(),
            }
        );
        // Any repository when none is expected.
        assert!(verify(&payload, &signature, &key.public_key(), &expected(None)).is_ok());
    }

    #[test]
    fn the_signature_is_checked_before_the_payload() {
        let key = SigningKey::generate();
        let payload = simple_signing_payload("r.example/a", DIGEST, &BTreeMap::new());
        let signature = key.sign(&payload);

        let mut flipped = signature.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            verify(
                &payload,
                &STANDARD.encode(&flipped),
                &key.public_key(),
                &expected(None)
            ),
            Err(Refusal::BadSignature)
        );
        let other = SigningKey::generate().public_key();
        assert_eq!(
            verify(
                &payload,
                &STANDARD.encode(&signature),
                &other,
                &expected(None)
            ),
            Err(Refusal::BadSignature)
        );
        // A payload for another digest, unsigned, is refused for its signature, not its
        // digest: nothing of it is read.
        let forged = simple_signing_payload("r.example/a", OTHER_DIGEST, &BTreeMap::new());
        assert_eq!(
            verify(
                &forged,
                &STANDARD.encode(&signature),
                &key.public_key(),
                &expected(None)
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(&payload, "not base64!", &key.public_key(), &expected(None)),
            Err(Refusal::NotBase64)
        );
        assert_eq!(
            verify(&payload, "AAAA", &key.public_key(), &expected(None)),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn the_payload_must_be_for_the_expected_image() {
        let key = SigningKey::generate();
        let check = |payload: &[u8], reference: Option<&str>| {
            verify(
                payload,
                &signed(&key, payload),
                &key.public_key(),
                &expected(reference),
            )
        };
        let other = simple_signing_payload("r.example/a", OTHER_DIGEST, &BTreeMap::new());
        let refusal = check(&other, None).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::DigestMismatch {
                signed: OTHER_DIGEST.into(),
                expected: DIGEST.into()
            }
        );
        assert_eq!(
            refusal.to_string(),
            format!("signed for {OTHER_DIGEST}, not {DIGEST}")
        );

        let payload = simple_signing_payload("r.example/a", DIGEST, &BTreeMap::new());
        assert_eq!(
            check(&payload, Some("r.example/b")),
            Err(Refusal::ReferenceMismatch {
                signed: "r.example/a".into(),
                expected: "r.example/b".into()
            })
        );
        assert!(check(&payload, Some("r.example/a@sha256:00")).is_ok());

        assert!(matches!(
            check(b"{not json", None),
            Err(Refusal::PayloadNotJson(_))
        ));
        let wrong_type = String::from_utf8(payload.clone()).unwrap().replace(
            "cosign container image signature",
            "atomic container signature",
        );
        assert!(matches!(
            check(wrong_type.as_bytes(), None),
            Err(Refusal::NotASimpleSigningPayload(m)) if m.contains("atomic container signature")
        ));
        assert!(matches!(
            check(
                br#"{"critical":{"type":"cosign container image signature"}}"#,
                None
            ),
            Err(Refusal::NotASimpleSigningPayload(_))
        ));
    }

    #[test]
    fn sizes_are_bounded() {
        let key = SigningKey::generate();
        let payload = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            verify(
                &payload,
                &signed(&key, &payload),
                &key.public_key(),
                &expected(None)
            ),
            Err(Refusal::TooLarge {
                what: "payload",
                ..
            })
        ));
        let long_signature = "A".repeat(MAX_SIGNATURE_BASE64 + 4);
        assert!(matches!(
            verify(b"{}", &long_signature, &key.public_key(), &expected(None)),
            Err(Refusal::TooLarge {
                what: "signature",
                ..
            })
        ));
    }

    #[test]
    fn non_string_annotations_are_their_json_text() {
        let key = SigningKey::generate();
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r.example/a"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":{{"n":3,"s":"x"}}}}"#
        );
        let verified = verify(
            payload.as_bytes(),
            &signed(&key, payload.as_bytes()),
            &key.public_key(),
            &expected(None),
        )
        .unwrap();
        assert_eq!(verified.annotations["n"], "3");
        assert_eq!(verified.annotations["s"], "x");
    }

    #[test]
    fn repositories_as_go_containerregistry_names_them() {
        for (reference, repository) in [
            ("nginx", "index.docker.io/library/nginx"),
            ("nginx:1.27", "index.docker.io/library/nginx"),
            (
                "docker.io/library/nginx@sha256:ab",
                "index.docker.io/library/nginx",
            ),
            ("docker.io/nginx", "index.docker.io/library/nginx"),
            ("team/app:v1", "index.docker.io/team/app"),
            ("localhost:5000/a/b:v1", "localhost:5000/a/b"),
            ("ghcr.io/o/r:t@sha256:cd", "ghcr.io/o/r"),
            ("registry.example/team/flags", "registry.example/team/flags"),
        ] {
            assert_eq!(repository_of(reference), repository, "{reference}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_makes_verify_panic(payload: Vec<u8>, signature: String) {
            let key = SigningKey::generate();
            let _ = verify(&payload, &signature, &key.public_key(), &expected(Some(&signature)));
        }

        /// Whatever a key holder signs verifies as signed; only the payload can be refused.
        #[test]
        fn a_signed_payload_is_judged_by_its_contents(payload: Vec<u8>) {
            let key = SigningKey::generate();
            let refusal = verify(&payload, &signed(&key, &payload), &key.public_key(), &expected(None));
            proptest::prop_assert!(
                matches!(
                    refusal,
                    Err(Refusal::PayloadNotJson(_) | Refusal::NotASimpleSigningPayload(_))
                ),
                "{refusal:?}"
            );
        }

        #[test]
        fn no_pem_text_makes_the_key_readers_panic(text: String, password: Option<Vec<u8>>) {
            let _ = SigningKey::from_pem(text.as_bytes(), password.as_deref());
            let _ = crate::PublicKey::from_pem(text.as_bytes());
            let pem = format!("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{text}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n");
            let _ = SigningKey::from_pem(pem.as_bytes(), Some(b"pw"));
        }
    }
}

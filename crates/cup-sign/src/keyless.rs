//! Keyless (Sigstore) verification, offline: a signature made with a short-lived Fulcio
//! certificate and recorded in a Rekor transparency log, checked against a trusted root file.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::Verifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;

use crate::keys::PublicKey;
use crate::trusted_root::{MAX_CHAIN_CERTIFICATES, TrustedRoot};
use crate::verify::{Expected, Refusal, verify};

/// The annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding the signing certificate (PEM), issued by Fulcio.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding the certificate's issuing chain (PEM, intermediates then root).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The annotation holding the transparency log bundle (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The largest annotation value [`verify_keyless`] reads (64 KiB).
pub const MAX_ANNOTATION_BYTES: usize = 64 * 1024;
/// The longest identity constraint (subject or regexp) accepted.
const MAX_IDENTITY_BYTES: usize = 4096;
/// The compiled size a subject regexp may reach: enough for any sane pattern, bounded so a
/// pathological one is refused instead of compiled.
const MAX_REGEX_SIZE: usize = 1 << 20;

/// Code signing, the extended key usage Fulcio gives its certificates (its DER value).
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
/// Fulcio's OIDC issuer extension, a DER UTF8String.
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
/// Fulcio's older OIDC issuer extension, the raw string bytes.
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";

/// Who may have signed: the certificate's OIDC issuer and its subject (the email or URI
/// Fulcio put in its Subject Alternative Name). Exactly one of `subject` and
/// `subject_regexp` is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The OIDC issuer (`https://accounts.google.com`,
    /// `https://token.actions.githubusercontent.com`), compared exactly.
    pub issuer: String,
    /// The subject, compared exactly.
    pub subject: Option<String>,
    /// A regular expression (Rust's `regex` syntax, close to Go's RE2) the whole subject must
    /// match: it is anchored at both ends, unlike cosign's `--certificate-identity-regexp`,
    /// which accepts a match anywhere in the subject.
    pub subject_regexp: Option<String>,
}

/// What a verified keyless signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKeyless {
    /// The payload's `critical.identity.docker-reference`, as signed.
    pub docker_reference: String,
    /// The payload's `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
    /// The certificate's subject that matched an allowed identity.
    pub subject: String,
    /// The certificate's OIDC issuer.
    pub issuer: String,
    /// When the transparency log recorded the signature (Unix seconds), as its signed entry
    /// timestamp vouches.
    pub integrated_time: i64,
}

enum SubjectMatcher {
    Exact(String),
    Regex(regex::Regex),
}

struct Allowed<'a> {
    issuer: &'a str,
    subject: SubjectMatcher,
}

impl Allowed<'_> {
    fn matches(&self, subject: &str, issuer: &str) -> bool {
        self.issuer == issuer
            && match &self.subject {
                SubjectMatcher::Exact(wanted) => wanted == subject,
                SubjectMatcher::Regex(regex) => regex.is_match(subject),
            }
    }
}

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: BundlePayload,
}

#[derive(Deserialize)]
struct BundlePayload {
    body: String,
    #[serde(rename = "integratedTime")]
    integrated_time: i64,
    #[serde(rename = "logIndex")]
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
struct RekorEntry {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: HashedRekordSpec,
}

#[derive(Deserialize)]
struct HashedRekordSpec {
    data: HashedRekordData,
    signature: HashedRekordSignature,
}

#[derive(Deserialize)]
struct HashedRekordData {
    hash: HashedRekordHash,
}

#[derive(Deserialize)]
struct HashedRekordHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct HashedRekordSignature {
    content: String,
    #[serde(rename = "publicKey")]
    public_key: HashedRekordKey,
}

#[derive(Deserialize)]
struct HashedRekordKey {
    content: String,
}

/// Verifies a cosign keyless signature of `payload`, given the annotations of its layer
/// ([`SIGNATURE_ANNOTATION`], [`CERTIFICATE_ANNOTATION`], [`BUNDLE_ANNOTATION`] and
/// optionally [`CHAIN_ANNOTATION`]), against `root`, for one of `identities`, of
/// `expected`'s image. In this order, each failure its own [`Refusal`]:
///
/// 1. the certificate chains to a certificate authority of `root` (its intermediates, and
///    those of the chain annotation, which add no trust of their own), every certificate
///    valid **at the bundle's integrated time**, the authority's `validFor` covering it, and
///    the certificate is for code signing;
/// 2. the signature verifies over `payload` with the certificate's P-256 key, then the
///    payload is checked as [`verify`] checks it (type, digest, repository);
/// 3. the bundle's SignedEntryTimestamp verifies with the key of the log it names (a log of
///    `root`, valid at the integrated time) over the canonical JSON of its `Payload`;
/// 4. the log entry (`hashedrekord` 0.0.1) is for this signature, this certificate and the
///    SHA-256 of this payload;
/// 5. the certificate's subject (email or URI) and OIDC issuer match one of `identities`.
pub fn verify_keyless(
    payload: &[u8],
    annotations: &BTreeMap<String, String>,
    root: &TrustedRoot,
    identities: &[Identity],
    expected: &Expected<'_>,
) -> Result<VerifiedKeyless, Refusal> {
    let allowed = compile_identities(identities)?;
    let signature_base64 = annotation(annotations, SIGNATURE_ANNOTATION)?
        .ok_or(Refusal::MissingAnnotation(SIGNATURE_ANNOTATION))?;
    let certificate_pem = annotation(annotations, CERTIFICATE_ANNOTATION)?
        .ok_or(Refusal::MissingAnnotation(CERTIFICATE_ANNOTATION))?;
    let chain_pem = annotation(annotations, CHAIN_ANNOTATION)?.unwrap_or("");
    let bundle_json = annotation(annotations, BUNDLE_ANNOTATION)?
        .ok_or(Refusal::MissingAnnotation(BUNDLE_ANNOTATION))?;

    let leaf = match pem_certificates(certificate_pem, 1)?.as_slice() {
        [leaf] => leaf.clone(),
        _ => {
            return Err(Refusal::BadCertificate(
                "the certificate annotation holds no certificate".into(),
            ));
        }
    };
    let chain = pem_certificates(chain_pem, MAX_CHAIN_CERTIFICATES)?;
    let bundle: Bundle =
        serde_json::from_str(bundle_json).map_err(|e| Refusal::BadBundle(e.to_string()))?;
    let integrated_time = bundle.payload.integrated_time;

    // 1. The certificate, at the time the log recorded the signature: a Fulcio certificate
    //    has long expired when a controller is verified, and that is as it should be.
    check_chain(&leaf, &chain, root, integrated_time)?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| Refusal::BadCertificate(e.to_string()))?;
    let code_signing = matches!(
        certificate.extended_key_usage(),
        Ok(Some(eku)) if eku.value.code_signing
    );
    if !code_signing {
        return Err(Refusal::NotForCodeSigning);
    }

    // 2. The signature with the certificate's key, then the payload it signs.
    let key = PublicKey::from_spki_der(certificate.public_key().raw)
        .map_err(Refusal::CertificateKeyNotP256)?;
    let verified = verify(payload, signature_base64, &key, expected)?;

    // 3. The log's promise that it recorded the entry at that time.
    check_signed_entry_timestamp(&bundle, root)?;

    // 4. The entry it recorded is this signature.
    check_log_entry(&bundle.payload.body, signature_base64, &leaf, payload)?;

    // 5. Who signed.
    let subjects = certificate_subjects(&certificate);
    let issuer = certificate_issuer(&certificate).unwrap_or_default();
    let subject = subjects
        .iter()
        .find(|subject| allowed.iter().any(|a| a.matches(subject, &issuer)))
        .ok_or_else(|| Refusal::IdentityMismatch {
            subject: subjects.join(", "),
            issuer: issuer.clone(),
        })?;
    Ok(VerifiedKeyless {
        docker_reference: verified.docker_reference,
        manifest_digest: verified.manifest_digest,
        subject: subject.clone(),
        issuer,
        integrated_time,
    })
}

/// An annotation's value, refused past [`MAX_ANNOTATION_BYTES`].
fn annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    name: &'static str,
) -> Result<Option<&'a str>, Refusal> {
    match annotations.get(name) {
        Some(value) if value.len() > MAX_ANNOTATION_BYTES => Err(Refusal::TooLarge {
            what: name,
            len: value.len(),
            max: MAX_ANNOTATION_BYTES,
        }),
        value => Ok(value.map(String::as_str)),
    }
}

fn compile_identities(identities: &[Identity]) -> Result<Vec<Allowed<'_>>, Refusal> {
    if identities.is_empty() {
        return Err(Refusal::BadIdentity(
            "no identity given: nothing would verify".into(),
        ));
    }
    identities
        .iter()
        .map(|identity| {
            if identity.issuer.is_empty() {
                return Err(Refusal::BadIdentity("an empty issuer".into()));
            }
            let subject = match (&identity.subject, &identity.subject_regexp) {
                (Some(subject), None) if subject.len() <= MAX_IDENTITY_BYTES => {
                    SubjectMatcher::Exact(subject.clone())
                }
                (None, Some(pattern)) if pattern.len() <= MAX_IDENTITY_BYTES => {
                    // Anchored: a pattern meant for one subject must not match a longer
                    // subject that merely contains it.
                    let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                        .size_limit(MAX_REGEX_SIZE)
                        .build()
                        .map_err(|e| Refusal::BadIdentity(format!("regexp {pattern:?}: {e}")))?;
                    SubjectMatcher::Regex(regex)
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(Refusal::BadIdentity(format!(
                        "a subject longer than {MAX_IDENTITY_BYTES} bytes"
                    )));
                }
                _ => {
                    return Err(Refusal::BadIdentity(format!(
                        "issuer {:?}: exactly one of subject and subject_regexp is needed",
                        identity.issuer
                    )));
                }
            };
            Ok(Allowed {
                issuer: &identity.issuer,
                subject,
            })
        })
        .collect()
}

/// The `CERTIFICATE` blocks of PEM text, DER, at most `max` of them.
fn pem_certificates(text: &str, max: usize) -> Result<Vec<Vec<u8>>, Refusal> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        if !block.starts_with(BEGIN) {
            return Err(Refusal::BadCertificate(
                "a PEM block that is not a CERTIFICATE".into(),
            ));
        }
        let end = block
            .find(END)
            .ok_or_else(|| Refusal::BadCertificate(format!("no {END:?} line")))?
            + END.len();
        if certificates.len() == max {
            return Err(Refusal::BadCertificate(format!(
                "more than {max} certificates"
            )));
        }
        let (_, der) = p256::pkcs8::der::pem::decode_vec(&block.as_bytes()[..end])
            .map_err(|e| Refusal::BadCertificate(e.to_string()))?;
        certificates.push(der);
        rest = &block[end..];
    }
    Ok(certificates)
}

/// The chain check, by rustls-webpki: path building from the leaf to a root of an authority
/// valid at `integrated_time`, each signature checked, each certificate valid at that time,
/// basic constraints, and code signing wherever an extended key usage is present (the leaf
/// must have one: checked after this with the parsed certificate, because webpki applies its
/// usage rule to intermediates too, and an intermediate without one is legitimate).
fn check_chain(
    leaf: &[u8],
    chain: &[Vec<u8>],
    root: &TrustedRoot,
    integrated_time: i64,
) -> Result<(), Refusal> {
    let time = u64::try_from(integrated_time)
        .map(|seconds| UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds)))
        .map_err(|_| Refusal::BadBundle(format!("integratedTime {integrated_time}")))?;
    let leaf = CertificateDer::from(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| Refusal::BadCertificate(e.to_string()))?;
    let mut last_error = None;
    for authority in root
        .authorities
        .iter()
        .filter(|a| a.valid.contains(integrated_time))
    {
        let (anchor, intermediates) = authority
            .certificates
            .split_last()
            .expect("an authority has at least one certificate");
        let anchor = CertificateDer::from(anchor.as_slice());
        let anchor = webpki::anchor_from_trusted_cert(&anchor)
            .map_err(|e| Refusal::UntrustedCertificate(format!("{}: {e}", authority.uri)))?;
        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .chain(chain)
            .map(|der| CertificateDer::from(der.as_slice()))
            .collect();
        match end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            &intermediates,
            time,
            webpki::KeyUsage::required_if_present(EKU_CODE_SIGNING),
            None,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        None => Refusal::UntrustedCertificate(format!(
            "no certificate authority of the trusted root is valid at {integrated_time}"
        )),
        Some(
            e @ (webpki::Error::CertExpired { .. }
            | webpki::Error::CertNotValidYet { .. }
            | webpki::Error::InvalidCertValidity),
        ) => Refusal::CertificateNotValidAtIntegratedTime {
            integrated_time,
            detail: e.to_string(),
        },
        Some(webpki::Error::RequiredEkuNotFoundContext(_)) => Refusal::NotForCodeSigning,
        Some(e) => Refusal::UntrustedCertificate(e.to_string()),
    })
}

/// The SignedEntryTimestamp: the log's ECDSA P-256 signature over the canonical JSON (keys
/// sorted, no spaces, as Rekor and cosign canonicalise it) of the entry's body, time, log ID
/// and index.
fn check_signed_entry_timestamp(bundle: &Bundle, root: &TrustedRoot) -> Result<(), Refusal> {
    let entry = &bundle.payload;
    let log_id = hex::decode(&entry.log_id)
        .map_err(|_| Refusal::BadBundle(format!("logID {:?} is not hex", entry.log_id)))?;
    let log = root
        .logs
        .iter()
        .find(|log| log.key_id == log_id)
        .ok_or_else(|| {
            Refusal::UnknownLog(format!("log {} is not in the trusted root", entry.log_id))
        })?;
    if !log.valid.contains(entry.integrated_time) {
        return Err(Refusal::UnknownLog(format!(
            "the key of log {} is not valid at {}",
            log.base_url, entry.integrated_time
        )));
    }
    let key = log.key.as_ref().ok_or_else(|| {
        Refusal::UnknownLog(format!(
            "log {} has a {} key, which is not verified here",
            log.base_url, log.key_details
        ))
    })?;
    let signature = STANDARD
        .decode(bundle.signed_entry_timestamp.trim())
        .map_err(|_| Refusal::BadBundle("SignedEntryTimestamp is not base64".into()))?;
    let signature = p256::ecdsa::Signature::from_der(&signature)
        .map_err(|_| Refusal::BadSignedEntryTimestamp)?;
    key.verifying_key()
        .verify(&canonical_entry(entry), &signature)
        .map_err(|_| Refusal::BadSignedEntryTimestamp)
}

/// `{"body":…,"integratedTime":…,"logID":…,"logIndex":…}`: the RFC 8785 form of the entry,
/// which for two strings and two integers is this, keys in byte order.
fn canonical_entry(entry: &BundlePayload) -> Vec<u8> {
    let string = |s: &str| serde_json::to_string(s).expect("a string always serialises");
    format!(
        r#"{{"body":{},"integratedTime":{},"logID":{},"logIndex":{}}}"#,
        string(&entry.body),
        entry.integrated_time,
        string(&entry.log_id),
        entry.log_index
    )
    .into_bytes()
}

/// The log entry (`hashedrekord` 0.0.1) must hold this signature, this certificate and the
/// SHA-256 of this payload: otherwise the log vouches for some other signature.
fn check_log_entry(
    body_base64: &str,
    signature_base64: &str,
    leaf: &[u8],
    payload: &[u8],
) -> Result<(), Refusal> {
    let mismatch = Refusal::LogEntryMismatch;
    let body = STANDARD
        .decode(body_base64.trim())
        .map_err(|_| mismatch("the body is not base64".into()))?;
    let entry: RekorEntry = serde_json::from_slice(&body)
        .map_err(|e| mismatch(format!("not a hashedrekord entry: {e}")))?;
    if entry.kind != "hashedrekord" || entry.api_version != "0.0.1" {
        return Err(mismatch(format!(
            "a {} {} entry; only hashedrekord 0.0.1 is read",
            entry.kind, entry.api_version
        )));
    }
    let logged_signature = STANDARD
        .decode(entry.spec.signature.content.trim())
        .map_err(|_| mismatch("its signature is not base64".into()))?;
    // Already decoded once by `verify`, which refused anything that is not base64.
    let signature = STANDARD
        .decode(signature_base64.trim_ascii())
        .map_err(|_| Refusal::NotBase64)?;
    if logged_signature != signature {
        return Err(mismatch("it holds another signature".into()));
    }
    let logged_pem = STANDARD
        .decode(entry.spec.signature.public_key.content.trim())
        .map_err(|_| mismatch("its public key is not base64".into()))?;
    let logged_pem =
        String::from_utf8(logged_pem).map_err(|_| mismatch("its public key is not PEM".into()))?;
    let logged = pem_certificates(&logged_pem, 1)
        .map_err(|_| mismatch("its public key is not a PEM certificate".into()))?;
    if logged.first().map(Vec::as_slice) != Some(leaf) {
        return Err(mismatch("it holds another certificate".into()));
    }
    let hash = &entry.spec.data.hash;
    if hash.algorithm != "sha256" {
        return Err(mismatch(format!(
            "a {} hash; only sha256 is read",
            hash.algorithm
        )));
    }
    if !hash
        .value
        .eq_ignore_ascii_case(&hex::encode(Sha256::digest(payload)))
    {
        return Err(mismatch("it holds the hash of another payload".into()));
    }
    Ok(())
}

/// The certificate's email and URI Subject Alternative Names: the identity Fulcio vouched
/// for.
fn certificate_subjects(
    certificate: &x509_parser::certificate::X509Certificate<'_>,
) -> Vec<String> {
    let Ok(Some(names)) = certificate.subject_alternative_name() else {
        return Vec::new();
    };
    names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::RFC822Name(email) => Some((*email).to_owned()),
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

/// The certificate's OIDC issuer: Fulcio's DER UTF8String extension, else its older raw
/// string one.
fn certificate_issuer(
    certificate: &x509_parser::certificate::X509Certificate<'_>,
) -> Option<String> {
    let find = |oid: &str| {
        let oid: Oid<'static> = oid.parse().expect("a constant OID");
        certificate
            .extensions()
            .iter()
            .find(|extension| extension.oid == oid)
            .map(|extension| extension.value)
    };
    if let Some(value) = find(OID_ISSUER_V2) {
        return utf8_string(value);
    }
    find(OID_ISSUER_V1).and_then(|value| std::str::from_utf8(value).ok().map(str::to_owned))
}

/// The text of a DER UTF8String (tag 12) that is all of `der`.
fn utf8_string(der: &[u8]) -> Option<String> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x0c {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            (usize::from(len), rest)
        }
        0x82 => {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([len[0], len[1]])), rest)
        }
        _ => return None,
    };
    if rest.len() != len {
        return None;
    }
    std::str::from_utf8(rest).ok().map(str::to_owned)
}

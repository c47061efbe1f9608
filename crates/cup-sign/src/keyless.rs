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

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    use super::*;
    use crate::keys::SigningKey;
    use crate::payload::simple_signing_payload;
    use crate::trusted_root::TRUSTED_ROOT_MEDIA_TYPE;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const OTHER_DIGEST: &str =
        "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const REPOSITORY: &str = "registry.example/team/flags";
    const EMAIL: &str = "dev@example.com";
    const ISSUER: &str = "https://issuer.example";
    /// 2025-01-01T00:00:00Z and 2035-01-01T00:00:00Z: the CAs' lifetime.
    const CA_START: i64 = 1_735_689_600;
    const CA_END: i64 = 2_051_222_400;
    /// 2026-03-01T12:00:00Z: the leaf is valid for the ten minutes from then, long past.
    const LEAF_START: i64 = 1_772_366_400;
    const LEAF_END: i64 = LEAF_START + 600;
    const INTEGRATED: i64 = LEAF_START + 300;

    fn at(seconds: i64) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    /// A Fulcio of the test: a root and an intermediate that issues the leaves.
    struct Ca {
        root: Vec<u8>,
        intermediate: Vec<u8>,
        intermediate_pem: String,
        root_pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        ca_with(name, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    fn ca_with(name: &str, algorithm: &'static rcgen::SignatureAlgorithm) -> Ca {
        let root_key = KeyPair::generate_for(algorithm).unwrap();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name = DistinguishedName::new();
        root.distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = at(CA_START);
        root.not_after = at(CA_END);
        let root_cert = root.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root, root_key);

        let key = KeyPair::generate_for(algorithm).unwrap();
        let mut intermediate = CertificateParams::new(Vec::<String>::new()).unwrap();
        intermediate.distinguished_name = DistinguishedName::new();
        intermediate
            .distinguished_name
            .push(DnType::CommonName, format!("{name} intermediate"));
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // As Fulcio's intermediate: it carries the code-signing usage itself.
        intermediate.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        intermediate.not_before = at(CA_START);
        intermediate.not_after = at(CA_END);
        let intermediate_cert = intermediate.signed_by(&key, &root_issuer).unwrap();
        Ca {
            root: root_cert.der().to_vec(),
            intermediate: intermediate_cert.der().to_vec(),
            intermediate_pem: intermediate_cert.pem(),
            root_pem: root_cert.pem(),
            issuer: Issuer::new(intermediate, key),
        }
    }

    struct Leaf {
        email: &'static str,
        issuer_v2: Option<&'static str>,
        issuer_v1: Option<&'static str>,
        code_signing: bool,
        server_auth: bool,
        not_before: i64,
        not_after: i64,
    }

    impl Default for Leaf {
        fn default() -> Leaf {
            Leaf {
                email: EMAIL,
                issuer_v2: Some(ISSUER),
                issuer_v1: Some(ISSUER),
                code_signing: true,
                server_auth: false,
                not_before: LEAF_START,
                not_after: LEAF_END,
            }
        }
    }

    fn der_utf8_string(text: &str) -> Vec<u8> {
        let mut der = vec![0x0c, u8::try_from(text.len()).unwrap()];
        der.extend_from_slice(text.as_bytes());
        der
    }

    /// A Fulcio certificate for `key`: empty subject, the email as SAN, the issuer extensions.
    fn leaf(ca: &Ca, key: &SigningKey, leaf: &Leaf) -> String {
        let key_pair = KeyPair::try_from(key.to_pkcs8_der().as_slice()).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::Rfc822Name(leaf.email.try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = [
            (leaf.code_signing, ExtendedKeyUsagePurpose::CodeSigning),
            (leaf.server_auth, ExtendedKeyUsagePurpose::ServerAuth),
        ]
        .into_iter()
        .filter_map(|(wanted, usage)| wanted.then_some(usage))
        .collect();
        if let Some(issuer) = leaf.issuer_v2 {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                    der_utf8_string(issuer),
                ));
        }
        if let Some(issuer) = leaf.issuer_v1 {
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
                    issuer.as_bytes().to_vec(),
                ));
        }
        params.not_before = at(leaf.not_before);
        params.not_after = at(leaf.not_after);
        params.signed_by(&key_pair, &ca.issuer).unwrap().pem()
    }

    fn rfc3339(seconds: i64) -> String {
        at(seconds)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    fn log_id(rekor: &SigningKey) -> Vec<u8> {
        Sha256::digest(rekor.public_key().spki_der()).to_vec()
    }

    fn trusted_root_json(cas: &[&Ca], rekor: &SigningKey, ca_start: i64) -> String {
        let authorities: Vec<serde_json::Value> = cas
            .iter()
            .map(|ca| {
                serde_json::json!({
                    "subject": {"organization": "test", "commonName": "test"},
                    "uri": "https://fulcio.example",
                    "certChain": {"certificates": [
                        {"rawBytes": STANDARD.encode(&ca.intermediate)},
                        {"rawBytes": STANDARD.encode(&ca.root)},
                    ]},
                    "validFor": {"start": rfc3339(ca_start)},
                })
            })
            .collect();
        serde_json::json!({
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [{
                "baseUrl": "https://rekor.example",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STANDARD.encode(rekor.public_key().spki_der()),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": rfc3339(CA_START)},
                },
                "logId": {"keyId": STANDARD.encode(log_id(rekor))},
            }],
            "certificateAuthorities": authorities,
            "ctlogs": [],
            "timestampAuthorities": [],
        })
        .to_string()
    }

    /// Everything a keyless signature is made of, before it becomes annotations, so a test
    /// can change one part.
    struct Signed {
        payload: Vec<u8>,
        signature: String,
        certificate: String,
        chain: String,
        body: serde_json::Value,
        integrated_time: i64,
        log_index: i64,
        log_id: String,
    }

    impl Signed {
        /// The annotations, the SignedEntryTimestamp made with `rekor`.
        fn annotations(&self, rekor: &SigningKey) -> BTreeMap<String, String> {
            let entry = BundlePayload {
                body: STANDARD.encode(self.body.to_string()),
                integrated_time: self.integrated_time,
                log_index: self.log_index,
                log_id: self.log_id.clone(),
            };
            let set = STANDARD.encode(rekor.sign(&canonical_entry(&entry)));
            let bundle = serde_json::json!({
                "SignedEntryTimestamp": set,
                "Payload": {
                    "body": entry.body,
                    "integratedTime": entry.integrated_time,
                    "logIndex": entry.log_index,
                    "logID": entry.log_id,
                },
            });
            BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_owned(), self.signature.clone()),
                (CERTIFICATE_ANNOTATION.to_owned(), self.certificate.clone()),
                (CHAIN_ANNOTATION.to_owned(), self.chain.clone()),
                (BUNDLE_ANNOTATION.to_owned(), bundle.to_string()),
            ])
        }
    }

    struct World {
        ca: Ca,
        rekor: SigningKey,
        root: TrustedRoot,
    }

    fn world() -> World {
        let ca = ca("fulcio");
        let rekor = SigningKey::generate();
        let root =
            TrustedRoot::from_json(trusted_root_json(&[&ca], &rekor, CA_START).as_bytes()).unwrap();
        World { ca, rekor, root }
    }

    /// A keyless signature of `payload` by a fresh key certified by `ca` as `leaf_options`.
    fn sign(ca: &Ca, rekor: &SigningKey, payload: &[u8], leaf_options: &Leaf) -> Signed {
        let key = SigningKey::generate();
        let signature = STANDARD.encode(key.sign(payload));
        let certificate = leaf(ca, &key, leaf_options);
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
                "signature": {
                    "content": signature,
                    "publicKey": {"content": STANDARD.encode(&certificate)},
                },
            },
        });
        Signed {
            payload: payload.to_vec(),
            signature,
            certificate,
            chain: format!("{}{}", ca.intermediate_pem, ca.root_pem),
            body,
            integrated_time: INTEGRATED,
            log_index: 42,
            log_id: hex::encode(log_id(rekor)),
        }
    }

    fn payload() -> Vec<u8> {
        simple_signing_payload(REPOSITORY, DIGEST, &BTreeMap::new())
    }

    fn expected() -> Expected<'static> {
        Expected {
            manifest_digest: DIGEST,
            docker_reference: Some("registry.example/team/flags:v1"),
        }
    }

    fn by(subject: &str) -> Vec<Identity> {
        vec![Identity {
            issuer: ISSUER.into(),
            subject: Some(subject.into()),
            subject_regexp: None,
        }]
    }

    fn check(
        world: &World,
        signed: &Signed,
        annotations: &BTreeMap<String, String>,
        identities: &[Identity],
    ) -> Result<VerifiedKeyless, Refusal> {
        verify_keyless(
            &signed.payload,
            annotations,
            &world.root,
            identities,
            &expected(),
        )
    }

    #[test]
    fn a_keyless_signature_verifies_at_its_integrated_time() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let annotations = signed.annotations(&w.rekor);
        // The certificate expired months ago: validity is judged when the log recorded it.
        assert_eq!(
            check(&w, &signed, &annotations, &by(EMAIL)),
            Ok(VerifiedKeyless {
                docker_reference: REPOSITORY.into(),
                manifest_digest: DIGEST.into(),
                subject: EMAIL.into(),
                issuer: ISSUER.into(),
                integrated_time: INTEGRATED,
            })
        );
        // Without the chain annotation: the trusted root's own intermediates suffice.
        let mut without_chain = annotations.clone();
        without_chain.remove(CHAIN_ANNOTATION);
        assert!(check(&w, &signed, &without_chain, &by(EMAIL)).is_ok());
        // Any one of several identities; a regexp matching the whole subject.
        let identities = [
            by("someone@else.example").remove(0),
            Identity {
                issuer: ISSUER.into(),
                subject: None,
                subject_regexp: Some(r".*@example\.com".into()),
            },
        ];
        assert_eq!(
            check(&w, &signed, &annotations, &identities)
                .unwrap()
                .subject,
            EMAIL
        );
    }

    #[test]
    fn a_p384_ca_as_sigstores_own_verifies() {
        let ca = ca_with("fulcio", &rcgen::PKCS_ECDSA_P384_SHA384);
        let rekor = SigningKey::generate();
        let root =
            TrustedRoot::from_json(trusted_root_json(&[&ca], &rekor, CA_START).as_bytes()).unwrap();
        let signed = sign(&ca, &rekor, &payload(), &Leaf::default());
        let verified = verify_keyless(
            &signed.payload,
            &signed.annotations(&rekor),
            &root,
            &by(EMAIL),
            &expected(),
        )
        .unwrap();
        assert_eq!(verified.subject, EMAIL);
    }

    #[test]
    fn the_legacy_issuer_extension_is_read() {
        let w = world();
        let leaf = Leaf {
            issuer_v2: None,
            ..Leaf::default()
        };
        let signed = sign(&w.ca, &w.rekor, &payload(), &leaf);
        assert_eq!(
            check(&w, &signed, &signed.annotations(&w.rekor), &by(EMAIL))
                .unwrap()
                .issuer,
            ISSUER
        );
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused() {
        let w = world();
        let other = ca("other");
        // Its own chain in the annotation adds no trust.
        let signed = sign(&other, &w.rekor, &payload(), &Leaf::default());
        assert!(matches!(
            check(&w, &signed, &signed.annotations(&w.rekor), &by(EMAIL)),
            Err(Refusal::UntrustedCertificate(_))
        ));
        // Nor does a trusted root whose authority was not yet valid at the integrated time.
        let late = TrustedRoot::from_json(
            trusted_root_json(&[&w.ca], &w.rekor, INTEGRATED + 1).as_bytes(),
        )
        .unwrap();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        assert!(matches!(
            verify_keyless(
                &signed.payload,
                &signed.annotations(&w.rekor),
                &late,
                &by(EMAIL),
                &expected()
            ),
            Err(Refusal::UntrustedCertificate(m)) if m.contains("no certificate authority")
        ));
    }

    #[test]
    fn the_chain_annotation_may_supply_the_intermediate() {
        let w = world();
        // A trusted root that lists only the CA's root certificate.
        let mut json: serde_json::Value =
            serde_json::from_str(&trusted_root_json(&[&w.ca], &w.rekor, CA_START)).unwrap();
        json["certificateAuthorities"][0]["certChain"]["certificates"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        let root_only = TrustedRoot::from_json(json.to_string().as_bytes()).unwrap();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let mut annotations = signed.annotations(&w.rekor);
        let with = |annotations: &BTreeMap<String, String>| {
            verify_keyless(
                &signed.payload,
                annotations,
                &root_only,
                &by(EMAIL),
                &expected(),
            )
        };
        assert!(with(&annotations).is_ok());
        annotations.remove(CHAIN_ANNOTATION);
        assert!(matches!(
            with(&annotations),
            Err(Refusal::UntrustedCertificate(_))
        ));
    }

    #[test]
    fn a_certificate_not_valid_at_the_integrated_time_is_refused() {
        let w = world();
        for integrated_time in [LEAF_END + 1, LEAF_START - 1] {
            let mut signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
            signed.integrated_time = integrated_time;
            assert!(
                matches!(
                    check(&w, &signed, &signed.annotations(&w.rekor), &by(EMAIL)),
                    Err(Refusal::CertificateNotValidAtIntegratedTime { integrated_time: t, .. })
                        if t == integrated_time
                ),
                "{integrated_time}"
            );
        }
    }

    #[test]
    fn a_certificate_not_for_code_signing_is_refused() {
        let w = world();
        for leaf in [
            Leaf {
                code_signing: false,
                ..Leaf::default()
            },
            Leaf {
                code_signing: false,
                server_auth: true,
                ..Leaf::default()
            },
        ] {
            let signed = sign(&w.ca, &w.rekor, &payload(), &leaf);
            assert_eq!(
                check(&w, &signed, &signed.annotations(&w.rekor), &by(EMAIL)),
                Err(Refusal::NotForCodeSigning)
            );
        }
    }

    #[test]
    fn the_signature_and_payload_are_checked_as_with_a_key() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let mut annotations = signed.annotations(&w.rekor);
        // A signature by another key (the log entry is checked later; this comes first).
        annotations.insert(
            SIGNATURE_ANNOTATION.into(),
            STANDARD.encode(SigningKey::generate().sign(&signed.payload)),
        );
        assert_eq!(
            check(&w, &signed, &annotations, &by(EMAIL)),
            Err(Refusal::BadSignature)
        );

        let other_digest = sign(
            &w.ca,
            &w.rekor,
            &simple_signing_payload(REPOSITORY, OTHER_DIGEST, &BTreeMap::new()),
            &Leaf::default(),
        );
        assert!(matches!(
            check(
                &w,
                &other_digest,
                &other_digest.annotations(&w.rekor),
                &by(EMAIL)
            ),
            Err(Refusal::DigestMismatch { .. })
        ));
        let other_repository = sign(
            &w.ca,
            &w.rekor,
            &simple_signing_payload("registry.example/team/other", DIGEST, &BTreeMap::new()),
            &Leaf::default(),
        );
        assert!(matches!(
            check(
                &w,
                &other_repository,
                &other_repository.annotations(&w.rekor),
                &by(EMAIL)
            ),
            Err(Refusal::ReferenceMismatch { .. })
        ));
    }

    #[test]
    fn the_signed_entry_timestamp_must_be_the_logs() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        // Signed by another key claiming to be the log.
        assert_eq!(
            check(
                &w,
                &signed,
                &signed.annotations(&SigningKey::generate()),
                &by(EMAIL)
            ),
            Err(Refusal::BadSignedEntryTimestamp)
        );
        // The entry's time moved after the log signed it (still inside the certificate's
        // validity, so only the timestamp can catch it).
        let mut annotations = signed.annotations(&w.rekor);
        let mut bundle: serde_json::Value =
            serde_json::from_str(&annotations[BUNDLE_ANNOTATION]).unwrap();
        bundle["Payload"]["integratedTime"] = (INTEGRATED + 1).into();
        annotations.insert(BUNDLE_ANNOTATION.into(), bundle.to_string());
        assert_eq!(
            check(&w, &signed, &annotations, &by(EMAIL)),
            Err(Refusal::BadSignedEntryTimestamp)
        );
        // A log the trusted root does not know.
        let mut unknown = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        unknown.log_id = hex::encode([7u8; 32]);
        assert!(matches!(
            check(&w, &unknown, &unknown.annotations(&w.rekor), &by(EMAIL)),
            Err(Refusal::UnknownLog(_))
        ));
    }

    #[test]
    fn the_log_entry_must_be_for_this_signature() {
        let w = world();
        let mut other_signature = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        other_signature.body["spec"]["signature"]["content"] = STANDARD
            .encode(SigningKey::generate().sign(&payload()))
            .into();
        assert!(matches!(
            check(
                &w,
                &other_signature,
                &other_signature.annotations(&w.rekor),
                &by(EMAIL)
            ),
            Err(Refusal::LogEntryMismatch(m)) if m.contains("another signature")
        ));

        let mut other_hash = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        other_hash.body["spec"]["data"]["hash"]["value"] =
            hex::encode(Sha256::digest(b"another payload")).into();
        assert!(matches!(
            check(&w, &other_hash, &other_hash.annotations(&w.rekor), &by(EMAIL)),
            Err(Refusal::LogEntryMismatch(m)) if m.contains("another payload")
        ));

        let mut other_certificate = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let stranger = leaf(&w.ca, &SigningKey::generate(), &Leaf::default());
        other_certificate.body["spec"]["signature"]["publicKey"]["content"] =
            STANDARD.encode(stranger).into();
        assert!(matches!(
            check(
                &w,
                &other_certificate,
                &other_certificate.annotations(&w.rekor),
                &by(EMAIL)
            ),
            Err(Refusal::LogEntryMismatch(m)) if m.contains("another certificate")
        ));

        let mut other_kind = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        other_kind.body["kind"] = "intoto".into();
        assert!(matches!(
            check(
                &w,
                &other_kind,
                &other_kind.annotations(&w.rekor),
                &by(EMAIL)
            ),
            Err(Refusal::LogEntryMismatch(_))
        ));
    }

    #[test]
    fn the_identity_must_be_allowed() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let annotations = signed.annotations(&w.rekor);
        let refused = |identities: &[Identity]| {
            matches!(
                check(&w, &signed, &annotations, identities),
                Err(Refusal::IdentityMismatch { subject, issuer })
                    if subject == EMAIL && issuer == ISSUER
            )
        };
        assert!(refused(&by("other@example.com")));
        assert!(refused(&[Identity {
            issuer: "https://other-issuer.example".into(),
            subject: Some(EMAIL.into()),
            subject_regexp: None,
        }]));
        for pattern in [r".*@example\.org", r"example\.com", "dev"] {
            assert!(
                refused(&[Identity {
                    issuer: ISSUER.into(),
                    subject: None,
                    subject_regexp: Some(pattern.into()),
                }]),
                "{pattern}"
            );
        }
    }

    #[test]
    fn unusable_identities_are_the_callers_mistake() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let annotations = signed.annotations(&w.rekor);
        for identities in [
            vec![],
            vec![Identity {
                issuer: ISSUER.into(),
                subject: Some(EMAIL.into()),
                subject_regexp: Some(".*".into()),
            }],
            vec![Identity {
                issuer: ISSUER.into(),
                subject: None,
                subject_regexp: None,
            }],
            vec![Identity {
                issuer: ISSUER.into(),
                subject: None,
                subject_regexp: Some("(".into()),
            }],
        ] {
            assert!(matches!(
                check(&w, &signed, &annotations, &identities),
                Err(Refusal::BadIdentity(_))
            ));
        }
    }

    #[test]
    fn annotations_are_required_and_bounded() {
        let w = world();
        let signed = sign(&w.ca, &w.rekor, &payload(), &Leaf::default());
        let annotations = signed.annotations(&w.rekor);
        for name in [
            SIGNATURE_ANNOTATION,
            CERTIFICATE_ANNOTATION,
            BUNDLE_ANNOTATION,
        ] {
            let mut missing = annotations.clone();
            missing.remove(name);
            assert_eq!(
                check(&w, &signed, &missing, &by(EMAIL)),
                Err(Refusal::MissingAnnotation(name))
            );
            let mut big = annotations.clone();
            big.insert(name.into(), " ".repeat(MAX_ANNOTATION_BYTES + 1));
            assert!(matches!(
                check(&w, &signed, &big, &by(EMAIL)),
                Err(Refusal::TooLarge { what, .. }) if what == name
            ));
        }
        let mut long_chain = annotations.clone();
        long_chain.insert(
            CHAIN_ANNOTATION.into(),
            w.ca.intermediate_pem.repeat(MAX_CHAIN_CERTIFICATES + 1),
        );
        assert!(matches!(
            check(&w, &signed, &long_chain, &by(EMAIL)),
            Err(Refusal::BadCertificate(_))
        ));
        let mut not_a_certificate = annotations.clone();
        not_a_certificate.insert(CERTIFICATE_ANNOTATION.into(), "nothing".into());
        assert!(matches!(
            check(&w, &signed, &not_a_certificate, &by(EMAIL)),
            Err(Refusal::BadCertificate(_))
        ));
        let mut not_a_bundle = annotations.clone();
        not_a_bundle.insert(BUNDLE_ANNOTATION.into(), "{}".into());
        assert!(matches!(
            check(&w, &signed, &not_a_bundle, &by(EMAIL)),
            Err(Refusal::BadBundle(_))
        ));
    }

    #[test]
    fn the_canonical_entry_sorts_its_keys() {
        let entry = BundlePayload {
            body: "Ym9keQ==".into(),
            integrated_time: 1_700_000_000,
            log_index: 7,
            log_id: "c0ffee".into(),
        };
        assert_eq!(
            String::from_utf8(canonical_entry(&entry)).unwrap(),
            r#"{"body":"Ym9keQ==","integratedTime":1700000000,"logID":"c0ffee","logIndex":7}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn no_annotations_make_verify_keyless_panic(
            signature: String, certificate: String, chain: String, bundle: String,
        ) {
            let w = world();
            let annotations = BTreeMap::from([
                (SIGNATURE_ANNOTATION.to_owned(), signature),
                (CERTIFICATE_ANNOTATION.to_owned(), certificate),
                (CHAIN_ANNOTATION.to_owned(), chain),
                (BUNDLE_ANNOTATION.to_owned(), bundle),
            ]);
            let _ = verify_keyless(&payload(), &annotations, &w.root, &by(EMAIL), &expected());
        }
    }
}

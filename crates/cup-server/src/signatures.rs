//! Which controllers must be signed, by whom, and the check itself: an image's manifest
//! digest must carry a cosign signature that one of the allowed keys made, for that digest
//! and that repository, before its code is compiled or run.
//!
//! A controller must be verified when `--require-signatures` is on or its Controller has
//! `spec.verify`. Its own `spec.verify.keys` then replace the global `--verify-key`s (a
//! controller that names its signer accepts no other). Signatures are read from the local
//! store (pulls copy them there, so an offline restart verifies without the registry), and
//! from the registry when the store has none that verifies; those found there that verify
//! are kept in the store.

use std::path::{Path, PathBuf};

use cup_model::{IdentitySpec, WasmSpec};
use cup_sign::{Identity, PublicKey, TrustedRoot};

/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The signature flags.
#[derive(Debug, Clone, Default)]
pub struct SignatureOptions {
    /// Keys any controller's signature may be made with (`--verify-key`).
    pub verify_keys: Vec<PathBuf>,
    /// Keyless signers any controller's signature may come from
    /// (`--certificate-oidc-issuer` with `--certificate-identity[-regexp]`).
    pub identities: Vec<IdentitySpec>,
    /// The Sigstore trusted root keyless signatures are checked against (`--trusted-root`).
    pub trusted_root: Option<PathBuf>,
    /// Every wasm controller must be signed (`--require-signatures`).
    pub require: bool,
}

/// Why the signature flags cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {path}: {reason}")]
pub struct SignatureSetupError {
    /// The flag.
    pub flag: &'static str,
    /// The file (or value) it names.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// A key and where it came from, for messages.
#[derive(Clone)]
pub struct NamedKey {
    pub key: PublicKey,
    pub origin: String,
}

/// What a controller's signature must satisfy: one of the keys made it, or it is keyless
/// and its certificate names one of the identities.
#[derive(Clone, Default)]
pub struct Requirement {
    pub keys: Vec<NamedKey>,
    pub identities: Vec<Identity>,
}

/// The signature policy of a running server.
#[derive(Clone, Default)]
pub struct SignaturePolicy {
    global: Vec<NamedKey>,
    global_identities: Vec<Identity>,
    trusted_root: Option<std::sync::Arc<TrustedRoot>>,
    require: bool,
}

fn identity(spec: &IdentitySpec) -> Identity {
    Identity {
        issuer: spec.issuer.clone(),
        subject: spec.subject.clone(),
        subject_regexp: spec.subject_regexp.clone(),
    }
}

impl SignaturePolicy {
    /// Reads the `--verify-key` files.
    pub fn load(options: &SignatureOptions) -> Result<SignaturePolicy, SignatureSetupError> {
        let global = options
            .verify_keys
            .iter()
            .map(|path| {
                read_key(path)
                    .map(|key| NamedKey {
                        key,
                        origin: path.display().to_string(),
                    })
                    .map_err(|reason| SignatureSetupError {
                        flag: "--verify-key",
                        path: path.clone(),
                        reason,
                    })
            })
            .collect::<Result<_, _>>()?;
        let trusted_root = options
            .trusted_root
            .as_ref()
            .map(|path| {
                let setup = |reason: String| SignatureSetupError {
                    flag: "--trusted-root",
                    path: path.clone(),
                    reason,
                };
                let bytes =
                    read_bounded(path, cup_sign::MAX_TRUSTED_ROOT_BYTES as u64).map_err(setup)?;
                TrustedRoot::from_json(&bytes)
                    .map(std::sync::Arc::new)
                    .map_err(|e| setup(e.to_string()))
            })
            .transpose()?;
        Ok(SignaturePolicy {
            global,
            global_identities: options.identities.iter().map(identity).collect(),
            trusted_root,
            require: options.require,
        })
    }

    /// The trusted root keyless signatures are checked against, if one was given.
    pub fn trusted_root(&self) -> Option<&TrustedRoot> {
        self.trusted_root.as_deref()
    }

    /// What `spec`'s image signature must satisfy, or `None` when it need not be signed.
    pub fn requirement_for(
        &self,
        spec: &WasmSpec,
        config_root: &Path,
    ) -> Result<Option<Requirement>, String> {
        let requirement = if let Some(verify) = &spec.verify {
            if verify.keys.is_empty() && verify.identities.is_empty() {
                return Err("spec.verify names no keys and no identities".into());
            }
            Requirement {
                keys: verify
                    .keys
                    .iter()
                    .map(|entry| controller_key(entry, config_root))
                    .collect::<Result<Vec<_>, _>>()?,
                identities: verify.identities.iter().map(identity).collect(),
            }
        } else if self.require {
            if self.global.is_empty() && self.global_identities.is_empty() {
                return Err(
                    "--require-signatures is on but there is nothing to verify with: give \
                     --verify-key or --certificate-oidc-issuer with --certificate-identity, or the \
                     Controller's spec.verify"
                        .into(),
                );
            }
            Requirement {
                keys: self.global.clone(),
                identities: self.global_identities.clone(),
            }
        } else {
            return Ok(None);
        };
        if !requirement.identities.is_empty() && self.trusted_root.is_none() {
            return Err(
                "keyless identities need a Sigstore trusted root to check certificates and log \
                 entries against: give --trusted-root"
                    .into(),
            );
        }
        Ok(Some(requirement))
    }
}

/// A `spec.verify.keys` entry: PEM text, or a PEM file relative to the config directory.
fn controller_key(entry: &str, config_root: &Path) -> Result<NamedKey, String> {
    if entry.trim_start().starts_with("-----BEGIN") {
        let key = PublicKey::from_pem(entry.as_bytes())
            .map_err(|e| format!("spec.verify.keys: an inline key: {e}"))?;
        let origin = format!("inline key {}", key.fingerprint());
        return Ok(NamedKey { key, origin });
    }
    let path = config_root.join(entry);
    let key = read_key(&path).map_err(|reason| format!("spec.verify.keys: {entry}: {reason}"))?;
    Ok(NamedKey {
        key,
        origin: entry.to_owned(),
    })
}

fn read_key(path: &Path) -> Result<PublicKey, String> {
    let pem = read_bounded(path, MAX_KEY_FILE)?;
    PublicKey::from_pem(&pem).map_err(|e| e.to_string())
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

/// A signature that verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedSignature {
    /// Where the key that verified it came from (a `--verify-key` path or a
    /// `spec.verify.keys` entry).
    pub key: String,
    /// The key's fingerprint (empty for a keyless signature).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_fingerprint: String,
    /// The repository the signature names.
    pub docker_reference: String,
}

/// Checks `signatures` of `manifest_digest` (in `repository`, `registry/repository`) against
/// `requirement`: the first signature one of its keys verifies, or that verifies keylessly
/// for one of its identities against `trusted_root` (and its index), or every reason none did.
pub fn check(
    signatures: &[cup_oci::StoredSignature],
    requirement: &Requirement,
    trusted_root: Option<&TrustedRoot>,
    manifest_digest: &str,
    repository: &str,
) -> Result<(VerifiedSignature, usize), String> {
    let keys = &requirement.keys;
    if signatures.is_empty() {
        return Err(format!(
            "signature required: {manifest_digest} has no signature (none in the store, none in \
             the registry under its .sig tag); sign it with `cup controller sign`"
        ));
    }
    let expected = cup_sign::Expected {
        manifest_digest,
        docker_reference: Some(repository),
    };
    let mut reasons = Vec::new();
    for (index, signature) in signatures.iter().enumerate() {
        for named in keys {
            match cup_sign::verify(
                &signature.payload,
                &signature.signature,
                &named.key,
                &expected,
            ) {
                Ok(verified) => {
                    let verified = VerifiedSignature {
                        key: named.origin.clone(),
                        key_fingerprint: verified.key_fingerprint,
                        docker_reference: verified.docker_reference,
                    };
                    return Ok((verified, index));
                }
                Err(refusal) => reasons.push(format!(
                    "signature {} with key {}: {refusal}",
                    index + 1,
                    named.origin
                )),
            }
        }
        if let (false, Some(root)) = (requirement.identities.is_empty(), trusted_root) {
            let mut annotations = signature.annotations.clone();
            annotations.insert(
                cup_sign::SIGNATURE_ANNOTATION.to_owned(),
                signature.signature.clone(),
            );
            match cup_sign::verify_keyless(
                &signature.payload,
                &annotations,
                root,
                &requirement.identities,
                &expected,
            ) {
                Ok(verified) => {
                    let verified = VerifiedSignature {
                        key: format!("keyless {} ({})", verified.subject, verified.issuer),
                        key_fingerprint: String::new(),
                        docker_reference: verified.docker_reference,
                    };
                    return Ok((verified, index));
                }
                Err(refusal) => {
                    reasons.push(format!("signature {} keyless: {refusal}", index + 1));
                }
            }
        }
    }
    Err(format!(
        "signature required: no signature of {manifest_digest} verifies: {}",
        reasons.join("; ")
    ))
}

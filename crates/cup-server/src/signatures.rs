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

use cup_model::WasmSpec;
use cup_sign::PublicKey;

/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The signature flags.
#[derive(Debug, Clone, Default)]
pub struct SignatureOptions {
    /// Keys any controller's signature may be made with (`--verify-key`).
    pub verify_keys: Vec<PathBuf>,
    /// Every wasm controller must be signed (`--require-signatures`).
    pub require: bool,
}

/// Why the signature flags cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--verify-key {path}: {reason}")]
pub struct SignatureSetupError {
    /// The key file.
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

/// The signature policy of a running server.
#[derive(Clone, Default)]
pub struct SignaturePolicy {
    global: Vec<NamedKey>,
    require: bool,
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
                        path: path.clone(),
                        reason,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(SignaturePolicy {
            global,
            require: options.require,
        })
    }

    /// The keys `spec`'s image must be signed with, or `None` when it need not be signed.
    pub fn keys_for(
        &self,
        spec: &WasmSpec,
        config_root: &Path,
    ) -> Result<Option<Vec<NamedKey>>, String> {
        if let Some(verify) = &spec.verify {
            if verify.keys.is_empty() {
                return Err("spec.verify names no keys".into());
            }
            let keys = verify
                .keys
                .iter()
                .map(|entry| controller_key(entry, config_root))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Some(keys));
        }
        if !self.require {
            return Ok(None);
        }
        if self.global.is_empty() {
            return Err(
                "--require-signatures is on but there is no key to verify with: give --verify-key \
                 or the Controller's spec.verify.keys"
                    .into(),
            );
        }
        Ok(Some(self.global.clone()))
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
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut pem = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|e| e.to_string())?;
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err(format!("larger than {MAX_KEY_FILE} bytes"));
    }
    PublicKey::from_pem(&pem).map_err(|e| e.to_string())
}

/// A signature that verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedSignature {
    /// Where the key that verified it came from (a `--verify-key` path or a
    /// `spec.verify.keys` entry).
    pub key: String,
    /// The key's fingerprint.
    pub key_fingerprint: String,
    /// The repository the signature names.
    pub docker_reference: String,
}

/// Checks `signatures` of `manifest_digest` (in `repository`, `registry/repository`) against
/// `keys`: the first signature one key verifies (and its index), or every reason none did.
pub fn check(
    signatures: &[cup_oci::StoredSignature],
    keys: &[NamedKey],
    manifest_digest: &str,
    repository: &str,
) -> Result<(VerifiedSignature, usize), String> {
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
    }
    Err(format!(
        "signature required: no signature of {manifest_digest} verifies: {}",
        reasons.join("; ")
    ))
}

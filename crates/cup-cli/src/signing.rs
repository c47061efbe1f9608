//! `cup controller keygen`, `sign` and `verify-signature`: cosign-format signatures of a
//! controller's manifest digest, kept under the cosign `.sig` tag in the registry and in
//! the local store (so an air-gapped cupd verifies too). Crypto is `cup-sign`'s, storage
//! `cup-oci`'s; this module resolves references and reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cup_oci::{ImageRef, StoredSignature};
use cup_sign::{PublicKey, SigningKey};
use serde::Serialize;

use crate::Output;
use crate::oci::{RegistryArgs, open_store, runtime};

/// Environment variables a key's password is read from, in order (`COSIGN_PASSWORD` so a
/// key made by cosign works as cosign users run it).
const PASSWORD_VARIABLES: [&str; 2] = ["CUP_SIGNING_PASSWORD", "COSIGN_PASSWORD"];

fn password() -> Result<Option<Vec<u8>>> {
    for name in PASSWORD_VARIABLES {
        if let Some(value) = std::env::var_os(name) {
            let value = value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
            return Ok(Some(value.into_bytes()));
        }
    }
    Ok(None)
}

/// `cup controller keygen [--out-prefix P]`: `P.key` (cosign's encrypted format, 0600) and
/// `P.pub`.
pub fn keygen(prefix: &Path, force: bool) -> Result<i32> {
    let Some(password) = password()? else {
        bail!(
            "set CUP_SIGNING_PASSWORD (or COSIGN_PASSWORD) to the password that will encrypt the \
             private key (it may be empty: CUP_SIGNING_PASSWORD= cup controller keygen)"
        );
    };
    let private = with_extension(prefix, "key");
    let public = with_extension(prefix, "pub");
    for path in [&private, &public] {
        if path.exists() && !force {
            bail!("{} exists; pass --force to replace it", path.display());
        }
    }
    let key = SigningKey::generate();
    let pem = key
        .to_cosign_pem(&password)
        .context("encrypting the private key")?;
    write_private(&private, pem.as_bytes())?;
    crate::oci::write_atomic(&public, key.public_key().to_pem().as_bytes())?;
    eprintln!(
        "wrote {} (encrypted) and {} ({})",
        private.display(),
        public.display(),
        key.public_key().fingerprint()
    );
    Ok(0)
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".cup-key-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(64 * 1024 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > 64 * 1024 {
        bail!("{what} {} is larger than 64 KiB", path.display());
    }
    Ok(bytes)
}

fn signing_key(path: &Path) -> Result<SigningKey> {
    let pem = read_bounded(path, "the key")?;
    let password = password()?;
    SigningKey::from_pem(&pem, password.as_deref()).with_context(|| {
        format!(
            "reading the private key {} (its password comes from CUP_SIGNING_PASSWORD or COSIGN_PASSWORD)",
            path.display()
        )
    })
}

fn public_key(path: &Path) -> Result<PublicKey> {
    let pem = read_bounded(path, "the public key")?;
    PublicKey::from_pem(&pem).with_context(|| format!("reading the public key {}", path.display()))
}

/// What a reference names: its repository (`registry/repository`, the signed identity) and
/// the manifest digest, from the registry or, with `local`, from the store.
struct Target {
    repository: String,
    digest: String,
}

fn resolve(
    reference: &str,
    local: bool,
    store: &cup_oci::Store,
    args: &RegistryArgs,
) -> Result<Target> {
    let parsed = ImageRef::parse(reference)
        .with_context(|| format!("reading the reference {reference:?}"))?;
    let repository = format!("{}/{}", parsed.registry, parsed.repository);
    let digest = if local {
        store.resolve(reference)?.with_context(|| {
            format!("{reference} is not in the local store (cup controller pull or add it first)")
        })?
    } else if let Some(digest) = parsed.digest.clone() {
        digest
    } else {
        let registry = args.registry()?;
        runtime()?
            .block_on(registry.inspect(reference))
            .with_context(|| format!("resolving {reference} in its registry"))?
            .digest
    };
    Ok(Target { repository, digest })
}

#[derive(Serialize)]
struct Signed {
    reference: String,
    manifest_digest: String,
    key_fingerprint: String,
    registry: bool,
    store: bool,
}

/// `cup controller sign REF --key KEY`.
pub fn sign(
    reference: &str,
    key: &Path,
    annotations: &[String],
    local: bool,
    store: Option<&Path>,
    args: &RegistryArgs,
    output: Output,
) -> Result<i32> {
    let key = signing_key(key)?;
    let mut optional = BTreeMap::new();
    for pair in annotations {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--annotation {pair:?}: expected KEY=VALUE");
        };
        optional.insert(k.to_owned(), v.to_owned());
    }
    let store = open_store(store)?;
    let target = resolve(reference, local, &store, args)?;
    let payload = cup_sign::simple_signing_payload(&target.repository, &target.digest, &optional);
    let signature = base64_encode(&key.sign(&payload));
    let stored = StoredSignature::new(payload, signature, BTreeMap::new());
    let mut signed = Signed {
        reference: format!("{}@{}", target.repository, target.digest),
        manifest_digest: target.digest.clone(),
        key_fingerprint: key.public_key().fingerprint(),
        registry: false,
        store: false,
    };
    if !local {
        let registry = args.registry()?;
        runtime()?
            .block_on(registry.attach_signature(reference, &target.digest, stored.clone()))
            .with_context(|| format!("attaching the signature to {reference} in its registry"))?;
        signed.registry = true;
    }
    if store.entry(&target.digest)?.is_some() {
        store
            .attach_signature(&target.repository, &target.digest, stored)
            .context("keeping the signature in the local store")?;
        signed.store = true;
    } else if local {
        bail!("{reference} is not in the local store");
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&signed)?),
        Output::Table => println!(
            "signed {} with {}{}{}",
            signed.reference,
            signed.key_fingerprint,
            if signed.registry { " (registry" } else { " (" },
            if signed.store {
                if signed.registry {
                    ", store)"
                } else {
                    "store)"
                }
            } else {
                ")"
            }
        ),
    }
    Ok(0)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Serialize)]
struct Verdict {
    /// Which stored signature (1-based), where it was found.
    index: usize,
    source: &'static str,
    verified: bool,
    reason: Option<String>,
    docker_reference: Option<String>,
    key_fingerprint: Option<String>,
}

#[derive(Serialize)]
struct VerifyReport {
    reference: String,
    manifest_digest: String,
    signatures: Vec<Verdict>,
    verified: bool,
}

/// `cup controller verify-signature REF --key PUB`: exit 0 when a signature of exactly the
/// digest REF resolves to, for its repository, verifies with the key.
/// What `verify-signature` checks signatures with.
pub enum Verifier {
    /// A public key.
    Key(PublicKey),
    /// Keyless: a trusted root and the identity the certificate must name.
    Keyless {
        root: Box<cup_sign::TrustedRoot>,
        identity: cup_sign::Identity,
    },
}

impl Verifier {
    pub fn key(path: &Path) -> Result<Verifier> {
        Ok(Verifier::Key(public_key(path)?))
    }

    pub fn keyless(root: &Path, identity: cup_sign::Identity) -> Result<Verifier> {
        let bytes = read_bounded(root, "the trusted root")?;
        let root = cup_sign::TrustedRoot::from_json(&bytes)
            .with_context(|| format!("reading the trusted root {}", root.display()))?;
        Ok(Verifier::Keyless {
            root: Box::new(root),
            identity,
        })
    }

    fn check(
        &self,
        signature: &StoredSignature,
        expected: &cup_sign::Expected<'_>,
    ) -> std::result::Result<(String, String), String> {
        match self {
            Verifier::Key(key) => {
                cup_sign::verify(&signature.payload, &signature.signature, key, expected)
                    .map(|v| (v.docker_reference, v.key_fingerprint))
                    .map_err(|r| r.to_string())
            }
            Verifier::Keyless { root, identity } => {
                let mut annotations = signature.annotations.clone();
                annotations.insert(
                    cup_sign::SIGNATURE_ANNOTATION.to_owned(),
                    signature.signature.clone(),
                );
                cup_sign::verify_keyless(
                    &signature.payload,
                    &annotations,
                    root,
                    std::slice::from_ref(identity),
                    expected,
                )
                .map(|v| {
                    (
                        v.docker_reference,
                        format!("keyless {} ({})", v.subject, v.issuer),
                    )
                })
                .map_err(|r| r.to_string())
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Verifier::Key(key) => key.fingerprint(),
            Verifier::Keyless { identity, .. } => format!(
                "keyless {} ({})",
                identity
                    .subject
                    .as_deref()
                    .or(identity.subject_regexp.as_deref())
                    .unwrap_or_default(),
                identity.issuer
            ),
        }
    }
}

pub fn verify(
    reference: &str,
    key: &Verifier,
    local: bool,
    store: Option<&Path>,
    args: &RegistryArgs,
    output: Output,
) -> Result<i32> {
    let store = open_store(store)?;
    let mut found: Vec<(&'static str, StoredSignature)> = Vec::new();
    // A file: the digest it has as `cup controller add` or `push` package it, and the
    // signatures the store keeps for that digest, whatever repository they name.
    let file = Path::new(reference);
    let target = if file.is_file() {
        let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let artifact = cup_oci::Artifact::build(&wasm, &cup_oci::ArtifactOptions::from_env()?)
            .with_context(|| {
                format!("packaging {} as `cup controller add` does", file.display())
            })?;
        for s in store.signatures(&artifact.manifest_digest)? {
            found.push(("store", s));
        }
        Target {
            repository: String::new(),
            digest: artifact.manifest_digest,
        }
    } else {
        let target = resolve(reference, local, &store, args)?;
        if local {
            for s in store.signatures(&target.digest)? {
                found.push(("store", s));
            }
        } else {
            let registry = args.registry()?;
            for s in runtime()?
                .block_on(registry.signatures(reference, &target.digest))
                .with_context(|| format!("reading the signatures of {reference}"))?
            {
                found.push(("registry", s));
            }
        }
        target
    };
    let expected = cup_sign::Expected {
        manifest_digest: &target.digest,
        // A file names no repository: any repository's signature of its digest counts.
        docker_reference: (!target.repository.is_empty()).then_some(target.repository.as_str()),
    };
    let signatures: Vec<Verdict> = found
        .iter()
        .enumerate()
        .map(|(i, (source, s))| match key.check(s, &expected) {
            Ok((docker_reference, signer)) => Verdict {
                index: i + 1,
                source,
                verified: true,
                reason: None,
                docker_reference: Some(docker_reference),
                key_fingerprint: Some(signer),
            },
            Err(refusal) => Verdict {
                index: i + 1,
                source,
                verified: false,
                reason: Some(refusal),
                docker_reference: None,
                key_fingerprint: None,
            },
        })
        .collect();
    let report = VerifyReport {
        reference: if target.repository.is_empty() {
            format!("{} ({})", file.display(), target.digest)
        } else {
            format!("{}@{}", target.repository, target.digest)
        },
        manifest_digest: target.digest.clone(),
        verified: signatures.iter().any(|v| v.verified),
        signatures,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => {
            if report.signatures.is_empty() {
                println!("{}: no signatures", report.reference);
            }
            for v in &report.signatures {
                match &v.reason {
                    None => println!(
                        "signature {} ({}): verified with {}",
                        v.index,
                        v.source,
                        key.describe()
                    ),
                    Some(reason) => {
                        println!("signature {} ({}): refused: {reason}", v.index, v.source)
                    }
                }
            }
        }
    }
    Ok(if report.verified { 0 } else { 1 })
}

//! Controllers from OCI images: taken from the local store (an OCI image layout shared
//! with `cup`) or pulled into it, every byte verified against its digest, the package's
//! sections verified, and the manifest's annotations cross-checked against them.

use std::sync::Arc;

use cup_oci::{NoProgress, Registry, RegistryOptions, Store};
use cup_sections::Integrity;

use crate::signatures::{Requirement, VerifiedSignature, check};

/// A verified module from an image.
pub struct FetchedImage {
    pub wasm: Vec<u8>,
    /// The manifest digest the reference resolved to.
    pub manifest_digest: String,
}

/// Where images come from.
#[derive(Clone)]
pub struct ImageSource {
    store: Result<Store, String>,
    registry: Registry,
    strict: bool,
}

impl ImageSource {
    /// `store_dir` is opened now; if that fails every image controller fails with the reason.
    pub fn new(store_dir: &std::path::Path, options: RegistryOptions, strict: bool) -> ImageSource {
        let store = Store::open(store_dir)
            .map_err(|e| format!("opening the OCI store {}: {e}", store_dir.display()));
        ImageSource {
            store,
            registry: Registry::new(options),
            strict,
        }
    }

    /// Resolves, fetches and verifies `reference`.
    pub async fn fetch(&self, reference: &str) -> Result<FetchedImage, String> {
        let pinned = cup_oci::digest_of_reference(reference).is_some();
        if self.strict && !pinned {
            return Err(format!(
                "image {reference:?} has no @sha256: digest and --strict-digests refuses tags"
            ));
        }
        let store = self.store.clone()?;
        let manifest_digest = self.resolve(reference, &store, pinned).await?;
        let digest = manifest_digest.clone();
        let wasm = tokio::task::spawn_blocking(move || read_verified(&store, &digest))
            .await
            .map_err(|e| format!("reading the image from the store: {e}"))??;
        Ok(FetchedImage {
            wasm,
            manifest_digest,
        })
    }

    /// Checks that `manifest_digest` (what `reference` resolved to) carries a signature one
    /// of `keys` made for it and its repository: from the store first (so an offline
    /// restart needs no registry), then from the registry, whose verifying signature is
    /// then kept in the store.
    pub async fn verify_signature(
        &self,
        reference: &str,
        manifest_digest: &str,
        requirement: &Requirement,
        trusted_root: Option<&cup_sign::TrustedRoot>,
    ) -> Result<VerifiedSignature, String> {
        let parsed = cup_oci::ImageRef::parse(reference).map_err(|e| e.to_string())?;
        let repository = format!("{}/{}", parsed.registry, parsed.repository);
        let store = self.store.clone()?;
        let stored = {
            let store = store.clone();
            let digest = manifest_digest.to_owned();
            tokio::task::spawn_blocking(move || store.signatures(&digest))
                .await
                .map_err(|e| format!("reading signatures from the store: {e}"))?
                .map_err(|e| format!("reading signatures from the store: {e}"))?
        };
        let in_store = check(
            &stored,
            requirement,
            trusted_root,
            manifest_digest,
            &repository,
        );
        if let Ok((verified, _)) = in_store {
            return Ok(verified);
        }
        let remote = match self.registry.signatures(reference, manifest_digest).await {
            Ok(remote) => remote,
            Err(error) => {
                let store_reason = in_store.err().unwrap_or_default();
                return Err(format!(
                    "{store_reason} (looked in the store); the registry's signatures could not be \
                     read: {error}"
                ));
            }
        };
        let (verified, index) = check(
            &remote,
            requirement,
            trusted_root,
            manifest_digest,
            &repository,
        )?;
        // Kept for the next start, which then needs no registry.
        if let Some(signature) = remote.into_iter().nth(index) {
            let digest = manifest_digest.to_owned();
            let kept = tokio::task::spawn_blocking(move || {
                store.attach_signature(&repository, &digest, signature)
            })
            .await;
            if !matches!(kept, Ok(Ok(_))) {
                tracing::warn!(
                    image = reference,
                    "could not keep the verified signature in the store"
                );
            }
        }
        Ok(verified)
    }

    /// The manifest digest: a pinned reference already in the store needs no registry
    /// (the pull finds it there); a tag is asked of the registry, and only if that fails
    /// is a tag recorded in the store used.
    async fn resolve(
        &self,
        reference: &str,
        store: &Store,
        pinned: bool,
    ) -> Result<String, String> {
        match self
            .registry
            .pull(reference, store, Arc::new(NoProgress))
            .await
        {
            Ok(report) => {
                if !pinned {
                    tracing::info!(image = reference, digest = %report.digest, "resolved image tag");
                }
                Ok(report.digest)
            }
            Err(pull_error) => match store.resolve(reference) {
                Ok(Some(digest)) if !pinned => {
                    tracing::warn!(image = reference, %digest, error = %pull_error,
                        "registry unavailable; using the tag recorded in the local store");
                    Ok(digest)
                }
                _ => Err(match stored_problem(store, reference) {
                    // Say why the store's copy was not used before why the pull failed.
                    Some(problem) => format!("{problem}; pulling it again failed: {pull_error}"),
                    None => format!("pulling {reference}: {pull_error}"),
                }),
            },
        }
    }
}

/// Why a pinned reference present in the store could not be served from it, if so.
fn stored_problem(store: &Store, reference: &str) -> Option<String> {
    let digest = cup_oci::digest_of_reference(reference)?;
    store.resolve(digest).ok()??;
    store.wasm_for(digest).err().map(|e| e.to_string())
}

/// The wasm of a stored manifest, its package integrity and the manifest's annotations
/// checked.
fn read_verified(store: &Store, manifest_digest: &str) -> Result<Vec<u8>, String> {
    let wasm = store
        .wasm_for(manifest_digest)
        .map_err(|e| format!("reading {manifest_digest} from the store: {e}"))?;
    let package = cup_sections::read_package(&wasm)
        .map_err(|e| format!("reading the controller package: {e}"))?;
    if !matches!(package.integrity, Integrity::Ok | Integrity::NoCupSections) {
        return Err(format!(
            "controller package refused: {}",
            package.integrity.summary()
        ));
    }
    let manifest = store
        .manifest(manifest_digest)
        .map_err(|e| format!("reading manifest {manifest_digest}: {e}"))?;
    let mismatches = cup_oci::annotation_mismatches(&manifest, &package);
    if !mismatches.is_empty() {
        return Err(format!(
            "the image's annotations disagree with its embedded sections: {}",
            mismatches.join("; ")
        ));
    }
    Ok(wasm)
}

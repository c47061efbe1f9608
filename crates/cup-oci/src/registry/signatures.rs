//! Signatures in a registry: cosign's `sha256-<hex>.sig` tag in the controller's own
//! repository ([`crate::signature`]). Read with the pull's requests (manifest up to its
//! cap, blobs up to their descriptor's size, every blob checked against its digest), written
//! with the push's (blobs first, skipped when present; the manifest last).
//!
//! Where the registry offers OCI 1.1's referrers API, a signature is also attached as a
//! referrer (a manifest of artifact type [`SIGNATURE_ARTIFACT_TYPE`] whose `subject` is the
//! signed manifest, as cosign's experimental OCI 1.1 mode writes it), and reading merges the
//! referrers' signatures with the tag's. A registry without the API (404 there, as
//! distribution 2.8 answers) is read and written through the tag alone.

use std::sync::Arc;

use bytes::Bytes;
use oci_client::RegistryOperation;

use super::push::{Upload, check_manifest_location};
use super::push_http::{self, PushHttp};
use super::{Registry, Target, fetch_manifest};
use crate::manifest::{Descriptor, ImageManifest};
use crate::progress::{NoProgress, Progress};
use crate::reference::ImageRef;
use crate::retry::Retrier;
use crate::signature::{
    MAX_SIGNATURE_CONFIG_BYTES, MAX_SIGNATURES, StoredSignature, append_signature,
    parse_signature_manifest, signature_manifest, signature_tag,
};
use crate::store::Store;
use crate::{Error, Result, digest, media};

/// `artifactType` of a signature attached as a referrer.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// OCI's empty config (`{}`), the config of a referrer that needs none.
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Largest referrers index read.
const MAX_REFERRERS_INDEX_BYTES: u64 = 1 << 20;

/// A signature manifest as the registry holds it: its bytes, digest and parsed form.
pub(super) struct RemoteSignatures {
    pub body: Vec<u8>,
    pub digest: String,
    pub manifest: ImageManifest,
}

impl Registry {
    /// The signatures of the manifest `manifest_digest` in the repository of `reference`
    /// (its tag or digest is not used): the layers of the manifest tagged
    /// `sha256-<hex>.sig` there, in order, each blob checked against its layer's digest
    /// and size. No such tag: empty. A layer that is not a signature is an
    /// [`Error::ForeignSignatureLayer`].
    pub async fn signatures(
        &self,
        reference: &str,
        manifest_digest: &str,
    ) -> Result<Vec<StoredSignature>> {
        let target = signature_target(reference, manifest_digest)?;
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: &NoProgress,
        };
        let http = self
            .connect_http(&target, RegistryOperation::Pull, &retrier)
            .await?;
        let mut signatures = tag_signatures(&http, &target, &retrier).await?;
        let subject = pinned_target(reference, manifest_digest)?;
        let subject_http = http.for_target(&subject)?;
        if let Some(referred) =
            referrer_signatures(&subject_http, &subject, manifest_digest, &retrier).await?
        {
            for signature in referred {
                if signatures.len() >= MAX_SIGNATURES {
                    break;
                }
                append_signature(&mut signatures, signature);
            }
        }
        Ok(signatures)
    }

    /// Adds a signature of `manifest_digest` to the signature manifest of the repository of
    /// `reference`: the existing one (if any) is read and checked, the layer appended, the
    /// blobs the registry lacks uploaded and the manifest PUT under `sha256-<hex>.sig`.
    /// Returns whether it was added: a signature already there (same payload and
    /// signature) is not added twice. An existing manifest with a foreign layer is refused
    /// ([`Error::ForeignSignatureLayer`]), not rewritten without it. Two attaches at once
    /// may lose one (the registry has no compare-and-swap on tags), as with cosign.
    pub async fn attach_signature(
        &self,
        reference: &str,
        manifest_digest: &str,
        signature: StoredSignature,
    ) -> Result<bool> {
        let target = signature_target(reference, manifest_digest)?;
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: &NoProgress,
        };
        let http = self
            .connect_http(&target, RegistryOperation::Push, &retrier)
            .await?;
        let mut signatures = tag_signatures(&http, &target, &retrier).await?;
        if !append_signature(&mut signatures, signature) {
            return Ok(false);
        }
        let (manifest, config) = signature_manifest(&signatures)?;
        let quiet: Arc<dyn Progress> = Arc::new(NoProgress);
        let config_digest = digest::of(&config);
        let blobs = signatures
            .iter()
            .map(|s| Upload {
                label: "signature payload",
                data: Bytes::from(s.payload.clone()),
                digest: &s.layer_digest,
            })
            .chain(std::iter::once(Upload {
                label: "signature config",
                data: Bytes::from(config),
                digest: &config_digest,
            }));
        for blob in blobs {
            self.upload(&http, &target, &blob, &quiet, &retrier).await?;
        }
        let step = "pushing the signature manifest";
        let location = retrier
            .run(step, || async {
                http.put_manifest(manifest.clone(), media::OCI_MANIFEST)
                    .await
                    .map_err(|f| f.failure(&target, step))
            })
            .await?;
        if let Some(location) = location {
            check_manifest_location(&target, &location, &digest::of(&manifest))?;
        }
        let added = signatures.last().cloned();
        if let Some(signature) = added {
            self.attach_referrer(&http, reference, manifest_digest, signature, &retrier)
                .await?;
        }
        Ok(true)
    }

    /// Also attaches `signature` as a referrer of `manifest_digest` where the registry has
    /// the referrers API (one referrer per signature, as cosign does); does nothing where it
    /// has none or the same signature is already a referrer.
    async fn attach_referrer(
        &self,
        http: &PushHttp<'_>,
        reference: &str,
        manifest_digest: &str,
        signature: StoredSignature,
        retrier: &Retrier<'_>,
    ) -> Result<()> {
        let subject = pinned_target(reference, manifest_digest)?;
        let subject_http = http.for_target(&subject)?;
        let Some(existing) =
            referrer_signatures(&subject_http, &subject, manifest_digest, retrier).await?
        else {
            return Ok(());
        };
        if existing.iter().any(|s| s.same_as(&signature)) {
            return Ok(());
        }
        let (subject_body, _) = fetch_manifest(&subject_http, &subject, retrier).await?;
        let subject_media_type = serde_json::from_slice::<serde_json::Value>(&subject_body)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        let (signature_only, _) = signature_manifest(std::slice::from_ref(&signature))?;
        let parsed = parse_signature_manifest(&signature_only, "the new signature manifest")?;
        let config = b"{}".to_vec();
        let config_digest = digest::of(&config);
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
            "layers": parsed.layers,
            "subject": {"mediaType": subject_media_type, "digest": manifest_digest, "size": subject_body.len()},
        }))
        .map_err(|e| Error::InvalidSignatureManifest {
            what: subject.what("referrer"),
            reason: e.to_string(),
        })?;
        let quiet: Arc<dyn Progress> = Arc::new(NoProgress);
        for blob in [
            Upload {
                label: "signature payload",
                data: Bytes::from(signature.payload.clone()),
                digest: &signature.layer_digest,
            },
            Upload {
                label: "empty config",
                data: Bytes::from(config.clone()),
                digest: &config_digest,
            },
        ] {
            self.upload(http, &subject, &blob, &quiet, retrier).await?;
        }
        let body_digest = digest::of(&body);
        let referrer = pinned_target(reference, &body_digest)?;
        let referrer_http = http.for_target(&referrer)?;
        let step = "pushing the signature as a referrer";
        let location = retrier
            .run(step, || async {
                referrer_http
                    .put_manifest(body.clone(), media::OCI_MANIFEST)
                    .await
                    .map_err(|f| f.failure(&referrer, step))
            })
            .await?;
        if let Some(location) = location {
            check_manifest_location(&referrer, &location, &body_digest)?;
        }
        Ok(())
    }

    /// Copies the signature manifest of `manifest_digest` in the repository of `reference`
    /// into the store (manifest, config and payloads, each verified), recorded as
    /// `registry/repository:sha256-<hex>.sig`, so the signatures can be checked offline.
    /// Returns the number of signatures copied; none in the registry: 0, the store
    /// unchanged. The store's entry of that name moves to the registry's manifest.
    pub async fn pull_signatures(
        &self,
        reference: &str,
        manifest_digest: &str,
        store: &Store,
    ) -> Result<usize> {
        let target = signature_target(reference, manifest_digest)?;
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: &NoProgress,
        };
        let http = self
            .connect_http(&target, RegistryOperation::Pull, &retrier)
            .await?;
        copy_signatures(&http, &target, store, &retrier).await
    }
}

/// The target of the signatures' tag of `manifest_digest` in the repository of `reference`.
pub(super) fn signature_target(reference: &str, manifest_digest: &str) -> Result<Target> {
    in_repository_of(reference, Some(signature_tag(manifest_digest)?), None)
}

/// `tag` or `digest` in the repository `reference` names (its own tag and digest dropped).
fn in_repository_of(
    reference: &str,
    tag: Option<String>,
    digest: Option<String>,
) -> Result<Target> {
    let mut parsed = ImageRef::parse(reference)?;
    parsed.tag = tag;
    parsed.digest = digest;
    Ok(Target {
        registry: parsed.registry.clone(),
        whole: parsed.whole(),
        reference: parsed.to_oci(),
    })
}

/// The manifest `digest` in the repository of `reference`.
fn pinned_target(reference: &str, digest: &str) -> Result<Target> {
    crate::digest::validate(digest)?;
    in_repository_of(reference, None, Some(digest.to_owned()))
}

/// The signatures attached to `manifest_digest` as referrers; `None` when the registry has
/// no referrers API. Each referrer manifest is fetched by digest (its bytes checked), must
/// be a signature manifest whose `subject` is `manifest_digest`, and every payload is
/// checked against its layer; at most [`MAX_SIGNATURES`] referrers are read.
async fn referrer_signatures(
    http: &PushHttp<'_>,
    subject: &Target,
    manifest_digest: &str,
    retrier: &Retrier<'_>,
) -> Result<Option<Vec<StoredSignature>>> {
    let step = "listing referrers";
    let what = subject.what("referrers index");
    let index = retrier
        .run(step, || async {
            http.get_referrers(
                manifest_digest,
                SIGNATURE_ARTIFACT_TYPE,
                MAX_REFERRERS_INDEX_BYTES,
                &what,
            )
            .await
            .map_err(|f| f.failure(subject, step))
        })
        .await?;
    let Some(index) = index else {
        return Ok(None);
    };
    let invalid = |reason: String| Error::InvalidSignatureManifest {
        what: what.clone(),
        reason,
    };
    let index: crate::manifest::ImageIndex = serde_json::from_slice(&index)
        .map_err(|e| invalid(format!("it is not an image index: {e}")))?;
    let mut out: Vec<StoredSignature> = Vec::new();
    for entry in index
        .manifests
        .iter()
        .filter(|d| {
            d.extra.get("artifactType").and_then(|v| v.as_str()) == Some(SIGNATURE_ARTIFACT_TYPE)
        })
        .take(MAX_SIGNATURES)
    {
        let target = pinned_target(&subject.whole, &entry.digest)?;
        let referrer_http = http.for_target(&target)?;
        let (body, digest) = fetch_manifest(&referrer_http, &target, retrier).await?;
        let what = target.what(&format!("referrer {digest}"));
        let claimed_subject = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["subject"]["digest"].as_str().map(str::to_owned));
        if claimed_subject.as_deref() != Some(manifest_digest) {
            return Err(Error::InvalidSignatureManifest {
                what,
                reason: format!(
                    "listed as a referrer of {manifest_digest} but its subject is {}",
                    claimed_subject.as_deref().unwrap_or("missing")
                ),
            });
        }
        let manifest = parse_signature_manifest(&body, &what)?;
        let remote = RemoteSignatures {
            body,
            digest,
            manifest,
        };
        for signature in fetch_signatures(&referrer_http, &target, &remote, retrier).await? {
            append_signature(&mut out, signature);
        }
    }
    Ok(Some(out))
}

/// The signatures under the `.sig` tag `target` names; none when the registry has no such tag.
async fn tag_signatures(
    http: &PushHttp<'_>,
    target: &Target,
    retrier: &Retrier<'_>,
) -> Result<Vec<StoredSignature>> {
    match fetch_signature_manifest(http, target, retrier).await? {
        Some(remote) => fetch_signatures(http, target, &remote, retrier).await,
        None => Ok(Vec::new()),
    }
}

/// The signature manifest `target` names, checked; `None` when the registry has none.
pub(super) async fn fetch_signature_manifest(
    http: &PushHttp<'_>,
    target: &Target,
    retrier: &Retrier<'_>,
) -> Result<Option<RemoteSignatures>> {
    let (body, digest) = match fetch_manifest(http, target, retrier).await {
        Ok(found) => found,
        // No tag (MANIFEST_UNKNOWN), or no repository yet (NAME_UNKNOWN): no signatures.
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let what = target.what(&format!("signature manifest {digest}"));
    let manifest = parse_signature_manifest(&body, &what)?;
    Ok(Some(RemoteSignatures {
        body,
        digest,
        manifest,
    }))
}

/// The signatures of a fetched signature manifest, every payload checked against its layer.
async fn fetch_signatures(
    http: &PushHttp<'_>,
    target: &Target,
    remote: &RemoteSignatures,
    retrier: &Retrier<'_>,
) -> Result<Vec<StoredSignature>> {
    let mut out = Vec::with_capacity(remote.manifest.layers.len());
    for layer in &remote.manifest.layers {
        let (payload, what) =
            fetch_small_blob(http, target, layer, "signature layer", retrier).await?;
        out.push(StoredSignature::from_layer(layer, payload, &what)?);
    }
    Ok(out)
}

/// A small blob (its descriptor's size was bounded by the manifest's checks), read up to
/// that size and checked against its digest; with the name used in errors.
async fn fetch_small_blob(
    http: &PushHttp<'_>,
    target: &Target,
    desc: &Descriptor,
    label: &str,
    retrier: &Retrier<'_>,
) -> Result<(Vec<u8>, String)> {
    let step = format!("fetching {label} {}", desc.digest);
    let what = target.what(&format!("{label} {}", desc.digest));
    let bytes = retrier
        .run(&step, || async {
            let response = http
                .get_blob(&desc.digest)
                .await
                .map_err(|f| f.failure(target, &step))?;
            push_http::read_capped(response, desc.size, &what)
                .await
                .map_err(|f| f.failure(target, &step))
        })
        .await?;
    digest::verify(&what, &bytes, &desc.digest, Some(desc.size))?;
    Ok((bytes, what))
}

/// Copies the signature manifest `target` names into the store; see
/// [`Registry::pull_signatures`]. Everything is verified before anything is committed, and
/// the blobs before the `index.json` entry.
pub(super) async fn copy_signatures(
    http: &PushHttp<'_>,
    target: &Target,
    store: &Store,
    retrier: &Retrier<'_>,
) -> Result<usize> {
    let Some(remote) = fetch_signature_manifest(http, target, retrier).await? else {
        return Ok(0);
    };
    debug_assert!(remote.manifest.config.size <= MAX_SIGNATURE_CONFIG_BYTES);
    let mut staged = Vec::new();
    for (desc, label) in std::iter::once((&remote.manifest.config, "signature config")).chain(
        remote
            .manifest
            .layers
            .iter()
            .map(|l| (l, "signature layer")),
    ) {
        if store.has_verified_blob(&desc.digest, desc.size)? {
            continue;
        }
        let (bytes, what) = fetch_small_blob(http, target, desc, label, retrier).await?;
        staged.push(store.stage_bytes(&bytes, Some((&desc.digest, desc.size)), &what)?);
    }
    let what = target.what(&format!("signature manifest {}", remote.digest));
    let size = remote.body.len() as u64;
    staged.push(store.stage_bytes(&remote.body, Some((&remote.digest, size)), &what)?);
    for blob in staged {
        blob.commit()?;
    }
    let media_type = remote
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
    let r = &target.reference;
    let name = r
        .tag()
        .map(|t| format!("{}/{}:{t}", r.registry(), r.repository()));
    debug_assert!(name.is_some(), "a signature target has a tag");
    store.add_entry(
        Descriptor::new(&media_type, remote.digest.clone(), size),
        name.as_deref(),
        Default::default(),
    )?;
    Ok(remote.manifest.layers.len())
}

//! Pull: a reference into the store, every blob verified before it is committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::RegistryOperation;
use serde::Serialize;

use super::push_http::PushHttp;
use super::signatures::{copy_signatures, signature_target};
use super::{Blame, Registry, Target, chain, fetch_manifest};
use crate::accept::{WasmSource, check_magic, classify, extract_wasm};
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::retry::{Failure, Retrier};
use crate::store::{StagedBlob, Store};
use crate::{Error, MAX_CONFIG_BYTES, MAX_WASM_BYTES, Result, annotations, digest, media};

/// How the wasm was packaged in a pulled artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "mediaType")]
pub enum PulledLayout {
    /// A single wasm layer (ours or another tool's; the media type is given).
    WasmLayer(String),
    /// A docker-buildable image whose tar+gzip layer held the wasm.
    CompatImage(String),
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// The reference as pulled, normalized (`registry/repository:tag` or `…@sha256:…`).
    pub reference: String,
    /// The manifest digest (what the store and `cupd` load by).
    pub digest: String,
    /// `sha256:` digest of the wasm module.
    pub wasm_digest: String,
    /// Size of the wasm module in bytes.
    pub wasm_size: u64,
    /// How the wasm was found in the manifest.
    pub layout: PulledLayout,
    /// Blobs downloaded.
    pub fetched_blobs: usize,
    /// Blobs already in the store (verified, not downloaded again).
    pub cached_blobs: usize,
    /// The whole artifact was already in the store (a digest reference); no network used.
    pub from_store: bool,
    /// Signatures copied into the store from the registry's `sha256-<hex>.sig` manifest of
    /// this digest (0 when it has none, or when the pull used no network).
    pub signatures: usize,
    /// Why the registry's signature manifest was not copied, when it could not be (refused
    /// content, a failed request). The controller is pulled all the same: without copied
    /// signatures, an offline verification finds none and fails closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_problem: Option<String>,
}

impl Registry {
    /// Pulls `reference` (tag or digest) into `store` and returns what it found. A digest
    /// reference whose artifact is already complete in the store needs no registry.
    pub async fn pull(
        &self,
        reference: &str,
        store: &Store,
        progress: Arc<dyn Progress>,
    ) -> Result<PullReport> {
        let target = Target::parse(reference)?;
        if let Some(report) = self.pull_from_store(&target, store)? {
            return Ok(report);
        }
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: progress.as_ref(),
        };
        let http = self
            .connect_http(&target, RegistryOperation::Pull, &retrier)
            .await?;
        let (body, manifest_digest) = fetch_manifest(&http, &target, &retrier).await?;
        let what = target.what(&format!("manifest {manifest_digest}"));
        let (manifest, source) = classify(&body, &what)?;
        let mut fetch = Fetch {
            http: &http,
            target: &target,
            store,
            progress: progress.clone(),
            retrier,
            fetched: 0,
            cached: 0,
        };
        let config = fetch
            .blob(&manifest.config, "config", MAX_CONFIG_BYTES)
            .await?;
        let layer = fetch.blob(source.layer(), "layer", MAX_WASM_BYTES).await?;
        let (wasm, layout, extra) = unpack(&source, &layer, store, &target)?;
        let staged_manifest =
            store.stage_bytes(&body, Some((&manifest_digest, body.len() as u64)), &what)?;
        // Everything is verified: commit leaves first, the index entry last.
        let wasm_digest = wasm
            .as_ref()
            .map_or(source.layer().digest.clone(), |w| w.digest.clone());
        let wasm_size = wasm.as_ref().map_or(source.layer().size, |w| w.size);
        for blob in [config, layer, wasm, Some(staged_manifest)]
            .into_iter()
            .flatten()
        {
            blob.commit()?;
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        let entry = Descriptor::new(&media_type, manifest_digest.clone(), body.len() as u64);
        store.add_entry(entry, tag_name(&target).as_deref(), extra)?;
        let (signatures, signature_problem) = self
            .copy_signatures_of(&http, &target, &manifest_digest, store, &fetch.retrier)
            .await;
        Ok(PullReport {
            reference: target.whole.clone(),
            digest: manifest_digest,
            wasm_digest,
            wasm_size,
            layout,
            fetched_blobs: fetch.fetched,
            cached_blobs: fetch.cached,
            from_store: false,
            signatures,
            signature_problem,
        })
    }

    /// A digest reference already complete in the store: verified locally, tagged if the
    /// reference also has a tag.
    fn pull_from_store(&self, target: &Target, store: &Store) -> Result<Option<PullReport>> {
        let Some(d) = target.reference.digest() else {
            return Ok(None);
        };
        if store.resolve(d)?.is_none() {
            return Ok(None);
        }
        let Ok(wasm) = store.wasm_for(d) else {
            // Incomplete or corrupt: fetch it again.
            return Ok(None);
        };
        let (manifest, source) = classify(&store.read_blob(d)?, &target.what(d))?;
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        let size = store.read_blob(d)?.len() as u64;
        // Derived again from the verified content, never carried over from the entry (it
        // may have come from an archive or an older cup).
        let extra = store.derived_annotations(d)?;
        store.add_entry(
            Descriptor::new(&media_type, d.to_owned(), size),
            tag_name(target).as_deref(),
            extra,
        )?;
        let layout = layout_of(&source);
        Ok(Some(PullReport {
            reference: target.whole.clone(),
            digest: d.to_owned(),
            wasm_digest: digest::of(&wasm),
            wasm_size: wasm.len() as u64,
            layout,
            fetched_blobs: 0,
            cached_blobs: 2,
            from_store: true,
            signatures: 0,
            signature_problem: None,
        }))
    }
}

impl Registry {
    /// After a pull: copies the signatures of the pulled manifest (its `.sig` tag in the
    /// same repository) into the store; a failure is returned as the report's problem, not
    /// as the pull's, since the controller itself was pulled and verified.
    async fn copy_signatures_of(
        &self,
        http: &PushHttp<'_>,
        target: &Target,
        manifest_digest: &str,
        store: &Store,
        retrier: &Retrier<'_>,
    ) -> (usize, Option<String>) {
        let copied = async {
            let sig_target = signature_target(&target.whole, manifest_digest)?;
            let sig_http = http.for_target(&sig_target)?;
            copy_signatures(&sig_http, &sig_target, store, retrier).await
        };
        match copied.await {
            Ok(n) => (n, None),
            Err(e) => {
                tracing::warn!(
                    image = %target.whole,
                    digest = manifest_digest,
                    error = %e,
                    "the controller's signatures were not copied into the store"
                );
                (0, Some(e.to_string()))
            }
        }
    }
}

/// Blob downloads of one pull, counting fetched and cached blobs.
struct Fetch<'a> {
    http: &'a PushHttp<'a>,
    target: &'a Target,
    store: &'a Store,
    progress: Arc<dyn Progress>,
    retrier: Retrier<'a>,
    fetched: usize,
    cached: usize,
}

impl Fetch<'_> {
    /// Stages a blob from the registry, or returns `None` when the store already holds a
    /// verified copy.
    async fn blob(
        &mut self,
        desc: &Descriptor,
        label: &str,
        limit: u64,
    ) -> Result<Option<StagedBlob>> {
        let what = self.target.what(&format!("{label} {}", desc.digest));
        if desc.size > limit {
            return Err(Error::TooLarge {
                what,
                reason: format!("{} bytes, over the limit of {limit}", desc.size),
            });
        }
        if self.store.has_verified_blob(&desc.digest, desc.size)? {
            self.cached += 1;
            return Ok(None);
        }
        let step = format!("fetching {label} {}", desc.digest);
        let this = &*self;
        let staged = this
            .retrier
            .run(&step, || async {
                this.progress.start(label, desc.size);
                let staged = this.download(desc, &what).await;
                this.progress.finish();
                staged
            })
            .await?;
        self.fetched += 1;
        Ok(Some(staged))
    }

    /// One download attempt into a fresh temp file (dropped, so deleted, on failure).
    async fn download(
        &self,
        desc: &Descriptor,
        what: &str,
    ) -> std::result::Result<StagedBlob, Failure> {
        let doing = format!("fetching blob {}", desc.digest);
        let response = self
            .http
            .get_blob(&desc.digest)
            .await
            .map_err(|f| f.failure(self.target, &doing))?;
        // A wrong Content-Length may come from a broken hop on the way: worth a retry.
        if let Some(announced) = response.content_length()
            && announced != desc.size
        {
            return Err(Failure::transient(Error::SizeMismatch {
                what: what.to_owned(),
                expected: desc.size,
                actual: format!("{announced} (announced by the registry)"),
            }));
        }
        let mut stream = response.bytes_stream();
        let mut writer = self
            .store
            .blob_writer(Some((&desc.digest, desc.size)), what)?;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    writer.write(&bytes)?;
                    self.progress.advance(bytes.len() as u64);
                }
                // A transport error after every byte arrived: complete but wrong bytes
                // would arrive wrong again (permanent), complete and right ones are retried.
                Err(e) if writer.written() == desc.size => {
                    return Err(match writer.finish() {
                        Err(mismatch) => Failure::permanent(mismatch),
                        Ok(_) => Failure::transient(self.transfer_error(desc, &e)),
                    });
                }
                // Cut short (reset, timeout): the next attempt starts over.
                Err(e) => return Err(Failure::transient(self.transfer_error(desc, &e))),
            }
        }
        // A body that ended early without a transport error is a truncation (retry); a
        // complete one that hashes wrong is not.
        writer.finish().map_err(|e| match e {
            Error::SizeMismatch { .. } => Failure::transient(e),
            e => Failure::permanent(e),
        })
    }

    fn transfer_error(&self, desc: &Descriptor, e: &reqwest::Error) -> Error {
        self.target.error(
            Blame::Registry,
            format!(
                "fetching blob {}: transfer failed: {}",
                desc.digest,
                chain(e)
            ),
        )
    }
}

/// The unpacked wasm blob (compat images only), the layout, extra index annotations.
type Unpacked = (Option<StagedBlob>, PulledLayout, BTreeMap<String, String>);

/// Checks the layer is wasm (or unpacks the compat image's wasm into a staged blob).
fn unpack(
    source: &WasmSource,
    staged: &Option<StagedBlob>,
    store: &Store,
    target: &Target,
) -> Result<Unpacked> {
    let layer = source.layer();
    let what = target.what(&format!("layer {}", layer.digest));
    let path = match staged {
        Some(s) => s.path().to_owned(),
        None => store.blob_path(&layer.digest)?,
    };
    match source {
        WasmSource::Layer(_) => {
            check_magic(&file_head(&path)?, &what, &layer.media_type)?;
            Ok((None, layout_of(source), BTreeMap::new()))
        }
        WasmSource::TarGz(_) => {
            let file = std::fs::File::open(&path).map_err(Error::io(&path))?;
            let wasm = extract_wasm(std::io::BufReader::new(file), &what)?;
            let blob = store.stage_bytes(&wasm, None, &what)?;
            let extra =
                BTreeMap::from([(annotations::WASM_DIGEST.to_owned(), blob.digest.clone())]);
            Ok((Some(blob), layout_of(source), extra))
        }
    }
}

fn layout_of(source: &WasmSource) -> PulledLayout {
    match source {
        WasmSource::Layer(d) => PulledLayout::WasmLayer(d.media_type.clone()),
        WasmSource::TarGz(d) => PulledLayout::CompatImage(d.media_type.clone()),
    }
}

fn file_head(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(Error::io(path))?;
    Ok(head)
}

/// The tag to record for a pulled reference (`registry/repository:tag`), if it has one.
pub(super) fn tag_name(target: &Target) -> Option<String> {
    let r = &target.reference;
    r.tag()
        .map(|t| format!("{}/{}:{t}", r.registry(), r.repository()))
}

//! Push: a module (bytes or a file read while it is hashed) as a controller artifact.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use oci_client::RegistryOperation;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use serde::Serialize;

use super::push_http::{Failed, PushHttp};
use super::{Blame, Registry, Target, chain};
use crate::artifact::{Artifact, ArtifactOptions};
use crate::progress::Progress;
use crate::retry::{Failure, Retrier, verdict};
use crate::{Error, Result, media};

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `registry/repository@sha256:…`: the immutable name of what was pushed.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Size of the wasm layer in bytes.
    pub size: u64,
    /// Blobs uploaded (of the layer and the config).
    pub pushed_blobs: usize,
    /// Blobs the registry already had, so not uploaded.
    pub skipped_blobs: usize,
}

impl Registry {
    /// Pushes a module as a controller artifact to `reference` (a tag; `latest` when none;
    /// or a digest, which must then be the artifact's own).
    pub async fn push(
        &self,
        wasm: Bytes,
        reference: &str,
        options: &ArtifactOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushReport> {
        self.push_from(Module::Bytes(wasm), reference, options, progress)
            .await
    }

    /// As [`Registry::push`], for the module file at `path`, which is read while it is
    /// hashed.
    pub async fn push_file(
        &self,
        path: &Path,
        reference: &str,
        options: &ArtifactOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushReport> {
        self.push_from(Module::File(path.to_owned()), reference, options, progress)
            .await
    }

    async fn push_from(
        &self,
        module: Module,
        reference: &str,
        options: &ArtifactOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<PushReport> {
        let target = Target::parse(reference)?;
        // Reading and hashing the module (the longest step of a push on cup's side) run on a
        // blocking thread, while this one builds the HTTP client (the system's TLS roots, for a registry
        // that is not on loopback) and runs the credential challenge, if any.
        let build_options = options.clone();
        let hashing = tokio::task::spawn_blocking(move || match module {
            Module::Bytes(wasm) => Artifact::build(&wasm, &build_options).map(|a| (wasm, a)),
            Module::File(path) => {
                Artifact::read_file(&path, &build_options).map(|(wasm, a)| (Bytes::from(wasm), a))
            }
        });
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: progress.as_ref(),
        };
        let (built, prepared) =
            futures_util::future::join(hashing, self.prepare_push(&target, &retrier)).await;
        let built = match built {
            Ok(built) => built,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(target.error(Blame::Registry, format!("reading the module: {e}"))),
        };
        // Bad input is reported first.
        let (wasm, artifact) = built?;
        let push = prepared?;
        if let Some(d) = target.reference.digest()
            && d != artifact.manifest_digest
        {
            return Err(Error::InvalidReference {
                reference: reference.to_owned(),
                reason: format!(
                    "it names {d}, but the artifact's digest is {}",
                    artifact.manifest_digest
                ),
            });
        }
        let layer = Upload {
            label: "wasm layer",
            data: wasm,
            digest: &artifact.layer.digest,
        };
        let config = Upload {
            label: "config",
            data: Bytes::from(artifact.config.clone()),
            digest: &artifact.config_digest,
        };
        // The small config goes up on a second connection while the layer streams (its
        // round trips cost as much as a few MB of layer); it draws no progress bar.
        let quiet: Arc<dyn Progress> = Arc::new(crate::NoProgress);
        let (layer_pushed, config_pushed) = futures_util::future::try_join(
            self.upload(&push, &target, &layer, &progress, &retrier),
            self.upload(&push, &target, &config, &quiet, &retrier),
        )
        .await?;
        // Unmapping a large module takes milliseconds: done on the side while the manifest
        // goes up (inline only if no thread can be started).
        let Upload { data, .. } = layer;
        let _ = std::thread::Builder::new().spawn(move || drop(data));
        let pushed = usize::from(layer_pushed) + usize::from(config_pushed);
        let step = "pushing the manifest";
        let location = retrier
            .run(step, || async {
                push.put_manifest(artifact.manifest.clone(), media::OCI_MANIFEST)
                    .await
                    .map_err(|f| f.failure(&target, step))
            })
            .await?;
        if let Some(location) = location {
            check_manifest_location(&target, &location, &artifact.manifest_digest)?;
        }
        Ok(PushReport {
            reference: target.pinned(&artifact.manifest_digest),
            digest: artifact.manifest_digest,
            size: artifact.layer.size,
            pushed_blobs: pushed,
            skipped_blobs: 2 - pushed,
        })
    }

    /// The push's HTTP client and credentials. No upload session is opened ahead: a
    /// module refused on reading must not cost the registry anything.
    async fn prepare_push<'t>(
        &self,
        target: &'t Target,
        retrier: &Retrier<'_>,
    ) -> Result<PushHttp<'t>> {
        self.connect_http(target, RegistryOperation::Push, retrier)
            .await
    }

    /// Uploads one blob unless the registry has it; returns whether it was uploaded.
    pub(super) async fn upload(
        &self,
        push: &PushHttp<'_>,
        target: &Target,
        blob: &Upload<'_>,
        progress: &Arc<dyn Progress>,
        retrier: &Retrier<'_>,
    ) -> Result<bool> {
        let check = format!("checking {} {}", blob.label, blob.digest);
        let exists = retrier
            .run(&check, || async {
                push.blob_exists(blob.digest)
                    .await
                    .map_err(|f| f.failure(target, &check))
            })
            .await?;
        if exists {
            return Ok(false);
        }
        let step = format!("uploading {} {}", blob.label, blob.digest);
        retrier
            .run(&step, || {
                self.upload_once(push, target, &step, blob, progress.clone())
            })
            .await?;
        Ok(true)
    }

    /// One upload session from scratch: POST, then the whole blob in one PUT; chunked
    /// PATCHes (oci-client's) when the registry refuses the single PUT.
    async fn upload_once(
        &self,
        push: &PushHttp<'_>,
        target: &Target,
        step: &str,
        blob: &Upload<'_>,
        progress: Arc<dyn Progress>,
    ) -> std::result::Result<(), Failure> {
        let session = push
            .start_upload()
            .await
            .map_err(|f| f.failure(target, step))?;
        progress.start(blob.label, blob.data.len() as u64);
        let result = push
            .put_blob(session, &blob.data, blob.digest, &progress)
            .await;
        progress.finish();
        match result {
            Ok(()) => Ok(()),
            Err(Failed::Answer(refusal)) if refusal.refuses_single_put() => {
                tracing::info!(
                    step,
                    status = %refusal.status,
                    body = refusal.body,
                    "the registry refused a single-request upload; uploading in chunks"
                );
                let chunked = self.oci_client(target, push.auth()).await?;
                chunked
                    .push_blob(&target.reference, blob.data.clone(), blob.digest)
                    .await
                    .map(|_| ())
                    .map_err(|e| oci_failure(target, step, e))
            }
            Err(f) => Err(f.failure(target, step)),
        }
    }
}

/// What a push reads the module from.
enum Module {
    Bytes(Bytes),
    File(std::path::PathBuf),
}

/// One blob to upload.
pub(super) struct Upload<'a> {
    pub label: &'a str,
    pub data: Bytes,
    pub digest: &'a str,
}

/// The registry answers a manifest PUT with its location, which names the digest it
/// computed; one that differs from ours means the registry stored other bytes.
pub(super) fn check_manifest_location(target: &Target, location: &str, ours: &str) -> Result<()> {
    let Some((_, named)) = location.rsplit_once("/manifests/") else {
        return Ok(());
    };
    if !named.starts_with("sha256:") || named == ours {
        return Ok(());
    }
    Err(Error::DigestMismatch {
        what: target.what("manifest as stored by the registry"),
        expected: ours.to_owned(),
        actual: named.to_owned(),
    })
}

/// A failed attempt from an oci-client error: classified for retry, then described.
fn oci_failure(target: &Target, doing: &str, e: OciDistributionError) -> Failure {
    Failure {
        verdict: verdict(&e),
        error: map_error(target, doing, e),
    }
}

/// Turns an oci-client error into one that says which registry, which reference and what.
fn map_error(target: &Target, doing: &str, e: OciDistributionError) -> Error {
    let blame = match &e {
        // `blob_exists` and a few others report HTTP statuses as request errors.
        OciDistributionError::RequestError(re)
            if matches!(re.status().map(|s| s.as_u16()), Some(401 | 403)) =>
        {
            Blame::Unauthorized
        }
        OciDistributionError::RequestError(re) if re.is_connect() || re.is_timeout() => {
            Blame::Unreachable
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Blame::Unauthorized,
        OciDistributionError::ImageManifestNotFoundError(_) => Blame::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let any = |wanted: &[OciErrorCode]| codes.iter().any(|c| wanted.contains(c));
            if any(&[OciErrorCode::Unauthorized, OciErrorCode::Denied]) {
                Blame::Unauthorized
            } else if any(&[
                OciErrorCode::ManifestUnknown,
                OciErrorCode::NameUnknown,
                OciErrorCode::BlobUnknown,
                OciErrorCode::NotFound,
            ]) {
                Blame::NotFound
            } else {
                Blame::Registry
            }
        }
        OciDistributionError::ServerError { code, .. } => Blame::of_status(*code),
        _ => Blame::Registry,
    };
    target.error(blame, format!("{doing}: {}", chain(&e)))
}

//! Inspect: a remote manifest (and a small config); the wasm is never downloaded.

use oci_client::RegistryOperation;
use serde::Serialize;

use super::push_http::{self, PushHttp};
use super::{Registry, Target, fetch_manifest};
use crate::accept::classify;
use crate::manifest::{Descriptor, ImageManifest};
use crate::retry::Retrier;
use crate::{Result, digest};

/// A remote manifest, looked at without downloading the wasm.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteInspect {
    /// The reference as inspected, normalized.
    pub reference: String,
    /// `sha256:` digest of the manifest bytes.
    pub digest: String,
    /// The manifest bytes' size.
    pub size: u64,
    /// The manifest, decoded.
    pub manifest: ImageManifest,
    /// The config, when it is small JSON.
    pub config: Option<serde_json::Value>,
    /// Why `pull` would refuse this manifest, if it would.
    pub refused: Option<String>,
}

impl Registry {
    /// The manifest (and small config) of a remote reference; the wasm is not downloaded.
    pub async fn inspect(&self, reference: &str) -> Result<RemoteInspect> {
        let target = Target::parse(reference)?;
        let retrier = Retrier {
            policy: &self.options.retry,
            progress: &crate::NoProgress,
        };
        let http = self
            .connect_http(&target, RegistryOperation::Pull, &retrier)
            .await?;
        let (body, manifest_digest) = fetch_manifest(&http, &target, &retrier).await?;
        let what = target.what(&format!("manifest {manifest_digest}"));
        let (manifest, refused) = match classify(&body, &what) {
            Ok((m, _)) => (m, None),
            Err(e) => {
                let m = serde_json::from_slice(&body).map_err(|_| e.to_string());
                match m {
                    Ok(m) => (m, Some(e.to_string())),
                    Err(_) => return Err(e),
                }
            }
        };
        let config = fetch_small_config(&http, &target, &manifest.config, &retrier).await?;
        Ok(RemoteInspect {
            reference: target.whole,
            digest: manifest_digest,
            size: body.len() as u64,
            manifest,
            config,
            refused,
        })
    }
}

/// The config of an inspected manifest when it is small: read up to its descriptor's size,
/// never further.
async fn fetch_small_config(
    http: &PushHttp<'_>,
    target: &Target,
    config: &Descriptor,
    retrier: &Retrier<'_>,
) -> Result<Option<serde_json::Value>> {
    const SMALL: u64 = 64 << 10;
    if config.size > SMALL || digest::validate(&config.digest).is_err() {
        return Ok(None);
    }
    let step = format!("fetching config {}", config.digest);
    let what = target.what("config");
    let out = retrier
        .run(&step, || async {
            let response = http
                .get_blob(&config.digest)
                .await
                .map_err(|f| f.failure(target, &step))?;
            push_http::read_capped(response, config.size, &what)
                .await
                .map_err(|f| f.failure(target, &step))
        })
        .await?;
    digest::verify(&what, &out, &config.digest, Some(config.size))?;
    Ok(serde_json::from_slice(&out).ok())
}

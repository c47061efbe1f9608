//! Push, pull and inspect against an OCI registry (oci-client underneath).
//!
//! * Plain HTTP only for loopback registries (127.0.0.0/8, `localhost`, `::1`) and for hosts
//!   named in [`RegistryOptions::plain_http`]; everything else is HTTPS.
//! * Credentials: cup runs the registry's challenge itself ([`token`]) and sends them to a
//!   token service only on the registry's own host (or one named in
//!   [`RegistryOptions::token_realms`]), and never over plain HTTP for an HTTPS registry.
//! * Push: refuses a module whose `cup.*` sections are not intact (unless forced), skips
//!   blobs the registry already has (HEAD), uploads each blob in one request (POST for the
//!   session, one PUT with the whole body: the fewest round trips) and falls back to
//!   chunked PATCHes if the registry refuses that. The manifest goes last, so a tag never
//!   names a manifest whose blobs are missing. These requests are our own, on one reqwest
//!   client ([`push_http`]), as are the pull's and inspect's; oci-client serves only the
//!   chunked uploads.
//! * Every request step is retried when the failure is transient, bounded and with
//!   backoff ([`crate::retry`]); a failed upload restarts with a fresh session.
//! * Pull: accepted layouts are in [`crate::accept`]; sizes are checked against the
//!   descriptors while streaming (the transfer stops at the first byte too many), digests
//!   are checked before anything reaches the store, and blobs are committed before the
//!   `index.json` entry that names them. A manifest is read up to its cap (a larger
//!   `Content-Length` is refused unread), a config up to its descriptor's size.
//! * Inspect: the manifest (and a small config) only; the wasm is never downloaded.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Serialize;

use crate::accept::{WasmSource, check_magic, classify, extract_wasm};
use crate::artifact::{Artifact, ArtifactOptions};
use crate::auth::{self, Credentials};
use crate::manifest::{Descriptor, ImageManifest};
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::retry::{Failure, Retrier, RetryPolicy, verdict};
use crate::store::{StagedBlob, Store};
use push_http::{Failed, PushHttp, RequestAuth};

mod push_http;
mod token;
use crate::{
    Error, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MAX_WASM_BYTES, Result, annotations, digest, media,
};

/// `User-Agent` of every registry request.
const USER_AGENT: &str = concat!("cup/", env!("CARGO_PKG_VERSION"));
/// How long a connection to a registry may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Hosts (`host` or `host:port`) reached over plain HTTP besides loopback ones.
    pub plain_http: Vec<String>,
    pub credentials: Credentials,
    /// Token services (`host` or `host:port`) on another host than the registry's that may
    /// receive its credentials when the registry's challenge names them (Docker Hub's
    /// `auth.docker.io` is always allowed for Docker Hub).
    pub token_realms: Vec<String>,
    /// Retries and the per-request timeout.
    pub retry: RetryPolicy,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `registry/repository@sha256:…`: the immutable name of what was pushed.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// Size of the wasm layer in bytes.
    pub size: u64,
    /// Blobs uploaded (layer, config); the others were already in the registry.
    pub pushed_blobs: usize,
    pub skipped_blobs: usize,
}

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
    /// Digest and size of the wasm module.
    pub wasm_digest: String,
    pub wasm_size: u64,
    pub layout: PulledLayout,
    /// Blobs downloaded, and blobs already in the store (verified, not downloaded again).
    pub fetched_blobs: usize,
    pub cached_blobs: usize,
    /// The whole artifact was already in the store (a digest reference); no network used.
    pub from_store: bool,
}

/// A remote manifest, looked at without downloading the wasm.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteInspect {
    pub reference: String,
    pub digest: String,
    /// The manifest bytes' size.
    pub size: u64,
    pub manifest: ImageManifest,
    /// The config, when it is small JSON.
    pub config: Option<serde_json::Value>,
    /// Why `pull` would refuse this manifest, if it would.
    pub refused: Option<String>,
}

/// A registry client (one per command; it holds only options).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    options: RegistryOptions,
}

/// A parsed reference with the names used in messages.
struct Target {
    reference: Reference,
    registry: String,
    whole: String,
}

/// Which registry-side error a failure is; [`Target::error`] makes it name the registry and
/// the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blame {
    NotFound,
    Unauthorized,
    Unreachable,
    Registry,
}

impl Blame {
    /// What an HTTP status says on its own: 401/403 refused, 404 missing, else the registry's.
    fn of_status(code: u16) -> Blame {
        match code {
            401 | 403 => Blame::Unauthorized,
            404 => Blame::NotFound,
            _ => Blame::Registry,
        }
    }
}

impl Target {
    /// An error of kind `blame` about this target's registry and reference.
    fn error(&self, blame: Blame, detail: String) -> Error {
        let (registry, reference) = (self.registry.clone(), self.whole.clone());
        match blame {
            Blame::NotFound => Error::NotFound {
                registry,
                reference,
                detail,
            },
            Blame::Unauthorized => Error::Unauthorized {
                registry,
                reference,
                detail,
            },
            Blame::Unreachable => Error::Unreachable {
                registry,
                reference,
                detail,
            },
            Blame::Registry => Error::Registry {
                registry,
                reference,
                detail,
            },
        }
    }

    fn parse(reference: &str) -> Result<Target> {
        let parsed = ImageRef::parse(reference)?;
        Ok(Target {
            registry: parsed.registry.clone(),
            whole: parsed.whole(),
            reference: parsed.to_oci(),
        })
    }

    fn what(&self, part: &str) -> String {
        format!("registry {}: {}: {part}", self.registry, self.whole)
    }

    /// `registry/repository@digest`.
    fn pinned(&self, digest: &str) -> String {
        format!(
            "{}/{}@{digest}",
            self.reference.registry(),
            self.reference.repository()
        )
    }
}

impl Registry {
    pub fn new(options: RegistryOptions) -> Registry {
        Registry { options }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain HTTP.
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        is_loopback(host)
            || self
                .options
                .plain_http
                .iter()
                .any(|h| h == registry || h == host)
    }

    /// oci-client, for pulls, inspections, credential challenges and chunked uploads.
    fn client(&self, target: &Target) -> Result<Client> {
        let registry = target.reference.resolve_registry();
        let protocol = if self.allows_plain_http(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            tls_certs_only: loopback_trust_roots(registry),
            connect_timeout: Some(CONNECT_TIMEOUT),
            // A stalled registry (connection open, nothing sent) fails the request after
            // this long; the step is then retried. Not a total timeout: a big blob on a
            // slow link may take longer as long as bytes keep arriving.
            read_timeout: Some(self.options.retry.request_timeout),
            user_agent: USER_AGENT,
            // A controller is one manifest; an index is refused, not resolved.
            platform_resolver: None,
            ..Default::default()
        };
        // oci-client 0.18 also builds a default reqwest client, which panics when the
        // machine has no usable CA certificates (reqwest's `Client::default`). That is an
        // environment problem to report, not a crash.
        quiet_catch_unwind(AssertUnwindSafe(|| Client::new(config)))
            .map_err(|panic| https_setup_error(registry, target, panic_message(&panic)))
    }

    /// oci-client with the credentials cup's own challenge settled on ([`Registry::request_auth`]):
    /// a token (oci-client then asks nothing itself) or, for a registry that takes basic
    /// auth, the user's credentials.
    async fn oci_client(&self, target: &Target, auth: &RequestAuth) -> Result<Client> {
        let client = self.client(target)?;
        let auth = match auth {
            // oci-client asks `GET /v2/` before every request when anonymous credentials
            // are stored (it caches tokens only); storing none skips those round trips.
            RequestAuth::None => return Ok(client),
            RequestAuth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            RequestAuth::Bearer(token) => RegistryAuth::Bearer(token.clone()),
        };
        client
            .store_auth_if_needed(target.reference.resolve_registry(), &auth)
            .await;
        Ok(client)
    }

    /// cup's own HTTP client for `target`, authenticated for `op`.
    async fn connect_http<'t>(
        &self,
        target: &'t Target,
        op: RegistryOperation,
        retrier: &Retrier<'_>,
    ) -> Result<PushHttp<'t>> {
        let registry = target.reference.resolve_registry();
        let settings = push_http::ClientSettings {
            registry,
            user_agent: USER_AGENT,
            connect_timeout: CONNECT_TIMEOUT,
            read_timeout: self.options.retry.request_timeout,
        };
        let http = push_http::client(&settings)
            .map_err(|detail| https_setup_error(registry, target, &detail))?;
        let scheme = self.scheme(registry);
        let auth = self
            .request_auth(target, &http, scheme, op, retrier)
            .await?;
        PushHttp::new(http, target, scheme, auth)
    }

    fn scheme(&self, registry: &str) -> &'static str {
        if self.allows_plain_http(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// How cup's requests authenticate. Anonymous requests send nothing and ask nothing (a
    /// registry that wants credentials answers 401, reported as such). With credentials,
    /// the registry's challenge (`GET /v2/`) is run once: a Bearer challenge names a token
    /// service, which gets the credentials only if [`Registry::check_realm`] allows it, and
    /// the token is used from then on; otherwise the registry gets HTTP basic auth.
    async fn request_auth(
        &self,
        target: &Target,
        http: &reqwest::Client,
        scheme: &str,
        op: RegistryOperation,
        retrier: &Retrier<'_>,
    ) -> Result<RequestAuth> {
        let (username, password) = match auth::resolve(&self.options.credentials, &target.registry)?
        {
            RegistryAuth::Anonymous => return Ok(RequestAuth::None),
            RegistryAuth::Bearer(token) => return Ok(RequestAuth::Bearer(token)),
            RegistryAuth::Basic(username, password) => (username, password),
        };
        let registry = target.reference.resolve_registry();
        let base = format!("{scheme}://{registry}");
        let step = "authenticating";
        let challenge = retrier
            .run(step, || async {
                token::challenge(http, &base)
                    .await
                    .map_err(|f| f.failure(target, step))
            })
            .await?;
        let Some(challenge) = challenge else {
            return Ok(RequestAuth::Basic { username, password });
        };
        let realm = self.check_realm(registry, scheme, &challenge.realm)?;
        let scope = match op {
            RegistryOperation::Pull => format!("repository:{}:pull", target.reference.repository()),
            RegistryOperation::Push => {
                format!("repository:{}:pull,push", target.reference.repository())
            }
        };
        let step = format!("authenticating at {realm}");
        let token = retrier
            .run(&step, || async {
                token::fetch(
                    http,
                    realm.clone(),
                    &challenge,
                    &scope,
                    (&username, &password),
                )
                .await
                .map_err(|f| f.failure(target, &step))
            })
            .await?;
        Ok(RequestAuth::Bearer(token))
    }

    /// The token service a registry's challenge names, if the registry's credentials may go
    /// there: over HTTPS (plain HTTP only when the registry itself is spoken to in plain
    /// HTTP and the realm's host may be), on the registry's own host or one the user
    /// allowed ([`RegistryOptions::token_realms`]; Docker Hub's is built in).
    fn check_realm(&self, registry: &str, scheme: &str, realm: &str) -> Result<reqwest::Url> {
        let refuse = |detail: String| Error::Credentials {
            registry: registry.to_owned(),
            detail,
        };
        let url = reqwest::Url::parse(realm).map_err(|e| {
            refuse(format!(
                "the registry names the token service {realm:?}, which is not a URL ({e})"
            ))
        })?;
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        match url.scheme() {
            "https" => {}
            "http" if scheme == "http" && self.allows_plain_http(&authority) => {}
            "http" => {
                return Err(refuse(format!(
                    "the registry names the token service {realm} over plain HTTP; its \
                     credentials are not sent there (only a registry spoken to in plain HTTP \
                     may name a plain-HTTP token service, on a host allowed plain HTTP)"
                )));
            }
            other => {
                return Err(refuse(format!(
                    "the registry names the token service {realm}, whose scheme {other} is \
                     neither https nor http"
                )));
            }
        }
        let registry_host = host_of(registry)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let realm_host = host.trim_start_matches('[').trim_end_matches(']');
        let docker_hub = ["docker.io", "index.docker.io", "registry-1.docker.io"]
            .contains(&registry_host)
            && realm_host.eq_ignore_ascii_case("auth.docker.io");
        let allowed =
            realm_host.eq_ignore_ascii_case(registry_host)
                || docker_hub
                || self.options.token_realms.iter().any(|h| {
                    h.eq_ignore_ascii_case(&authority) || h.eq_ignore_ascii_case(realm_host)
                });
        if !allowed {
            return Err(refuse(format!(
                "the registry names the token service {realm}, on another host ({realm_host}); \
                 its credentials are not sent there unless that host is allowed with \
                 --allow-token-realm {realm_host}"
            )));
        }
        Ok(url)
    }

    // ---- push ----

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
    async fn upload(
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

    // ---- pull ----

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
        Ok(PullReport {
            reference: target.whole.clone(),
            digest: manifest_digest,
            wasm_digest,
            wasm_size,
            layout,
            fetched_blobs: fetch.fetched,
            cached_blobs: fetch.cached,
            from_store: false,
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
        }))
    }

    // ---- inspect ----

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

thread_local! {
    static PANIC_EXPECTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `catch_unwind` without the panic hook's report (and backtrace) on stderr: the caller turns
/// the panic into an error message of its own. Other threads' panics are reported as before.
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PANIC_EXPECTED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    PANIC_EXPECTED.with(|expected| expected.set(true));
    let result = std::panic::catch_unwind(f);
    PANIC_EXPECTED.with(|expected| expected.set(false));
    result
}

/// The text of a caught panic, when it has one.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panicked")
}

/// The TLS trust roots for a loopback registry: only a certificate whose key was thrown
/// away. A loopback registry is spoken to in plain HTTP, so the system's roots would never
/// be used, yet loading them (one file per root) is a measurable part of a short `cup` run. A
/// redirect from such a registry to an HTTPS host then fails verification: closed, not open.
/// Other registries get the system's roots (empty list).
fn loopback_trust_roots(registry: &str) -> Vec<Certificate> {
    if !is_loopback(host_of(registry)) {
        return Vec::new();
    }
    vec![Certificate {
        encoding: CertificateEncoding::Pem,
        data: include_bytes!("loopback-root.pem").to_vec(),
    }]
}

/// What a push reads the module from.
enum Module {
    Bytes(Bytes),
    File(std::path::PathBuf),
}

/// One blob to upload.
struct Upload<'a> {
    label: &'a str,
    data: Bytes,
    digest: &'a str,
}

/// The registry answers a manifest PUT with its location, which names the digest it
/// computed; one that differs from ours means the registry stored other bytes.
fn check_manifest_location(target: &Target, location: &str, ours: &str) -> Result<()> {
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
fn tag_name(target: &Target) -> Option<String> {
    let r = &target.reference;
    r.tag()
        .map(|t| format!("{}/{}:{t}", r.registry(), r.repository()))
}

/// Fetches a manifest (at most [`MAX_MANIFEST_BYTES`], never more read), checks its digest
/// and returns it with its digest.
async fn fetch_manifest(
    http: &PushHttp<'_>,
    target: &Target,
    retrier: &Retrier<'_>,
) -> Result<(Vec<u8>, String)> {
    let step = "fetching the manifest";
    let what = target.what("manifest");
    let (body, announced) = retrier
        .run(step, || async {
            http.get_manifest(&media::ACCEPTED_MANIFESTS, MAX_MANIFEST_BYTES as u64, &what)
                .await
                .map_err(|f| f.failure(target, step))
        })
        .await?;
    // The digest is our own hash of the bytes, whatever headers said.
    let actual = digest::of(&body);
    if let Some(expected) = target.reference.digest()
        && expected != actual
    {
        return Err(Error::DigestMismatch {
            what: target.what("manifest"),
            expected: expected.to_owned(),
            actual,
        });
    }
    // A registry whose own digest of the bytes differs sent other bytes than it stored.
    if let Some(announced) = announced.filter(|d| d.starts_with(digest::SHA256_PREFIX))
        && announced != actual
    {
        return Err(Error::DigestMismatch {
            what: target.what("fetching the manifest: its Docker-Content-Digest"),
            expected: announced,
            actual,
        });
    }
    Ok((body, actual))
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

/// A failed attempt from an oci-client error: classified for retry, then described.
fn oci_failure(target: &Target, doing: &str, e: OciDistributionError) -> Failure {
    Failure {
        verdict: verdict(&e),
        error: map_error(target, doing, e),
    }
}

/// An HTTP client could not be built (no usable CA certificates, most likely): an environment
/// problem, said with its usual cause. `registry` is the one actually contacted.
fn https_setup_error(registry: &str, target: &Target, cause: &str) -> Error {
    Error::Registry {
        registry: registry.to_owned(),
        reference: target.whole.clone(),
        detail: format!(
            "cannot set up the HTTPS client ({cause}); is the ca-certificates package installed, or SSL_CERT_FILE set to a readable bundle?"
        ),
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

/// An error and its sources, joined with ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `host` of `host[:port]` (or of `[v6]:port`).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_hosts() {
        let r = Registry::new(RegistryOptions {
            plain_http: vec!["reg.lan".into(), "other.lan:5000".into()],
            ..Default::default()
        });
        for yes in [
            "127.0.0.1:5000",
            "127.8.9.10",
            "localhost:5000",
            "[::1]:5000",
            "::1",
            "reg.lan:5000",
            "reg.lan",
            "other.lan:5000",
        ] {
            assert!(r.allows_plain_http(yes), "{yes}");
        }
        for no in [
            "128.0.0.1:5000",
            "example.com",
            "other.lan:5001",
            "localhost.example.com",
            "ghcr.io",
        ] {
            assert!(!r.allows_plain_http(no), "{no}");
        }
    }

    #[test]
    fn credentials_go_only_to_token_services_on_the_registrys_host_or_allowed_ones() {
        let r = Registry::new(RegistryOptions {
            token_realms: vec!["auth.example".into(), "127.0.0.3:7000".into()],
            ..Default::default()
        });
        let ok = |registry: &str, scheme: &str, realm: &str| {
            r.check_realm(registry, scheme, realm)
                .map(|u| u.to_string())
                .map_err(|e| e.to_string())
        };
        // The registry's own host, any port; an allowed host; Docker Hub's own service.
        for (registry, scheme, realm) in [
            ("ghcr.io", "https", "https://ghcr.io/token"),
            (
                "reg.example:5000",
                "https",
                "https://REG.example:5001/token",
            ),
            ("reg.example", "https", "https://auth.example/token"),
            ("index.docker.io", "https", "https://auth.docker.io/token"),
            ("127.0.0.1:5000", "http", "http://127.0.0.1:5001/token"),
            ("127.0.0.1:5000", "http", "http://127.0.0.3:7000/token"),
            ("[::1]:5000", "http", "http://[::1]:5001/token"),
        ] {
            ok(registry, scheme, realm).unwrap_or_else(|e| panic!("{realm}: {e}"));
        }
        // Another host; plain HTTP for an HTTPS registry (even on its own host); odd URLs.
        for (registry, scheme, realm, says) in [
            (
                "127.0.0.1:5999",
                "http",
                "http://127.0.0.2:5998/token",
                "--allow-token-realm 127.0.0.2",
            ),
            (
                "reg.example",
                "https",
                "https://evil.example/token",
                "another host",
            ),
            (
                "reg.example",
                "https",
                "http://reg.example/token",
                "plain HTTP",
            ),
            (
                "reg.example",
                "https",
                "http://auth.example/token",
                "plain HTTP",
            ),
            (
                "ghcr.io",
                "https",
                "https://auth.docker.io/token",
                "another host",
            ),
            (
                "127.0.0.1:5000",
                "http",
                "http://10.0.0.1/token",
                "plain HTTP",
            ),
            (
                "reg.example",
                "https",
                "file:///etc/passwd",
                "neither https nor http",
            ),
            ("reg.example", "https", "/token", "not a URL"),
        ] {
            let err = ok(registry, scheme, realm).expect_err(realm);
            assert!(err.contains(says), "{realm}: {err}");
        }
    }

    #[test]
    fn pinned_reference_keeps_registry_and_repository() {
        let t = Target::parse("127.0.0.1:5000/cup/flipt:v1").expect("parse");
        assert_eq!(t.pinned("sha256:ab"), "127.0.0.1:5000/cup/flipt@sha256:ab");
        assert_eq!(tag_name(&t).as_deref(), Some("127.0.0.1:5000/cup/flipt:v1"));
        assert!(Target::parse("Bad Ref").is_err());
    }
}

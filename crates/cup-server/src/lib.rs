//! cupd's server: turns a directory into cup's typed resource API, with controllers
//! loaded from files or OCI images by digest.
//!
//! ```text
//! Server::bind(Options)   config directory (fatal errors stop here), source, listener,
//!                         wasmtime runtime + code cache, OCI store
//!   └─ Server::run         serves at once (/healthz; /readyz 503) while controllers load in
//!                          the background; then publishes routes and /apis (/readyz 200)
//! ```
//!
//! Modules: [`config_dir`] (the `-api-resources` directory), `load` (controllers and
//! routes), `image` (OCI), `routes`, `verbs` (one verb on one controller), `inline_reads`
//! (which wasm reads run on the request's task), `source` (the local directory and its write
//! guarantees), `git` (the Git source over `cup-git`), `hooks` (forge webhooks that wake its
//! fetcher), `sweep` (what a killed cupd left behind, removed at start), `api` and `http` (axum),
//! `cors` (cross-origin requests), `serve` (the listener and its connection limits), `tls`
//! (HTTPS and client certificates, reloaded when their files change),
//! `metrics`, `status`, `reload` (the config directory again, swapped in whole or refused).
//! The API and every difference from the original are in `docs/API.md`.

// Here, not in [workspace.lints]: binaries share that table and need not document every item.
#![warn(missing_docs)]

mod access;
mod api;
pub mod config_dir;
mod config_watch;
mod cors;
mod discovery;
mod error;
mod git;
mod heap;
mod hooks;
mod http;
mod image;
mod inline_reads;
mod listing;
mod load;
mod metrics;
mod reload;
mod routes;
mod serve;
mod signatures;
mod source;
mod state;
mod status;
mod sweep;
mod tls;
mod verbs;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cup_runtime::{CodeCache, Limits, Runtime};
use tokio::net::TcpListener;

pub use access::{AccessOptions, AccessSetupError, RecordUser};
pub use config_dir::{ConfigDir, ConfigError};
pub use config_watch::{ConfigWatch, MAX_WAIT, QUIET, WatchError, watch_config};
pub use cors::BadOrigin;
pub use cup_access::{
    AuditTarget, AuthenticatorOptions, RequestHeaderOptions, hash_token, parse_trusted_source,
};
pub use cup_git::WriteLimit;
pub use cup_git::set_network_timeouts as set_git_network_timeouts;
pub use cup_git::{Author, SnapshotLimits, SnapshotRetention, WriteLimits};
pub use cup_model::IdentitySpec;
pub use cup_oci::{RegistryOptions, RetryPolicy};
pub use git::GitOptions;
pub use hooks::{WebhookSecret, WebhookSecretError};
pub use listing::ListLimits;
pub use reload::ReloadHandle;
pub use signatures::{SignatureOptions, SignatureSetupError};
/// How long one read of the local source may hold writes off by default.
pub use source::DEFAULT_READ_HOLD;
pub use source::{LocalSource, ScratchPlace};
pub use tls::{TlsError, TlsFile, TlsOptions, TlsProblem};

/// How to run the server (already resolved from flags, environment and config file).
#[derive(Debug, Clone)]
pub struct Options {
    /// Listen address: `host:port`, or Go's `:port` for every interface.
    pub address: String,
    /// The config directory (`-api-resources`).
    pub resources: PathBuf,
    /// The local source directory (`-api-local-path`).
    pub local_path: PathBuf,
    /// Where wasm writes to the local source make their scratch copies (`-scratch-dir`);
    /// `None` for [`ScratchPlace::default_for_this_host`].
    pub scratch_dir: Option<PathBuf>,
    /// What one write may carry over (`--write-max-*`), on the local source and as the
    /// Git source's default ([`GitOptions::write_limits`]).
    pub write_limits: WriteLimits,
    /// The longest one read of the local source holds writes off (`--max-read-hold`).
    pub read_hold: std::time::Duration,
    /// The Git source (`-api-source git`); when set, `local_path` is not used.
    pub git: Option<GitOptions>,
    /// The OCI image-layout store shared with `cup`.
    pub store: PathBuf,
    /// Compiled-code cache directory.
    pub code_cache: PathBuf,
    /// Refuse image references without `@sha256:`.
    pub strict_digests: bool,
    /// Per-invocation limits of wasm controllers.
    pub limits: Limits,
    /// Bounds of list responses.
    pub list_limits: ListLimits,
    /// How to reach OCI registries when an image is not in the store yet.
    pub registry: RegistryOptions,
    /// Timeouts, connection limits and CORS of the HTTP side.
    pub http: HttpOptions,
    /// Authentication, authorisation and the audit log.
    pub access: AccessOptions,
    /// Which controllers must be signed, and with which keys.
    pub signatures: SignatureOptions,
}

/// Limits of the HTTP side (the `--http-*` and `--cors-allowed-origins` flags).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// A complete request head must arrive within this of the connection's start or of the
    /// first byte of the request.
    pub header_timeout: Duration,
    /// A keep-alive connection silent this long between requests is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog. Lowered at startup to
    /// fit the open-file limit.
    pub max_connections: usize,
    /// Resource and proposal requests served at once; more wait for a slot.
    pub max_requests: usize,
    /// Origins (`scheme://host[:port]`, or `*`) allowed to use the API from a browser.
    pub cors_allowed_origins: Vec<String>,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsOptions>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_requests: 256,
            cors_allowed_origins: Vec::new(),
            tls: None,
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The config directory is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local source directory cannot be opened.
    #[error("local source {path}: {source}")]
    Source {
        /// The local source directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Git source cannot be opened: bad remote, no credentials, cache in use, and so on. The
    /// message says which flag to change where one applies.
    #[error("git source: {}", git::with_remedy(.0))]
    Git(#[from] cup_git::GitError),
    /// The task opening the Git source panicked or was cancelled.
    #[error("opening the git source: {0}")]
    GitTask(String),
    /// The listen address cannot be bound.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address bound, with Go's `:port` spelled `0.0.0.0:port`.
        address: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `--cors-allowed-origins` entry is not an origin.
    #[error(transparent)]
    Origin(#[from] BadOrigin),
    /// Access control cannot start (a token or policy file, the audit log).
    #[error(transparent)]
    Access(#[from] AccessSetupError),
    /// A `--verify-key` file cannot be used.
    #[error(transparent)]
    Signature(#[from] SignatureSetupError),
    /// A TLS file (certificate, key, client CA or CRL) cannot be read or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound server whose controllers are not loaded yet.
pub struct Server {
    listener: TcpListener,
    state: Arc<state::AppState>,
    loader: load::Loader,
    reloader: reload::Reloader,
    app: http::AppLimits,
    connections: serve::ConnLimits,
    tls: Option<Arc<tls::TlsConfigs>>,
}

impl Server {
    /// Reads the config directory, opens the source and binds the listener. Problems with
    /// a single controller are not errors here: they show up in `/status` and as 503s.
    pub async fn bind(options: Options) -> Result<Server, ServerError> {
        let config = config_dir::load(&options.resources)?;
        let cors = cors::CorsPolicy::new(&options.http.cors_allowed_origins)?;
        let tls = match &options.http.tls {
            Some(files) => Some(Arc::new(tls::TlsConfigs::load(files.clone())?)),
            None => None,
        };
        let access = access::AccessControl::new(&options.access)?;
        let signature_policy = signatures::SignaturePolicy::load(&options.signatures)?;
        let max_connections = fit_open_files(options.http.max_connections);
        let source = match &options.git {
            None => {
                let scratch = match &options.scratch_dir {
                    Some(dir) => ScratchPlace::explicit(dir.clone()),
                    None => ScratchPlace::default_for_this_host(),
                };
                tracing::info!(dir = %scratch.dir().display(), "scratch copies for writes");
                source::Source::Local(
                    LocalSource::open(
                        &options.local_path,
                        scratch,
                        options.write_limits,
                        options.read_hold,
                    )
                    .map_err(|source| ServerError::Source {
                        path: options.local_path.clone(),
                        source,
                    })?,
                )
            }
            Some(git) => {
                let opened = {
                    let git = git.clone();
                    tokio::task::spawn_blocking(move || git::GitSource::open(&git))
                        .await
                        .map_err(|e| ServerError::GitTask(e.to_string()))??
                };
                opened.spawn_fetcher(git.fetch_interval);
                opened.spawn_gc(git.gc_interval);
                source::Source::Git(opened)
            }
        };
        sweep_leftovers(&source).await;
        let address = listen_address(&options.address);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| ServerError::Bind { address, source })?;
        if let Ok(bound) = listener.local_addr()
            && !bound.ip().is_loopback()
            && !access.identifies_callers()
        {
            tracing::warn!(
                address = %bound,
                "listening on a non-loopback address without authentication: anyone who can \
                 reach it can read and write every resource; listen on 127.0.0.1, or turn \
                 authentication on (--token-auth-file, --client-ca-file, --requestheader-*)"
            );
        } else if let Ok(bound) = listener.local_addr()
            && !bound.ip().is_loopback()
            && options.access.authentication.token_file.is_some()
            && tls.is_none()
        {
            tracing::warn!(
                address = %bound,
                "bearer tokens are accepted over plain HTTP on a non-loopback address: anyone \
                 on the path can read and reuse them; serve TLS (--tls-cert-file)"
            );
        }
        let status = Arc::new(status::StatusBoard::default());
        let metrics = Arc::new(metrics::Metrics::default());
        let runtime = Runtime::new(options.limits.clone())
            .map_err(|e| format!("starting the wasm runtime: {e}"));
        if let Ok(runtime) = &runtime {
            log_pool(runtime);
        }
        let tools = Arc::new(load::LoadTools {
            runtime,
            cache: code_cache(&options.code_cache),
            images: image::ImageSource::new(
                &options.store,
                options.registry.clone(),
                options.strict_digests,
            ),
            metrics: metrics.clone(),
            signatures: signature_policy,
        });
        let loader = load::Loader {
            config,
            tools: tools.clone(),
            status: status.clone(),
            reusable: std::collections::HashMap::new(),
        };
        loader.announce();
        let state = Arc::new(state::AppState::new(
            source,
            status,
            metrics,
            options.list_limits,
            access,
        ));
        let reloader = reload::Reloader::new(options.resources.clone(), tools, state.clone());
        Ok(Server {
            listener,
            state,
            loader,
            reloader,
            app: http::AppLimits {
                cors,
                body_timeout: options.http.body_timeout,
                max_requests: options.http.max_requests,
            },
            connections: serve::ConnLimits {
                header_timeout: options.http.header_timeout,
                idle_timeout: options.http.idle_timeout,
                max_connections,
            },
            tls,
        })
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Requests reloads of the config directory (cupd: on SIGHUP). Requests made before the
    /// controllers' first load is published are served after it.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reloader.handle()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Loads the controllers in the background and serves until `shutdown` completes;
    /// in-flight requests are then allowed to finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            loader,
            reloader,
            app,
            connections,
            tls,
        } = self;
        let publisher = state.clone();
        tokio::spawn(async move {
            // Problems are in /status already; the first set is served whatever they are.
            let (served, _problems) = loader.load_all().await;
            drop(loader);
            tracing::info!(routes = served.routes.len(), "controllers loaded; ready");
            publisher.publish(served);
            reloader.serve().await;
        });
        let metrics = state.metrics.clone();
        let router = http::router(state, &app);
        serve::serve(listener, router, connections, tls, metrics, shutdown).await;
        Ok(())
    }
}

/// Removes a killed cupd's scratch copies and, for the local source, its temp files, before
/// serving (so no write of this process can be mistaken for debris).
async fn sweep_leftovers(source: &source::Source) {
    let (mut scratch_dirs, root) = match source {
        source::Source::Local(local) => (
            local.scratch().dirs().map(Path::to_owned).collect(),
            Some(local.root().to_owned()),
        ),
        source::Source::Git(_) => (Vec::new(), None),
    };
    // `$TMPDIR` always: every scratch copy was made there before `-scratch-dir` existed.
    let tmp = std::env::temp_dir();
    if !scratch_dirs.contains(&tmp) {
        scratch_dirs.push(tmp);
    }
    let swept =
        tokio::task::spawn_blocking(move || sweep::at_startup(&scratch_dirs, root.as_deref()))
            .await;
    match swept {
        Ok(swept) if swept.scratch_dirs.len() + swept.temp_files.len() > 0 => tracing::info!(
            scratch_dirs = swept.scratch_dirs.len(),
            temp_files = swept.temp_files.len(),
            "swept what a previous cupd left behind"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "the startup sweep failed"),
    }
}

fn log_pool(runtime: &Runtime) {
    match runtime.pool_stats() {
        Ok(pool) => tracing::info!(slots = pool.capacity, "wasm instance pool ready"),
        // Requests still run, each on freshly mapped memory.
        Err(reason) => tracing::warn!(%reason, "no wasm instance pool"),
    }
}

/// The cupd flag that sets `limit` (local and Git sources share them).
pub fn limit_flag(limit: WriteLimit) -> &'static str {
    match limit {
        WriteLimit::FileBytes => "--write-max-file-size",
        WriteLimit::TotalBytes => "--write-max-total-size",
        WriteLimit::Entries => "--write-max-entries",
        WriteLimit::Depth => "--write-max-depth",
    }
}

/// The cupd flag that sets `limit` of the Git source's [`SnapshotLimits`].
pub fn snapshot_limit_flag(limit: WriteLimit) -> &'static str {
    match limit {
        WriteLimit::FileBytes => "--git-snapshot-max-file-size",
        WriteLimit::TotalBytes => "--git-snapshot-max-size",
        WriteLimit::Entries => "--git-snapshot-max-entries",
        WriteLimit::Depth => "--git-snapshot-max-depth",
    }
}

/// Raises the soft open-file limit to the hard one (each connection is a descriptor; the
/// soft limit is often 1024), then lowers `wanted` connections if they would not leave
/// room for cupd's own files (modules, sources, scratch copies, git packs).
fn fit_open_files(wanted: usize) -> usize {
    let limit = match raise_open_file_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!(from = before, to = after, "raised the open-file limit");
            }
            after
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return wanted;
        }
    };
    let reserve = (limit / 4).clamp(32, 256);
    let room = usize::try_from(limit.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1);
    if wanted > room {
        tracing::warn!(
            wanted,
            open_file_limit = limit,
            connections = room,
            "--http-max-connections lowered to leave descriptors for cupd's own files"
        );
        room
    } else {
        wanted
    }
}

/// `(soft before, soft after)`.
#[cfg(unix)]
// std has no binding for getrlimit/setrlimit; libc is the only way to them.
#[allow(unsafe_code)]
fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = limit.rlim_cur;
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
        Ok((before, limit.rlim_cur))
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::other("not supported on this platform"))
}

/// Go's `:8181` means every interface.
fn listen_address(address: &str) -> String {
    match address.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => address.to_owned(),
    }
}

/// The code cache, or none (with a warning) if its directory is unusable: loads still
/// work, they just compile every time.
fn code_cache(dir: &std::path::Path) -> Option<CodeCache> {
    match CodeCache::new(dir) {
        Ok(cache) => Some(cache),
        Err(error) => {
            tracing::warn!(%error, "compiled-code cache disabled");
            None
        }
    }
}

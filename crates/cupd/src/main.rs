//! `cupd serve`: cup's API server. See `docs/API.md`.

mod cli;
mod units;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use cup_server::{
    AccessOptions, AuditTarget, AuthenticatorOptions, GitOptions, HttpOptions, Options,
    RegistryOptions, RequestHeaderOptions, RetryPolicy, Server,
};
use tracing_subscriber::EnvFilter;

use crate::cli::{Command, Serve};

// libgit2 keeps its network timeouts in unsynchronised globals, so setting them is an
// unsafe call that must come before any thread starts: here, first thing.
#[allow(unsafe_code)]
fn main() -> anyhow::Result<()> {
    let cli = cli::parse(std::env::args_os().collect())?;
    let Command::Serve(serve) = cli.command;
    init_logging(&serve.log_level)?;
    // SAFETY: no thread has been started yet (the async runtime is built below).
    unsafe { cup_server::set_git_network_timeouts(serve.git_timeout, serve.git_timeout) }
        .context("setting the Git network timeouts")?;
    let options = options(&serve)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let watch = serve.watch_config.then(|| serve.api_resources.clone());
    runtime.block_on(run(options, watch))
}

/// Serves until SIGINT or SIGTERM; `watch`: the config directory to reload on change.
async fn run(options: Options, watch: Option<PathBuf>) -> anyhow::Result<()> {
    let address = options.address.clone();
    // Watched before anything else: SIGHUP's default action ends the process, and an
    // operator may send it as soon as cupd says it listens.
    let hangups = hangups();
    let server = Server::bind(options).await.context("starting cupd")?;
    if let Some(hangups) = hangups {
        tokio::spawn(reload_on_hangup(hangups, server.reload_handle()));
    }
    let _watch = match watch {
        Some(dir) => {
            let watch = cup_server::watch_config(&dir, server.reload_handle())?;
            tracing::info!(dir = %dir.display(), "watching the config directory: a change reloads it");
            Some(watch)
        }
        None => None,
    };
    let bound = server
        .local_addr()
        .with_context(|| format!("reading the address bound for {address}"))?;
    let scheme = server.scheme();
    tracing::info!(address = %bound, "cupd listening on {scheme}://{bound}");
    server
        .run(shutdown_signal())
        .await
        .context("cupd stopped")?;
    tracing::info!("cupd stopped");
    Ok(())
}

/// The pull-request interface `-api-git-scm` names: `none` (or empty) = proposals are branches
/// only; `github`, `gitea` (`forgejo`) or `gitlab` = a client of that forge's API for the
/// repository of `-api-git-repo`. The token comes from `--api-git-scm-token-file`, else
/// `CUPD_API_GIT_SCM_TOKEN`, else the remote URL's password.
fn pull_requests(serve: &Serve) -> anyhow::Result<Arc<dyn cup_git::PullRequests>> {
    let scm = serve.api_git_scm.as_str();
    if matches!(scm, "" | "none") {
        return Ok(Arc::new(cup_git::BranchesOnly));
    }
    let forge = cup_scm::Forge::from_name(scm).with_context(|| {
        format!("-api-git-scm {scm:?}: unknown SCM (expected none, github, gitea or gitlab)")
    })?;
    let token = match &serve.api_git_scm_token_file {
        Some(path) => Some(cup_scm::Token::from_file(path).context("--api-git-scm-token-file")?),
        None => match std::env::var("CUPD_API_GIT_SCM_TOKEN") {
            Ok(text) => Some(
                cup_scm::Token::new(&text)
                    .context("CUPD_API_GIT_SCM_TOKEN is empty or holds control characters")?,
            ),
            Err(_) => None,
        },
    };
    let names = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let options = cup_scm::ScmOptions {
        forge,
        api_url: serve.api_git_scm_url.clone(),
        token,
        labels: names(&serve.api_git_scm_labels),
        reviewers: names(&serve.api_git_scm_reviewers),
        limits: cup_scm::HttpLimits::default(),
    };
    cup_scm::open(&options, &serve.api_git_repo).with_context(|| format!("-api-git-scm {scm}"))
}

/// Checks the flags and turns them into server options.
fn options(serve: &Serve) -> anyhow::Result<Options> {
    let git_source = match serve.api_source.as_str() {
        "local" => false,
        "git" => true,
        other => bail!("unknown -api-source {other:?} (expected \"local\" or \"git\")"),
    };
    if !serve.tailscale_hostname.is_empty()
        || !serve.tailscale_auth_key.is_empty()
        || serve.tailscale_ephemeral
    {
        bail!(
            "Tailscale listeners (-tailscale-hostname, -tailscale-auth-key, \
             -tailscale-ephemeral) are not supported by this cupd; listen on -api-address \
             and put it behind your own network access control"
        );
    }
    if !git_source && !serve.api_git_repo.is_empty() {
        tracing::warn!("-api-git-repo is ignored: the source is local");
    }
    let scm = serve.api_git_scm.as_str();
    if !git_source && !matches!(scm, "" | "none") {
        tracing::warn!("-api-git-scm {scm:?} is ignored: the source is local");
    }
    if !git_source && serve.api_git_webhook_secret_file.is_some() {
        tracing::warn!("--api-git-webhook-secret-file is ignored: the source is local");
    }
    if git_source && serve.api_git_repo.is_empty() {
        bail!("-api-source git needs -api-git-repo URL");
    }
    let store = match &serve.store {
        Some(dir) => dir.clone(),
        None => cup_oci::Store::default_dir()
            .context("no default OCI store directory (neither XDG_CACHE_HOME nor HOME is set); pass --store DIR")?,
    };
    if let Some(dir) = &serve.scratch_dir
        && !dir.is_dir()
    {
        bail!("-scratch-dir {}: not a directory", dir.display());
    }
    let code_cache = serve
        .code_cache
        .clone()
        .unwrap_or_else(|| store.join("code"));
    let write_limits = cup_server::WriteLimits {
        max_file_bytes: serve.write_max_file_size as u64,
        max_total_bytes: serve.write_max_total_size as u64,
        max_entries: serve.write_max_entries,
        max_depth: serve.write_max_depth,
    };
    let git = if git_source {
        let pull_requests = pull_requests(serve)?;
        let author: cup_server::Author = serve
            .git_author
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid --git-author: {e}"))?;
        let webhook_secret = serve
            .api_git_webhook_secret_file
            .as_deref()
            .map(cup_server::WebhookSecret::from_file)
            .transpose()
            .context("--api-git-webhook-secret-file")?;
        Some(GitOptions {
            url: serve.api_git_repo.clone(),
            cache: serve.git_cache.clone().unwrap_or_else(|| store.join("git")),
            author,
            fetch_interval: serve.git_fetch_interval,
            credentials: serve.api_git_credentials.clone(),
            known_hosts: serve.api_git_known_hosts.clone(),
            pull_requests,
            write_limits,
            snapshot_limits: cup_server::SnapshotLimits {
                max_file_bytes: serve.git_snapshot_max_file_size as u64,
                max_total_bytes: serve.git_snapshot_max_size as u64,
                max_entries: serve.git_snapshot_max_entries,
                max_depth: serve.git_snapshot_max_depth,
            },
            snapshot_retention: cup_server::SnapshotRetention {
                max_snapshots: usize::try_from(serve.git_snapshots).unwrap_or(usize::MAX),
                max_bytes: serve.git_snapshots_size as u64,
            },
            gc_interval: serve.git_gc_interval,
            proposal_retention: serve.git_proposal_retention.0,
            webhook_secret,
        })
    } else {
        None
    };
    Ok(Options {
        git,
        address: serve.api_address.clone(),
        resources: serve.api_resources.clone(),
        local_path: serve.api_local_path.clone(),
        scratch_dir: serve.scratch_dir.clone(),
        store,
        code_cache,
        strict_digests: serve.strict_digests,
        write_limits,
        read_hold: serve.max_read_hold,
        limits: cup_runtime::Limits {
            deadline: serve.controller_timeout,
            memory_bytes: serve.controller_memory,
            pooled_instances: serve.controller_pool,
            ..cup_runtime::Limits::default()
        },
        list_limits: cup_server::ListLimits {
            max_items: serve.max_list_items,
            max_bytes: serve.max_list_bytes,
        },
        registry: RegistryOptions {
            plain_http: serve.plain_http.clone(),
            token_realms: serve.allow_token_realm.clone(),
            retry: RetryPolicy {
                attempts: serve.registry_attempts,
                request_timeout: serve.registry_timeout,
                ..RetryPolicy::default()
            },
            ..RegistryOptions::default()
        },
        http: HttpOptions {
            header_timeout: serve.http_header_timeout,
            idle_timeout: serve.http_idle_timeout,
            body_timeout: serve.http_body_timeout,
            max_connections: serve.http_max_connections as usize,
            max_requests: serve.http_max_requests as usize,
            cors_allowed_origins: serve.cors_allowed_origins.clone(),
            tls: tls_options(serve),
        },
        access: access_options(serve)?,
        signatures: signature_options(serve)?,
    })
}

/// `--verify-key`, `--trusted-root`, the keyless identity and `--require-signatures`.
fn signature_options(serve: &Serve) -> anyhow::Result<cup_server::SignatureOptions> {
    let identities = match (
        &serve.certificate_oidc_issuer,
        &serve.certificate_identity,
        &serve.certificate_identity_regexp,
    ) {
        (None, None, None) => Vec::new(),
        (Some(_), Some(_), Some(_)) => {
            bail!("give --certificate-identity or --certificate-identity-regexp, not both")
        }
        (Some(_), None, None) => bail!(
            "--certificate-oidc-issuer needs --certificate-identity or \
             --certificate-identity-regexp: an issuer alone would accept anyone it signs for"
        ),
        (None, _, _) => bail!(
            "--certificate-identity and --certificate-identity-regexp need \
             --certificate-oidc-issuer"
        ),
        (Some(issuer), subject, regexp) => vec![cup_server::IdentitySpec {
            issuer: issuer.clone(),
            subject: subject.clone(),
            subject_regexp: regexp.clone(),
        }],
    };
    if !identities.is_empty() && serve.trusted_root.is_none() {
        bail!("keyless identities need --trusted-root (a Sigstore trusted_root.json)");
    }
    Ok(cup_server::SignatureOptions {
        verify_keys: serve.verify_key.clone(),
        identities,
        trusted_root: serve.trusted_root.clone(),
        require: serve.require_signatures,
    })
}

/// The `--token-auth-file`, `--requestheader-*`, `--anonymous`, policy and audit flags.
fn access_options(serve: &Serve) -> anyhow::Result<AccessOptions> {
    let proxy_trust = !serve.requestheader_trusted_sources.is_empty()
        || !serve.requestheader_allowed_names.is_empty();
    let request_header = if serve.requestheader_username_headers.is_empty() {
        if proxy_trust || !serve.requestheader_group_headers.is_empty() {
            bail!(
                "--requestheader-trusted-sources, --requestheader-allowed-names and \
                 --requestheader-group-headers need --requestheader-username-headers"
            );
        }
        None
    } else {
        if !proxy_trust {
            bail!(
                "--requestheader-username-headers needs --requestheader-trusted-sources or \
                 --requestheader-allowed-names: headers believed from anyone would let anyone \
                 be anyone"
            );
        }
        if !serve.requestheader_allowed_names.is_empty() && serve.client_ca_file.is_none() {
            bail!(
                "--requestheader-allowed-names needs --client-ca-file: the proxy is known by \
                 the client certificate it presents"
            );
        }
        let trusted_sources = serve
            .requestheader_trusted_sources
            .iter()
            .map(|s| cup_server::parse_trusted_source(s))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--requestheader-trusted-sources: {e}"))?;
        Some(RequestHeaderOptions {
            username_headers: serve.requestheader_username_headers.clone(),
            group_headers: serve.requestheader_group_headers.clone(),
            trusted_sources,
            allowed_names: serve.requestheader_allowed_names.clone(),
        })
    };
    Ok(AccessOptions {
        authentication: AuthenticatorOptions {
            token_file: serve.token_auth_file.clone(),
            client_certificates: serve.client_ca_file.is_some(),
            request_header,
            anonymous: serve.anonymous,
        },
        policy_file: serve.authorization_policy_file.clone(),
        audit: serve.audit_log_path.as_ref().map(|p| {
            if p.as_os_str() == "-" {
                AuditTarget::Stderr
            } else {
                AuditTarget::File(p.clone())
            }
        }),
        record_user: serve.git_record_user,
    })
}

/// The TLS files, when HTTPS is on (clap has checked that the flags come together).
fn tls_options(serve: &Serve) -> Option<cup_server::TlsOptions> {
    Some(cup_server::TlsOptions {
        cert_file: serve.tls_cert_file.clone()?,
        key_file: serve.tls_private_key_file.clone()?,
        client_ca_file: serve.client_ca_file.clone(),
        client_crl_files: serve.client_crl_file.clone(),
    })
}

/// `RUST_LOG` when set, else `-log-level`. Logs go to stderr.
fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env).context("invalid RUST_LOG")?,
        _ => {
            let filter = EnvFilter::try_new(level)
                .with_context(|| format!("invalid -log-level {level:?}"))?;
            if level.contains("wasmtime_wasi") {
                filter
            } else {
                // wasmtime-wasi opens an INFO span around every WASI call a guest makes;
                // recording them is a noticeable share of a request's host time and tells an
                // operator nothing. `-log-level info,wasmtime_wasi=info` brings them back.
                filter.add_directive(
                    "wasmtime_wasi=warn"
                        .parse()
                        .context("the built-in wasmtime_wasi log directive")?,
                )
            }
        }
    };
    // Colours only on a terminal: escape codes would litter log files and collectors.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

/// SIGHUP, when it can be watched (Unix).
#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = std::convert::Infallible;

#[cfg(unix)]
fn hangups() -> Option<Hangups> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGHUP: the config directory cannot be reloaded");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangups() -> Option<Hangups> {
    None
}

/// Each SIGHUP asks for a reload of the config directory; those arriving while one runs
/// make one more after it.
#[cfg(unix)]
async fn reload_on_hangup(mut hangups: Hangups, reload: cup_server::ReloadHandle) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reload of the config directory requested");
        reload.request();
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(hangups: Hangups, _reload: cup_server::ReloadHandle) {
    match hangups {}
}

/// Completes on SIGINT or SIGTERM; the server then finishes in-flight requests.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}

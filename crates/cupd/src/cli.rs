//! The command line: the original's Go-style flags (`-api-address :8181` or
//! `--api-address=:8181`), `CUPD_*` environment variables and a config file, with the
//! precedence flag > environment > config file > default.
//!
//! clap parses GNU-style options, so single-dash long flags are rewritten to double-dash
//! ones first ([`normalize`]); only names cupd knows are rewritten, so `-h` keeps working.
//! The config file is merged by re-parsing with `--flag=value` appended for every key
//! whose flag was neither given nor set by its environment variable.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::units::{parse_duration, parse_size};

/// A duration above zero (a zero timeout would close every connection at once).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// How long the branch of an ended proposal stays: `forever` (or `-1`) keeps them for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

fn parse_retention(text: &str) -> Result<Retention, String> {
    match text.trim() {
        "forever" | "-1" => Ok(Retention(None)),
        other => parse_duration(other)
            .map(|d| Retention(Some(d)))
            .map_err(|e| format!("{e}, or \"forever\"")),
    }
}

/// cupd: serves a directory as cup's typed resource API.
#[derive(Debug, Parser)]
// Go's flag package lets a later occurrence of a flag replace an earlier one.
#[command(
    name = "cupd",
    version,
    subcommand_required = true,
    arg_required_else_help = true,
    args_override_self = true
)]
pub struct Cli {
    /// Config file (YAML or JSON) with flag values: `api-address: ":8181"`, or nested
    /// `api: {address: ":8181"}` (keys joined with '-'). Flags and CUPD_* variables win.
    #[arg(long, global = true, env = "CUPD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the resource API.
    #[command(args_override_self = true)]
    Serve(Serve),
}

/// Flags of `cupd serve`. Every flag also reads `CUPD_<NAME>` (upper case, '-' → '_').
#[derive(Debug, Args)]
pub struct Serve {
    /// Listen address (`:port` = every interface).
    #[arg(
        long,
        env = "CUPD_API_ADDRESS",
        default_value = ":8181",
        value_name = "ADDR"
    )]
    pub api_address: String,
    /// Source of the resources: `local` (a directory) or `git` (a repository; writes become
    /// proposal branches).
    #[arg(
        long,
        env = "CUPD_API_SOURCE",
        default_value = "local",
        value_name = "TYPE"
    )]
    pub api_source: String,
    /// Directory served by the local source.
    #[arg(
        long,
        env = "CUPD_API_LOCAL_PATH",
        default_value = ".",
        value_name = "DIR"
    )]
    pub api_local_path: PathBuf,
    /// Config directory: ResourceDefinition, Controller and Binding JSON files.
    #[arg(
        long,
        env = "CUPD_API_RESOURCES",
        default_value = ".",
        value_name = "DIR"
    )]
    pub api_resources: PathBuf,
    /// Git repository URL (git source): a path, file://, git://, http(s):// (credentials
    /// in the URL or --api-git-credentials), ssh://user@host[:port]/path or user@host:path
    /// (through the ssh-agent).
    #[arg(
        long,
        env = "CUPD_API_GIT_REPO",
        default_value = "",
        // `--help` would print the URL, with any password in it.
        hide_env_values = true,
        value_name = "URL"
    )]
    pub api_git_repo: String,
    /// Git source: credentials for http(s) remotes in git-credential-store format (lines
    /// `https://user:token@host[/path]`); credentials in the URL win.
    #[arg(long, env = "CUPD_API_GIT_CREDENTIALS", value_name = "FILE")]
    pub api_git_credentials: Option<PathBuf>,
    /// Git source: known_hosts checked for ssh remotes [default: ~/.ssh/known_hosts].
    #[arg(long, env = "CUPD_API_GIT_KNOWN_HOSTS", value_name = "FILE")]
    pub api_git_known_hosts: Option<PathBuf>,
    /// Git source: the shared secret of the forge webhooks POST /hooks/{github,gitea,gitlab}
    /// (read at startup, trimmed; without it the hooks are 404s).
    #[arg(long, env = "CUPD_API_GIT_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub api_git_webhook_secret_file: Option<PathBuf>,
    /// Pull requests for proposals: none (proposals are cup/proposal/* branches only, merged
    /// with POST /proposals/{id}/merge), github (and GitHub Enterprise), gitea (and Forgejo)
    /// or gitlab (merge requests): one pull request per proposal branch.
    #[arg(
        long,
        env = "CUPD_API_GIT_SCM",
        default_value = "none",
        value_name = "SCM"
    )]
    pub api_git_scm: String,
    /// The forge's API base URL [default: from the remote: https://api.github.com for
    /// github.com, https://HOST/api/v3 for GitHub Enterprise, <origin>[/<sub-path>]/api/v1
    /// for Gitea, <origin>/api/v4 for GitLab].
    #[arg(long, env = "CUPD_API_GIT_SCM_URL", value_name = "URL")]
    pub api_git_scm_url: Option<String>,
    /// A file holding the forge's API token (one line). Else CUPD_API_GIT_SCM_TOKEN, else
    /// the password of the remote URL.
    #[arg(long, env = "CUPD_API_GIT_SCM_TOKEN_FILE", value_name = "FILE")]
    pub api_git_scm_token_file: Option<PathBuf>,
    /// Labels added to every pull request (comma-separated names).
    #[arg(
        long,
        env = "CUPD_API_GIT_SCM_LABELS",
        value_delimiter = ',',
        value_name = "LABEL,..."
    )]
    pub api_git_scm_labels: Vec<String>,
    /// Users whose review is requested on every pull request (comma-separated user names).
    #[arg(
        long,
        env = "CUPD_API_GIT_SCM_REVIEWERS",
        value_delimiter = ',',
        value_name = "USER,..."
    )]
    pub api_git_scm_reviewers: Vec<String>,
    /// Tailscale hostname (not supported: refused when set).
    #[arg(
        long,
        env = "CUPD_TAILSCALE_HOSTNAME",
        default_value = "",
        value_name = "NAME"
    )]
    pub tailscale_hostname: String,
    /// Tailscale auth key (not supported: refused when set).
    #[arg(
        long,
        env = "CUPD_TAILSCALE_AUTH_KEY",
        default_value = "",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub tailscale_auth_key: String,
    /// Tailscale ephemeral node (not supported: refused when true).
    #[arg(long, env = "CUPD_TAILSCALE_EPHEMERAL", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub tailscale_ephemeral: bool,
    /// Local OCI store shared with `cup` [default: $XDG_CACHE_HOME/cup or ~/.cache/cup].
    #[arg(long, env = "CUPD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Compiled-code cache [default: <store>/code]. Disabled (with a warning) unless owned by
    /// cupd's user and not writable by group or others, nor any ancestor (sticky ones
    /// excepted); its files are authenticated with the key in DIR.key, beside it.
    #[arg(long, env = "CUPD_CODE_CACHE", value_name = "DIR")]
    pub code_cache: Option<PathBuf>,
    /// Where wasm controllers' writes to the local source run: a scratch copy of the tree
    /// per write, made here [default: $TMPDIR if it is in memory (tmpfs); else, unless cupd
    /// runs under a cgroup memory limit, /dev/shm if it is in memory and has 1 GiB free, with
    /// $TMPDIR for a copy that does not fit; else $TMPDIR].
    #[arg(long, env = "CUPD_SCRATCH_DIR", value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Reload the config directory when something in it changes (once it has been quiet for
    /// half a second), as SIGHUP does; off by default: with it, write changes so that the
    /// directory is complete whenever it goes quiet.
    #[arg(long, env = "CUPD_WATCH_CONFIG", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub watch_config: bool,
    /// Refuse controller images referenced by tag (only `…@sha256:…`).
    #[arg(long, env = "CUPD_STRICT_DIGESTS", default_value = "false", num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub strict_digests: bool,
    /// Registries (host[:port]) reached over plain HTTP besides loopback ones (comma-separated).
    #[arg(
        long,
        env = "CUPD_PLAIN_HTTP",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    pub plain_http: Vec<String>,
    /// Hosts (host[:port]) of token services other than the registry's own that may receive
    /// registry credentials when a registry's challenge names them (comma-separated).
    #[arg(
        long,
        env = "CUPD_ALLOW_TOKEN_REALM",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    pub allow_token_realm: Vec<String>,
    /// Git source: directory of the bare cache of the remote [default: <store>/git].
    #[arg(long, env = "CUPD_GIT_CACHE", value_name = "DIR")]
    pub git_cache: Option<PathBuf>,
    /// Git source: how often to fetch from the remote (0 disables; writes always fetch).
    #[arg(long, env = "CUPD_GIT_FETCH_INTERVAL", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub git_fetch_interval: Duration,
    /// Git source: the longest a connection to the remote may take to open, and may stay
    /// silent, before the fetch or push fails (a stalled remote would otherwise hold every
    /// write, merge and proposal call).
    #[arg(long, env = "CUPD_GIT_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub git_timeout: Duration,
    /// Git source: the largest file a revision may hold to be read or written on (its size
    /// is read from the object's header, before the file is loaded).
    #[arg(long, env = "CUPD_GIT_SNAPSHOT_MAX_FILE_SIZE", default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub git_snapshot_max_file_size: usize,
    /// Git source: the total size of the files of one revision (what one snapshot of it
    /// takes on disk).
    #[arg(long, env = "CUPD_GIT_SNAPSHOT_MAX_SIZE", default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub git_snapshot_max_size: usize,
    /// Git source: files and directories one revision may hold.
    #[arg(long, env = "CUPD_GIT_SNAPSHOT_MAX_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub git_snapshot_max_entries: u64,
    /// Git source: the deepest directory (in names) of one revision.
    #[arg(long, env = "CUPD_GIT_SNAPSHOT_MAX_DEPTH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub git_snapshot_max_depth: u32,
    /// Git source: snapshot directories (one per commit read) kept once no read uses them;
    /// beyond this the least recently used go. Snapshots in use are never removed.
    #[arg(long, env = "CUPD_GIT_SNAPSHOTS", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "N")]
    pub git_snapshots: u64,
    /// Git source: bytes of files all kept snapshots may hold; beyond this the least
    /// recently used unused ones go (one snapshot in use larger than this is still served).
    #[arg(long, env = "CUPD_GIT_SNAPSHOTS_SIZE", default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub git_snapshots_size: usize,
    /// Git source: how often `git gc --auto` packs the bare cache (0 disables; needs the git
    /// program on the PATH, else said once in the log and /status).
    #[arg(long, env = "CUPD_GIT_GC_INTERVAL", default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub git_gc_interval: Duration,
    /// Git source: how long the branch of a merged proposal (or one whose pull request was
    /// merged or closed) stays on the remote once cupd sees it so; 0 deletes it at once,
    /// "forever" (or -1) never.
    #[arg(long, env = "CUPD_GIT_PROPOSAL_RETENTION", default_value = "0s", value_parser = parse_retention, value_name = "DURATION", allow_hyphen_values = true)]
    pub git_proposal_retention: Retention,
    /// Git source: author and committer of proposals, "Name <email>".
    #[arg(
        long,
        env = "CUPD_GIT_AUTHOR",
        default_value = "cup <cup@localhost>",
        value_name = "AUTHOR"
    )]
    pub git_author: String,
    /// Wall-clock limit of one controller invocation (Go duration: 10s, 500ms).
    #[arg(long, env = "CUPD_CONTROLLER_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub controller_timeout: Duration,
    /// Memory limit of one controller invocation (256MiB, 64MB, bytes).
    #[arg(long, env = "CUPD_CONTROLLER_MEMORY", default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub controller_memory: usize,
    /// Most resources one list of a wasm controller may return; a list with more is a 500
    /// naming this flag (each value of a controller's output becomes a whole resource, so
    /// this bounds what decoding it may cost).
    #[arg(long, env = "CUPD_MAX_LIST_ITEMS", default_value_t = cup_server::ListLimits::DEFAULT_MAX_ITEMS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), value_name = "N")]
    pub max_list_items: usize,
    /// Largest list response body (32MiB, bytes); a list whose encoding passes it is a 500
    /// naming this flag.
    #[arg(long, env = "CUPD_MAX_LIST_BYTES", default_value = "32MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_list_bytes: usize,
    /// Controller instances kept in reusable, pre-reserved slots (wasmtime's pooling
    /// allocator); requests beyond it run on freshly mapped memory. 0 turns the pool off.
    #[arg(long, env = "CUPD_CONTROLLER_POOL", default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=1000), value_name = "N")]
    pub controller_pool: u32,
    /// The largest new or changed file one write may leave, on the local and Git sources (a
    /// bigger one, sparse or not, refuses the write before a byte of it is read).
    #[arg(long, env = "CUPD_WRITE_MAX_FILE_SIZE", default_value = "64MiB", value_parser = parse_size, value_name = "SIZE")]
    pub write_max_file_size: usize,
    /// The total size of the new and changed files of one wasm write (local and Git).
    #[arg(long, env = "CUPD_WRITE_MAX_TOTAL_SIZE", default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub write_max_total_size: usize,
    /// Files and directories the source may hold for a wasm write, before (local source) and
    /// after the controller ran.
    #[arg(long, env = "CUPD_WRITE_MAX_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub write_max_entries: u64,
    /// The deepest path (in names) a wasm write may copy or create (local and Git).
    #[arg(long, env = "CUPD_WRITE_MAX_DEPTH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024), value_name = "N")]
    pub write_max_depth: u32,
    /// Local source: the longest one read holds off the apply step of writes. A read still
    /// running after it, during which a write was applied, is answered 503 (retry) instead
    /// of with what it read.
    #[arg(long, env = "CUPD_MAX_READ_HOLD", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub max_read_hold: Duration,
    /// Attempts per registry request when pulling controller images, before giving up
    /// (transient failures only: network errors, timeouts, 5xx, 429).
    #[arg(long, env = "CUPD_REGISTRY_ATTEMPTS", default_value_t = cup_server::RetryPolicy::default().attempts, value_parser = clap::value_parser!(u32).range(1..=20), value_name = "N")]
    pub registry_attempts: u32,
    /// How long a registry connection may stay silent before the request is abandoned (and
    /// retried) (Go duration: 30s, 1m).
    #[arg(long, env = "CUPD_REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub registry_timeout: Duration,
    /// Origins allowed to call the API from a browser (comma-separated `scheme://host[:port]`,
    /// or `*` for any, as the original cupd). Empty (the default): no CORS headers, and
    /// requests other than GET/HEAD/OPTIONS that carry an `Origin` header are refused (403);
    /// clients that are not browsers send no `Origin` and are not affected.
    #[arg(
        long,
        env = "CUPD_CORS_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGINS"
    )]
    pub cors_allowed_origins: Vec<String>,
    /// A connection must send a complete request head within this of being accepted, or of
    /// the first byte of its next request; else it is closed.
    #[arg(long, env = "CUPD_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration, value_name = "DURATION")]
    pub http_header_timeout: Duration,
    /// A keep-alive connection that sends nothing this long between requests is closed.
    #[arg(long, env = "CUPD_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration, value_name = "DURATION")]
    pub http_idle_timeout: Duration,
    /// A request body must arrive whole within this (408 otherwise).
    #[arg(long, env = "CUPD_HTTP_BODY_TIMEOUT", default_value = "60s", value_parser = positive_duration, value_name = "DURATION")]
    pub http_body_timeout: Duration,
    /// Connections open at once. Beyond it new connections wait in the kernel's listen
    /// backlog until one closes; lowered at startup if the open-file limit (raised to its
    /// hard limit) leaves no room for it.
    #[arg(long, env = "CUPD_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub http_max_connections: u32,
    /// Resource and proposal requests served at once; more wait for a slot (/healthz,
    /// /readyz, /status and /metrics never wait).
    #[arg(long, env = "CUPD_HTTP_MAX_REQUESTS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000), value_name = "N")]
    pub http_max_requests: u32,
    /// Static bearer tokens: a CSV file of `token,user,uid[,"group1,group2"]` lines
    /// (kube-apiserver's format); a token may be written `sha256:<hex>` (the SHA-256 of the
    /// token) instead. Re-read when it changes. Turns authentication on.
    #[arg(long, env = "CUPD_TOKEN_AUTH_FILE", value_name = "FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// Headers an authenticating proxy names the user in, tried in order (e.g.
    /// `X-Remote-User`, `Tailscale-User-Login`, `X-Forwarded-User`). Believed only from
    /// --requestheader-trusted-sources or --requestheader-allowed-names. Turns
    /// authentication on.
    #[arg(
        long,
        env = "CUPD_REQUESTHEADER_USERNAME_HEADERS",
        value_delimiter = ',',
        value_name = "HEADERS"
    )]
    pub requestheader_username_headers: Vec<String>,
    /// Headers the proxy names the user's groups in (every value, split at commas).
    #[arg(
        long,
        env = "CUPD_REQUESTHEADER_GROUP_HEADERS",
        value_delimiter = ',',
        value_name = "HEADERS"
    )]
    pub requestheader_group_headers: Vec<String>,
    /// Addresses or networks the proxy connects from (e.g. `127.0.0.1,::1`); its headers
    /// from anywhere else are ignored. Every process that can connect from them is trusted.
    #[arg(
        long,
        env = "CUPD_REQUESTHEADER_TRUSTED_SOURCES",
        value_delimiter = ',',
        value_name = "ADDRESSES"
    )]
    pub requestheader_trusted_sources: Vec<String>,
    /// Common names of the client certificates the proxy presents (verified with
    /// --client-ca-file); its headers are believed from those connections.
    #[arg(
        long,
        env = "CUPD_REQUESTHEADER_ALLOWED_NAMES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub requestheader_allowed_names: Vec<String>,
    /// Serve requests without credentials as user `system:anonymous` (group
    /// `system:unauthenticated`), with what the policy grants them.
    #[arg(long, env = "CUPD_ANONYMOUS", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub anonymous: bool,
    /// The authorisation policy (JSON rules; docs/SECURITY.md). Required once authentication
    /// is on: what no rule allows is refused (403). Re-read when it changes.
    #[arg(long, env = "CUPD_AUTHORIZATION_POLICY_FILE", value_name = "FILE")]
    pub authorization_policy_file: Option<PathBuf>,
    /// Append one JSON line per write (put, delete, merge; refused ones too) to this file
    /// (created 0600), or to stderr with `-`.
    #[arg(long, env = "CUPD_AUDIT_LOG_PATH", value_name = "PATH")]
    pub audit_log_path: Option<PathBuf>,
    /// How the Git source's commits name the caller who asked for them: `trailer`
    /// (a `Requested-by:` line in the message), `author` (the commit's author; cupd stays
    /// the committer) or `off`. Only callers identified by authentication are recorded.
    #[arg(
        long,
        env = "CUPD_GIT_RECORD_USER",
        default_value = "trailer",
        value_name = "HOW"
    )]
    pub git_record_user: cup_server::RecordUser,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first, then its
    /// intermediates); needs --tls-private-key-file. Checked at most once a second for
    /// changes: a rotated certificate is used by new connections without a restart.
    #[arg(long, env = "CUPD_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file.
    #[arg(long, env = "CUPD_TLS_PRIVATE_KEY_FILE", value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// PEM certificates of the authorities whose client certificates are accepted (needs
    /// --tls-cert-file). A client presenting an untrusted, expired or revoked certificate
    /// fails the handshake; a client presenting none is still served.
    #[arg(long, env = "CUPD_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Certificate revocation list (PEM or DER) of a --client-ca-file authority; repeatable
    /// or comma-separated. Once given, a client certificate whose issuer has no list here is
    /// refused.
    #[arg(
        long,
        env = "CUPD_CLIENT_CRL_FILE",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub client_crl_file: Vec<PathBuf>,
    /// A public key (PEM) controller signatures may be made with (cosign's format);
    /// repeatable or comma-separated. Used for controllers that must be signed and name no
    /// keys of their own (spec.verify.keys).
    #[arg(
        long,
        env = "CUPD_VERIFY_KEY",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub verify_key: Vec<PathBuf>,
    /// A Sigstore trusted root (trusted_root.json: Fulcio certificate authorities, Rekor log
    /// keys) that keyless signatures are checked against, offline.
    #[arg(long, env = "CUPD_TRUSTED_ROOT", value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// The OIDC issuer a keyless signer's certificate must name (with
    /// --certificate-identity or --certificate-identity-regexp), for controllers whose
    /// spec.verify names no identities of their own.
    #[arg(long, env = "CUPD_CERTIFICATE_OIDC_ISSUER", value_name = "URL")]
    pub certificate_oidc_issuer: Option<String>,
    /// The subject (SAN e-mail or URI) a keyless signer's certificate must name.
    #[arg(long, env = "CUPD_CERTIFICATE_IDENTITY", value_name = "SUBJECT")]
    pub certificate_identity: Option<String>,
    /// A regular expression the whole subject of a keyless signer's certificate must match.
    #[arg(long, env = "CUPD_CERTIFICATE_IDENTITY_REGEXP", value_name = "REGEXP")]
    pub certificate_identity_regexp: Option<String>,
    /// Run only controller images whose manifest digest carries a signature a --verify-key
    /// (or the Controller's spec.verify.keys) verifies; the others answer 503 with the
    /// reason in /status and are never compiled. Controllers given by file path are refused.
    #[arg(long, env = "CUPD_REQUIRE_SIGNATURES", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub require_signatures: bool,
    /// Log level or tracing filter (RUST_LOG, when set, wins).
    #[arg(
        long,
        env = "CUPD_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
}

/// Parses the command line, environment and config file.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let args = normalize(args);
    let command = Cli::command();
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let Some(file) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(from_matches(&matches));
    };
    let values = read_config_file(&file)?;
    let extra = file_arguments(&command, &matches, &values)
        .with_context(|| format!("config file {}", file.display()))?;
    let mut merged = args;
    merged.extend(extra);
    let matches = match command.try_get_matches_from(&merged) {
        Ok(m) => m,
        Err(e) => bail!("config file {}: {e}", file.display()),
    };
    Ok(from_matches(&matches))
}

fn from_matches(matches: &ArgMatches) -> Cli {
    let cli = Cli::from_arg_matches(matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = check_tls_flags(&cli) {
        e.exit();
    }
    cli
}

/// The TLS flags that only make sense together. Checked here, after the config file is
/// merged, rather than with clap's `requires`: the first parse, which only looks for the
/// config file, would refuse a pair split between the command line and the file.
fn check_tls_flags(cli: &Cli) -> Result<(), clap::Error> {
    let Command::Serve(serve) = &cli.command;
    let needs = |flag: &str, needed: &str| {
        Err(Cli::command().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            format!("{flag} needs {needed}"),
        ))
    };
    match (&serve.tls_cert_file, &serve.tls_private_key_file) {
        (Some(_), None) => needs("--tls-cert-file", "--tls-private-key-file"),
        (None, Some(_)) => needs("--tls-private-key-file", "--tls-cert-file"),
        (None, None) if serve.client_ca_file.is_some() => needs(
            "--client-ca-file",
            "--tls-cert-file and --tls-private-key-file (client certificates are asked for \
             over TLS only)",
        ),
        _ if !serve.client_crl_file.is_empty() && serve.client_ca_file.is_none() => {
            needs("--client-crl-file", "--client-ca-file")
        }
        _ => Ok(()),
    }
}

/// Long names of every flag, by name → argument id.
fn long_flags(command: &clap::Command) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let subcommands = command.get_subcommands();
    for cmd in std::iter::once(command).chain(subcommands) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                out.insert(long.to_owned(), arg.get_id().to_string());
            }
        }
    }
    out.insert("help".into(), "help".into());
    out.insert("version".into(), "version".into());
    out
}

/// `-api-address x` / `-api-address=x` → `--api-address …`, for known names only, up to
/// a `--` separator.
pub fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let known = long_flags(&Cli::command());
    let mut done = false;
    args.into_iter()
        .map(|arg| {
            if done {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if text == "--" {
                done = true;
                return arg;
            }
            match text.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') && rest.len() > 1 => {
                    let name = rest.split('=').next().unwrap_or(rest);
                    if known.contains_key(name) {
                        OsString::from(format!("-{text}"))
                    } else {
                        arg
                    }
                }
                _ => arg,
            }
        })
        .collect()
}

/// The config file as flat `flag-name → value` (nested keys joined with '-').
fn read_config_file(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing config file {} (YAML or JSON)", path.display()))?;
    let mut out = BTreeMap::new();
    match value {
        serde_json::Value::Object(map) => flatten("", map, &mut out)?,
        serde_json::Value::Null => {}
        _ => bail!(
            "config file {} must hold a mapping of flag names to values",
            path.display()
        ),
    }
    Ok(out)
}

fn flatten(
    prefix: &str,
    map: serde_json::Map<String, serde_json::Value>,
    out: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    for (key, value) in map {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}-{key}")
        };
        let text = match value {
            serde_json::Value::Object(inner) => {
                flatten(&name, inner, out)?;
                continue;
            }
            serde_json::Value::String(s) => s,
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            serde_json::Value::Null => continue,
            other => other.to_string(),
        };
        out.insert(name, text);
    }
    Ok(())
}

/// `--name=value` for each file value whose flag was not set on the command line or by
/// its environment variable.
fn file_arguments(
    command: &clap::Command,
    matches: &ArgMatches,
    values: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<OsString>> {
    let known = long_flags(command);
    let serve = matches.subcommand_matches("serve");
    let mut extra = Vec::new();
    for (name, value) in values {
        let Some(id) = known.get(name) else {
            bail!("unknown key {name:?}: not a cupd flag (see cupd serve --help)");
        };
        if name == "config" {
            continue;
        }
        let source = serve.and_then(|m| m.value_source(id));
        if matches!(
            source,
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        extra.push(OsString::from(format!("--{name}={value}")));
    }
    Ok(extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_style_flags_are_normalized() {
        let out = normalize(args(&[
            "cupd",
            "serve",
            "-api-address",
            ":1",
            "-api-resources=/x",
            "-h",
            "--",
            "-api-source",
        ]));
        assert_eq!(
            out,
            args(&[
                "cupd",
                "serve",
                "--api-address",
                ":1",
                "--api-resources=/x",
                "-h",
                "--",
                "-api-source"
            ])
        );
    }

    #[test]
    fn config_files_flatten_nested_keys() {
        let dir = std::env::temp_dir().join(format!("cupd-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yml");
        std::fs::write(&file, "api:\n  address: \":9\"\n  local-path: /srv\nstrict-digests: true\nplain-http: [a, b]\n").unwrap();
        let values = read_config_file(&file).unwrap();
        assert_eq!(values["api-address"], ":9");
        assert_eq!(values["api-local-path"], "/srv");
        assert_eq!(values["strict-digests"], "true");
        assert_eq!(values["plain-http"], "a,b");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A fresh directory under the system's temp directory, unique to this process and `name`.
    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cupd-cli-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `cupd serve EXTRA…` parsed.
    fn serve(extra: &[&str]) -> Serve {
        let mut all = vec!["cupd", "serve"];
        all.extend_from_slice(extra);
        let Command::Serve(serve) = parse(args(&all)).unwrap().command;
        serve
    }

    #[test]
    fn registry_retries_and_the_instance_pool_are_settable() {
        let default = serve(&[]);
        assert_eq!(
            default.registry_attempts,
            cup_server::RetryPolicy::default().attempts
        );
        assert_eq!(
            default.registry_timeout,
            cup_server::RetryPolicy::default().request_timeout
        );
        assert_eq!(default.controller_pool, 16);
        let set = serve(&[
            "-registry-attempts",
            "1",
            "-registry-timeout=2s",
            "--controller-pool",
            "0",
        ]);
        assert_eq!(set.registry_attempts, 1);
        assert_eq!(set.registry_timeout, Duration::from_secs(2));
        assert_eq!(set.controller_pool, 0);
    }

    #[test]
    fn the_retention_of_ended_proposals_is_a_duration_or_forever() {
        assert_eq!(
            serve(&[]).git_proposal_retention,
            Retention(Some(Duration::ZERO))
        );
        let hour = serve(&["--git-proposal-retention", "1h"]);
        assert_eq!(
            hour.git_proposal_retention,
            Retention(Some(Duration::from_secs(3600)))
        );
        for forever in ["forever", "-1"] {
            let kept = serve(&["--git-proposal-retention", forever]);
            assert_eq!(kept.git_proposal_retention, Retention(None));
        }
        let all = ["cupd", "serve", "--git-proposal-retention", "soon"];
        let error = Cli::try_parse_from(normalize(args(&all)))
            .unwrap_err()
            .to_string();
        assert!(error.contains("forever"), "{error}");
    }

    #[test]
    fn http_limits_and_cors_origins_are_settable() {
        let default = serve(&[]);
        assert!(default.cors_allowed_origins.is_empty());
        assert_eq!(default.http_header_timeout, Duration::from_secs(10));
        assert_eq!(default.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(default.http_max_connections, 1024);
        let set = serve(&[
            "-cors-allowed-origins",
            "http://localhost:3000,https://ui.example",
            "--http-header-timeout=500ms",
            "--http-max-requests",
            "4",
        ]);
        assert_eq!(
            set.cors_allowed_origins,
            ["http://localhost:3000", "https://ui.example"]
        );
        assert_eq!(set.http_header_timeout, Duration::from_millis(500));
        assert_eq!(set.http_max_requests, 4);
    }

    #[test]
    fn tls_flags_come_in_pairs_and_client_ca_needs_tls() {
        let none = serve(&[]);
        assert_eq!(none.tls_cert_file, None);
        assert!(none.client_crl_file.is_empty());
        let set = serve(&[
            "-tls-cert-file=c.pem",
            "--tls-private-key-file",
            "k.pem",
            "--client-ca-file=ca.pem",
            "--client-crl-file=a.crl",
            "--client-crl-file",
            "b.crl,c.crl",
        ]);
        assert_eq!(set.tls_cert_file, Some(PathBuf::from("c.pem")));
        assert_eq!(set.tls_private_key_file, Some(PathBuf::from("k.pem")));
        assert_eq!(set.client_ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            set.client_crl_file,
            ["a.crl", "b.crl", "c.crl"].map(PathBuf::from)
        );

        // A pair split between the command line and the config file is a pair.
        let dir = tempfile_dir("tls");
        let file = dir.join("c.yml");
        std::fs::write(&file, "tls:\n  private-key-file: k.pem\n").unwrap();
        let split = serve(&[
            &format!("--config={}", file.display()),
            "--tls-cert-file=c.pem",
        ]);
        assert_eq!(split.tls_private_key_file, Some(PathBuf::from("k.pem")));
        std::fs::remove_dir_all(dir).unwrap();

        let refused = |extra: &[&str], missing: &str| {
            let mut all = vec!["cupd", "serve"];
            all.extend_from_slice(extra);
            let cli = Cli::try_parse_from(normalize(args(&all))).unwrap();
            let error = check_tls_flags(&cli).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument
            );
            assert_eq!(error.exit_code(), 2, "a usage error");
            assert!(error.to_string().contains(missing), "{error}");
        };
        refused(&["--tls-cert-file=c.pem"], "--tls-private-key-file");
        refused(&["--tls-private-key-file=k.pem"], "--tls-cert-file");
        refused(&["--client-ca-file=ca.pem"], "--tls-cert-file");
        refused(
            &[
                "--tls-cert-file=c",
                "--tls-private-key-file=k",
                "--client-crl-file=a",
            ],
            "--client-ca-file",
        );
    }
}

//! The client config file: named contexts (a cupd address and a default namespace) and the
//! current one. Same JSON as the original cup, so either implementation reads the other's
//! file:
//!
//! ```json
//! {"current_context":"default","contexts":{"default":{"address":"http://localhost:8181","namespace":"default"}}}
//! ```
//!
//! Unlike the original, nothing is created at start-up: a missing file means the built-in
//! default context, and the file (and its directory) appear only when a command writes it.
//! Writes are atomic (temp file + rename in the same directory) and keep keys this version
//! does not know.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const DEFAULT_CONTEXT: &str = "default";
pub const DEFAULT_ADDRESS: &str = "http://localhost:8181";
pub const DEFAULT_NAMESPACE: &str = "default";

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub current_context: String,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
    /// Keys written by other versions, kept on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One context. The credential keys are optional and absent from files written without
/// them, so a file without credentials reads and writes as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Context {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub namespace: String,
    /// A bearer token stored in the file itself (discouraged: `token_file` or `exec` keep it
    /// out of the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// A file holding the bearer token, read at each command (so a rotated token is used
    /// without touching the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A command that prints a Kubernetes `ExecCredential` holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecConfig>,
    /// PEM client certificate presented in the TLS handshake (with `client_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<PathBuf>,
    /// PEM private key of `client_certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// PEM bundle of CA certificates trusted besides the system's, for https addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<PathBuf>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A secret string: serialised as it is (the file must hold it), but never shown by
/// `Debug`, so no log line or panic message can print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// What listings show instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// kubectl-style exec credentials: `command` (a name looked up on PATH, or a path) run with
/// `args` and `env` added to cup's environment, without a shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ExecConfig {
    pub command: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where a context's bearer token comes from (at most one source per context).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Literal(Secret),
    File(PathBuf),
    Exec(ExecConfig),
}

/// A context's credentials, checked: at most one token source, and a client certificate
/// only with its key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Credentials {
    pub token: Option<TokenSource>,
    /// (certificate, key) PEM files.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    pub certificate_authority: Option<PathBuf>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.client_identity.is_none()
    }

    /// Relative paths (a hand-edited file) are taken from the config file's directory, as
    /// kubectl does, so they do not depend on where cup is run.
    pub fn anchored(mut self, dir: &Path) -> Credentials {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        match &mut self.token {
            Some(TokenSource::File(p)) => anchor(p),
            Some(TokenSource::Exec(exec)) if exec.command.contains('/') => {
                let mut command = PathBuf::from(&exec.command);
                anchor(&mut command);
                exec.command = command.to_string_lossy().into_owned();
            }
            _ => {}
        }
        if let Some((cert, key)) = &mut self.client_identity {
            anchor(cert);
            anchor(key);
        }
        if let Some(ca) = &mut self.certificate_authority {
            anchor(ca);
        }
        self
    }
}

impl Context {
    /// The credentials of this context (named `name` in errors), checked.
    pub fn credentials(&self, name: &str) -> Result<Credentials> {
        let mut sources = Vec::new();
        if let Some(token) = &self.token {
            sources.push(("token", TokenSource::Literal(token.clone())));
        }
        if let Some(file) = &self.token_file {
            sources.push(("token_file", TokenSource::File(file.clone())));
        }
        if let Some(exec) = &self.exec {
            if exec.command.trim().is_empty() {
                bail!("context {name:?}: exec has no command");
            }
            sources.push(("exec", TokenSource::Exec(exec.clone())));
        }
        if sources.len() > 1 {
            let keys: Vec<&str> = sources.iter().map(|(key, _)| *key).collect();
            bail!(
                "context {name:?} has more than one token source ({}): keep exactly one",
                keys.join(", ")
            );
        }
        let client_identity = match (&self.client_certificate, &self.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                bail!(
                    "context {name:?} has a client_certificate but no client_key: give both or neither"
                )
            }
            (None, Some(_)) => {
                bail!(
                    "context {name:?} has a client_key but no client_certificate: give both or neither"
                )
            }
        };
        Ok(Credentials {
            token: sources.pop().map(|(_, source)| source),
            client_identity,
            certificate_authority: self.certificate_authority.clone(),
        })
    }

    /// The kinds of credentials, for listings (`token-file,client-certificate`), `-` for
    /// none. Never the secrets themselves.
    fn auth_summary(&self) -> String {
        let mut kinds = Vec::new();
        if self.token.is_some() {
            kinds.push("token");
        }
        if self.token_file.is_some() {
            kinds.push("token-file");
        }
        if self.exec.is_some() {
            kinds.push("exec");
        }
        if self.client_certificate.is_some() || self.client_key.is_some() {
            kinds.push("client-certificate");
        }
        if kinds.is_empty() {
            "-".to_owned()
        } else {
            kinds.join(",")
        }
    }

    /// The context as `-o json` listings show it: secrets replaced by [`REDACTED`] (the
    /// literal token and every exec env value, which often carry secrets too).
    fn shown_credentials(&self, out: &mut Map<String, Value>) {
        if self.token.is_some() {
            out.insert("token".into(), REDACTED.into());
        }
        let path = |p: &Path| Value::from(p.to_string_lossy().into_owned());
        if let Some(p) = &self.token_file {
            out.insert("token_file".into(), path(p));
        }
        if let Some(exec) = &self.exec {
            let env: Map<String, Value> = exec
                .env
                .keys()
                .map(|k| (k.clone(), Value::from(REDACTED)))
                .collect();
            let mut shown = serde_json::json!({"command": exec.command, "args": exec.args});
            if !env.is_empty() {
                shown["env"] = Value::Object(env);
            }
            out.insert("exec".into(), shown);
        }
        for (key, value) in [
            ("client_certificate", &self.client_certificate),
            ("client_key", &self.client_key),
            ("certificate_authority", &self.certificate_authority),
        ] {
            if let Some(p) = value {
                out.insert(key.into(), path(p));
            }
        }
    }
}

impl Default for Config {
    /// What a missing file means: one context `default` → `http://localhost:8181`,
    /// namespace `default`.
    fn default() -> Config {
        let mut contexts = BTreeMap::new();
        contexts.insert(
            DEFAULT_CONTEXT.to_owned(),
            Context {
                address: DEFAULT_ADDRESS.to_owned(),
                namespace: DEFAULT_NAMESPACE.to_owned(),
                ..Context::default()
            },
        );
        Config {
            current_context: DEFAULT_CONTEXT.to_owned(),
            contexts,
            extra: Map::new(),
        }
    }
}

/// `<config dir>/cup/config.json` with the config dir from `$XDG_CONFIG_HOME` (when absolute,
/// as the XDG spec says), else `~/.config`, on every Unix (the original used
/// `~/Library/Application Support` on macOS).
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("cup").join("config.json"))
}

/// The file named by `-c`, else the default path.
pub fn path(flag: Option<&Path>) -> Result<PathBuf> {
    match flag {
        Some(p) => Ok(p.to_owned()),
        None => default_path()
            .context("no config file location: set HOME or XDG_CONFIG_HOME, or pass -c FILE"),
    }
}

impl Config {
    /// Reads the file; a missing file is the built-in default (nothing is written).
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid cup config file", path.display()))
    }

    /// Writes the file atomically, creating its directory if needed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        let tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temp file in {}", dir.display()))?;
        // The file may hold a token: only its owner may read it, whatever the umask or the
        // mode of the file it replaces.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", tmp.path().display()))?;
        }
        std::fs::write(tmp.path(), text).with_context(|| format!("writing {}", path.display()))?;
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// `a, b, c` or `none`, for error messages.
    pub fn names(&self) -> String {
        if self.contexts.is_empty() {
            "none".into()
        } else {
            self.contexts
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// The named context, with an error that lists the ones that exist.
    pub fn get(&self, name: &str) -> Result<&Context> {
        self.contexts
            .get(name)
            .with_context(|| format!("unknown context {name:?} (contexts: {})", self.names()))
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut Context> {
        let names = self.names();
        self.contexts
            .get_mut(name)
            .with_context(|| format!("unknown context {name:?} (contexts: {names})"))
    }

    /// `set key=value` on one context: `address` (checked to be an http(s) URL) or `namespace`.
    pub fn set(&mut self, context: &str, assignment: &str) -> Result<()> {
        let (key, value) = assignment.split_once('=').with_context(|| {
            format!("expected an argument of the form key=value, found {assignment:?}")
        })?;
        let ctx = self.get_mut(context)?;
        match key.trim() {
            // Stored as written (once checked), so the file reads as the user typed it.
            "address" => {
                check_address(value)?;
                ctx.address = value.trim().to_owned();
            }
            "namespace" => ctx.namespace = check_namespace(value)?,
            // Paths: stored absolute; an empty value removes the key.
            "token_file" => {
                let file = optional_path(value)?;
                if file.is_some() && (ctx.token.is_some() || ctx.exec.is_some()) {
                    bail!(
                        "context {context:?} already has a token source; remove it first (`set token=` or `set exec=`)"
                    );
                }
                ctx.token_file = file;
            }
            "client_certificate" => ctx.client_certificate = optional_path(value)?,
            "client_key" => ctx.client_key = optional_path(value)?,
            "certificate_authority" => ctx.certificate_authority = optional_path(value)?,
            // Only removed here: a token on the command line would land in the shell's
            // history, and an exec command has arguments (both: `context add`).
            "token" | "exec" if !value.trim().is_empty() => bail!(
                "{} cannot be set here, only removed (`set {}=`); to store a token use `cup config context add … --token-stdin`, for a command `--exec-command`",
                key.trim(),
                key.trim()
            ),
            "token" => ctx.token = None,
            "exec" => ctx.exec = None,
            other => bail!("unknown config key {other:?} (should be one of: {SET_KEYS})"),
        }
        Ok(())
    }

    /// Adds a new context; an existing name is an error (use `set` to change it).
    pub fn add(&mut self, name: &str, address: &str, namespace: Option<&str>) -> Result<()> {
        if name.trim().is_empty() {
            bail!("a context needs a name");
        }
        if self.contexts.contains_key(name) {
            bail!(
                "context {name:?} already exists (change it with `cup --context {name} config context set key=value`)"
            );
        }
        check_address(address)?;
        let context = Context {
            address: address.trim().to_owned(),
            namespace: check_namespace(namespace.unwrap_or(DEFAULT_NAMESPACE))?,
            ..Context::default()
        };
        self.contexts.insert(name.to_owned(), context);
        Ok(())
    }

    /// Makes a context the current one.
    pub fn use_context(&mut self, name: &str) -> Result<()> {
        self.get(name)?;
        self.current_context = name.to_owned();
        Ok(())
    }

    /// Removes a context; the current one only with `force` (then no context is current).
    pub fn delete(&mut self, name: &str, force: bool) -> Result<()> {
        self.get(name)?;
        if name == self.current_context {
            if !force {
                bail!(
                    "context {name:?} is the current context; switch first (`cup config context use OTHER`) or pass --force"
                );
            }
            self.current_context.clear();
        }
        self.contexts.remove(name);
        Ok(())
    }
}

/// Where commands send requests, after the config file and the `--context`, `-a` and `-n`
/// flags have been combined.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The context used, if any (`-a` alone needs none).
    pub context: Option<String>,
    pub address: Url,
    pub namespace: String,
    /// `-n` was given: `apply` then refuses a body in another namespace.
    pub namespace_from_flag: bool,
    /// The context's credentials (none with `-a` alone). As with kubectl's `--server`, `-a`
    /// with a context keeps the context's credentials.
    pub credentials: Credentials,
}

/// Combines the config with the flags. The context is `--context` or the current one;
/// `-a`/`-n` override its address/namespace. With no usable context, `-a` alone works
/// (namespace `-n` or `default`); otherwise the error says how to fix it.
pub fn target(
    config: &Config,
    context_flag: Option<&str>,
    address_flag: Option<&str>,
    namespace_flag: Option<&str>,
) -> Result<Target> {
    let chosen = match context_flag {
        Some(name) => Some((name.to_owned(), config.get(name)?)),
        None => {
            let name = &config.current_context;
            match config.contexts.get(name) {
                Some(ctx) => Some((name.clone(), ctx)),
                None if address_flag.is_some() => None,
                None if name.is_empty() => bail!(
                    "no current context (contexts: {}); pick one with `cup config context use NAME` or pass -a URL",
                    config.names()
                ),
                None => bail!(
                    "the current context {name:?} does not exist (contexts: {}); pick one with `cup config context use NAME` or pass -a URL",
                    config.names()
                ),
            }
        }
    };
    let address = match address_flag {
        Some(a) => check_address(a)?,
        None => {
            // `chosen` is None only when -a was given (see above).
            let (name, ctx) = chosen.as_ref().context("no context and no -a URL")?;
            check_address(&ctx.address)
                .with_context(|| format!("context {name:?} has no usable address"))?
        }
    };
    let namespace = match (namespace_flag, &chosen) {
        (Some(n), _) => check_namespace(n)?,
        (None, Some((_, ctx))) if !ctx.namespace.is_empty() => ctx.namespace.clone(),
        _ => DEFAULT_NAMESPACE.to_owned(),
    };
    let credentials = match &chosen {
        Some((name, ctx)) => ctx.credentials(name)?,
        None => Credentials::default(),
    };
    Ok(Target {
        context: chosen.map(|(name, _)| name),
        address,
        namespace,
        namespace_from_flag: namespace_flag.is_some(),
        credentials,
    })
}

/// An address must be an absolute http(s) URL with a host; a bare `host:port` gets a hint.
/// Errors show the address without its password, and not at all when it does not parse
/// with a `@` in it: where its userinfo ends cannot be told (`http://u:pa/ss@h`).
pub fn check_address(address: &str) -> Result<Url> {
    let address = address.trim();
    let hint =
        |shown: &str| format!("invalid address {shown}: expected a URL such as {DEFAULT_ADDRESS}");
    let url = match Url::parse(address) {
        Ok(url) => url,
        Err(e) if address.contains('@') => {
            bail!(
                "{} ({e}; not shown, it may hold a password)",
                hint("<unparsable URL>")
            )
        }
        Err(e) => return Err(anyhow::Error::new(e).context(hint(&format!("{address:?}")))),
    };
    let shown = if url.password().is_some() {
        format!("{:?}", crate::client::shown(&url).as_str())
    } else {
        format!("{address:?}")
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        bail!("{}", hint(&shown));
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("invalid address {shown}: no query or fragment allowed");
    }
    Ok(url)
}

/// A context's address as listings show it: its password as `***` (see [`check_address`]
/// for one that does not parse).
fn shown_address(address: &str) -> String {
    match Url::parse(address.trim()) {
        Ok(url) if url.password().is_some() => crate::client::shown(&url).to_string(),
        Ok(_) => address.to_owned(),
        Err(_) if address.contains('@') => "<unparsable URL>".to_owned(),
        Err(_) => address.to_owned(),
    }
}

/// Namespaces are one URL path segment: not empty, no `/`.
pub fn check_namespace(namespace: &str) -> Result<String> {
    let ns = namespace.trim();
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
        bail!("invalid namespace {namespace:?}: expected a name such as \"default\"");
    }
    Ok(ns.to_owned())
}

// ---- `cup config context …` ----

/// `cup config context [list|set|add|use|delete]`.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  cup config context                               # list (the current one is marked *)
  cup config context add prod --address https://cup.example.com --namespace team
  cup config context use prod
  cup config context set namespace=staging         # on the current context
  cup --context prod config context set address=https://cup2.example.com
  cup config context delete old
  cup config context add prod -a https://cup.example.com --token-file prod.token \\
      --certificate-authority ca.pem               # credentials: see `add --help`

The file is -c FILE, else $XDG_CONFIG_HOME/cup/config.json (~/.config/cup/config.json).
Without a file the context \"default\" (http://localhost:8181, namespace default) is used;
the file is created on the first change, with mode 0600 (it may hold a token). Listings
show which kinds of credentials a context has (AUTH), never a secret.")]
pub struct ContextArgs {
    #[command(subcommand)]
    command: Option<ContextCommand>,
}

#[derive(clap::Subcommand)]
enum ContextCommand {
    /// List the contexts (the default).
    #[command(
        alias = "ls",
        after_help = "Example:\n  cup -o json config context list"
    )]
    List,
    /// Change the current context (or the one named by --context): address, namespace,
    /// credential files.
    #[command(after_help = "Examples:
  cup config context set address=http://127.0.0.1:8181
  cup config context set namespace=production address=https://cup.example.com
  cup --context prod config context set token_file=prod.token
  cup config context set client_certificate=alice.crt client_key=alice.key
  cup config context set certificate_authority=      # an empty value removes the key
  cup config context set exec= token_file=new.token  # switch token sources

Paths are stored absolute. token and exec can only be removed here; set them with
`cup config context add` (--token-stdin, --exec-command).")]
    Set {
        /// key=value pairs; keys: address, namespace, token_file, client_certificate,
        /// client_key, certificate_authority; token= and exec= remove those.
        #[arg(value_name = "KEY=VALUE", required = true)]
        assignments: Vec<String>,
    },
    /// Add a context. Its address and namespace are given with the global -a/--address
    /// and -n/--namespace flags (namespace: default if omitted); credentials with the
    /// flags below.
    #[command(after_help = "Examples:
  cup config context add prod --address https://cup.example.com --namespace team --use
  cup config context add prod -a https://cup.example.com \\
      --token-file ~/.config/cup/prod.token --certificate-authority ca.pem
  cup config context add prod -a https://cup.example.com \\
      --exec-command vault --exec-arg read --exec-arg -format=json --exec-arg cup/token
  cup config context add prod -a https://cup.example.com \\
      --client-certificate alice.crt --client-key alice.key --certificate-authority ca.pem
  pass show cup/prod | cup config context add prod -a https://cup.example.com --token-stdin

A context has at most one token source: --token-file (read at each command, so a rotated
token needs no change here), --exec-command (its stdout is a Kubernetes ExecCredential,
status.token), or --token-stdin (the token is stored in the config file itself, which is
written with mode 0600; prefer the others). The token is sent as `Authorization: Bearer`,
and never over plain http except to a loopback address. Paths are stored absolute.")]
    Add {
        /// Its name.
        name: String,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
        #[command(flatten)]
        credentials: CredentialFlags,
    },
    /// Make a context the current one.
    #[command(after_help = "Example:\n  cup config context use prod")]
    Use {
        /// The context.
        name: String,
    },
    /// Delete a context (the current one only with --force).
    #[command(alias = "rm", after_help = "Example:\n  cup config context delete old")]
    Delete {
        /// The context.
        name: String,
        /// Delete it even if it is the current context (no context is current afterwards).
        #[arg(long)]
        force: bool,
    },
}

/// The credential flags of `config context add`.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Credentials")]
pub struct CredentialFlags {
    /// A file holding the bearer token (read at each command; a trailing newline is ignored).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token_stdin", "exec_command"])]
    token_file: Option<PathBuf>,
    /// Read the bearer token from standard input and store it in the config file (mode 0600).
    #[arg(long, conflicts_with = "exec_command")]
    token_stdin: bool,
    /// A command that prints a Kubernetes ExecCredential JSON with status.token; run
    /// without a shell, at each command, with a 30 s limit.
    #[arg(long, value_name = "COMMAND")]
    exec_command: Option<String>,
    /// An argument of --exec-command (repeat for several, in order).
    #[arg(
        long,
        value_name = "ARG",
        requires = "exec_command",
        allow_hyphen_values = true
    )]
    exec_arg: Vec<String>,
    /// An environment variable for --exec-command, as NAME=VALUE (repeatable).
    #[arg(long, value_name = "NAME=VALUE", requires = "exec_command")]
    exec_env: Vec<String>,
    /// A PEM client certificate to present to cupd (with --client-key).
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_certificate: Option<PathBuf>,
    /// The PEM private key of --client-certificate.
    #[arg(long, value_name = "FILE", requires = "client_certificate")]
    client_key: Option<PathBuf>,
    /// A PEM bundle of CA certificates to trust for this context's https address, besides
    /// the system's.
    #[arg(long, value_name = "FILE")]
    certificate_authority: Option<PathBuf>,
}

impl CredentialFlags {
    /// Sets the context's credential keys from the flags. `stdin_token` is the token read
    /// for --token-stdin (read by the caller, so this stays testable).
    fn apply_to(self, ctx: &mut Context, stdin_token: Option<Secret>) -> Result<()> {
        let absolute = |p: PathBuf| -> Result<PathBuf> {
            let abs = std::path::absolute(&p)
                .with_context(|| format!("making {} absolute", p.display()))?;
            if !abs.exists() {
                crate::log::warn(format_args!("{} does not exist (yet)", abs.display()));
            }
            Ok(abs)
        };
        ctx.token = stdin_token;
        ctx.token_file = self.token_file.map(absolute).transpose()?;
        if let Some(command) = self.exec_command {
            if command.trim().is_empty() {
                bail!("--exec-command needs a command");
            }
            // A bare name is looked up on PATH when run; a path is made absolute.
            let command = if command.contains('/') {
                absolute(PathBuf::from(command))?
                    .to_string_lossy()
                    .into_owned()
            } else {
                command
            };
            let mut env = BTreeMap::new();
            for pair in self.exec_env {
                // The value may be a secret: errors do not quote the argument.
                let (key, value) = pair
                    .split_once('=')
                    .context("--exec-env expects NAME=VALUE, found an argument without '='")?;
                if key.is_empty() {
                    bail!("--exec-env expects NAME=VALUE, found an empty NAME");
                }
                env.insert(key.to_owned(), value.to_owned());
            }
            ctx.exec = Some(ExecConfig {
                command,
                args: self.exec_arg,
                env,
                extra: Map::new(),
            });
        }
        ctx.client_certificate = self.client_certificate.map(absolute).transpose()?;
        ctx.client_key = self.client_key.map(absolute).transpose()?;
        ctx.certificate_authority = self.certificate_authority.map(absolute).transpose()?;
        Ok(())
    }
}

/// The keys `config context set` takes.
const SET_KEYS: &str = "address, namespace, token_file, client_certificate, client_key, certificate_authority, token (remove only), exec (remove only)";

/// A path for `set`: absolute (relative to the working directory), or None for an empty
/// value.
fn optional_path(value: &str) -> Result<Option<PathBuf>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let path = std::path::absolute(value).with_context(|| format!("making {value} absolute"))?;
    if !path.exists() {
        crate::log::warn(format_args!("{} does not exist (yet)", path.display()));
    }
    Ok(Some(path))
}

/// A token read from standard input: surrounding whitespace (a trailing newline from
/// `echo` or a password manager) is dropped; an empty token or one with inner whitespace
/// is refused, as it cannot be a bearer token.
fn read_token(mut input: impl std::io::Read) -> Result<Secret> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .context("reading the token from standard input")?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--token-stdin: standard input is empty: expected a token");
    }
    if token.chars().any(char::is_whitespace) {
        bail!("--token-stdin: the token contains whitespace: expected one token");
    }
    Ok(Secret(token.to_owned()))
}

/// The global flags that `config context` reads.
pub struct Flags {
    pub context: Option<String>,
    pub address: Option<String>,
    pub namespace: Option<String>,
}

/// Runs `cup config context …` against the file at `path`.
pub fn run(args: ContextArgs, path: &Path, flags: &Flags, output: crate::Output) -> Result<i32> {
    let mut config = Config::load(path)?;
    let mut token_in_file = false;
    match args.command.unwrap_or(ContextCommand::List) {
        ContextCommand::List => {
            print_list(&config, output)?;
            return Ok(0);
        }
        ContextCommand::Set { assignments } => {
            let name = flags
                .context
                .as_deref()
                .unwrap_or(&config.current_context)
                .to_owned();
            if name.is_empty() {
                bail!(
                    "no current context; name one with --context NAME or `cup config context use NAME`"
                );
            }
            for a in &assignments {
                config.set(&name, a)?;
            }
            // After every assignment, so a certificate and its key can be set together.
            config.get(&name)?.credentials(&name)?;
        }
        ContextCommand::Add {
            name,
            make_current,
            credentials,
        } => {
            let address = flags.address.as_deref().with_context(|| {
                format!(
                    "a new context needs an address: cup config context add {name} --address URL"
                )
            })?;
            config.add(&name, address, flags.namespace.as_deref())?;
            let stdin_token = if credentials.token_stdin {
                let stdin = std::io::stdin();
                if std::io::IsTerminal::is_terminal(&stdin) {
                    crate::log::info(format_args!(
                        "reading the token from standard input (end with Ctrl-D)"
                    ));
                }
                Some(read_token(stdin.lock())?)
            } else {
                None
            };
            token_in_file = stdin_token.is_some();
            let ctx = config
                .contexts
                .get_mut(&name)
                .context("the context just added")?;
            credentials.apply_to(ctx, stdin_token)?;
            let checked = ctx.credentials(&name)?;
            // Said now rather than only at the first request, which will refuse it.
            if checked.token.is_some()
                && let Err(e) =
                    crate::credentials::check_token_transport(&check_address(address)?, &name)
            {
                crate::log::warn(format_args!("requests with this context will fail: {e:#}"));
            }
            if make_current {
                config.use_context(&name)?;
            }
        }
        ContextCommand::Use { name } => config.use_context(&name)?,
        ContextCommand::Delete { name, force } => config.delete(&name, force)?,
    }
    config.save(path)?;
    crate::log::info(format_args!("wrote {}", path.display()));
    if token_in_file {
        crate::log::warn(format_args!(
            "the token is stored in {} (readable by you only, mode 0600); --token-file or --exec-command keep it out of the config file",
            path.display()
        ));
    }
    Ok(0)
}

fn print_list(config: &Config, output: crate::Output) -> Result<()> {
    let namespace = |c: &Context| {
        if c.namespace.is_empty() {
            DEFAULT_NAMESPACE.to_owned()
        } else {
            c.namespace.clone()
        }
    };
    match output {
        crate::Output::Json => {
            let list: Vec<Value> = config
                .contexts
                .iter()
                .map(|(name, c)| {
                    let mut shown = serde_json::json!({
                        "name": name,
                        "address": shown_address(&c.address),
                        "namespace": namespace(c),
                        "current": *name == config.current_context,
                    });
                    if let Value::Object(map) = &mut shown {
                        c.shown_credentials(map);
                    }
                    shown
                })
                .collect();
            crate::json::emit(&serde_json::to_string_pretty(&list)?)
        }
        crate::Output::Table => {
            let rows: Vec<Vec<String>> = config
                .contexts
                .iter()
                .map(|(name, c)| {
                    vec![
                        name.clone(),
                        shown_address(&c.address),
                        namespace(c),
                        c.auth_summary(),
                        if *name == config.current_context {
                            "*".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            crate::json::emit(&crate::table::render(
                &["NAME", "ADDRESS", "NAMESPACE", "AUTH", "CURRENT"],
                &rows,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Config {
        let mut c = Config::default();
        c.add("prod", "https://cup.example.com", Some("team"))
            .unwrap();
        c
    }

    #[test]
    fn addresses_with_passwords_are_shown_without_them() {
        let err = |a: &str| format!("{:#}", check_address(a).unwrap_err());
        for (address, shown) in [
            ("http://u:pa/ss@h:1", "<unparsable URL>"),
            ("http://u:s3cret@h:99999", "<unparsable URL>"),
            ("ftp://u:s3cret@h", "\"ftp://u:***@h/\""),
            ("http://u:s3cret@h/?q", "\"http://u:***@h/?q\""),
        ] {
            let e = err(address);
            assert!(e.contains(shown), "{address}: {e}");
            assert!(!e.contains("s3cret") && !e.contains("pa/ss"), "{e}");
        }
        assert!(err("localhost:8181").contains("\"localhost:8181\""));
        let url = check_address("http://u:p%2Fss@h:1").unwrap();
        assert_eq!(url.password(), Some("p%2Fss"), "the request keeps it");
        assert_eq!(shown_address("http://u:s3cret@h:1"), "http://u:***@h:1/");
        assert_eq!(shown_address("http://h:1"), "http://h:1");
        assert_eq!(shown_address("http://u:pa/ss@h:1"), "<unparsable URL>");
    }

    #[test]
    fn missing_file_is_the_default_and_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        let c = Config::load(&path).unwrap();
        assert_eq!(c, Config::default());
        assert!(!path.exists());
        assert!(!dir.path().join("sub").exists());
        let t = target(&c, None, None, None).unwrap();
        assert_eq!(t.address.as_str(), "http://localhost:8181/");
        assert_eq!(t.namespace, "default");
        assert_eq!(t.context.as_deref(), Some("default"));
    }

    #[test]
    fn reads_the_original_format_and_keeps_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"current_context":"x","contexts":{"x":{"address":"http://h:1","namespace":"","token":"t"}},"future":1}"#,
        )
        .unwrap();
        let mut c = Config::load(&path).unwrap();
        let t = target(&c, None, None, None).unwrap();
        assert_eq!(t.namespace, "default", "empty namespace means default");
        c.set("x", "namespace=n1").unwrap();
        c.save(&path).unwrap();
        let back: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["future"], 1);
        assert_eq!(back["contexts"]["x"]["token"], "t");
        assert_eq!(back["contexts"]["x"]["namespace"], "n1");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["config.json"], "no temp file left behind");
    }

    #[test]
    fn a_broken_file_is_an_error_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\"contexts\": [}").unwrap();
        let e = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(
            e.contains("not a valid cup config file") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn set_checks_keys_and_values() {
        let mut c = Config::default();
        let err = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert_eq!(
            err(c.set("default", "colour=red")),
            format!(r#"unknown config key "colour" (should be one of: {SET_KEYS})"#)
        );
        assert_eq!(
            err(c.set("default", "address")),
            r#"expected an argument of the form key=value, found "address""#
        );
        assert!(err(c.set("default", "address=localhost:8181")).contains("expected a URL"));
        assert!(err(c.set("default", "address=ftp://x")).contains("expected a URL"));
        assert!(err(c.set("default", "namespace=a/b")).contains("invalid namespace"));
        assert!(
            err(c.set("nope", "namespace=a"))
                .contains(r#"unknown context "nope" (contexts: default)"#)
        );
        c.set("default", "address=http://127.0.0.1:9/").unwrap();
        assert_eq!(c.contexts["default"].address, "http://127.0.0.1:9/");
        c.set("default", "address= https://h:1 ").unwrap();
        assert_eq!(c.contexts["default"].address, "https://h:1");
    }

    #[test]
    fn add_use_delete() {
        let mut c = two();
        assert!(
            c.add("prod", "http://x", None).is_err(),
            "no silent overwrite"
        );
        assert!(c.use_context("nope").is_err());
        c.use_context("prod").unwrap();
        let t = target(&c, None, None, None).unwrap();
        assert_eq!(
            (t.address.as_str(), t.namespace.as_str()),
            ("https://cup.example.com/", "team")
        );
        let e = format!("{:#}", c.delete("prod", false).unwrap_err());
        assert!(e.contains("is the current context"), "{e}");
        c.delete("default", false).unwrap();
        c.delete("prod", true).unwrap();
        assert!(c.contexts.is_empty());
        assert_eq!(c.current_context, "");
        let e = format!("{:#}", target(&c, None, None, None).unwrap_err());
        assert!(e.starts_with("no current context"), "{e}");
        // -a alone still works.
        let t = target(&c, None, Some("http://127.0.0.1:1"), None).unwrap();
        assert_eq!((t.context, t.namespace.as_str()), (None, "default"));
    }

    #[test]
    fn flags_override_the_context() {
        let c = two();
        let t = target(&c, Some("prod"), None, Some("other")).unwrap();
        assert_eq!(t.context.as_deref(), Some("prod"));
        assert_eq!(t.namespace, "other");
        assert!(t.namespace_from_flag);
        let t = target(&c, None, Some("http://10.0.0.1:8181"), None).unwrap();
        assert_eq!(t.address.as_str(), "http://10.0.0.1:8181/");
        assert_eq!(t.namespace, "default");
        let e = format!("{:#}", target(&c, Some("nope"), None, None).unwrap_err());
        assert_eq!(e, r#"unknown context "nope" (contexts: default, prod)"#);
    }

    const ALL_KEYS: &str = r#"{
  "current_context": "prod",
  "contexts": {
    "prod": {
      "address": "https://cup.example.com",
      "namespace": "team",
      "token_file": "/etc/cup/token",
      "client_certificate": "/etc/cup/alice.crt",
      "client_key": "/etc/cup/alice.key",
      "certificate_authority": "/etc/cup/ca.pem",
      "later": true
    },
    "vault": {
      "address": "https://cup.example.com",
      "namespace": "default",
      "exec": {
        "command": "vault",
        "args": [
          "read",
          "-field=cred",
          "cup/token"
        ],
        "env": {
          "VAULT_TOKEN": "v4ult"
        },
        "apiVersion": "client.authentication.k8s.io/v1"
      }
    },
    "stored": {
      "address": "http://127.0.0.1:8181",
      "namespace": "default",
      "token": "s3cret"
    }
  },
  "future": 1
}
"#;

    #[test]
    fn credential_keys_round_trip_with_unknown_keys_and_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, ALL_KEYS).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = Config::load(&path).unwrap();
        let prod = c.get("prod").unwrap().credentials("prod").unwrap();
        assert_eq!(prod.token, Some(TokenSource::File("/etc/cup/token".into())));
        assert_eq!(
            prod.client_identity,
            Some(("/etc/cup/alice.crt".into(), "/etc/cup/alice.key".into()))
        );
        let vault = c.get("vault").unwrap().credentials("vault").unwrap();
        let Some(TokenSource::Exec(exec)) = vault.token else {
            panic!("{vault:?}")
        };
        assert_eq!(exec.args, ["read", "-field=cred", "cup/token"]);
        assert_eq!(exec.env["VAULT_TOKEN"], "v4ult");
        c.save(&path).unwrap();
        let (written, original): (Value, Value) = (
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
            serde_json::from_str(ALL_KEYS).unwrap(),
        );
        assert_eq!(written, original, "every key kept, nothing added");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the file may hold a token");
        // A context without credentials writes no credential key.
        let mut c = Config::default();
        c.add("plain", "http://h:1", None).unwrap();
        let text = serde_json::to_string(&c.contexts["plain"]).unwrap();
        assert_eq!(text, r#"{"address":"http://h:1","namespace":"default"}"#);
    }

    #[test]
    fn secrets_are_redacted_in_listings_and_debug_output() {
        let c: Config = serde_json::from_str(ALL_KEYS).unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("<redacted>"),
            "{debug}"
        );
        let mut shown = Map::new();
        c.contexts["stored"].shown_credentials(&mut shown);
        assert_eq!(
            Value::Object(shown),
            serde_json::json!({"token": "<redacted>"})
        );
        let mut shown = Map::new();
        c.contexts["vault"].shown_credentials(&mut shown);
        assert_eq!(
            Value::Object(shown),
            serde_json::json!({"exec": {"command": "vault", "args": ["read", "-field=cred", "cup/token"], "env": {"VAULT_TOKEN": "<redacted>"}}})
        );
        assert_eq!(c.contexts["stored"].auth_summary(), "token");
        assert_eq!(
            c.contexts["prod"].auth_summary(),
            "token-file,client-certificate"
        );
        assert_eq!(c.contexts["vault"].auth_summary(), "exec");
        assert_eq!(Config::default().contexts["default"].auth_summary(), "-");
    }

    #[test]
    fn one_token_source_and_a_certificate_only_with_its_key() {
        let ctx = |json: &str| -> Context { serde_json::from_str(json).unwrap() };
        let err = |c: Context| format!("{:#}", c.credentials("x").unwrap_err());
        assert_eq!(
            err(ctx(
                r#"{"token":"s3cret","token_file":"/t","exec":{"command":"c"}}"#
            )),
            "context \"x\" has more than one token source (token, token_file, exec): keep exactly one"
        );
        assert_eq!(
            err(ctx(r#"{"client_certificate":"/c"}"#)),
            "context \"x\" has a client_certificate but no client_key: give both or neither"
        );
        assert_eq!(
            err(ctx(r#"{"client_key":"/k"}"#)),
            "context \"x\" has a client_key but no client_certificate: give both or neither"
        );
        assert_eq!(
            err(ctx(r#"{"exec":{"command":" "}}"#)),
            "context \"x\": exec has no command"
        );
        // The check is made for every command that uses the context.
        let mut c = Config::default();
        c.contexts.insert(
            "x".into(),
            ctx(r#"{"address":"http://h","client_key":"/k"}"#),
        );
        let e = format!("{:#}", target(&c, Some("x"), None, None).unwrap_err());
        assert!(e.contains("give both or neither"), "{e}");
        // -a alone carries no credentials.
        let t = target(
            &Config {
                current_context: String::new(),
                ..c
            },
            None,
            Some("http://h"),
            None,
        )
        .unwrap();
        assert!(t.credentials.is_empty());
    }

    #[test]
    fn relative_paths_are_taken_from_the_config_directory() {
        let c: Context = serde_json::from_str(
            r#"{"token_file":"token","client_certificate":"/abs/c","client_key":"k","certificate_authority":"ca/ca.pem"}"#,
        )
        .unwrap();
        let creds = c
            .credentials("x")
            .unwrap()
            .anchored(Path::new("/home/me/.config/cup"));
        assert_eq!(
            creds.token,
            Some(TokenSource::File("/home/me/.config/cup/token".into()))
        );
        assert_eq!(
            creds.client_identity,
            Some(("/abs/c".into(), "/home/me/.config/cup/k".into()))
        );
        assert_eq!(
            creds.certificate_authority,
            Some("/home/me/.config/cup/ca/ca.pem".into())
        );
        let exec = |command: &str| {
            let c: Context =
                serde_json::from_value(serde_json::json!({"exec": {"command": command}})).unwrap();
            match c.credentials("x").unwrap().anchored(Path::new("/d")).token {
                Some(TokenSource::Exec(e)) => e.command,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(exec("vault"), "vault", "a bare name is looked up on PATH");
        assert_eq!(exec("bin/cred"), "/d/bin/cred");
    }

    #[derive(clap::Parser)]
    struct AddCli {
        #[command(subcommand)]
        command: ContextCommand,
    }

    fn parse_add(args: &[&str]) -> Result<CredentialFlags, String> {
        use clap::Parser;
        let argv = ["cup", "add", "x"].iter().chain(args);
        match AddCli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            ContextCommand::Add { credentials, .. } => Ok(credentials),
            _ => Err("not add".into()),
        }
    }

    #[test]
    fn add_flags_take_one_token_source_and_both_or_neither_certificate_and_key() {
        for args in [
            &["--token-file", "t", "--token-stdin"][..],
            &["--token-file", "t", "--exec-command", "c"],
            &["--token-stdin", "--exec-command", "c"],
        ] {
            let e = parse_add(args).unwrap_err();
            assert!(e.contains("cannot be used with"), "{args:?}: {e}");
        }
        for args in [
            &["--client-certificate", "c"][..],
            &["--client-key", "k"],
            &["--exec-arg", "a"],
        ] {
            let e = parse_add(args).unwrap_err();
            assert!(
                e.contains("required arguments were not provided"),
                "{args:?}: {e}"
            );
        }
        let flags = parse_add(&[
            "--exec-command",
            "./bin/cred",
            "--exec-arg",
            "--format=json",
            "--exec-arg",
            "x",
            "--exec-env",
            "A=b=c",
            "--client-certificate",
            "c.pem",
            "--client-key",
            "/k.pem",
            "--certificate-authority",
            "ca.pem",
        ])
        .unwrap();
        let mut ctx = Context::default();
        flags.apply_to(&mut ctx, None).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let exec = ctx.exec.clone().unwrap();
        assert_eq!(PathBuf::from(&exec.command), cwd.join("bin/cred"));
        assert_eq!(exec.args, ["--format=json", "x"]);
        assert_eq!(exec.env["A"], "b=c");
        assert_eq!(ctx.client_certificate, Some(cwd.join("c.pem")));
        assert_eq!(ctx.client_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(ctx.certificate_authority, Some(cwd.join("ca.pem")));
        ctx.credentials("x").unwrap();
        let flags = parse_add(&["--exec-command", "c", "--exec-env", "s3cret"]).unwrap();
        let e = format!(
            "{:#}",
            flags.apply_to(&mut Context::default(), None).unwrap_err()
        );
        assert!(e.contains("NAME=VALUE") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn tokens_from_stdin_are_one_trimmed_word() {
        assert_eq!(read_token(&b"s3cret\n"[..]).unwrap().0, "s3cret");
        let e = format!("{:#}", read_token(&b" \n"[..]).unwrap_err());
        assert!(e.contains("standard input is empty"), "{e}");
        let e = format!("{:#}", read_token(&b"s3cret other\n"[..]).unwrap_err());
        assert!(
            e.contains("contains whitespace") && !e.contains("s3cret"),
            "{e}"
        );
    }

    #[test]
    fn set_changes_credential_files_and_removes_token_sources() {
        let mut c: Config = serde_json::from_str(ALL_KEYS).unwrap();
        let err = |r: Result<()>| format!("{:#}", r.unwrap_err());
        assert!(err(c.set("stored", "token_file=/t")).contains("already has a token source"));
        assert!(err(c.set("stored", "token=s3cret")).contains("cannot be set here, only removed"));
        assert!(!err(c.set("stored", "token=s3cret")).contains("s3cret"));
        assert!(err(c.set("vault", "exec=vault")).contains("--exec-command"));
        c.set("stored", "token=").unwrap();
        c.set("stored", "token_file=/etc/cup/t").unwrap();
        assert_eq!(c.contexts["stored"].token, None);
        assert_eq!(c.contexts["stored"].token_file, Some("/etc/cup/t".into()));
        c.set("vault", "exec=").unwrap();
        assert_eq!(c.contexts["vault"].exec, None);
        c.set("prod", "client_key=").unwrap();
        let e = format!(
            "{:#}",
            c.get("prod").unwrap().credentials("prod").unwrap_err()
        );
        assert!(e.contains("give both or neither"), "{e}");
        c.set("prod", "client_certificate= ").unwrap();
        c.set("prod", "certificate_authority=ca.pem").unwrap();
        let ca = c.contexts["prod"].certificate_authority.clone().unwrap();
        assert_eq!(ca, std::env::current_dir().unwrap().join("ca.pem"));
        assert!(c.get("prod").unwrap().credentials("prod").is_ok());
    }
}

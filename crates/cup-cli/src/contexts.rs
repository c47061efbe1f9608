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

/// One context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Context {
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
                extra: Map::new(),
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
            other => bail!("unknown config key {other:?} (should be one of: address, namespace)"),
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
            extra: Map::new(),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The context used, if any (`-a` alone needs none).
    pub context: Option<String>,
    pub address: Url,
    pub namespace: String,
    /// `-n` was given: `apply` then refuses a body in another namespace.
    pub namespace_from_flag: bool,
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
    Ok(Target {
        context: chosen.map(|(name, _)| name),
        address,
        namespace,
        namespace_from_flag: namespace_flag.is_some(),
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

The file is -c FILE, else $XDG_CONFIG_HOME/cup/config.json (~/.config/cup/config.json).
Without a file the context \"default\" (http://localhost:8181, namespace default) is used;
the file is created on the first change.")]
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
    /// Change the current context (or the one named by --context): address or namespace.
    #[command(
        after_help = "Examples:\n  cup config context set address=http://127.0.0.1:8181\n  cup config context set namespace=production address=https://cup.example.com"
    )]
    Set {
        /// key=value pairs; keys: address, namespace.
        #[arg(value_name = "KEY=VALUE", required = true)]
        assignments: Vec<String>,
    },
    /// Add a context. Its address and namespace are given with the global -a/--address
    /// and -n/--namespace flags (namespace: default if omitted).
    #[command(
        after_help = "Example:\n  cup config context add prod --address https://cup.example.com --namespace team --use"
    )]
    Add {
        /// Its name.
        name: String,
        /// Also make it the current context.
        #[arg(long = "use")]
        make_current: bool,
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

/// The global flags that `config context` reads.
pub struct Flags {
    pub context: Option<String>,
    pub address: Option<String>,
    pub namespace: Option<String>,
}

/// Runs `cup config context …` against the file at `path`.
pub fn run(args: ContextArgs, path: &Path, flags: &Flags, output: crate::Output) -> Result<i32> {
    let mut config = Config::load(path)?;
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
        }
        ContextCommand::Add { name, make_current } => {
            let address = flags.address.as_deref().with_context(|| {
                format!(
                    "a new context needs an address: cup config context add {name} --address URL"
                )
            })?;
            config.add(&name, address, flags.namespace.as_deref())?;
            if make_current {
                config.use_context(&name)?;
            }
        }
        ContextCommand::Use { name } => config.use_context(&name)?,
        ContextCommand::Delete { name, force } => config.delete(&name, force)?,
    }
    config.save(path)?;
    crate::log::info(format_args!("wrote {}", path.display()));
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
                    serde_json::json!({
                        "name": name,
                        "address": shown_address(&c.address),
                        "namespace": namespace(c),
                        "current": *name == config.current_context,
                    })
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
                        if *name == config.current_context {
                            "*".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            crate::json::emit(&crate::table::render(
                &["NAME", "ADDRESS", "NAMESPACE", "CURRENT"],
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
            r#"unknown config key "colour" (should be one of: address, namespace)"#
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
}

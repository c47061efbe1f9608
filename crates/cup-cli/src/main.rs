//! `cup`: the command-line client.

mod client;
mod contexts;
mod controller;
mod discovery;
mod json;
mod log;
mod oci;
mod resources;
mod table;

use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// cup: a typed, Kubernetes-like API over a directory or Git repository, driven by
/// self-describing WebAssembly controllers.
#[derive(Parser)]
#[command(
    version,
    propagate_version = true,
    after_help = "Examples:
  cup definitions                         # what the server serves
  cup get flags                           # list, in the context's namespace
  cup -o json get flag new-login          # one resource as JSON
  cup apply -f flag.json                  # create or update
  cup edit flag new-login                 # $EDITOR, applied on save
  cup delete flag new-login
  cup -a http://127.0.0.1:8181 -n production get segments
  cup config context                      # where requests go"
)]
struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The client config file (contexts). It is only written by `config context` commands.
    /// [default: $XDG_CONFIG_HOME/cup/config.json, else ~/.config/cup/config.json]
    #[arg(short, long, global = true, value_name = "FILE", env = "CUP_CONFIG")]
    config: Option<PathBuf>,
    /// Use this context instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// The cupd address, overriding the context's (e.g. http://localhost:8181).
    #[arg(short, long, global = true, value_name = "URL")]
    address: Option<String>,
    /// The namespace, overriding the context's.
    #[arg(short, long, global = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// How much to report on stderr (debug shows every HTTP request).
    #[arg(short, long, global = true, value_enum, default_value_t = log::Level::Info)]
    level: log::Level,
    /// The local controller store (an OCI image layout directory).
    /// [default: $XDG_CACHE_HOME/cup, else ~/.cache/cup]
    #[arg(long, global = true, value_name = "DIR", env = "CUP_STORE")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List the resource types the server serves (one row per definition).
    #[command(
        alias = "defs",
        after_help = "Examples:
  cup definitions
  cup -o json defs | jq '.[].names.kind'

APIVERSION is the version `get`, `edit` and `delete` use (the highest: GA > beta >
alpha, then the larger number); VERSIONS lists every served version."
    )]
    Definitions,
    /// Show resources: all of a type, or the ones named.
    #[command(after_help = "Examples:
  cup get flags                           # every flag in the namespace
  cup get flag new-login                  # one (JSON: an object)
  cup get Flag new-login dark-mode        # several (JSON: an array)
  cup -o json get flipt.io/v1alpha1/flags
  cup -n production get segments

TYPE is a Kind, plural or singular in any case (Flag, flags, flag), optionally with its
group (flipt.io/flag or flags.flipt.io), or GROUP/VERSION/PLURAL for an exact version.
Without a version the highest one is used (GA > beta > alpha, then the larger number).
Missing names are reported on stderr and make the exit status 1.")]
    Get {
        /// The resource type.
        #[arg(value_name = "TYPE")]
        ty: String,
        /// Names; none lists every resource of the type.
        names: Vec<String>,
    },
    /// Create or update one resource from a JSON file or standard input.
    #[command(after_help = "Examples:
  cup apply -f flag.json
  cup get flag new-login -o json | jq '.spec.enabled = false' | cup apply

The document's apiVersion and kind pick the route; the namespace is metadata.namespace,
else -n or the context's (a metadata.namespace that contradicts -n is refused). The bytes
are sent as they are, so the server validates exactly what you wrote.
202: prints the write result (ID SOURCE URL); 204: \"no change\" on stderr, exit 0.")]
    Apply {
        /// The JSON file, or - for standard input.
        #[arg(
            short = 'f',
            long = "filename",
            value_name = "FILE|-",
            default_value = "-"
        )]
        file: String,
    },
    /// Edit one resource in $EDITOR (default vi) and apply it when saved.
    #[command(after_help = "Examples:
  cup edit flag new-login
  EDITOR='code --wait' cup edit segments beta-users

Nothing is sent when the file is saved unchanged. If the edit cannot be applied, the file
is kept and its path printed, so no work is lost.")]
    Edit {
        /// The resource type (as for `get`).
        #[arg(value_name = "TYPE")]
        ty: String,
        /// The resource name.
        name: String,
    },
    /// Delete one resource.
    #[command(after_help = "Examples:
  cup delete flag new-login
  cup -n production delete segments beta-users")]
    Delete {
        /// The resource type (as for `get`).
        #[arg(value_name = "TYPE")]
        ty: String,
        /// The resource name.
        name: String,
    },
    /// Client configuration.
    #[command(subcommand, alias = "c")]
    Config(ConfigCommand),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  cup completions bash > ~/.local/share/bash-completion/completions/cup
  cup completions zsh > \"${fpath[1]}/_cup\"
  cup completions fish > ~/.config/fish/completions/cup.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Package, check and distribute controllers (self-describing .wasm files).
    #[command(subcommand, alias = "ctl")]
    Controller(controller::Command),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Contexts: named cupd addresses with a default namespace.
    #[command(alias = "ctx")]
    Context(contexts::ContextArgs),
}

fn main() {
    let cli = Cli::parse();
    log::set(cli.level);
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cup: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let Cli {
        output,
        config,
        context,
        address,
        namespace,
        store,
        command,
        level: _,
    } = cli;
    // Only the resource commands read the config file; nothing ever creates it here.
    let session = || -> Result<resources::Session> {
        let path = contexts::path(config.as_deref())?;
        let file = contexts::Config::load(&path)?;
        let target = contexts::target(
            &file,
            context.as_deref(),
            address.as_deref(),
            namespace.as_deref(),
        )?;
        resources::Session::new(target, output)
    };
    match command {
        Command::Definitions => session()?.definitions(),
        Command::Get { ty, names } => session()?.get(&ty, &names),
        Command::Apply { file } => session()?.apply(&file),
        Command::Edit { ty, name } => session()?.edit(&ty, &name),
        Command::Delete { ty, name } => session()?.delete(&ty, &name),
        Command::Config(ConfigCommand::Context(args)) => {
            let path = contexts::path(config.as_deref())?;
            let flags = contexts::Flags {
                context: context.clone(),
                address: address.clone(),
                namespace: namespace.clone(),
            };
            contexts::run(args, &path, &flags, output)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cup", &mut std::io::stdout());
            Ok(0)
        }
        Command::Controller(cmd) => controller::run(cmd, output, store.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

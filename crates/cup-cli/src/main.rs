//! `cup`: the command-line client.

mod auth;
mod client;
mod contexts;
mod controller;
mod credentials;
mod discovery;
mod json;
mod log;
mod oci;
mod resources;
mod scaffold;
mod signing;
mod table;

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// cup: a typed, Kubernetes-like API over a directory or Git repository, driven by
/// self-describing WebAssembly controllers.
#[derive(Parser)]
#[command(
    name = "cup",
    version,
    propagate_version = true,
    after_help = "Examples:
  cup definitions                         # what the server serves
  cup get flags                           # list, in the context's namespace
  cup -o json get flag new-login          # one resource as JSON
  cup apply -f flag.json                  # create or update
  cup edit flag new-login                 # $EDITOR, applied on save
  cup delete flag new-login
  cup -a http://127.0.0.1:8181 -n production get flags
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
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
  cup -n production get flags

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
202: prints e.g. `flag/new-login applied` when the change was made in place (a local source), or the
proposal (ID SOURCE URL) on a Git source; -o json prints the result itself. 204: \"no change\"
on stderr, exit 0.")]
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
    /// Ask cupd who you are and what you may do (access control).
    #[command(
        subcommand,
        after_help = "Examples:
  cup auth whoami                         # user name and groups, as cupd sees them
  cup auth can-i put flags                # yes/no, exit status 0/1
  cup auth can-i delete flag new-login -n production
  cup auth can-i merge proposals
  cup auth can-i get /metrics

Both ask the server (its selfsubjectreviews and selfsubjectaccessreviews endpoints), so
the answer is the server's policy for the credentials of the context."
    )]
    Auth(auth::Command),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  cup completions bash > ~/.local/share/bash-completion/completions/cup
  cup completions zsh > \"${fpath[1]}/_cup\"
  cup completions fish > ~/.config/fish/completions/cup.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Create, package, check and distribute controllers (self-describing .wasm files).
    #[command(
        subcommand,
        alias = "ctl",
        after_help = "Examples:
  cup controller new notes                       # a new controller crate in ./notes
  cd notes && ./build.sh                         # build, embed defs/*.json, verify
  cup controller inspect config/notes.wasm       # digest, ABI, imports, definitions
  cup controller verify config/notes.wasm && echo intact
  cup controller add config/notes.wasm --tag notes:dev   # into the local store: sha256:…
  cup controller push config/notes.wasm registry.example/cup/notes:v1
  cup controller pull registry.example/cup/notes@sha256:…

`cup controller COMMAND --help` shows each command's options and examples."
    )]
    Controller(controller::Command),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Contexts: named cupd addresses with a default namespace.
    #[command(alias = "ctx")]
    Context(contexts::ContextArgs),
}

fn main() {
    if let Some((file, output)) = definitions_fast_path() {
        log::set(log::Level::Info);
        exit_with(controller::run(
            controller::Command::Definitions { file },
            output,
            None,
        ));
    }
    let cli = Cli::parse();
    log::set(cli.level);
    exit_with(run(cli))
}

fn exit_with(result: Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cup: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Environment variables that set a global option (`env = …` above). While any is set,
/// clap has to see it (an empty value is an error there), so the fast path steps aside.
const GLOBAL_OPTION_ENV: [&str; 2] = ["CUP_CONFIG", "CUP_STORE"];

/// `cup [-o|--output json|table] controller|ctl definitions FILE`, recognised without
/// building clap's command tree. Building and walking that tree (every command, argument
/// and help text) is a tenth of this command's whole-process time, and reading definitions
/// has a budget of 2 ms for the whole process (docs/PRODUCT.md). Only this exact shape
/// is taken, with every option at its default; anything else (other flags, `--`, `=` or
/// attached values, a FILE starting with '-', a global option set through the
/// environment) goes through clap, so errors, help and every other form are clap's.
/// Tests check that clap parses each argv accepted here to the same command.
fn definitions_fast_path() -> Option<(PathBuf, Output)> {
    if GLOBAL_OPTION_ENV
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        return None;
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    definitions_argv(&args)
}

/// The argv part of [`definitions_fast_path`] (without the program name).
fn definitions_argv(args: &[OsString]) -> Option<(PathBuf, Output)> {
    let (output, rest) = match args {
        [flag, value, rest @ ..] if flag == "-o" || flag == "--output" => {
            let output = match value.to_str()? {
                "json" => Output::Json,
                "table" => Output::Table,
                _ => return None,
            };
            (output, rest)
        }
        rest => (Output::Table, rest),
    };
    match rest {
        [controller, definitions, file]
            if (controller == "controller" || controller == "ctl")
                && definitions == "definitions"
                && !file.is_empty()
                && !file.as_encoded_bytes().starts_with(b"-") =>
        {
            Some((PathBuf::from(file), output))
        }
        _ => None,
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
        let mut target = contexts::target(
            &file,
            context.as_deref(),
            address.as_deref(),
            namespace.as_deref(),
        )?;
        if let Some(dir) = path.parent() {
            target.credentials = target.credentials.anchored(dir);
        }
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
        Command::Auth(auth::Command::CanI {
            verb,
            target: what,
            name,
        }) => session()?.can_i(&verb, &what, name.as_deref()),
        Command::Auth(auth::Command::Whoami) => session()?.whoami(),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cup", &mut std::io::stdout());
            Ok(0)
        }
        Command::Controller(cmd) => controller::run(cmd, output, store.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// What clap makes of `words`, when it is `controller definitions` at default options.
    fn clap_definitions(words: &[&str]) -> Option<(PathBuf, Output)> {
        let cli = Cli::try_parse_from(std::iter::once("cup").chain(words.iter().copied())).ok()?;
        if cli.level != log::Level::Info || cli.context.is_some() || cli.address.is_some() {
            return None;
        }
        if cli.namespace.is_some() {
            return None;
        }
        match cli.command {
            Command::Controller(controller::Command::Definitions { file }) => {
                Some((file, cli.output))
            }
            _ => None,
        }
    }

    #[test]
    fn the_definitions_fast_path_takes_only_what_clap_parses_the_same_way() {
        for words in [
            &["controller", "definitions", "x.wasm"][..],
            &["ctl", "definitions", "x.wasm"],
            &["-o", "json", "controller", "definitions", "x.wasm"],
            &["--output", "table", "ctl", "definitions", "dir/x y.wasm"],
            &["-o", "json", "controller", "definitions", "help"],
        ] {
            let fast = definitions_argv(&argv(words));
            assert!(fast.is_some(), "{words:?}");
            assert!(fast == clap_definitions(words), "{words:?}");
        }
        for words in [
            &[][..],
            &["controller", "definitions"],
            &["controller", "definitions", ""],
            &["controller", "definitions", "-"],
            &["controller", "definitions", "--help"],
            &["controller", "definitions", "a", "b"],
            &["controller", "definitions", "--", "x.wasm"],
            &["controller", "definitions", "-o", "json", "x.wasm"],
            &["-ojson", "controller", "definitions", "x.wasm"],
            &["--output=json", "controller", "definitions", "x.wasm"],
            &["-o", "JSON", "controller", "definitions", "x.wasm"],
            &["-o", "yaml", "controller", "definitions", "x.wasm"],
            &["-l", "debug", "controller", "definitions", "x.wasm"],
            &["controller", "verify", "x.wasm"],
            &["definitions", "x.wasm"],
            &["defs", "definitions", "x.wasm"],
        ] {
            assert_eq!(definitions_argv(&argv(words)), None, "{words:?}");
        }
    }

    /// Every argv of up to five words drawn from tokens that matter to the parse: whatever
    /// the fast path accepts, clap parses to the same file and output format.
    #[test]
    fn the_definitions_fast_path_agrees_with_clap_on_every_short_argv() {
        const WORDS: [&str; 15] = [
            "-o",
            "--output",
            "json",
            "table",
            "yaml",
            "controller",
            "ctl",
            "definitions",
            "x.wasm",
            "-",
            "--",
            "",
            "--output=json",
            "help",
            "-h",
        ];
        let mut accepted = 0;
        let mut words = Vec::new();
        fn walk(words: &mut Vec<&'static str>, accepted: &mut usize) {
            if let Some(fast) = definitions_argv(&argv(words)) {
                *accepted += 1;
                assert!(Some(fast) == clap_definitions(words), "{words:?}");
            }
            if words.len() == 5 {
                return;
            }
            for word in WORDS {
                words.push(word);
                walk(words, accepted);
                words.pop();
            }
        }
        walk(&mut words, &mut accepted);
        assert!(accepted > 0);
    }

    /// A global option fed by an environment variable must keep the fast path away (clap
    /// rejects an empty value, for one). This fails when such an option is added to `Cli`,
    /// `controller` or `controller definitions` but not to GLOBAL_OPTION_ENV.
    #[test]
    fn the_fast_path_knows_every_environment_variable_of_the_parse() {
        fn env_names(cmd: &clap::Command) -> Vec<String> {
            cmd.get_arguments()
                .filter_map(|arg| arg.get_env())
                .map(|name| name.to_string_lossy().into_owned())
                .collect()
        }
        let cli = Cli::command();
        let controller = cli.find_subcommand("controller").expect("controller");
        let definitions = controller
            .find_subcommand("definitions")
            .expect("controller definitions");
        let mut names = env_names(&cli);
        names.extend(env_names(controller));
        names.extend(env_names(definitions));
        names.sort();
        names.dedup();
        assert_eq!(names, GLOBAL_OPTION_ENV);
    }
}

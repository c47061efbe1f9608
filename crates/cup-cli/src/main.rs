//! `cup`: the command-line client.

mod controller;
mod oci;
mod table;

use clap::{Parser, Subcommand, ValueEnum};

/// cup: a typed, Kubernetes-like API over a directory or Git repository, driven by
/// self-describing WebAssembly controllers.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The local controller store (an OCI image layout directory).
    /// [default: $XDG_CACHE_HOME/cup, else ~/.cache/cup]
    #[arg(long, global = true, value_name = "DIR", env = "CUP_STORE")]
    store: Option<std::path::PathBuf>,
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
    /// Package, check and distribute controllers (self-describing .wasm files).
    #[command(subcommand, alias = "ctl")]
    Controller(controller::Command),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Controller(cmd) => controller::run(cmd, cli.output, cli.store.as_deref()),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cup: {e:#}");
            std::process::exit(1);
        }
    }
}

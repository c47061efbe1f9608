//! `cup`: the command-line client.

mod controller;
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
        Command::Controller(cmd) => controller::run(cmd, cli.output),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cup: {e:#}");
            std::process::exit(1);
        }
    }
}

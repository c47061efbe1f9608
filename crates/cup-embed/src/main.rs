//! `cup-embed [-o OUT] DEF.json... MODULE.wasm`: make a controller self-describing.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Embed ResourceDefinitions into a controller module as `cup.*` custom sections.
///
/// The module's own sections are copied byte for byte; any previous `cup.*` sections are
/// replaced, so running it again with the same inputs gives identical bytes. Without `-o`
/// the module is rewritten in place. The write is atomic: on any error the target file is
/// left untouched.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  cup-embed defs/*.json target/wasm32-wasip1/release/flipt.wasm\n  cup-embed -o flipt.cup.wasm defs/flags.json defs/segments.json flipt.wasm"
)]
struct Args {
    /// Write the result here instead of rewriting MODULE in place.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Print a JSON report (manifest, size) instead of a summary line.
    #[arg(long)]
    json: bool,
    /// ResourceDefinition JSON files.
    #[arg(value_name = "DEF.json", num_args = 1.., required = true)]
    definitions: Vec<PathBuf>,
    /// The .wasm module to embed them into (core module or component).
    #[arg(value_name = "MODULE.wasm", required = true)]
    module: PathBuf,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("cup-embed: {e:#}");
        std::process::exit(1);
    }
}

/// The first bytes of every WebAssembly binary (module or component).
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Whether `path` starts like a WebAssembly binary; `None` when it cannot be read.
fn looks_like_wasm(path: &Path) -> Option<bool> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).ok()?;
    Some(file.read_exact(&mut magic).is_ok() && &magic == WASM_MAGIC)
}

/// Catches the two mistakes the positional order invites before anything is read whole: the
/// module given first (or in the middle), and the module left out, so that the last
/// definition was taken for it.
fn check_order(args: &Args) -> Result<()> {
    const USAGE: &str = "the module goes last: cup-embed [-o OUT] DEF.json... MODULE.wasm";
    if looks_like_wasm(&args.module) != Some(false) {
        return Ok(());
    }
    if let Some(module) = args
        .definitions
        .iter()
        .find(|d| looks_like_wasm(d) == Some(true))
    {
        bail!(
            "{} is a WebAssembly module but was given among the definitions, and {} (the last argument) is not one; {USAGE}",
            module.display(),
            args.module.display()
        );
    }
    bail!(
        "{} (the last argument) is not a WebAssembly file: was the module left out? {USAGE}",
        args.module.display()
    )
}

fn run(args: Args) -> Result<()> {
    check_order(&args)?;
    let module = args.module.as_path();
    let output = args.output.as_deref().unwrap_or(module);
    let report = cup_sections::embed_files(&args.definitions, module, output)
        .with_context(|| format!("embedding into {}", module.display()))?;
    if args.json {
        let value = serde_json::json!({
            "output": output,
            "size": report.size,
            "replaced_sections": report.replaced_sections,
            "definitions_digest": report.manifest.definitions_digest(),
            "manifest": report.manifest,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let names: Vec<&str> = report
            .manifest
            .definitions
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        println!(
            "embedded {} definition(s) into {} ({} bytes): {}",
            names.len(),
            output.display(),
            report.size,
            names.join(", ")
        );
    }
    Ok(())
}

//! `cup-load`: the load run behind `just load` (see `cup_e2e::load`). Exit status 0 when every
//! answer was expected and no write was lost or mixed, 1 when not (the report says what),
//! 2 when the run could not be made (bad arguments, cupd unreachable, unclean source).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use cup_e2e::load::{LoadConfig, Mix, SourceKind, parse_duration, run};

/// Mixed get/list/put/delete from concurrent clients against one cupd, then a check that
/// no acknowledged write was lost or mixed.
///
/// Each client owns its resource names (`<prefix>-c07-n3`) and runs a closed loop: it sends
/// the next request when the previous answer is read, and checks every answer against what
/// it wrote (a read must show its last acknowledged write). Latency is measured per request
/// from the moment it is sent. Afterwards, on the local source every name is read back
/// (GET, and the controller's list of the files) and compared with the last acknowledged
/// put (fields the client set, canonicalised) or a 404 after an acknowledged delete. On the
/// Git source each client works on its own line of proposals (`?revision=<its last
/// commit>`): every proposal an answer named must be on --git-remote, based on the
/// client's previous commit, changing one file, and show exactly the base plus that
/// client's own names; the base branch must be unchanged.
///
/// The source must not hold any `<prefix>-*` resource when the run starts.
#[derive(Debug, Parser)]
#[command(name = "cup-load", version)]
struct Args {
    /// cupd's base URL.
    #[arg(long)]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to send requests (`10m`, `60s`, `1h`, `500ms`); requests in flight then finish.
    #[arg(long, default_value = "10m")]
    duration: String,
    /// Relative weights of the operations.
    #[arg(long, default_value = "get=50,list=20,put=20,delete=10")]
    mix: String,
    /// Kind to load (`names.kind`); the example Flipt controller's Flag by default. Puts of
    /// a Flag vary type, variants and attachments; other kinds get a small free-form spec.
    #[arg(long, default_value = "Flag")]
    kind: String,
    /// API group of the kind.
    #[arg(long, default_value = "flipt.io")]
    group: String,
    /// API version of the kind (`--version` prints cup-load's own version).
    #[arg(long, default_value = "v1alpha1")]
    api_version: String,
    /// Namespace the clients write in.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Names each client owns.
    #[arg(long, default_value_t = 4)]
    names_per_client: usize,
    /// Prefix of the clients' resource names.
    #[arg(long, default_value = "load")]
    prefix: String,
    /// The source cupd serves.
    #[arg(long, value_enum, default_value_t = Source::Local)]
    source: Source,
    /// The Git remote cupd writes to (a bare repository's path), to check the proposal
    /// branches with `git`. Required with --source git.
    #[arg(long)]
    git_remote: Option<PathBuf>,
    /// cupd's process id: its VmRSS is sampled from /proc/PID/status every second.
    #[arg(long)]
    pid: Option<u32>,
    /// RSS samples before this (at most a quarter of --duration) are left out of the
    /// memory slope.
    #[arg(long, default_value = "60s")]
    warmup: String,
    /// Per-request timeout.
    #[arg(long, default_value = "120s")]
    timeout: String,
    /// Seed of the operation and name choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as Markdown here (it is also printed).
    #[arg(long)]
    markdown: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Source {
    Local,
    Git,
}

fn config(args: &Args) -> Result<LoadConfig> {
    let source = match (args.source, &args.git_remote) {
        (Source::Local, _) => SourceKind::Local,
        (Source::Git, Some(remote)) => SourceKind::Git {
            remote: remote.clone(),
        },
        (Source::Git, None) => bail!("--source git needs --git-remote PATH (the bare repository)"),
    };
    if args.clients == 0 || args.names_per_client == 0 {
        bail!("--clients and --names-per-client must be at least 1");
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    Ok(LoadConfig {
        url: args.url.clone(),
        clients: args.clients,
        duration: parse_duration(&args.duration)?,
        mix: Mix::parse(&args.mix)?,
        group: args.group.clone(),
        version: args.api_version.clone(),
        kind: args.kind.clone(),
        namespace: args.namespace.clone(),
        names_per_client: args.names_per_client,
        prefix: args.prefix.clone(),
        source,
        pid: args.pid,
        seed,
        timeout: parse_duration(&args.timeout)?,
        warmup: parse_duration(&args.warmup)?,
    })
}

fn main() -> ExitCode {
    match load() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("cup-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load and writes the reports; `Ok(false)` when the run failed its checks.
fn load() -> Result<bool> {
    let args = Args::parse();
    let config = config(&args)?;
    eprintln!(
        "cup-load: {} clients for {:?} against {} ({} source), seed {}",
        config.clients,
        config.duration,
        config.url,
        config.source.name(),
        config.seed
    );
    // Two workers: the machine has two cores, and cupd needs them too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(run(&config))?;
    let markdown = report.to_markdown();
    print!("{markdown}");
    if let Some(path) = &args.markdown {
        write_atomically(path, markdown.as_bytes())?;
    }
    if let Some(path) = &args.json {
        let mut json = serde_json::to_vec_pretty(&report.to_json())?;
        json.push(b'\n');
        write_atomically(path, &json)?;
    }
    if !report.passed() {
        eprintln!(
            "cup-load: the load run failed: {} unexpected errors, {} lost/mixed/unacknowledged writes",
            report.unexpected_errors(),
            report.violation_total()
        );
    }
    Ok(report.passed())
}

/// Temp file in the same directory, then rename: a reader never sees half a report.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    std::io::Write::write_all(&mut temp, bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("renaming the report to {}", path.display()))?;
    Ok(())
}

//! `cup controller push|pull|add|save|load|list` and `inspect` of store and registry
//! references: the OCI half of the CLI, on top of `cup-oci`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::Args;
use cup_oci::{
    ArtifactOptions, Credentials, Progress, Registry, RegistryOptions, RetryPolicy, Store,
    annotations,
};
use cup_oci::{annotation_mismatches, definition_keys};
use serde::Serialize;

use crate::{Output, table};

/// How to reach registries (push, pull, inspect).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Reach HOST (or HOST:PORT) over plain HTTP. Loopback registries (127.0.0.0/8,
    /// localhost, ::1) always are; every other host is HTTPS unless named here.
    #[arg(
        long = "plain-http",
        value_name = "HOST",
        env = "CUP_PLAIN_HTTP",
        value_delimiter = ','
    )]
    pub plain_http: Vec<String>,
    /// Let the registry's credentials go to a token service on HOST (or HOST:PORT) when its
    /// challenge names one there. Without it they go only to a token service on the
    /// registry's own host (Docker Hub's auth.docker.io is built in), and never over plain
    /// HTTP for an HTTPS registry.
    #[arg(
        long = "allow-token-realm",
        value_name = "HOST",
        env = "CUP_ALLOW_TOKEN_REALM",
        value_delimiter = ','
    )]
    pub allow_token_realm: Vec<String>,
    /// Registry user name (with --password-stdin); otherwise Docker's config.json is used.
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Attempts per registry request before giving up (transient failures only: network
    /// errors, timeouts, 5xx, 429).
    #[arg(long, value_name = "N", env = "CUP_REGISTRY_ATTEMPTS", default_value_t = RetryPolicy::default().attempts, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// Seconds a registry connection may stay silent before the request is abandoned
    /// (and retried).
    #[arg(long, value_name = "SECONDS", env = "CUP_REGISTRY_TIMEOUT", default_value_t = RetryPolicy::default().request_timeout.as_secs_f64(), value_parser = parse_timeout)]
    pub registry_timeout: f64,
}

/// A timeout in seconds: positive, at most a day.
fn parse_timeout(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 86_400.0 => Ok(secs),
        _ => Err(format!(
            "{text:?} is not a number of seconds above 0 and at most 86400"
        )),
    }
}

impl RegistryArgs {
    pub fn registry(&self) -> Result<Registry> {
        let credentials = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .read_to_string(&mut password)
                    .context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\n', '\r']).to_owned();
                if password.is_empty() {
                    bail!("--password-stdin: standard input was empty");
                }
                Credentials::Basic {
                    username: username.clone(),
                    password,
                }
            }
            None => Credentials::DockerConfig,
        };
        Ok(Registry::new(RegistryOptions {
            plain_http: self.plain_http.clone(),
            token_realms: self.allow_token_realm.clone(),
            credentials,
            retry: RetryPolicy {
                attempts: self.attempts,
                request_timeout: std::time::Duration::from_secs_f64(self.registry_timeout),
                ..RetryPolicy::default()
            },
        }))
    }
}

/// The store named by `--store`/`CUP_STORE`, else the default cache directory.
pub fn store_dir(flag: Option<&Path>) -> Result<PathBuf> {
    match flag {
        Some(dir) => Ok(dir.to_owned()),
        None => Store::default_dir()
            .context("no store directory: set HOME or XDG_CACHE_HOME, or pass --store DIR"),
    }
}

pub fn open_store(flag: Option<&Path>) -> Result<Store> {
    let dir = store_dir(flag)?;
    Store::open(&dir).with_context(|| format!("opening the store {}", dir.display()))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A progress bar on stderr, drawn only when stderr is a terminal; retries are always
/// reported on stderr, one line each.
fn progress() -> Arc<dyn Progress> {
    Arc::new(Bar {
        slot: Mutex::default(),
        draw: std::io::stderr().is_terminal(),
    })
}

struct Bar {
    slot: Mutex<Option<indicatif::ProgressBar>>,
    draw: bool,
}

impl Progress for Bar {
    fn retry(&self, step: &str, error: &str, attempt: u32, of: u32, delay: std::time::Duration) {
        let line = format!(
            "cup: {step}: attempt {attempt} of {of} failed: {error}; retrying in {:.1}s",
            delay.as_secs_f64()
        );
        match self.slot.lock().ok().as_ref().and_then(|s| s.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
    fn start(&self, label: &str, total: u64) {
        if !self.draw {
            return;
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_owned());
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(bar);
        }
    }
    fn advance(&self, bytes: u64) {
        if let Ok(slot) = self.slot.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(bytes);
        }
    }
    fn finish(&self) {
        if let Ok(mut slot) = self.slot.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// Prints pretty JSON; a closed pipe (`| head`) is an error, not a panic as with `println!`.
fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out).context("writing to standard output")
}

// ---- push ----

pub fn push(
    file: &Path,
    reference: &str,
    force: bool,
    title: &str,
    args: &RegistryArgs,
    output: Output,
) -> Result<i32> {
    let options = ArtifactOptions {
        title: title.to_owned(),
        force,
        ..ArtifactOptions::from_env()?
    };
    let registry = args.registry()?;
    // The library reads the file itself: reading and hashing overlap there.
    let report = runtime()?
        .block_on(registry.push_file(file, reference, &options, progress()))
        .map_err(|e| match e {
            // The file itself could not be read: said as for every other input file.
            cup_oci::Error::Io { path, source } if path == file => {
                anyhow::Error::new(source).context(format!("reading {}", file.display()))
            }
            e => {
                anyhow::Error::new(e).context(format!("pushing {} to {reference}", file.display()))
            }
        })?;
    match output {
        Output::Json => print_json(&report)?,
        Output::Table => {
            eprintln!(
                "pushed {} blob(s), {} already in the registry; wasm {} bytes",
                report.pushed_blobs, report.skipped_blobs, report.size
            );
            println!("{}", report.reference);
        }
    }
    Ok(0)
}

// ---- pull ----

#[derive(Serialize)]
struct PullOutput {
    #[serde(flatten)]
    report: cup_oci::PullReport,
    integrity: cup_sections::Integrity,
    definitions: Vec<String>,
    annotation_problems: Vec<String>,
    file: Option<PathBuf>,
}

pub fn pull(
    reference: &str,
    out: Option<&Path>,
    store: Option<&Path>,
    args: &RegistryArgs,
    output: Output,
) -> Result<i32> {
    let store = open_store(store)?;
    let registry = args.registry()?;
    let report = runtime()?
        .block_on(registry.pull(reference, &store, progress()))
        .with_context(|| format!("pulling {reference}"))?;
    // Only headers and the cup.* sections: instant whatever the module size.
    let package = cup_sections::read_definitions_file(&store.blob_path(&report.wasm_digest)?)
        .with_context(|| format!("reading the cup sections of {}", report.wasm_digest))?;
    let manifest = store.manifest(&report.digest)?;
    let result = PullOutput {
        integrity: package.integrity.clone(),
        definitions: definition_keys(&package),
        annotation_problems: annotation_mismatches(&manifest, &package),
        file: out.map(Path::to_owned),
        report,
    };
    if let Some(out) = out {
        let wasm = store.wasm_for(&result.report.digest)?;
        write_atomic(out, &wasm)?;
    }
    warn_about(&result.integrity, &result.annotation_problems);
    if let Some(problem) = &result.report.signature_problem {
        eprintln!("warning: the controller's signatures were not copied into the store: {problem}");
    }
    match output {
        Output::Json => print_json(&result)?,
        Output::Table => print!("{}", render_pull(&result)),
    }
    Ok(0)
}

fn warn_about(integrity: &cup_sections::Integrity, problems: &[String]) {
    if !integrity.is_ok() {
        eprintln!(
            "warning: the module is not an intact cup package: {}",
            integrity.summary()
        );
    }
    for p in problems {
        eprintln!("warning: the manifest annotations disagree with the module: {p}");
    }
}

fn render_pull(r: &PullOutput) -> String {
    let source = if r.report.from_store {
        " (already in the store)"
    } else {
        ""
    };
    let layout = match &r.report.layout {
        cup_oci::PulledLayout::WasmLayer(mt) => format!("wasm layer {mt}"),
        cup_oci::PulledLayout::CompatImage(mt) => format!("compat image, wasm unpacked from {mt}"),
    };
    let mut fields = vec![
        ("PULLED", format!("{}{source}", r.report.reference)),
        ("DIGEST", r.report.digest.clone()),
        (
            "WASM",
            format!(
                "{} ({} bytes, {layout})",
                r.report.wasm_digest, r.report.wasm_size
            ),
        ),
        (
            "BLOBS",
            format!(
                "{} fetched, {} already stored",
                r.report.fetched_blobs, r.report.cached_blobs
            ),
        ),
        ("DEFINITIONS", list_or_none(&r.definitions)),
        ("INTEGRITY", r.integrity.summary()),
    ];
    if let Some(file) = &r.file {
        fields.push(("WROTE", file.display().to_string()));
    }
    render_fields(&fields)
}

fn render_fields(fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{:<15}{v}\n", format!("{k}:")))
        .collect()
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// Writes a file by temp file + rename in its directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

// ---- add, save, load, list ----

pub fn add(
    file: &Path,
    tag: Option<&str>,
    force: bool,
    store: Option<&Path>,
    output: Output,
) -> Result<i32> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let store = open_store(store)?;
    let options = ArtifactOptions {
        force,
        ..ArtifactOptions::from_env()?
    };
    let digest = store.import_wasm(&wasm, tag, &options).with_context(|| {
        format!(
            "adding {} to the store {}",
            file.display(),
            store.root().display()
        )
    })?;
    match output {
        Output::Json => {
            print_json(&serde_json::json!({"digest": digest, "tag": tag, "store": store.root()}))?
        }
        Output::Table => {
            if let Some(tag) = tag {
                eprintln!("tagged {tag}");
            }
            println!("{digest}");
        }
    }
    Ok(0)
}

pub fn save(
    out: &Path,
    references: &[String],
    store: Option<&Path>,
    output: Output,
) -> Result<i32> {
    let store = open_store(store)?;
    let report = cup_oci::save_archive(&store, references, out)
        .with_context(|| format!("saving {}", out.display()))?;
    match output {
        Output::Json => print_json(&report)?,
        Output::Table => println!(
            "saved {} manifest(s), {} blob(s) to {}",
            report.manifests.len(),
            report.blobs,
            out.display()
        ),
    }
    Ok(0)
}

pub fn load(archive: &Path, store: Option<&Path>, output: Output) -> Result<i32> {
    let store = open_store(store)?;
    let report = cup_oci::load_archive(&store, archive)
        .with_context(|| format!("loading {}", archive.display()))?;
    match output {
        Output::Json => print_json(&report)?,
        Output::Table => println!(
            "loaded {} manifest(s): {} blob(s) added, {} already stored",
            report.manifests.len(),
            report.blobs,
            report.present_blobs
        ),
    }
    Ok(0)
}

#[derive(Serialize)]
struct ListRow {
    reference: Option<String>,
    digest: String,
    wasm_size: Option<u64>,
    definitions: Vec<String>,
    /// Signatures the store keeps for this digest (`cup controller sign`, pulled ones).
    signatures: usize,
}

pub fn list(verify: bool, store: Option<&Path>, output: Output) -> Result<i32> {
    let store = open_store(store)?;
    // Signature manifests are not controllers: they show as each controller's count.
    let rows: Vec<ListRow> = store
        .entries()?
        .into_iter()
        .filter(|e| {
            !e.annotation(annotations::REF_NAME)
                .is_some_and(cup_oci::is_signature_ref_name)
        })
        .map(|e| {
            let manifest = store.manifest(&e.digest).ok();
            ListRow {
                signatures: store.signatures(&e.digest).map_or(0, |s| s.len()),
                reference: e.annotation(annotations::REF_NAME).map(str::to_owned),
                wasm_size: manifest
                    .as_ref()
                    .and_then(|m| m.layers.first())
                    .map(|l| l.size),
                definitions: manifest.map(|m| m.definition_keys()).unwrap_or_default(),
                digest: e.digest,
            }
        })
        .collect();
    let problems = if verify { store.verify()? } else { Vec::new() };
    match output {
        Output::Json => print_json(
            &serde_json::json!({"store": store.root(), "entries": rows, "problems": problems}),
        )?,
        Output::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.reference.clone().unwrap_or_else(|| "<none>".into()),
                        r.digest.clone(),
                        r.wasm_size.map_or("-".into(), |s| s.to_string()),
                        r.signatures.to_string(),
                        list_or_none(&r.definitions),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["REFERENCE", "DIGEST", "SIZE", "SIGNATURES", "DEFINITIONS"],
                    &cells
                )
            );
            for p in &problems {
                eprintln!("problem: {p}");
            }
        }
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

// ---- inspect of a reference ----

#[derive(Serialize)]
struct RefInspect {
    reference: String,
    /// "store" or "registry".
    source: &'static str,
    digest: String,
    manifest: cup_oci::ImageManifest,
    config: Option<serde_json::Value>,
    /// From the module itself (store) or from the annotations (registry).
    definitions: Vec<String>,
    integrity: Option<cup_sections::Integrity>,
    problems: Vec<String>,
    /// The signatures kept for the digest, as their payloads say (not verified here:
    /// `verify-signature --key` judges them).
    signatures: Vec<SignatureSummary>,
}

/// `inspect` of something that is not a file: the store when it has it, else the registry
/// (manifest and config only).
pub fn inspect_reference(
    reference: &str,
    store: Option<&Path>,
    args: &RegistryArgs,
    output: Output,
) -> Result<i32> {
    let report = match local(reference, store)? {
        Some(r) => r,
        None => remote(reference, args)?,
    };
    match output {
        Output::Json => print_json(&report)?,
        Output::Table => print!("{}", render_inspect(&report)),
    }
    Ok(0)
}

/// What a stored signature claims, unverified.
#[derive(Serialize)]
struct SignatureSummary {
    /// `critical.image.docker-manifest-digest` of the payload.
    signed_digest: Option<String>,
    /// `critical.identity.docker-reference` of the payload.
    docker_reference: Option<String>,
    /// The payload's layer digest.
    layer_digest: String,
}

fn summaries(signatures: &[cup_oci::StoredSignature]) -> Vec<SignatureSummary> {
    signatures
        .iter()
        .map(|s| {
            let payload: Option<serde_json::Value> = serde_json::from_slice(&s.payload).ok();
            let field = |pointer: &str| {
                payload
                    .as_ref()
                    .and_then(|p| p.pointer(pointer))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            SignatureSummary {
                signed_digest: field("/critical/image/docker-manifest-digest"),
                docker_reference: field("/critical/identity/docker-reference"),
                layer_digest: s.layer_digest.clone(),
            }
        })
        .collect()
}

fn local(reference: &str, store: Option<&Path>) -> Result<Option<RefInspect>> {
    let dir = store_dir(store)?;
    if !dir.join("index.json").exists() {
        return Ok(None);
    }
    let store = open_store(Some(&dir))?;
    let Some(digest) = store.resolve(reference)? else {
        return Ok(None);
    };
    let manifest = store.manifest(&digest)?;
    let wasm = store
        .wasm_for(&digest)
        .with_context(|| format!("reading {reference} from {}", dir.display()))?;
    let package = cup_sections::read_package(&wasm)?;
    let config = store
        .read_blob(&manifest.config.digest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (signatures, mut problems) = match store.signatures(&digest) {
        Ok(found) => (summaries(&found), Vec::new()),
        Err(e) => (Vec::new(), vec![format!("signatures: {e}")]),
    };
    problems.extend(annotation_mismatches(&manifest, &package));
    Ok(Some(RefInspect {
        reference: reference.to_owned(),
        source: "store",
        signatures,
        digest,
        problems,
        definitions: definition_keys(&package),
        integrity: Some(package.integrity),
        manifest,
        config,
    }))
}

fn remote(reference: &str, args: &RegistryArgs) -> Result<RefInspect> {
    let registry = args.registry()?;
    let runtime = runtime()?;
    let r = runtime
        .block_on(registry.inspect(reference))
        .with_context(|| format!("inspecting {reference} (not a file, not in the store)"))?;
    let mut problems: Vec<String> = r.refused.into_iter().collect();
    let signatures = match runtime.block_on(registry.signatures(reference, &r.digest)) {
        Ok(found) => summaries(&found),
        Err(e) => {
            problems.push(format!("signatures: {e}"));
            Vec::new()
        }
    };
    Ok(RefInspect {
        signatures,
        reference: r.reference,
        source: "registry",
        digest: r.digest,
        definitions: r.manifest.definition_keys(),
        manifest: r.manifest,
        config: r.config,
        integrity: None,
        problems,
    })
}

fn render_inspect(r: &RefInspect) -> String {
    let mut fields = vec![
        ("REFERENCE", r.reference.clone()),
        ("SOURCE", r.source.to_owned()),
        ("DIGEST", r.digest.clone()),
        (
            "MEDIA TYPE",
            r.manifest.media_type.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "CONFIG",
            format!(
                "{} ({} bytes)",
                r.manifest.config.media_type, r.manifest.config.size
            ),
        ),
    ];
    for layer in &r.manifest.layers {
        let title = layer
            .annotation(annotations::TITLE)
            .map(|t| format!(", {t}"))
            .unwrap_or_default();
        fields.push((
            "LAYER",
            format!("{} ({} bytes{title})", layer.media_type, layer.size),
        ));
    }
    for (k, v) in &r.manifest.annotations {
        fields.push(("ANNOTATION", format!("{k}={v}")));
    }
    fields.push(("DEFINITIONS", list_or_none(&r.definitions)));
    fields.push((
        "SIGNATURES",
        if r.signatures.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{} (verify with `cup controller verify-signature {} --key PUB`)",
                r.signatures.len(),
                r.reference
            )
        },
    ));
    if let Some(integrity) = &r.integrity {
        fields.push(("INTEGRITY", integrity.summary()));
    }
    for p in &r.problems {
        fields.push(("PROBLEM", p.clone()));
    }
    render_fields(&fields)
}

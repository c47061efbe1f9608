//! `cup controller …`: embed, inspect and verify controller packages; push, pull and store
//! them as OCI artifacts (the OCI verbs live in `oci.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use cup_sections::{Import, component_exports, imports};
use cup_sections::{Integrity, Package, read_package};
use serde::Serialize;
use sha2::Digest;

use crate::oci::{self, RegistryArgs};
use crate::{Output, table};

/// WASI preview 1 import module name.
const WASI_P1: &str = "wasi_snapshot_preview1";

#[derive(Subcommand)]
pub enum Command {
    /// Create a controller project that builds, embeds its definitions and is served by
    /// cupd as it is: one Kind stored as one JSON file per resource, a ResourceDefinition,
    /// build.sh, a Controller config and a README with the steps. In Rust (the default), a
    /// crate using the cup SDK; in Python or JavaScript, a WebAssembly component.
    #[command(after_help = "Examples:
  cup controller new notes                       # ./notes: Kind Note, group notes.example.com
  cup controller new bookmarks --kind Bookmark --group links.example.com --dir ~/src/bookmarks
  cup controller new notes --lang python         # componentize-py (needs python3 >= 3.10)
  cup controller new notes --lang js             # componentize-js (needs node and npm)
  cup controller new notes --sdk-path ~/src/cup/crates/cup-controller-sdk
  cup controller new notes --sdk-git https://git.example/cup.git --sdk-rev v0.1.0

Then: cd notes && ./build.sh (needs cup and cup-embed on PATH; for Rust also the
wasm32-wasip1 target), and serve it as its README.md says. Without --sdk-path or --sdk-git a
Rust crate depends on the SDK of the checkout this cup was built from; the --sdk options are
for Rust only. A Python or JavaScript project carries a copy of the contract
(wit/controller.wit) and installs its pinned build tools itself, under the project.")]
    New(crate::scaffold::NewArgs),
    /// Embed ResourceDefinitions into a module (same as `cup-embed`).
    #[command(
        after_help = "Example:\n  cup controller embed -o flipt.cup.wasm defs/*.json flipt.wasm"
    )]
    Embed {
        /// Write here instead of rewriting MODULE in place.
        #[arg(short = 'O', long = "out", value_name = "OUT")]
        out: Option<PathBuf>,
        /// ResourceDefinition JSON files.
        #[arg(value_name = "DEF.json", num_args = 1.., required = true)]
        definitions: Vec<PathBuf>,
        /// The module to embed them into.
        #[arg(value_name = "MODULE.wasm", required = true)]
        module: PathBuf,
    },
    /// Show what a controller carries. For a file: digest, kind, ABI, imports, definitions,
    /// integrity. For a reference: the local store's copy when it has one (the module is
    /// read and checked), else the registry's manifest and config only (no wasm download).
    #[command(
        after_help = "Examples:\n  cup controller inspect flipt.wasm\n  cup controller inspect -o json flipt.wasm | jq .definitions\n  cup controller inspect 127.0.0.1:5000/cup/flipt:v1\n  cup controller inspect 127.0.0.1:5000/cup/flipt@sha256:…"
    )]
    Inspect {
        /// A .wasm file, or a reference (REGISTRY/REPO:TAG, …@sha256:…, or a local tag).
        #[arg(value_name = "FILE|REF")]
        file: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Push a controller to a registry as a single-layer OCI artifact; prints
    /// REGISTRY/REPO@sha256:… (the immutable reference) as the last line.
    #[command(
        after_help = "Examples:\n  cup controller push flipt.wasm 127.0.0.1:5000/cup/flipt:v1\n  echo \"$TOKEN\" | cup controller push --username me --password-stdin flipt.wasm ghcr.io/me/flipt:v1\n  cup -o json controller push flipt.wasm registry.lan:5000/cup/flipt:v1 --plain-http registry.lan\n\nThe same module always gives the same digest (SOURCE_DATE_EPOCH, when set, adds a\ncreation time). Credentials come from Docker's config.json unless --username is given."
    )]
    Push {
        /// The controller .wasm (an intact cup package unless --force).
        file: PathBuf,
        /// Where to push: REGISTRY/REPO[:TAG] (TAG defaults to latest).
        reference: String,
        /// Push even if the module has no intact cup.* sections.
        #[arg(long)]
        force: bool,
        /// File name recorded in the layer's title annotation.
        #[arg(long, default_value = cup_oci::DEFAULT_TITLE)]
        title: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a controller into the local store, by tag or by digest; digests and sizes are
    /// checked before anything is stored. Accepts artifacts pushed by other tools (see
    /// docs/OCI.md).
    #[command(
        after_help = "Examples:\n  cup controller pull 127.0.0.1:5000/cup/flipt:v1\n  cup controller pull 127.0.0.1:5000/cup/flipt@sha256:… -O flipt.wasm\n  cup --store ./store controller pull registry.lan:5000/cup/flipt:v1 --plain-http registry.lan"
    )]
    Pull {
        /// REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:….
        reference: String,
        /// Also write the wasm to this file (atomically).
        #[arg(short = 'O', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Put a local .wasm into the store (packaged as `push` would), optionally tagged:
    /// for machines without a registry.
    #[command(
        after_help = "Examples:\n  cup controller add flipt.wasm --tag flipt:dev\n  cup --store ./store controller add flipt.wasm"
    )]
    Add {
        /// The controller .wasm.
        file: PathBuf,
        /// A name to find it by (`cup controller inspect flipt:dev`).
        #[arg(long)]
        tag: Option<String>,
        /// Add it even if the module has no intact cup.* sections.
        #[arg(long)]
        force: bool,
    },
    /// Write store entries (all, or those named) and their blobs to an OCI layout tarball.
    #[command(
        after_help = "Examples:\n  cup controller save -O controllers.tar\n  cup controller save -O flipt.tar 127.0.0.1:5000/cup/flipt:v1"
    )]
    Save {
        /// The tarball to write.
        #[arg(short = 'O', long = "out", value_name = "ARCHIVE.tar", required = true)]
        out: PathBuf,
        /// References to include (tags or digests); none means the whole store.
        references: Vec<String>,
    },
    /// Load an OCI layout tarball into the store; every blob is checked against its digest
    /// before anything is stored.
    #[command(
        after_help = "Example:\n  cup --store /var/cache/cup controller load controllers.tar"
    )]
    Load {
        /// The tarball (from `cup controller save`, or any OCI layout of controllers).
        archive: PathBuf,
    },
    /// List what the store holds.
    #[command(
        after_help = "Examples:\n  cup controller list\n  cup controller list --verify   # re-hash every blob; exit 1 on a problem"
    )]
    List {
        /// Check every blob against its digest and every entry's blobs.
        #[arg(long)]
        verify: bool,
    },
    /// Print the definitions embedded in a file. Reads only section headers and the
    /// `cup.*` sections, so it is instant whatever the module size; checks the definitions
    /// against the manifest but not the code (use `verify` for that).
    #[command(after_help = "Example:\n  cup -o json controller definitions flipt.wasm > defs.json")]
    Definitions {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Make a signing key pair in cosign's format: PREFIX.key (encrypted with the password
    /// in CUP_SIGNING_PASSWORD or COSIGN_PASSWORD, mode 0600) and PREFIX.pub.
    #[command(
        after_help = "Examples:\n  CUP_SIGNING_PASSWORD=… cup controller keygen              # cosign.key, cosign.pub\n  CUP_SIGNING_PASSWORD=… cup controller keygen --prefix ci\n\ncosign reads and verifies with these keys too (cosign verify --key cosign.pub …)."
    )]
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, default_value = "cosign", value_name = "PREFIX")]
        prefix: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Sign the manifest digest a reference resolves to (cosign's format: the signature is
    /// stored under the sha256-<hex>.sig tag of the same repository), in the registry and,
    /// when it holds the image, the local store.
    #[command(
        after_help = "Examples:\n  cup controller sign 127.0.0.1:5000/cup/flipt:v1 --key cosign.key\n  cup controller sign localhost/cup/flipt@sha256:… --key cosign.key --local   # the store only\n\nThe key's password comes from CUP_SIGNING_PASSWORD or COSIGN_PASSWORD. Keys: cosign's\nencrypted files, PKCS#8 PEM (encrypted or not), SEC1 PEM; ECDSA P-256."
    )]
    Sign {
        /// REGISTRY/REPO:TAG or …@sha256:… (with --local, a reference or tag in the store).
        reference: String,
        /// The private key (PEM).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// KEY=VALUE put in the signed payload's `optional` annotations; repeatable.
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// Sign what the local store holds, without a registry.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check the signatures of the manifest digest a reference resolves to against a public
    /// key: each signature's verdict, exit 0 when one verifies for exactly that digest and
    /// repository. For a .wasm FILE: the digest it has once added or pushed, and the
    /// signatures the local store keeps for it (any repository).
    #[command(
        name = "verify-signature",
        after_help = "Examples:\n  cup controller verify-signature 127.0.0.1:5000/cup/flipt:v1 --key cosign.pub\n  cup -o json controller verify-signature localhost/cup/flipt@sha256:… --key cosign.pub --local\n  cup controller verify-signature flipt.wasm --key cosign.pub      # signed in the store?"
    )]
    VerifySignature {
        /// REGISTRY/REPO:TAG or …@sha256:… (with --local, in the store), or a .wasm file.
        reference: String,
        /// The public key (PEM).
        #[arg(long, value_name = "PUB", required_unless_present = "trusted_root")]
        key: Option<PathBuf>,
        #[command(flatten)]
        keyless: KeylessArgs,
        /// Read the signatures the local store keeps, without a registry.
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Exit 0 only when the file is an intact cup package (manifest, definitions and code
    /// all match); otherwise print what is wrong and exit 1.
    #[command(after_help = "Example:\n  cup controller verify flipt.wasm && echo intact")]
    Verify {
        /// The .wasm file.
        file: PathBuf,
    },
}

/// Keyless verification (Sigstore): offline, against a trusted root and an identity.
#[derive(clap::Args)]
pub struct KeylessArgs {
    /// Verify keyless signatures against this Sigstore trusted_root.json (instead of --key).
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    trusted_root: Option<PathBuf>,
    /// The OIDC issuer the signer's certificate must name.
    #[arg(long, value_name = "URL", requires = "trusted_root")]
    certificate_oidc_issuer: Option<String>,
    /// The subject (SAN e-mail or URI) the signer's certificate must name.
    #[arg(long, value_name = "SUBJECT", requires = "certificate_oidc_issuer")]
    certificate_identity: Option<String>,
    /// A regular expression the whole subject must match.
    #[arg(
        long,
        value_name = "REGEXP",
        requires = "certificate_oidc_issuer",
        conflicts_with = "certificate_identity"
    )]
    certificate_identity_regexp: Option<String>,
}

impl KeylessArgs {
    fn verifier(self) -> Result<crate::signing::Verifier> {
        let (Some(root), Some(issuer)) = (self.trusted_root, self.certificate_oidc_issuer) else {
            anyhow::bail!(
                "give --key PUB, or --trusted-root FILE with --certificate-oidc-issuer and \
                 --certificate-identity (or --certificate-identity-regexp)"
            );
        };
        if self.certificate_identity.is_none() && self.certificate_identity_regexp.is_none() {
            anyhow::bail!(
                "--certificate-oidc-issuer needs --certificate-identity or \
                 --certificate-identity-regexp: an issuer alone would accept anyone it signs for"
            );
        }
        crate::signing::Verifier::keyless(
            &root,
            cup_sign::Identity {
                issuer,
                subject: self.certificate_identity,
                subject_regexp: self.certificate_identity_regexp,
            },
        )
    }
}

/// Runs a controller subcommand and returns the process exit code.
pub fn run(cmd: Command, output: Output, store: Option<&Path>) -> Result<i32> {
    match cmd {
        Command::New(args) => crate::scaffold::run(args, output),
        Command::Embed {
            out,
            definitions,
            module,
        } => embed(out, &definitions, &module),
        Command::Inspect { file, registry } if !file.exists() => {
            let reference = file.to_str().context("the reference is not valid UTF-8")?;
            oci::inspect_reference(reference, store, &registry, output)
        }
        Command::Push {
            file,
            reference,
            force,
            title,
            registry,
        } => oci::push(&file, &reference, force, &title, &registry, output),
        Command::Pull {
            reference,
            out,
            registry,
        } => oci::pull(&reference, out.as_deref(), store, &registry, output),
        Command::Add { file, tag, force } => oci::add(&file, tag.as_deref(), force, store, output),
        Command::Save { out, references } => oci::save(&out, &references, store, output),
        Command::Load { archive } => oci::load(&archive, store, output),
        Command::List { verify } => oci::list(verify, store, output),
        Command::Inspect { file, .. } => {
            let report = Report::of(&file)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Table => print!("{}", report.render()),
            }
            Ok(0)
        }
        Command::Definitions { file } => definitions(&file, output),
        Command::Keygen { prefix, force } => crate::signing::keygen(&prefix, force),
        Command::Sign {
            reference,
            key,
            annotations,
            local,
            registry,
        } => crate::signing::sign(
            &reference,
            &key,
            &annotations,
            local,
            store,
            &registry,
            output,
        ),
        Command::VerifySignature {
            reference,
            key,
            keyless,
            local,
            registry,
        } => {
            let with = match key {
                Some(key) => crate::signing::Verifier::key(&key)?,
                None => keyless.verifier()?,
            };
            crate::signing::verify(&reference, &with, local, store, &registry, output)
        }
        Command::Verify { file } => {
            let report = Report::of(&file)?;
            let ok = report.integrity.is_ok();
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "file": report.file, "digest": report.digest, "integrity": report.integrity,
                    }))?
                ),
                Output::Table => {
                    let line = format!("{}: {}", report.file.display(), report.integrity.summary());
                    if ok {
                        println!("{line}")
                    } else {
                        eprintln!("{line}")
                    }
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
    }
}

fn embed(out: Option<PathBuf>, definition_paths: &[PathBuf], module: &Path) -> Result<i32> {
    let target = out.as_deref().unwrap_or(module);
    let report = cup_sections::embed_files(definition_paths, module, target)
        .with_context(|| format!("embedding into {}", module.display()))?;
    println!(
        "embedded {} definition(s) into {} ({} bytes)",
        report.manifest.definitions.len(),
        target.display(),
        report.size
    );
    Ok(0)
}

fn definitions(file: &Path, output: Output) -> Result<i32> {
    let package = cup_sections::read_definitions_file(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let definitions = package
        .verified_definition_refs()
        .with_context(|| format!("{}", file.display()))?;
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&definitions)?),
        Output::Table => {
            let rows: Vec<Vec<String>> = definitions
                .iter()
                .map(|d| {
                    let versions: Vec<&str> = d.spec.versions.keys().map(String::as_str).collect();
                    vec![
                        d.metadata.name.clone(),
                        d.spec.group.clone(),
                        d.names.kind.clone(),
                        d.names.plural.clone(),
                        versions.join(","),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &["DEFINITION", "GROUP", "KIND", "PLURAL", "VERSIONS"],
                    &rows
                )
            );
        }
    }
    Ok(0)
}

/// Everything `inspect` prints.
#[derive(Serialize)]
struct Report {
    file: PathBuf,
    /// sha256 of the whole file: the OCI layer digest it would get.
    digest: String,
    size: u64,
    encoding: cup_sections::Encoding,
    abi: Option<String>,
    module_sha256: Option<String>,
    definitions_digest: Option<String>,
    wasi_imports: Vec<String>,
    other_imports: Vec<Import>,
    /// A component's exports (the controller interface and its version).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    exports: Vec<String>,
    definitions: Vec<DefinitionRow>,
    integrity: Integrity,
}

#[derive(Serialize)]
struct DefinitionRow {
    name: String,
    group: String,
    kind: String,
    plural: String,
    versions: Vec<String>,
}

impl Report {
    fn of(file: &Path) -> Result<Report> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let package: Package =
            read_package(&bytes).with_context(|| format!("reading {}", file.display()))?;
        let (wasi, other): (Vec<Import>, Vec<Import>) = imports(&bytes)
            .with_context(|| format!("reading the imports of {}", file.display()))?
            .into_iter()
            .partition(|i| i.module == WASI_P1);
        Ok(Report {
            file: file.to_owned(),
            digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
            size: package.size,
            encoding: package.encoding,
            abi: package.manifest.as_ref().map(|m| m.abi.clone()),
            module_sha256: package.module_sha256.clone(),
            definitions_digest: package.manifest.as_ref().map(|m| m.definitions_digest()),
            wasi_imports: wasi.into_iter().map(|i| i.name).collect(),
            other_imports: other,
            exports: component_exports(&bytes)
                .with_context(|| format!("reading the exports of {}", file.display()))?,
            definitions: package
                .definitions
                .iter()
                .map(|d| DefinitionRow {
                    name: d.definition.metadata.name.clone(),
                    group: d.definition.spec.group.clone(),
                    kind: d.definition.names.kind.clone(),
                    plural: d.definition.names.plural.clone(),
                    versions: d.definition.spec.versions.keys().cloned().collect(),
                })
                .collect(),
            integrity: package.integrity,
        })
    }

    fn render(&self) -> String {
        let kind = match self.encoding {
            cup_sections::Encoding::Module => "core module",
            cup_sections::Encoding::Component => "component",
        };
        let other: Vec<String> = self
            .other_imports
            .iter()
            .map(|i| match i.module.as_str() {
                "" => i.name.clone(),
                module => format!("{module}::{}", i.name),
            })
            .collect();
        let none_or = |items: &[String]| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        let mut fields = vec![
            ("FILE", self.file.display().to_string()),
            ("DIGEST", self.digest.clone()),
            ("SIZE", format!("{} bytes", self.size)),
            ("KIND", kind.to_owned()),
            ("ABI", self.abi.clone().unwrap_or_else(|| "-".into())),
        ];
        match self.encoding {
            cup_sections::Encoding::Module => {
                fields.push((
                    "WASI IMPORTS",
                    format!("{} functions of {WASI_P1}", self.wasi_imports.len()),
                ));
                fields.push(("OTHER IMPORTS", none_or(&other)));
            }
            cup_sections::Encoding::Component => {
                fields.push(("EXPORTS", none_or(&self.exports)));
                fields.push(("IMPORTS", none_or(&other)));
            }
        }
        fields.push(("INTEGRITY", self.integrity.summary()));
        let mut out: String = fields
            .iter()
            .map(|(k, v)| format!("{:<15}{v}\n", format!("{k}:")))
            .collect();
        if !self.definitions.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<String>> = self
                .definitions
                .iter()
                .map(|d| {
                    vec![
                        d.name.clone(),
                        d.group.clone(),
                        d.kind.clone(),
                        d.plural.clone(),
                        d.versions.join(","),
                    ]
                })
                .collect();
            out.push_str(&table::render(
                &["DEFINITION", "GROUP", "KIND", "PLURAL", "VERSIONS"],
                &rows,
            ));
        }
        out
    }
}

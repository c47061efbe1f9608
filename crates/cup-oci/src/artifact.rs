//! Building the OCI artifact of a controller: manifest and config bytes, deterministic.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json, schemaVersion 2
//!   config  application/vnd.wasm.config.v0+json
//!           {"architecture":"wasm","os":"wasip1","layerDigests":["sha256:…"]}
//!           a component: "os":"wasip2" and "component":{"exports":[…],"imports":[…]}
//!   layer   application/wasm = the module byte for byte, title annotation
//!   annotations io.flipt.cup.abi, io.flipt.cup.definitions, io.flipt.cup.definitions.digest
//! ```
//! `created` (config) and `org.opencontainers.image.created` (manifest) appear only when a
//! creation time is given, normally from `SOURCE_DATE_EPOCH`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cup_sections::{Integrity, Package, read_package_and_digest, read_package_from};
use serde::Serialize;

use crate::manifest::{Descriptor, ImageManifest};
use crate::{DEFAULT_TITLE, Error, Result, annotations, digest, media};

/// How to build an artifact.
#[derive(Debug, Clone)]
pub struct ArtifactOptions {
    /// File name in the layer's title annotation.
    pub title: String,
    /// Creation time in seconds since 1970; `None` keeps the artifact free of wall-clock
    /// fields, so the same module always gives the same digest.
    pub created: Option<u64>,
    /// Package a module whose `cup.*` sections are missing or not intact.
    pub force: bool,
}

impl Default for ArtifactOptions {
    fn default() -> Self {
        ArtifactOptions {
            title: DEFAULT_TITLE.to_owned(),
            created: None,
            force: false,
        }
    }
}

impl ArtifactOptions {
    /// Defaults, with `created` from `SOURCE_DATE_EPOCH` when it is set.
    pub fn from_env() -> Result<ArtifactOptions> {
        Ok(ArtifactOptions {
            created: source_date_epoch()?,
            ..ArtifactOptions::default()
        })
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), when set and not empty.
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::SourceDateEpoch(v)),
        Err(_) => Ok(None),
    }
}

/// The serialized artifact of one module (the module itself is not copied).
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The image manifest's bytes, exactly as pushed and stored.
    pub manifest: Vec<u8>,
    /// `sha256:` digest of `manifest`: the artifact's immutable name.
    pub manifest_digest: String,
    /// The config blob's bytes (`application/vnd.wasm.config.v0+json`).
    pub config: Vec<u8>,
    /// `sha256:` digest of `config`.
    pub config_digest: String,
    /// Descriptor of the wasm layer.
    pub layer: Descriptor,
    /// Verdict on the module's `cup.*` sections.
    pub integrity: Integrity,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<String>,
    architecture: &'static str,
    os: &'static str,
    layer_digests: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<ComponentConfig>,
}

/// What the wasm OCI artifact layout records of a component: its top-level exports and
/// imports, so a registry browser or a policy can tell what it offers and needs unopened.
#[derive(Serialize)]
struct ComponentConfig {
    exports: Vec<String>,
    imports: Vec<String>,
}

impl ComponentConfig {
    /// `None` for a core module.
    fn of(wasm: &[u8]) -> Result<Option<ComponentConfig>> {
        if !wasmparser::Parser::is_component(wasm) {
            return Ok(None);
        }
        Ok(Some(ComponentConfig {
            exports: cup_sections::component_exports(wasm)?,
            imports: cup_sections::imports(wasm)?
                .into_iter()
                .map(|i| i.name)
                .collect(),
        }))
    }
}

impl Artifact {
    /// Builds the artifact for `wasm`. Refuses a module whose `cup.*` sections are not
    /// intact unless `options.force` is set.
    pub fn build(wasm: &[u8], options: &ArtifactOptions) -> Result<Artifact> {
        // Checking the package hashes the module without its cup sections, the layer
        // digest hashes all of it: one pass when the cup sections come last (as embedded),
        // the other core stays free (a push builds its HTTP client there).
        let (package, layer_digest) = read_package_and_digest(wasm)?;
        let component = ComponentConfig::of(wasm)?;
        Artifact::from_package(
            &package,
            layer_digest,
            wasm.len() as u64,
            component,
            options,
        )
    }

    /// Reads the module file at `path` and builds its artifact; reading and hashing
    /// overlap ([`cup_sections::read_package_from`]). Returns the module's bytes too.
    pub fn read_file(path: &Path, options: &ArtifactOptions) -> Result<(Vec<u8>, Artifact)> {
        let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
        let meta = file.metadata().map_err(Error::io(path))?;
        if !meta.is_file() {
            // A pipe or a device has no size to read up to.
            let wasm = std::fs::read(path).map_err(Error::io(path))?;
            let artifact = Artifact::build(&wasm, options)?;
            return Ok((wasm, artifact));
        }
        let read = read_package_from(&mut file, meta.len()).map_err(|e| match e {
            cup_sections::Error::Io(source) => Error::Io {
                path: path.to_owned(),
                source,
            },
            e => Error::Sections(e),
        })?;
        let size = read.bytes.len() as u64;
        let component = ComponentConfig::of(&read.bytes)?;
        let artifact =
            Artifact::from_package(&read.package, read.digest, size, component, options)?;
        Ok((read.bytes, artifact))
    }

    /// The artifact of a checked package whose bytes have `layer_digest` and `size`.
    fn from_package(
        package: &Package,
        layer_digest: String,
        size: u64,
        component: Option<ComponentConfig>,
        options: &ArtifactOptions,
    ) -> Result<Artifact> {
        if !package.integrity.is_ok() && !options.force {
            return Err(Error::NotAPackage(package.integrity.summary()));
        }
        let created = options.created.map(rfc3339);
        let mut layer = Descriptor::new(media::WASM_LAYER, layer_digest, size);
        layer
            .annotations
            .insert(annotations::TITLE.to_owned(), options.title.clone());
        let config = serde_json::to_vec(&WasmConfig {
            created: created.clone(),
            architecture: "wasm",
            os: if component.is_some() {
                "wasip2"
            } else {
                "wasip1"
            },
            layer_digests: [&layer.digest],
            component,
        })
        .map_err(json_never_fails)?;
        let config_digest = digest::of(&config);
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: Descriptor::new(
                media::WASM_CONFIG,
                config_digest.clone(),
                config.len() as u64,
            ),
            layers: vec![layer.clone()],
            annotations: manifest_annotations(package, created),
        };
        let manifest = serde_json::to_vec(&manifest).map_err(json_never_fails)?;
        Ok(Artifact {
            manifest_digest: digest::of(&manifest),
            manifest,
            config,
            config_digest,
            layer,
            integrity: package.integrity.clone(),
        })
    }
}

fn json_never_fails(e: serde_json::Error) -> Error {
    // Only string maps and plain structs are serialized here; serde_json cannot fail on them.
    Error::Store {
        path: Default::default(),
        detail: format!("serializing JSON: {e}"),
    }
}

/// Annotations mirroring the definitions; only for an intact package (a forced push of a
/// broken one carries none, rather than claims nobody can check).
fn manifest_annotations(package: &Package, created: Option<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(created) = created {
        out.insert(annotations::CREATED.to_owned(), created);
    }
    let Some(manifest) = package
        .manifest
        .as_ref()
        .filter(|_| package.integrity.is_ok())
    else {
        return out;
    };
    out.insert(annotations::ABI.to_owned(), manifest.abi.clone());
    out.insert(
        annotations::DEFINITIONS.to_owned(),
        definition_keys(package).join(","),
    );
    out.insert(
        annotations::DEFINITIONS_DIGEST.to_owned(),
        manifest.definitions_digest(),
    );
    out
}

/// Sorted `group/version/plural` keys of a package's definitions.
pub fn definition_keys(package: &Package) -> Vec<String> {
    let keys: BTreeSet<String> = package
        .definitions
        .iter()
        .flat_map(|d| d.definition.keys())
        .collect();
    keys.into_iter().collect()
}

/// Differences between a manifest's annotations and the package it carries. Empty when they
/// agree or when the manifest makes no claims (artifacts pushed by other tools).
pub fn annotation_mismatches(manifest: &ImageManifest, package: &Package) -> Vec<String> {
    let mut problems = Vec::new();
    let actual_digest = package.manifest.as_ref().map(|m| m.definitions_digest());
    if let Some(claimed) = manifest.annotation(annotations::DEFINITIONS_DIGEST)
        && actual_digest.as_deref() != Some(claimed)
    {
        problems.push(format!(
            "annotation {} is {claimed}, the module's definitions digest is {}",
            annotations::DEFINITIONS_DIGEST,
            actual_digest.as_deref().unwrap_or("absent")
        ));
    }
    if let Some(claimed) = manifest.annotation(annotations::DEFINITIONS) {
        let actual = definition_keys(package).join(",");
        if claimed != actual {
            problems.push(format!(
                "annotation {} lists {claimed:?}, the module serves {actual:?}",
                annotations::DEFINITIONS
            ));
        }
    }
    problems
}

/// Seconds since 1970 as an RFC 3339 UTC timestamp (`2024-01-02T03:04:05Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm), to avoid
/// a date crate for one conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn plain_module_needs_force() {
        let wasm = b"\0asm\x01\0\0\0";
        assert!(matches!(
            Artifact::build(wasm, &ArtifactOptions::default()),
            Err(Error::NotAPackage(_))
        ));
        let forced = ArtifactOptions {
            force: true,
            ..Default::default()
        };
        let a = Artifact::build(wasm, &forced).expect("forced");
        let b = Artifact::build(wasm, &forced).expect("forced");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let m: ImageManifest = serde_json::from_slice(&a.manifest).expect("json");
        assert!(m.annotations.is_empty());
        assert_eq!(m.layers[0].size, 8);
        assert_eq!(
            std::str::from_utf8(&a.config).expect("utf8"),
            format!(
                r#"{{"architecture":"wasm","os":"wasip1","layerDigests":["{}"]}}"#,
                m.layers[0].digest
            )
        );
    }

    #[test]
    fn created_only_when_asked() {
        let wasm = b"\0asm\x01\0\0\0";
        let opts = ArtifactOptions {
            force: true,
            created: Some(0),
            ..Default::default()
        };
        let a = Artifact::build(wasm, &opts).expect("forced");
        let m: ImageManifest = serde_json::from_slice(&a.manifest).expect("json");
        assert_eq!(
            m.annotation(annotations::CREATED),
            Some("1970-01-01T00:00:00Z")
        );
        assert!(
            String::from_utf8_lossy(&a.config).starts_with(r#"{"created":"1970-01-01T00:00:00Z""#)
        );
    }
}

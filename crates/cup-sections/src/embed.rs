//! Embedding definitions into a module.
//!
//! The output is: the input with every `cup.*` section removed (all other bytes copied
//! verbatim, never re-encoded), then one `cup.controller` section, then one
//! `cup.definition` section per definition in `metadata.name` order. The same module and
//! definitions always give the same bytes, and embedding an output again gives it back.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use cup_model::ResourceDefinition;
use sha2::{Digest, Sha256};
use wasm_encoder::{CustomSection, Section};

use crate::limits::{MAX_CUP_BYTES, MAX_DEFINITION_BYTES, MAX_DEFINITIONS};
use crate::manifest::{
    ABI_WASI_P1, ControllerManifest, DefinitionDigest, FORMAT_VERSION, ModuleDigest,
};
use crate::package::{module_digest, module_size};
use crate::{CONTROLLER_SECTION, DEFINITION_SECTION, Error, Layout, Result, sha256_digest};

/// What an embedding produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOutput {
    pub manifest: ControllerManifest,
    /// Size of the output binary.
    pub size: u64,
    /// How many old `cup.*` sections were dropped.
    pub replaced_sections: usize,
}

/// A definition checked and rendered to its section payload.
#[derive(Debug, Clone)]
struct Prepared {
    name: String,
    payload: Vec<u8>,
}

/// Validates, de-duplicates (by name and by `group/version/plural`), caps and sorts the
/// definitions, rendering each to canonical JSON. Nothing is written if this fails.
fn prepare(definitions: &[ResourceDefinition]) -> Result<Vec<Prepared>> {
    if definitions.is_empty() {
        return Err(Error::NoDefinitions);
    }
    if definitions.len() > MAX_DEFINITIONS {
        return Err(Error::TooManyDefinitions {
            count: definitions.len(),
            limit: MAX_DEFINITIONS,
        });
    }
    let mut names = BTreeMap::new();
    let mut routes: BTreeMap<String, &str> = BTreeMap::new();
    let mut prepared = Vec::with_capacity(definitions.len());
    let mut total = 0;
    for def in definitions {
        let name = def.metadata.name.as_str();
        cup_model::validate::definition(def).map_err(|source| Error::InvalidDefinition {
            name: name.to_owned(),
            source,
        })?;
        if names.insert(name, ()).is_some() {
            return Err(Error::DuplicateName(name.to_owned()));
        }
        for key in def.keys() {
            if let Some(first) = routes.insert(key.clone(), name) {
                return Err(Error::DuplicateRoute {
                    key,
                    first: first.to_owned(),
                    second: name.to_owned(),
                });
            }
        }
        let payload = cup_model::canonical::to_vec(def).map_err(|e| Error::InvalidDefinition {
            name: name.to_owned(),
            source: cup_model::validate::DefinitionError::Schema {
                version: String::new(),
                reason: e.to_string(),
            },
        })?;
        if payload.len() > MAX_DEFINITION_BYTES {
            return Err(Error::TooLarge {
                what: format!("definition {name:?}"),
                size: payload.len(),
                limit: MAX_DEFINITION_BYTES,
            });
        }
        total += payload.len();
        prepared.push(Prepared {
            name: name.to_owned(),
            payload,
        });
    }
    if total > MAX_CUP_BYTES {
        return Err(Error::TooLarge {
            what: "all definitions together".into(),
            size: total,
            limit: MAX_CUP_BYTES,
        });
    }
    prepared.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(prepared)
}

/// Encodes the `cup.*` sections to append, given the digest of the module they describe.
fn cup_sections(prepared: &[Prepared], module: ModuleDigest) -> (ControllerManifest, Vec<u8>) {
    let manifest = ControllerManifest {
        format: FORMAT_VERSION,
        abi: ABI_WASI_P1.to_owned(),
        module,
        definitions: prepared
            .iter()
            .map(|p| DefinitionDigest {
                name: p.name.clone(),
                sha256: sha256_digest(&p.payload),
            })
            .collect(),
    };
    let mut out =
        Vec::with_capacity(prepared.iter().map(|p| p.payload.len() + 32).sum::<usize>() + 512);
    CustomSection {
        name: CONTROLLER_SECTION.into(),
        data: manifest.to_canonical().into(),
    }
    .append_to(&mut out);
    for p in prepared {
        CustomSection {
            name: DEFINITION_SECTION.into(),
            data: (&p.payload[..]).into(),
        }
        .append_to(&mut out);
    }
    (manifest, out)
}

/// Embeds `definitions` into a module held in memory and returns the new bytes.
pub fn embed(module: &[u8], definitions: &[ResourceDefinition]) -> Result<(Vec<u8>, EmbedOutput)> {
    let prepared = prepare(definitions)?;
    let layout = Layout::from_bytes(module)?;
    let digest = ModuleDigest {
        sha256: module_digest(module, &layout),
        size: module_size(&layout),
    };
    let (manifest, sections) = cup_sections(&prepared, digest);
    let mut out = Vec::with_capacity(module.len() + sections.len());
    for range in layout.kept_ranges() {
        out.extend_from_slice(&module[range.start as usize..range.end as usize]);
    }
    out.extend_from_slice(&sections);
    let output = EmbedOutput {
        manifest,
        size: out.len() as u64,
        replaced_sections: layout.cup_sections().count(),
    };
    Ok((out, output))
}

/// Embeds into a file: reads `input`, writes `output` atomically (a temporary file in the
/// output's directory, renamed into place), so on any error `output` is untouched and no
/// temporary file is left. `input` and `output` may be the same path. The output keeps the
/// input's permissions.
///
/// The module is never loaded whole: its headers are walked with seeks, its bytes are
/// copied file-to-file by the kernel (`copy_file_range` where available) while a second
/// thread hashes them through a small reused buffer. That keeps embedding within a small
/// factor of `cp` on big modules.
pub fn embed_file(
    input: &Path,
    output: &Path,
    definitions: &[ResourceDefinition],
) -> Result<EmbedOutput> {
    let prepared = prepare(definitions)?;
    let mut source = File::open(input)?;
    let layout = Layout::from_reader(&mut source)?;
    let kept = layout.kept_ranges();
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".cup-embed-")
        .tempfile_in(dir)?;

    let (digest, copied) = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| hash_ranges(input, &kept));
        let copied = copy_ranges(&mut source, temp.as_file_mut(), &kept);
        (hasher.join(), copied)
    });
    copied?;
    let digest =
        digest.map_err(|_| Error::Io(std::io::Error::other("hashing thread panicked")))??;
    let (manifest, sections) = cup_sections(
        &prepared,
        ModuleDigest {
            sha256: digest,
            size: module_size(&layout),
        },
    );
    temp.as_file_mut().write_all(&sections)?;
    let size = temp.as_file().metadata()?.len();
    if size != layout.len - cup_bytes(&layout) + sections.len() as u64 {
        // The input changed under us (another process rewrote it mid-copy).
        return Err(Error::Io(std::io::Error::other(format!(
            "{} changed while it was read",
            input.display()
        ))));
    }
    temp.as_file()
        .set_permissions(source.metadata()?.permissions())?;
    temp.persist(output).map_err(|e| Error::Io(e.error))?;
    Ok(EmbedOutput {
        manifest,
        size,
        replaced_sections: layout.cup_sections().count(),
    })
}

fn cup_bytes(layout: &Layout) -> u64 {
    layout.cup_sections().map(|s| s.end() - s.offset).sum()
}

/// Copies byte ranges of `source` to the end of `target`; `std::io::copy` between files
/// lets the kernel move the bytes without a trip through this process.
fn copy_ranges(source: &mut File, target: &mut File, ranges: &[Range<u64>]) -> Result<()> {
    for range in ranges {
        source.seek(SeekFrom::Start(range.start))?;
        let want = range.end - range.start;
        let copied = std::io::copy(&mut Read::by_ref(source).take(want), target)?;
        if copied != want {
            return Err(Error::Truncated(format!(
                "input ended while copying bytes {range:?}"
            )));
        }
    }
    Ok(())
}

/// `sha256:<hex>` of byte ranges of a file, read through one reused buffer.
fn hash_ranges(path: &Path, ranges: &[Range<u64>]) -> Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for range in ranges {
        file.seek(SeekFrom::Start(range.start))?;
        let mut left = range.end - range.start;
        while left > 0 {
            let chunk = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..chunk])?;
            hasher.update(&buf[..chunk]);
            left -= chunk as u64;
        }
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

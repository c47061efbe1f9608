//! Reading the `cup.*` sections back, and judging whether they can be trusted.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::path::Path;

use cup_model::ResourceDefinition;
use sha2::{Digest, Sha256};

use crate::layout::{ByteSource, SectionHeader, SeekSource, SliceSource};
use crate::limits::{MAX_CUP_BYTES, MAX_DEFINITION_BYTES, MAX_DEFINITIONS, MAX_MANIFEST_BYTES};
use crate::manifest::{ControllerManifest, FORMAT_VERSION};
use crate::{
    CONTROLLER_SECTION, DEFINITION_SECTION, Encoding, Error, Layout, Result, finish_digest,
    sha256_digest,
};

/// The integrity verdict of a package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "problems", rename_all = "kebab-case")]
pub enum Integrity {
    /// Manifest present, every definition matches it, the module matches its digest.
    Ok,
    /// A plain module: no `cup.*` sections at all.
    NoCupSections,
    /// Sections listed in the manifest are missing (or the manifest itself is).
    Stripped(Vec<String>),
    /// Something differs from what the manifest records, or the sections are malformed.
    Tampered(Vec<String>),
}

impl Integrity {
    /// Whether the package holds up: [`Integrity::Ok`], so its definitions can be trusted.
    pub fn is_ok(&self) -> bool {
        matches!(self, Integrity::Ok)
    }

    /// One-line summary for messages.
    pub fn summary(&self) -> String {
        match self {
            Integrity::Ok => "ok".into(),
            Integrity::NoCupSections => {
                "no cup sections (a plain module, not a cup controller package)".into()
            }
            Integrity::Stripped(p) => format!("stripped: {}", p.join("; ")),
            Integrity::Tampered(p) => format!("tampered: {}", p.join("; ")),
        }
    }
}

/// One embedded definition.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedDefinition {
    /// The definition, as parsed from the section's canonical JSON.
    pub definition: ResourceDefinition,
    /// `sha256:<hex>` of the section payload.
    pub sha256: String,
    /// Where its section starts in the file.
    pub offset: u64,
}

/// What the `cup.*` sections of a binary say, and whether they hold up.
#[derive(Debug, Clone)]
pub struct Package {
    /// Whether the binary is a core module or a component.
    pub encoding: Encoding,
    /// Size of the whole file.
    pub size: u64,
    /// The `cup.controller` manifest, when present, decodable and of a known format version.
    pub manifest: Option<ControllerManifest>,
    /// Definitions that parsed, in section order.
    pub definitions: Vec<EmbeddedDefinition>,
    /// Digest of the module without `cup.*` sections, when it was computed.
    pub module_sha256: Option<String>,
    /// The verdict on the sections against the manifest; only [`Integrity::Ok`] makes
    /// [`Package::verified_definitions`] succeed.
    pub integrity: Integrity,
}

impl Package {
    /// The definitions, but only when the package's integrity is ok.
    pub fn verified_definitions(&self) -> Result<Vec<ResourceDefinition>> {
        Ok(self
            .verified_definition_refs()?
            .into_iter()
            .cloned()
            .collect())
    }

    /// As [`Package::verified_definitions`], borrowed: for callers that only print them,
    /// a deep copy of every schema is heap to fault in and time on a path meant to be
    /// instant (`cup controller definitions`).
    pub fn verified_definition_refs(&self) -> Result<Vec<&ResourceDefinition>> {
        if !self.integrity.is_ok() {
            return Err(Error::Integrity(self.integrity.summary()));
        }
        Ok(self.definitions.iter().map(|d| &d.definition).collect())
    }
}

/// Reads and fully checks a package held in memory, including the module digest.
pub fn read_package(bytes: &[u8]) -> Result<Package> {
    let layout = Layout::from_bytes(bytes)?;
    let module_sha256 = module_digest(bytes, &layout);
    read_with(&layout, &mut SliceSource(bytes), Some(module_sha256))
}

/// As [`read_package`], also returning the `sha256:` digest of all of `bytes` (what names
/// the file as an OCI layer). When every `cup.*` section follows the code, as [`embed`]
/// writes them, the module is a prefix of the file and one SHA-256 pass gives both digests
/// (the hasher's state at the end of the prefix is finalised on a copy), instead of a pass
/// for each; otherwise the two are hashed on two threads.
///
/// [`embed`]: crate::embed
pub fn read_package_and_digest(bytes: &[u8]) -> Result<(Package, String)> {
    let layout = Layout::from_bytes(bytes)?;
    let prefix = module_prefix(&layout);
    let (module_sha256, file_sha256) = match prefix.and_then(|end| bytes.split_at_checked(end)) {
        Some((module, cup_sections)) => {
            let mut hasher = Sha256::new();
            hasher.update(module);
            let module_sha256 = finish_digest(hasher.clone());
            hasher.update(cup_sections);
            (module_sha256, finish_digest(hasher))
        }
        None => std::thread::scope(|s| {
            let file = s.spawn(|| sha256_digest(bytes));
            let module = module_digest(bytes, &layout);
            // The hashing thread does not panic; if it did, hash here instead.
            (module, file.join().unwrap_or_else(|_| sha256_digest(bytes)))
        }),
    };
    let package = read_with(&layout, &mut SliceSource(bytes), Some(module_sha256))?;
    Ok((package, file_sha256))
}

/// A package read whole from a file (or any reader), checked, with the digest of all its
/// bytes: what [`read_package_and_digest`] gives for bytes already in memory.
#[derive(Debug)]
pub struct ReadPackage {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// Its sections, read and judged.
    pub package: Package,
    /// `sha256:` of `bytes`.
    pub digest: String,
}

/// Reads `len` bytes (a regular file's size) from `reader` and checks them as
/// [`read_package_and_digest`] does, hashing each 1 MiB chunk on a second thread as soon
/// as it is read: reading (a copy and a page fault per 4 KiB of fresh memory) and hashing
/// overlap instead of following each other. The hasher's state is kept at every chunk
/// boundary, so the module digest (the code before the trailing cup sections) is finished
/// from the nearest one once the layout is known; when the cup sections are not last, the
/// module is hashed again. A reader that ends early gives a shorter package (judged as it
/// is); one with more than `len` bytes (a file growing while it is read) is an error.
pub fn read_package_from(reader: &mut impl Read, len: u64) -> Result<ReadPackage> {
    const CHUNK: usize = 1 << 20;
    let len = usize::try_from(len)
        .map_err(|_| std::io::Error::other(format!("{len} bytes do not fit in memory")))?;
    let mut bytes = vec![0u8; len];
    let buffer: &mut [u8] = &mut bytes;
    let (filled, hashed) = std::thread::scope(|s| -> Result<_> {
        let (chunks, received) = std::sync::mpsc::channel::<&[u8]>();
        let hasher = s.spawn(move || {
            let mut hasher = Sha256::new();
            let mut states = Vec::new();
            for chunk in received {
                states.push(hasher.clone());
                hasher.update(chunk);
            }
            (hasher, states)
        });
        let mut filled = 0;
        for chunk in buffer.chunks_mut(CHUNK) {
            let n = fill(reader, chunk)?;
            filled += n;
            let chunk: &[u8] = chunk;
            // The hasher only stops early by panicking; its join below says so.
            let _ = chunks.send(&chunk[..n]);
            if n < chunk.len() {
                break;
            }
        }
        drop(chunks);
        Ok((filled, hasher.join()))
    })?;
    if filled == len && reader.read(&mut [0u8; 1])? != 0 {
        return Err(Error::Io(std::io::Error::other(format!(
            "the file grew while it was read (it had {len} bytes)"
        ))));
    }
    bytes.truncate(filled);
    let layout = Layout::from_bytes(&bytes)?;
    let (module_sha256, digest) = match hashed {
        Ok((file, states)) => {
            let module = match module_prefix(&layout) {
                Some(end) if end == bytes.len() => finish_digest(file.clone()),
                Some(end) => match (states.get(end / CHUNK), bytes.get(end / CHUNK * CHUNK..end)) {
                    (Some(state), Some(rest)) => {
                        let mut state = state.clone();
                        state.update(rest);
                        finish_digest(state)
                    }
                    _ => module_digest(&bytes, &layout),
                },
                None => module_digest(&bytes, &layout),
            };
            (module, finish_digest(file))
        }
        // The hashing thread does not panic; if it did, hash here instead.
        Err(_) => (module_digest(&bytes, &layout), sha256_digest(&bytes)),
    };
    let package = read_with(&layout, &mut SliceSource(&bytes), Some(module_sha256))?;
    Ok(ReadPackage {
        bytes,
        package,
        digest,
    })
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Where the module ends when it is a prefix of the file: the code first and every `cup.*`
/// section after it (as [`embed`](crate::embed) writes them). `None` otherwise.
fn module_prefix(layout: &Layout) -> Option<usize> {
    match layout.kept_ranges().as_slice() {
        [only] if only.start == 0 => usize::try_from(only.end).ok(),
        _ => None,
    }
}

/// Reads the definitions of a file by walking its section headers and reading only the
/// `cup.*` payloads: cost independent of code size. The module digest is *not* checked
/// (that needs every byte); the verdict covers the manifest and the definitions.
pub fn read_definitions_file(path: &Path) -> Result<Package> {
    let mut file = std::io::BufReader::with_capacity(8 << 10, std::fs::File::open(path)?);
    read_definitions_reader(&mut file)
}

/// As [`read_definitions_file`], for any seekable reader.
pub fn read_definitions_reader<R: Read + Seek>(reader: &mut R) -> Result<Package> {
    let layout = Layout::from_reader(reader)?;
    let len = layout.len;
    read_with(&layout, &mut SeekSource { reader, len }, None)
}

/// Integrity verdict of a package in memory (shorthand for `read_package(..)?.integrity`).
pub fn check_bytes(bytes: &[u8]) -> Result<Integrity> {
    Ok(read_package(bytes)?.integrity)
}

/// `sha256:<hex>` of the binary with its `cup.*` sections removed.
pub fn module_digest(bytes: &[u8], layout: &Layout) -> String {
    let mut hasher = Sha256::new();
    for range in layout.kept_ranges() {
        hasher.update(&bytes[range.start as usize..range.end as usize]);
    }
    finish_digest(hasher)
}

/// Size of the binary with its `cup.*` sections removed.
pub fn module_size(layout: &Layout) -> u64 {
    layout.kept_ranges().iter().map(|r| r.end - r.start).sum()
}

struct Findings {
    stripped: Vec<String>,
    tampered: Vec<String>,
}

fn read_with(
    layout: &Layout,
    source: &mut dyn ByteSource,
    module_sha256: Option<String>,
) -> Result<Package> {
    let (manifests, definition_sections) = read_cup_payloads(layout, source)?;
    let mut findings = Findings {
        stripped: Vec::new(),
        tampered: Vec::new(),
    };

    let manifest = parse_manifest(&manifests, !definition_sections.is_empty(), &mut findings);
    let definitions = parse_definitions(&definition_sections, &mut findings);
    if let Some(manifest) = &manifest {
        compare_with_manifest(manifest, &definitions, &mut findings);
        // The ABI is what the binary is, not what the manifest says: a manifest that claims
        // the other kind was not written for this binary.
        let abi = crate::manifest::abi_for(layout.encoding);
        if manifest.abi != abi {
            findings.tampered.push(format!(
                "the manifest records ABI {:?}, but this {} speaks {abi:?}",
                manifest.abi,
                match layout.encoding {
                    Encoding::Module => "core module",
                    Encoding::Component => "component",
                }
            ));
        }
        if let Some(actual) = &module_sha256 {
            if *actual != manifest.module.sha256 {
                findings.tampered.push(format!(
                    "module code changed: its sha256 is {actual}, the manifest records {}",
                    manifest.module.sha256
                ));
            } else if module_size(layout) != manifest.module.size {
                findings
                    .tampered
                    .push("module size differs from the manifest".into());
            }
        }
    }
    let integrity = if manifests.is_empty() && definition_sections.is_empty() {
        Integrity::NoCupSections
    } else if !findings.tampered.is_empty() {
        findings.tampered.extend(findings.stripped);
        Integrity::Tampered(findings.tampered)
    } else if !findings.stripped.is_empty() {
        Integrity::Stripped(findings.stripped)
    } else {
        Integrity::Ok
    };
    Ok(Package {
        encoding: layout.encoding,
        size: layout.len,
        manifest,
        definitions,
        module_sha256,
        integrity,
    })
}

type Payloads<'a> = Vec<(&'a SectionHeader, Vec<u8>)>;

/// Reads the data of every `cup.*` section, enforcing the size caps before allocating.
fn read_cup_payloads<'a>(
    layout: &'a Layout,
    source: &mut dyn ByteSource,
) -> Result<(Payloads<'a>, Payloads<'a>)> {
    let mut manifests = Vec::new();
    let mut definitions = Vec::new();
    let mut total = 0usize;
    for section in layout.cup_sections() {
        let range = section.data_range();
        let size = (range.end - range.start) as usize;
        let name = section.custom_name().unwrap_or_default();
        let (limit, list) = match name {
            CONTROLLER_SECTION => (MAX_MANIFEST_BYTES, &mut manifests),
            DEFINITION_SECTION => (MAX_DEFINITION_BYTES, &mut definitions),
            // Unknown `cup.*` names are ignored by readers (room for later formats) but are
            // still dropped on re-embedding and excluded from the module digest.
            _ => continue,
        };
        if size > limit {
            return Err(Error::TooLarge {
                what: format!("{name} section at byte {}", section.offset),
                size,
                limit,
            });
        }
        total += size;
        if total > MAX_CUP_BYTES {
            return Err(Error::TooLarge {
                what: "all cup.* sections together".into(),
                size: total,
                limit: MAX_CUP_BYTES,
            });
        }
        if list.len() == MAX_DEFINITIONS {
            return Err(Error::TooManyDefinitions {
                count: MAX_DEFINITIONS + 1,
                limit: MAX_DEFINITIONS,
            });
        }
        let mut data = vec![0u8; size];
        source.read_at(range.start, &mut data)?;
        list.push((section, data));
    }
    Ok((manifests, definitions))
}

fn parse_manifest(
    manifests: &Payloads<'_>,
    has_definitions: bool,
    findings: &mut Findings,
) -> Option<ControllerManifest> {
    match manifests.len() {
        0 => {
            if has_definitions {
                findings
                    .stripped
                    .push("the cup.controller manifest is missing".into());
            }
            return None;
        }
        1 => {}
        n => findings.tampered.push(format!(
            "{n} cup.controller sections (exactly one is allowed)"
        )),
    }
    let (section, data) = &manifests[0];
    match serde_json::from_slice::<ControllerManifest>(data) {
        Ok(m) if m.format != FORMAT_VERSION => {
            findings.tampered.push(format!(
                "cup.controller has format version {} (this cup reads version {FORMAT_VERSION})",
                m.format
            ));
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            findings.tampered.push(format!(
                "cup.controller at byte {} is not a valid manifest: {e}",
                section.offset
            ));
            None
        }
    }
}

fn parse_definitions(sections: &Payloads<'_>, findings: &mut Findings) -> Vec<EmbeddedDefinition> {
    let mut out: Vec<EmbeddedDefinition> = Vec::with_capacity(sections.len());
    let mut routes: BTreeMap<String, String> = BTreeMap::new();
    for (index, (section, data)) in sections.iter().enumerate() {
        let definition: ResourceDefinition = match serde_json::from_slice(data) {
            Ok(d) => d,
            Err(e) => {
                findings.tampered.push(format!(
                    "cup.definition #{index} at byte {} is not a valid ResourceDefinition: {e}",
                    section.offset
                ));
                continue;
            }
        };
        let name = definition.metadata.name.clone();
        if let Err(e) = cup_model::validate_definition(&definition) {
            findings
                .tampered
                .push(format!("definition {name:?} is invalid: {e}"));
        }
        if out.iter().any(|d| d.definition.metadata.name == name) {
            findings
                .tampered
                .push(format!("two cup.definition sections are named {name:?}"));
        }
        for key in definition.keys() {
            if let Some(first) = routes.insert(key.clone(), name.clone()) {
                findings.tampered.push(format!(
                    "definitions {first:?} and {name:?} both serve {key}"
                ));
            }
        }
        out.push(EmbeddedDefinition {
            definition,
            sha256: sha256_digest(data),
            offset: section.offset,
        });
    }
    out
}

fn compare_with_manifest(
    manifest: &ControllerManifest,
    definitions: &[EmbeddedDefinition],
    findings: &mut Findings,
) {
    for listed in &manifest.definitions {
        match definitions
            .iter()
            .find(|d| d.definition.metadata.name == listed.name)
        {
            None => findings.stripped.push(format!(
                "definition {:?} listed in the manifest is missing",
                listed.name
            )),
            Some(found) if found.sha256 != listed.sha256 => findings.tampered.push(format!(
                "definition {:?} was modified: its sha256 is {}, the manifest records {}",
                listed.name, found.sha256, listed.sha256
            )),
            Some(_) => {}
        }
    }
    for found in definitions {
        let name = &found.definition.metadata.name;
        if !manifest.definitions.iter().any(|l| &l.name == name) {
            findings.tampered.push(format!(
                "definition {name:?} is not listed in the manifest (added after embedding)"
            ));
        }
    }
}

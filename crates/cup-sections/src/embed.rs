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
use std::sync::mpsc;

use cup_model::ResourceDefinition;
use sha2::{Digest, Sha256};
use wasm_encoder::{CustomSection, Section};

use crate::definition_file::read_definition_file;
use crate::limits::{MAX_CUP_BYTES, MAX_DEFINITION_BYTES, MAX_DEFINITIONS};
use crate::manifest::{
    ControllerManifest, DefinitionDigest, FORMAT_VERSION, ModuleDigest, abi_for,
};
use crate::package::{module_digest, module_size};
use crate::{
    CONTROLLER_SECTION, DEFINITION_SECTION, Encoding, Error, Layout, Result, finish_digest,
    sha256_digest,
};

/// What an embedding produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOutput {
    /// The manifest written into the `cup.controller` section.
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

/// Validates every definition, then [`render`]s them. Nothing is written if this fails.
fn prepare(definitions: &[ResourceDefinition]) -> Result<Vec<Prepared>> {
    check_count(definitions.len())?;
    for def in definitions {
        cup_model::validate_definition(def).map_err(|source| Error::InvalidDefinition {
            name: def.metadata.name.clone(),
            source,
        })?;
    }
    render(definitions)
}

fn check_count(count: usize) -> Result<()> {
    if count == 0 {
        return Err(Error::NoDefinitions);
    }
    if count > MAX_DEFINITIONS {
        return Err(Error::TooManyDefinitions {
            count,
            limit: MAX_DEFINITIONS,
        });
    }
    Ok(())
}

/// De-duplicates (by name and by `group/version/plural`), caps and sorts definitions that
/// are already validated, rendering each to canonical JSON.
fn render(definitions: &[ResourceDefinition]) -> Result<Vec<Prepared>> {
    check_count(definitions.len())?;
    let mut names = BTreeMap::new();
    let mut routes: BTreeMap<String, &str> = BTreeMap::new();
    let mut prepared = Vec::with_capacity(definitions.len());
    let mut total = 0;
    for def in definitions {
        let name = def.metadata.name.as_str();
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
        let payload = cup_model::to_canonical_json(def).map_err(|e| Error::InvalidDefinition {
            name: name.to_owned(),
            source: cup_model::DefinitionError::Schema {
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
fn cup_sections(
    prepared: &[Prepared],
    module: ModuleDigest,
    encoding: Encoding,
) -> (ControllerManifest, Vec<u8>) {
    let manifest = ControllerManifest {
        format: FORMAT_VERSION,
        abi: abi_for(encoding).to_owned(),
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
    let (manifest, sections) = cup_sections(&prepared, digest, layout.encoding);
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
/// The module is never loaded whole: its headers are walked with seeks, and its bytes pass
/// once through a few small buffers, each read, written to the output and handed to a second
/// thread that hashes it. So the digest in the manifest is always that of the bytes written,
/// and embedding stays within a small factor of `cp` on big modules.
pub fn embed_file(
    input: &Path,
    output: &Path,
    definitions: &[ResourceDefinition],
) -> Result<EmbedOutput> {
    let prepared = prepare(definitions)?;
    write_package(input, output, || Ok(prepared))
}

/// What `cup-embed` and `cup controller embed` do: reads ResourceDefinition JSON files (each
/// error names its file) and embeds them into `input` as [`embed_file`] does. The files are
/// read and checked while the module is being copied; if one fails, the copy stops and
/// nothing is written.
pub fn embed_files<P: AsRef<Path>>(
    definition_files: &[P],
    input: &Path,
    output: &Path,
) -> Result<EmbedOutput> {
    write_package(input, output, || {
        let definitions = definition_files
            .iter()
            .map(|path| read_definition_file(path.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        render(&definitions)
    })
}

/// Writes `input` plus new `cup.*` sections to `output` atomically. `definitions` is the
/// short part: it runs on the copying thread while that thread would otherwise wait for the
/// hasher (see [`copy_and_hash`]); when it fails, the copy stops and its error is returned.
fn write_package(
    input: &Path,
    output: &Path,
    definitions: impl FnOnce() -> Result<Vec<Prepared>>,
) -> Result<EmbedOutput> {
    let source = File::open(input)?;
    let layout = Layout::from_reader(&mut &source)?;
    let kept = layout.kept_ranges();
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".cup-embed-")
        .tempfile_in(dir)?;
    let (prepared, digest) = copy_and_hash(&source, temp.as_file(), &kept, definitions)?;
    let module = ModuleDigest {
        sha256: digest,
        size: module_size(&layout),
    };
    let size = module.size;
    let (manifest, sections) = cup_sections(&prepared, module, layout.encoding);
    temp.as_file_mut().write_all(&sections)?;
    temp.as_file()
        .set_permissions(source.metadata()?.permissions())?;
    temp.persist(output).map_err(|e| Error::Io(e.error))?;
    Ok(EmbedOutput {
        manifest,
        size: size + sections.len() as u64,
        replaced_sections: layout.cup_sections().count(),
    })
}

/// Bytes per read, write and hash step: small enough that a chunk is still in cache when it
/// is written and hashed, big enough to keep system calls few.
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks in flight between the copying and the hashing thread. Bounds memory; 2 MiB of
/// backlog keep the hasher busy while the copying thread does the side work.
const CHUNKS_IN_FLIGHT: usize = 8;
/// How much written data to hand to the kernel's writeback at a time (see
/// [`start_writeback`]): early enough that writeback overlaps the copy, large enough that
/// the calls stay few.
const WRITEBACK_BYTES: u64 = 4 << 20;

/// One chunk of the module on its way from the copying thread to the hashing thread.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Copies byte ranges of `source` to the end of `target` and returns the `sha256:<hex>` of
/// what was copied, with the result of `side_work`. This thread reads and writes; a second
/// one hashes the same buffers, so every byte is read once and the hash, the longest part,
/// runs from the first chunk to the last without pause. `side_work` runs here the first time
/// all buffers are with the hasher (or after the copy, if that never happens): a third
/// thread would compete with the hasher for a core instead.
fn copy_and_hash<T>(
    source: &File,
    target: &File,
    ranges: &[Range<u64>],
    side_work: impl FnOnce() -> Result<T>,
) -> Result<(T, String)> {
    let (full_tx, full_rx) = mpsc::channel::<Chunk>();
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..CHUNKS_IN_FLIGHT {
        // Cannot fail: `empty_rx` is alive.
        let _ = empty_tx.send(vec![0; CHUNK_BYTES]);
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || hash_chunks(full_rx, empty_tx));
        let mut side_work = SideWork::new(side_work);
        let copied = copy_chunks(source, target, ranges, &full_tx, &empty_rx, &mut side_work)
            .and_then(|()| side_work.finish());
        // Closing the channel ends the hasher's loop, whether the copy finished or not.
        drop(full_tx);
        let digest = hasher.join().map_err(|_| thread_panicked("hashing"))?;
        copied.map(|result| (result, digest))
    })
}

/// Work the copying thread does while it would wait for the hasher; runs at most once.
struct SideWork<F, T> {
    work: Option<F>,
    result: Option<T>,
}

impl<F: FnOnce() -> Result<T>, T> SideWork<F, T> {
    fn new(work: F) -> Self {
        SideWork {
            work: Some(work),
            result: None,
        }
    }

    fn run(&mut self) -> Result<()> {
        if let Some(work) = self.work.take() {
            self.result = Some(work()?);
        }
        Ok(())
    }

    /// Runs the work if it has not run yet and returns its result.
    fn finish(mut self) -> Result<T> {
        self.run()?;
        self.result
            .ok_or_else(|| Error::Io(std::io::Error::other("the side work already failed")))
    }
}

fn hash_chunks(full: mpsc::Receiver<Chunk>, empty: mpsc::Sender<Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    for chunk in full {
        hasher.update(&chunk.buf[..chunk.len]);
        // After a failed copy nobody takes buffers back; dropping them is fine.
        let _ = empty.send(chunk.buf);
    }
    finish_digest(hasher)
}

fn copy_chunks<F: FnOnce() -> Result<T>, T>(
    mut source: &File,
    mut target: &File,
    ranges: &[Range<u64>],
    full: &mpsc::Sender<Chunk>,
    empty: &mpsc::Receiver<Vec<u8>>,
    side_work: &mut SideWork<F, T>,
) -> Result<()> {
    let hasher_gone = || thread_panicked("hashing");
    let mut written = 0u64;
    let mut writeback_from = 0u64;
    for range in ranges {
        source.seek(SeekFrom::Start(range.start))?;
        let mut at = range.start;
        while at < range.end {
            let mut buf = match empty.try_recv() {
                Ok(buf) => buf,
                Err(_) => {
                    side_work.run()?;
                    empty.recv().map_err(|_| hasher_gone())?
                }
            };
            let len = usize::try_from(range.end - at).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
            source
                .read_exact(&mut buf[..len])
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        Error::Truncated(format!("input ended while copying bytes {range:?}"))
                    }
                    _ => Error::Io(e),
                })?;
            target.write_all(&buf[..len])?;
            at += len as u64;
            written += len as u64;
            if written - writeback_from >= WRITEBACK_BYTES {
                start_writeback(target, writeback_from..written);
                writeback_from = written;
            }
            full.send(Chunk { buf, len }).map_err(|_| hasher_gone())?;
        }
    }
    start_writeback(target, writeback_from..written);
    Ok(())
}

fn thread_panicked(what: &str) -> Error {
    Error::Io(std::io::Error::other(format!("the {what} thread panicked")))
}

/// Asks the kernel to start writing `range` of `file` to disk now, without waiting and
/// without any durability promise (`sync_file_range(SYNC_FILE_RANGE_WRITE)`; errors are
/// irrelevant and ignored). Why: the final rename over an existing output makes ext4 flush
/// the new file at once (`auto_da_alloc`), and freeing the replaced file's blocks then
/// queues behind that burst of writes. Writing back while the hash is still running takes
/// that wait off the end of the embedding, where it would be a large share of the whole.
#[cfg(target_os = "linux")]
// std has no binding for sync_file_range; libc is the only way to it.
#[allow(unsafe_code)]
fn start_writeback(file: &File, range: Range<u64>) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        i64::try_from(range.start),
        i64::try_from(range.end - range.start),
    ) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: a plain system call on an open descriptor owned by `file`; no memory is shared.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _range: Range<u64>) {}

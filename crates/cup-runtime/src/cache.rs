//! The on-disk compiled-code cache.
//!
//! Compiling a controller takes from ~0.1 s (a small Rust guest) to seconds (a 10+ MB Go
//! module); loading its serialized machine code takes well under a millisecond for the small
//! one. The cache makes a restart of `cupd` cheap.
//!
//! Layout: one file per (module, engine) pair, `<dir>/<wasm sha256 hex>-<engine fingerprint>.cwasm`,
//! holding `Module::serialize` output. The fingerprint changes with the wasmtime version and
//! with every engine setting that affects code (see [`Runtime::engine_fingerprint`]), so an
//! upgraded or reconfigured server never even opens an incompatible file. Old files are never
//! deleted by the runtime; removing the directory's content is always safe.
//!
//! [`Runtime::engine_fingerprint`]: crate::Runtime::engine_fingerprint

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::CacheError;

/// A directory of compiled controllers, shared by every [`Runtime`](crate::Runtime) (and every
/// process) that uses it. Writers never modify a file in place (temp file + rename), so
/// concurrent readers and writers are safe.
///
/// The directory is a trust boundary: its files are loaded as machine code without further
/// checks (see [`Runtime::load`](crate::Runtime::load)). It must be writable only by the user
/// running the server, and is never mounted into a guest.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    /// Opens (and creates, owner-only on Unix) the cache directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|source| CacheError::CreateDir {
                dir: dir.clone(),
                source,
            })?;
        Ok(CodeCache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of the module with this sha256 (lowercase hex) lives for an
    /// engine with this fingerprint.
    pub fn path_for(&self, wasm_sha256_hex: &str, engine_fingerprint: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256_hex}-{engine_fingerprint}.cwasm"))
    }

    /// Writes `bytes` to `path` atomically: a reader sees the old file, no file, or the whole
    /// new file, never a prefix (which is what makes loading without checks defensible).
    pub(crate) fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".cwasm-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)?;
        tmp.write_all(bytes)?;
        // Durable before the rename, so a crash cannot leave a complete-looking name over a
        // short file.
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

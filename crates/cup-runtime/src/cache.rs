//! The on-disk compiled-code cache.
//!
//! Compiling a controller takes from ~0.1 s (a small Rust guest) to seconds (a 10+ MB Go
//! module); loading its serialized machine code takes well under a millisecond for the small
//! one. The cache makes a restart of `cupd` cheap.
//!
//! Layout: one file per (module, engine) pair, `<dir>/<wasm sha256 hex>-<engine fingerprint>.cwasm`,
//! holding `cupcode1`, a 32-byte HMAC-SHA256 tag, then `Module::serialize` output. The
//! fingerprint changes with the wasmtime version and with every engine setting that affects
//! code (see [`Runtime::engine_fingerprint`]), so an upgraded or reconfigured server never
//! even opens an incompatible file. Old files are never deleted by the runtime; removing the
//! directory's content (or the key) is always safe: everything is recompiled.
//!
//! # Why a cache file can be trusted
//!
//! A cache file is machine code: wasmtime's `Module::deserialize` runs it without verifying
//! it, so whoever can put a file in the cache runs code as the server. Two checks stand
//! between a file and `deserialize`:
//!
//! * **The directory is private** ([`CodeCache::new`] refuses it otherwise). The cache
//!   directory must be owned by the server's user and not writable by group or others. Every
//!   ancestor up to `/` must be owned by root or that user and not writable by group or
//!   others, unless it is sticky (mode `+t`, like `/tmp`): in a sticky directory nobody but an
//!   entry's owner, the directory's owner and root can rename or remove the entry, and the
//!   entry below it is itself checked to be the user's or root's, so the path cannot be
//!   swapped. The path is resolved (symlinks followed) once, checked, and only the resolved
//!   path is used afterwards.
//! * **Each file is authenticated** with a 32-byte random key kept *next to* the directory,
//!   in `<dir>.key` (created mode 0600; refused unless it is a regular file of the server's
//!   user with no group or other permissions). The tag covers the file's name (so the module's
//!   sha256 and the engine fingerprint) and the serialized code, so neither a file written
//!   by someone without the key nor a genuine file of another module renamed over this one
//!   passes. A file that fails is removed and the module recompiled and written again; it is
//!   never deserialized. Write access to the directory alone, e.g. a volume mounted into
//!   another container or a copy restored from elsewhere, is therefore not code execution.
//!
//! [`Runtime::engine_fingerprint`]: crate::Runtime::engine_fingerprint

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::CacheError;

/// First bytes of every cache file (the format's version).
const MAGIC: &[u8; 8] = b"cupcode1";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;
/// Separates the tagged message's parts, and the tag of a cache entry from other uses of
/// the key.
const DOMAIN: &[u8] = b"cup code cache entry\0";

/// A directory of compiled controllers, shared by every [`Runtime`](crate::Runtime) (and every
/// process of the same user) that uses it. Writers never modify a file in place (temp file +
/// rename), so concurrent readers and writers are safe.
///
/// Its files are loaded as machine code only after their tag checks out (module docs).
#[derive(Clone)]
pub struct CodeCache {
    dir: PathBuf,
    key: Arc<[u8; KEY_LEN]>,
}

impl fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeCache")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Why a cache file was not loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EntryRefused {
    #[error("not a cup cache file (no `cupcode1` header)")]
    Format,
    #[error("its tag does not match (written without this cache's key, or for another module)")]
    Tag,
}

impl CodeCache {
    /// Opens (and creates, owner-only) the cache directory, checks that it and its path are
    /// private (module docs), and reads its key, `<dir>.key`, creating it if it is missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        let create = |source| CacheError::CreateDir {
            dir: dir.clone(),
            source,
        };
        builder.create(&dir).map_err(create)?;
        let dir = std::fs::canonicalize(&dir).map_err(create)?;
        #[cfg(unix)]
        private::check_path(&dir)?;
        let key_file = key_file_for(&dir)?;
        let key = read_or_create_key(&key_file).map_err(|reason| CacheError::Key {
            path: key_file,
            reason,
        })?;
        Ok(CodeCache {
            dir,
            key: Arc::new(key),
        })
    }

    /// The directory, resolved (no symlinks).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the key that authenticates this cache's files.
    pub fn key_file(&self) -> PathBuf {
        // `new` succeeded, so the name is known to work.
        key_file_for(&self.dir).unwrap_or_default()
    }

    /// Where the compiled form of the module with this sha256 (lowercase hex) lives for an
    /// engine with this fingerprint.
    pub fn path_for(&self, wasm_sha256_hex: &str, engine_fingerprint: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256_hex}-{engine_fingerprint}.cwasm"))
    }

    fn tag(&self, path: &Path, code: &[u8]) -> Hmac<Sha256> {
        let name = path
            .file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or(b"");
        // Cannot fail: HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key[..])
            .expect("HMAC accepts a 32-byte key");
        mac.update(DOMAIN);
        mac.update(name);
        mac.update(b"\0");
        mac.update(code);
        mac
    }

    /// The serialized code inside the file read from `path`, if its header and tag check
    /// out; only then may it be deserialized.
    pub(crate) fn authenticate<'a>(
        &self,
        path: &Path,
        file: &'a [u8],
    ) -> Result<&'a [u8], EntryRefused> {
        let rest = file.strip_prefix(MAGIC).ok_or(EntryRefused::Format)?;
        if rest.len() < TAG_LEN {
            return Err(EntryRefused::Format);
        }
        let (tag, code) = rest.split_at(TAG_LEN);
        self.tag(path, code)
            .verify_slice(tag)
            .map_err(|_| EntryRefused::Tag)?;
        Ok(code)
    }

    /// Writes `code` (`Module::serialize` output) to `path` with its header and tag,
    /// atomically: a reader sees the old file, no file, or the whole new file, never a prefix.
    pub(crate) fn write(&self, path: &Path, code: &[u8]) -> io::Result<()> {
        let tag = self.tag(path, code).finalize().into_bytes();
        let mut tmp = tempfile::Builder::new()
            .prefix(".cwasm-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&tag)?;
        tmp.write_all(code)?;
        // Durable before the rename, so a crash cannot leave a complete-looking name over a
        // short file.
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// `<parent>/<name>.key`: beside the directory, so write access to the directory alone
/// neither reveals nor replaces it.
fn key_file_for(dir: &Path) -> Result<PathBuf, CacheError> {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let mut file = name.to_owned();
            file.push(".key");
            Ok(parent.join(file))
        }
        _ => Err(CacheError::NotPrivate {
            dir: dir.to_owned(),
            reason: "the root directory cannot be a cache (its key would have nowhere to live)"
                .into(),
        }),
    }
}

/// Reads the key, or creates it (random, mode 0600) if there is none. Two servers creating
/// it at once agree: the file appears whole under its name or not at all, and the loser
/// reads the winner's.
fn read_or_create_key(path: &Path) -> Result<[u8; KEY_LEN], String> {
    for _ in 0..3 {
        match read_key(path) {
            Ok(key) => return Ok(key),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| format!("no randomness for a new key: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let created = tempfile::Builder::new()
            .prefix(".cup-key-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .and_then(|mut tmp| {
                // tempfile creates files 0600 on Unix.
                tmp.write_all(&key)?;
                tmp.as_file().sync_all()?;
                Ok(tmp)
            })
            .map_err(|e| format!("creating it: {e}"))?;
        match created.persist_noclobber(path) {
            Ok(_) => return Ok(key),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("creating it: {}", e.error)),
        }
    }
    Err("it keeps appearing and disappearing".into())
}

fn read_key(path: &Path) -> io::Result<[u8; KEY_LEN]> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    private::check_key(&file.metadata()?).map_err(io::Error::other)?;
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key)
        .map_err(|_| io::Error::other(format!("shorter than {KEY_LEN} bytes")))?;
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(io::Error::other(format!("longer than {KEY_LEN} bytes")));
    }
    Ok(key)
}

#[cfg(unix)]
mod private {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use crate::CacheError;

    const GROUP_OR_OTHER_WRITE: u32 = 0o022;
    const STICKY: u32 = 0o1000;

    // libc is the only way to the effective uid that the ownership checks compare against.
    #[allow(unsafe_code)]
    fn me() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// The rule of the module docs, for a resolved path.
    pub(super) fn check_path(dir: &Path) -> Result<(), CacheError> {
        let me = me();
        let refuse = |reason: String| CacheError::NotPrivate {
            dir: dir.to_owned(),
            reason,
        };
        let stat = |path: &Path| {
            std::fs::symlink_metadata(path).map_err(|e| refuse(format!("{}: {e}", path.display())))
        };
        let meta = stat(dir)?;
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by this server's user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & GROUP_OR_OTHER_WRITE != 0 {
            return Err(refuse(format!(
                "it is writable by group or others (mode {:o}); chmod go-w it",
                meta.mode() & 0o7777
            )));
        }
        for ancestor in dir.ancestors().skip(1) {
            let meta = stat(ancestor)?;
            if meta.uid() != 0 && meta.uid() != me {
                return Err(refuse(format!(
                    "{} is owned by uid {}, neither root nor this server's user (uid {me})",
                    ancestor.display(),
                    meta.uid()
                )));
            }
            if meta.mode() & GROUP_OR_OTHER_WRITE != 0 && meta.mode() & STICKY == 0 {
                return Err(refuse(format!(
                    "{} is writable by group or others and not sticky (mode {:o}), so the \
                     cache below it could be replaced",
                    ancestor.display(),
                    meta.mode() & 0o7777
                )));
            }
        }
        Ok(())
    }

    pub(super) fn check_key(meta: &std::fs::Metadata) -> Result<(), String> {
        let me = me();
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.uid() != me {
            return Err(format!(
                "owned by uid {}, not by this server's user (uid {me})",
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "readable or writable by group or others (mode {:o}); it must be 0600",
                meta.mode() & 0o7777
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn entries_are_bound_to_their_name_and_key() {
        let outer = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(outer.path().join("code")).unwrap();
        assert_eq!(
            cache.key_file(),
            outer.path().join("code.key").canonicalize().unwrap()
        );
        let a = cache.path_for("aa", "fp");
        let b = cache.path_for("bb", "fp");
        cache.write(&a, b"code of a").unwrap();
        let file = std::fs::read(&a).unwrap();
        assert_eq!(cache.authenticate(&a, &file).unwrap(), b"code of a");
        // Renamed over another module's name.
        assert!(matches!(
            cache.authenticate(&b, &file),
            Err(EntryRefused::Tag)
        ));
        // One bit of the code changed.
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            cache.authenticate(&a, &flipped),
            Err(EntryRefused::Tag)
        ));
        // Raw serialized code, as an older cache (or a forger without the key) wrote it.
        assert!(matches!(
            cache.authenticate(&a, b"\x7fELF..."),
            Err(EntryRefused::Format)
        ));
        assert!(matches!(
            cache.authenticate(&a, MAGIC),
            Err(EntryRefused::Format)
        ));

        // The same directory reopened keeps its key; a new key invalidates every entry.
        let reopened = CodeCache::new(outer.path().join("code")).unwrap();
        assert!(reopened.authenticate(&a, &file).is_ok());
        std::fs::remove_file(cache.key_file()).unwrap();
        let rekeyed = CodeCache::new(outer.path().join("code")).unwrap();
        assert!(matches!(
            rekeyed.authenticate(&a, &file),
            Err(EntryRefused::Tag)
        ));
    }

    #[cfg(unix)]
    #[test]
    // The last case needs root; libc is the only way to ask.
    #[allow(unsafe_code)]
    fn shared_directories_and_keys_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let outer = tempfile::tempdir().unwrap();
        let code = outer.path().join("code");
        std::fs::create_dir(&code).unwrap();
        chmod(&code, 0o777);
        let err = CodeCache::new(&code).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        chmod(&code, 0o700);

        // An ancestor writable by others, without the sticky bit, then with it.
        let parent = outer.path().join("shared");
        let below = parent.join("code");
        std::fs::create_dir_all(&below).unwrap();
        chmod(&parent, 0o777);
        let err = CodeCache::new(&below).unwrap_err().to_string();
        assert!(err.contains("not sticky"), "{err}");
        chmod(&parent, 0o1777);
        CodeCache::new(&below).unwrap();

        // Owned by another user (only root can arrange that here).
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let other = outer.path().join("other");
            std::fs::create_dir(&other).unwrap();
            std::os::unix::fs::chown(&other, Some(65534), None).unwrap();
            let err = CodeCache::new(&other).unwrap_err().to_string();
            assert!(err.contains("owned by uid 65534"), "{err}");
        }

        // A symlink is resolved and the target checked.
        let link = outer.path().join("link");
        std::os::unix::fs::symlink(&code, &link).unwrap();
        assert_eq!(
            CodeCache::new(&link).unwrap().dir(),
            code.canonicalize().unwrap()
        );

        // A key others can read is refused, not used.
        let key = outer.path().join("code.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CodeCache::new(&code).unwrap_err().to_string();
        assert!(err.contains("must be 0600"), "{err}");
        chmod(&key, 0o600);
        std::fs::write(&key, b"short").unwrap();
        let err = CodeCache::new(&code).unwrap_err().to_string();
        assert!(err.contains("shorter"), "{err}");
    }
}

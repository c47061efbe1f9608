//! The local source (`-api-source local`): the directory itself, read in place and written
//! in place.
//!
//! Guarantees (the original had none: no lock, writes straight into the live tree):
//! * Writes to one source are serialised (one async mutex per source), so two puts never
//!   interleave and none is lost.
//! * Template controller writes are a temp file + rename of the one file they touch.
//! * A wasm controller's put/delete runs on a **scratch copy** of the tree; only if the
//!   controller succeeds are the files it changed, created or removed carried over to the
//!   real tree, each through a temp file + rename. A controller that fails, traps, times
//!   out or is killed half-way changes nothing. Not covered: a crash of cupd itself while
//!   the (short) apply step moves several files, which can leave some of them updated.
//! * The copy leaves out the top-level `.git` directory, symbolic links and special files:
//!   controllers never see them and they are never changed.
//! * The scratch copy lives in `<scratch dir>/cupd-scratch-<pid>-<random>` (mode 0700; the
//!   directory is a [`ScratchPlace`], in memory by default), locked with
//!   `flock` for as long as it exists; it is removed after the response, on a background
//!   thread. A killed cupd's copies (and `.cup-*.tmp` files of an interrupted apply) are
//!   removed by the next start (`sweep`).
//!
//! Reads share a [`ViewLock`] that the apply step takes alone: a reader sees the tree
//! entirely before or entirely after a write, never a file mid-rename.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedRwLockReadGuard, RwLock, RwLockWriteGuard};

use crate::git::GitSource;

/// Where resources live: a local directory or a Git repository.
#[derive(Debug)]
pub enum Source {
    Local(LocalSource),
    Git(GitSource),
}

/// A local directory source.
#[derive(Debug)]
pub struct LocalSource {
    root: PathBuf,
    /// Serialises writes. Owned guards move into the blocking write, so a client that
    /// disconnects (dropping its request future) cannot release the lock while its write
    /// still runs.
    writes: Arc<Mutex<()>>,
    view: ViewLock,
    scratch: Arc<ScratchPlace>,
}

impl LocalSource {
    /// Opens `path`, which must be an existing directory; wasm writes make their scratch
    /// copies in `scratch`.
    pub fn open(path: &Path, scratch: ScratchPlace) -> std::io::Result<LocalSource> {
        let root = path.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(LocalSource {
            root,
            writes: Arc::new(Mutex::new(())),
            view: ViewLock::default(),
            scratch: Arc::new(scratch),
        })
    }

    /// Where this source's wasm writes make their scratch copies.
    pub fn scratch(&self) -> Arc<ScratchPlace> {
        Arc::clone(&self.scratch)
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Holds off the apply step of writes while a read runs (held across a wasm
    /// controller's get or list, or a template read on the blocking pool); the read sees the
    /// tree entirely before or after a write.
    pub async fn reading(&self) -> OwnedRwLockReadGuard<()> {
        self.view.shared().await
    }

    /// Runs a blocking write under this source's write lock. The write must take
    /// [`ViewLock::exclusive`] while it changes files under the root.
    pub async fn write<T, F>(&self, write: F) -> Result<T, tokio::task::JoinError>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &ViewLock) -> T + Send + 'static,
    {
        let serialised = Arc::clone(&self.writes).lock_owned().await;
        let (root, view) = (self.root.clone(), self.view.clone());
        tokio::task::spawn_blocking(move || {
            let _serialised = serialised;
            write(&root, &view)
        })
        .await
    }
}

/// Readers of the live tree share it; changing files under the root takes it alone.
///
/// Without it a guest listing a directory can meet an entry that a concurrent apply renames
/// away between `readdir` and `stat` (wasmtime-wasi's `fd_readdir` stats every entry, and
/// fails the whole call), and a read could see one file of a write applied and another not.
///
/// A tokio lock because reads take it on async tasks (the guard is held across the guest's
/// run, or moved to the blocking thread of a template read); writes take it on threads that
/// may block.
#[derive(Debug, Clone, Default)]
pub struct ViewLock(Arc<RwLock<()>>);

impl ViewLock {
    /// Held for a whole read (taken on an async task, then held wherever the read runs).
    pub async fn shared(&self) -> OwnedRwLockReadGuard<()> {
        Arc::clone(&self.0).read_owned().await
    }

    /// Held while files under the root change (a short apply step, or a template write),
    /// from a thread that may block (not an async worker: it panics there).
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.blocking_write()
    }
}

/// Why a scratch write failed before or after the controller ran.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("preparing a scratch copy of the source: {0}")]
    Copy(std::io::Error),
    #[error("applying the controller's changes to {path}: {source}")]
    Apply {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Name prefix of scratch directories (the startup sweep looks for it).
pub(crate) const SCRATCH_PREFIX: &str = "cupd-scratch-";

/// Where scratch copies are made: a directory, and one to use instead when a copy does not
/// fit there.
///
/// The default prefers memory: the guest's own `fsync` of the copy is then free (it cost
/// ≈ 0.5 ms of a 1.1 ms put through the example controller with `$TMPDIR` on ext4;
/// bench/notes.md), and nothing in the copy needs to outlive the request, since the apply
/// step writes each changed file to the real tree through a temp file, `fsync` and rename.
#[derive(Debug)]
pub struct ScratchPlace {
    dir: PathBuf,
    fallback: Option<PathBuf>,
    /// When a copy last failed in `dir` while a fallback exists: for [`DETOUR`] after it,
    /// copies go straight to the fallback. Without it, a full `/dev/shm` would cost every
    /// write a partial copy there and a warning.
    detour_since: std::sync::Mutex<Option<Instant>>,
}

/// How long copies skip the first directory after a copy failed there (then it is tried
/// again: the room may be back).
const DETOUR: Duration = Duration::from_secs(60);

/// Two places are equal when they name the same directories, whatever their recent failures.
impl PartialEq for ScratchPlace {
    fn eq(&self, other: &ScratchPlace) -> bool {
        self.dir == other.dir && self.fallback == other.fallback
    }
}

impl Eq for ScratchPlace {}

/// `/dev/shm` is chosen only with at least this much room, so a container's small default
/// (64 MiB in Docker) never holds the copies.
const MIN_MEMORY_ROOM: u64 = 1 << 30;

impl ScratchPlace {
    /// Exactly `dir` (cupd's `-scratch-dir`).
    pub fn explicit(dir: PathBuf) -> ScratchPlace {
        ScratchPlace::new(dir, None)
    }

    fn new(dir: PathBuf, fallback: Option<PathBuf>) -> ScratchPlace {
        ScratchPlace {
            dir,
            fallback,
            detour_since: std::sync::Mutex::new(None),
        }
    }

    /// cupd's default: `$TMPDIR` when it is memory-backed (tmpfs, as `/tmp` is on many
    /// systems); else, unless cupd runs under a cgroup memory limit (which memory-backed
    /// copies would count against), `/dev/shm` when it is memory-backed, writable and has at
    /// least 1 GiB free, with `$TMPDIR` for a copy that does not fit; else `$TMPDIR`.
    pub fn default_for_this_host() -> ScratchPlace {
        let tmp = std::env::temp_dir();
        if !memory_backed(&tmp) && !memory_limited() {
            let shm = Path::new("/dev/shm");
            if memory_backed(shm) && room(shm).is_some_and(|free| free >= MIN_MEMORY_ROOM) {
                return ScratchPlace::new(shm.to_owned(), Some(tmp));
            }
        }
        ScratchPlace::explicit(tmp)
    }

    /// Where copies go first.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every directory a copy may be made in (the startup sweep looks in each).
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.dir.as_path()).chain(self.fallback.as_deref())
    }

    /// A scratch directory holding a copy of `root`: in [`dir`](Self::dir), or in the
    /// fallback when that fails (full, or no longer writable). After such a failure, copies
    /// go straight to the fallback for [`DETOUR`], with one warning for the whole detour.
    fn copy_of(&self, root: &Path) -> std::io::Result<ScratchDir> {
        let Some(fallback) = &self.fallback else {
            return ScratchDir::copy_of(root, &self.dir);
        };
        if self.on_detour(Instant::now()) {
            return ScratchDir::copy_of(root, fallback);
        }
        match ScratchDir::copy_of(root, &self.dir) {
            Ok(scratch) => Ok(scratch),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, fallback = %fallback.display(),
                    "no scratch copy where it was wanted; making copies in the fallback for the next {} s",
                    DETOUR.as_secs());
                *self.detour() = Some(Instant::now());
                ScratchDir::copy_of(root, fallback)
            }
        }
    }

    /// Whether copies should skip the first directory at `now`; ends a detour that is over.
    fn on_detour(&self, now: Instant) -> bool {
        let mut since = self.detour();
        match *since {
            Some(start) if now.saturating_duration_since(start) < DETOUR => true,
            Some(_) => {
                *since = None;
                tracing::info!(dir = %self.dir.display(), "trying scratch copies here again");
                false
            }
            None => false,
        }
    }

    fn detour(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The guarded value is a plain timestamp: a panic elsewhere cannot leave it torn.
        self.detour_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `dir` is on a filesystem kept in memory (tmpfs, ramfs).
#[cfg(target_os = "linux")]
fn memory_backed(dir: &Path) -> bool {
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    const RAMFS_MAGIC: u32 = 0x8584_58f6;
    rustix::fs::statfs(dir).is_ok_and(|fs| {
        // A signed integer of the architecture's word size; the magic numbers are its low
        // 32 bits (RAMFS_MAGIC is negative where the field is 32 bits wide).
        #[allow(clippy::unnecessary_cast)]
        let kind = fs.f_type as u32;
        kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
    })
}

#[cfg(not(target_os = "linux"))]
fn memory_backed(_: &Path) -> bool {
    false
}

/// Whether this process runs under a cgroup memory limit: its own cgroup's or an
/// ancestor's (v2 `memory.max`, v1 `memory.limit_in_bytes`).
#[cfg(target_os = "linux")]
fn memory_limited() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|cgroups| {
        under_memory_limit(&cgroups, |file| std::fs::read_to_string(file).ok())
    })
}

#[cfg(not(target_os = "linux"))]
fn memory_limited() -> bool {
    false
}

/// [`memory_limited`] for the lines of `/proc/self/cgroup`, with `read` giving a file's
/// contents (`None` when it cannot be read).
fn under_memory_limit(cgroups: &str, read: impl Fn(&Path) -> Option<String>) -> bool {
    // v1 reports "no limit" as the largest page-aligned i64; v2 as "max".
    let limits = |value: &str| value.parse::<u64>().is_ok_and(|bytes| bytes < 1 << 62);
    cgroups.lines().any(|line| {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let (base, file) = if controllers.is_empty() {
            (Path::new("/sys/fs/cgroup"), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (Path::new("/sys/fs/cgroup/memory"), "memory.limit_in_bytes")
        } else {
            return false;
        };
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            if read(&dir.join(file)).is_some_and(|value| limits(value.trim())) {
                return true;
            }
            if dir == base || !dir.pop() {
                return false;
            }
        }
    })
}

/// Bytes this process may still write under `dir`, if it may write there at all.
#[cfg(target_os = "linux")]
fn room(dir: &Path) -> Option<u64> {
    use rustix::fs::{Access, access, statvfs};
    access(dir, Access::WRITE_OK | Access::EXEC_OK).ok()?;
    let fs = statvfs(dir).ok()?;
    Some(fs.f_bavail.saturating_mul(fs.f_frsize))
}

#[cfg(not(target_os = "linux"))]
fn room(_: &Path) -> Option<u64> {
    None
}

/// Copies `root` to a scratch directory in `place`, runs `run` on it, and if it returns
/// `Ok`, applies the differences to `root`. The inner result is the controller's own
/// outcome.
pub fn with_scratch_copy<T, E>(
    place: &ScratchPlace,
    root: &Path,
    view: &ViewLock,
    run: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<Result<T, E>, ScratchError> {
    let scratch = place.copy_of(root).map_err(ScratchError::Copy)?;
    let outcome = run(&scratch.path);
    let result = if outcome.is_ok() {
        let _exclusive = view.exclusive();
        apply(&scratch.path, root).map(|()| outcome)
    } else {
        Ok(outcome)
    };
    discard(scratch);
    result
}

/// A scratch directory, `flock`ed from its first moment until it is removed, so a starting
/// cupd can tell a live write's scratch (locked) from a killed one's (the kernel dropped the
/// lock with the process).
struct ScratchDir {
    path: PathBuf,
    _lock: File,
}

impl ScratchDir {
    /// A new scratch directory in `base` holding a copy of `root`; removed again (inline)
    /// if the copy fails.
    fn copy_of(root: &Path, base: &Path) -> std::io::Result<ScratchDir> {
        let scratch = ScratchDir::create(base)?;
        copy_tree(root, &scratch.path, true)?;
        Ok(scratch)
    }

    fn create(base: &Path) -> std::io::Result<ScratchDir> {
        // Made and locked under a name the sweep ignores, then renamed into place, so no
        // `cupd-scratch-*` directory is ever unlocked while its owner lives.
        let mut builder = tempfile::Builder::new();
        builder.prefix(".cupd-new-");
        #[cfg(unix)]
        builder.permissions(private_dir());
        let staging = builder.tempdir_in(base)?;
        let lock = File::open(staging.path())?;
        lock.lock()?;
        let unique = staging
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".cupd-new-"))
            .unwrap_or("x")
            .to_owned();
        let path = base.join(format!("{SCRATCH_PREFIX}{}-{unique}", std::process::id()));
        std::fs::rename(staging.path(), &path)?;
        // Renamed away: nothing left for the guard to delete.
        let _ = staging.keep();
        Ok(ScratchDir { path, _lock: lock })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Best effort: a copy that cannot be removed now is swept at the next start.
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "removing a scratch copy");
        }
    }
}

/// Other users must not read the copy of the source (nor swap files in it).
#[cfg(unix)]
fn private_dir() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o700)
}

/// Removes a finished scratch copy on a background thread: unlinking the tree was about a
/// tenth of a put's time (docs/BENCHMARKS.md), and nothing waits for it. Inline when that
/// thread cannot be started.
fn discard(scratch: ScratchDir) {
    static REMOVER: OnceLock<Option<Sender<ScratchDir>>> = OnceLock::new();
    let remover = REMOVER.get_or_init(|| {
        let (send, receive) = mpsc::channel::<ScratchDir>();
        std::thread::Builder::new()
            .name("cupd-scratch-rm".into())
            .spawn(move || receive.into_iter().for_each(drop))
            .ok()
            .map(|_| send)
    });
    if let Some(remover) = remover {
        // On failure the directory comes back in the error and is dropped (removed) here.
        let _ = remover.send(scratch);
    }
}

/// The entries a controller may see: regular files and directories, not `.git` at the top.
fn visible_entries(dir: &Path, top: bool) -> std::io::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if top && name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() || kind.is_file() {
            out.push((name, kind.is_dir()));
        }
    }
    out.sort();
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
    for (name, is_dir) in visible_entries(from, top)? {
        let (src, dst) = (from.join(&name), to.join(&name));
        if is_dir {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst, false)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Makes `real` look like `scratch` (for the entries a controller may see).
fn apply(scratch: &Path, real: &Path) -> Result<(), ScratchError> {
    apply_dir(scratch, real, true)
}

fn apply_dir(scratch: &Path, real: &Path, top: bool) -> Result<(), ScratchError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| ScratchError::Apply { path, source }
    };
    let wanted = visible_entries(scratch, top).map_err(err(scratch))?;
    let existing = visible_entries(real, top).map_err(err(real))?;
    // Removals first, so a file replaced by a directory (or back) has room.
    for (name, is_dir) in &existing {
        if wanted.iter().any(|(n, d)| n == name && d == is_dir) {
            continue;
        }
        let path = real.join(name);
        let removed = if *is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(err(&path))?;
    }
    for (name, is_dir) in &wanted {
        let (src, dst) = (scratch.join(name), real.join(name));
        if *is_dir {
            if !dst.is_dir() {
                std::fs::create_dir(&dst).map_err(err(&dst))?;
            }
            apply_dir(&src, &dst, false)?;
        } else {
            let bytes = std::fs::read(&src).map_err(err(&src))?;
            if std::fs::read(&dst).ok().as_deref() != Some(bytes.as_slice()) {
                replace_file(&dst, &bytes).map_err(err(&dst))?;
            }
        }
    }
    Ok(())
}

/// Temp file beside `path`, fsync, rename; keeps the old file's permissions.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".cup-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    match std::fs::metadata(path) {
        Ok(meta) => temp.as_file().set_permissions(meta.permissions())?,
        Err(_) => set_default_mode(temp.as_file())?,
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// New files get 0644 like the original's (the temp file starts as 0600).
#[cfg(unix)]
fn set_default_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_default_mode(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scratch copies in a directory of the test's own (kept alive by the returned guard).
    fn place() -> (tempfile::TempDir, ScratchPlace) {
        let base = tempfile::tempdir().unwrap();
        let place = ScratchPlace::explicit(base.path().to_owned());
        (base, place)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::write(dir.path().join("keep.yml"), "keep").unwrap();
        std::fs::write(dir.path().join("a/change.yml"), "old").unwrap();
        std::fs::write(dir.path().join("a/b/remove.yml"), "gone").unwrap();
        dir
    }

    #[test]
    fn success_applies_changes_creations_and_removals() {
        let dir = tree();
        let (_base, place) = place();
        let out: Result<(), ()> =
            with_scratch_copy(&place, dir.path(), &ViewLock::default(), |s| {
                assert!(!s.join(".git").exists(), "the guest does not see .git");
                std::fs::write(s.join("a/change.yml"), "new").unwrap();
                std::fs::remove_file(s.join("a/b/remove.yml")).unwrap();
                std::fs::create_dir_all(s.join("n")).unwrap();
                std::fs::write(s.join("n/created.yml"), "hi").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(out.is_ok());
        let root = dir.path();
        assert_eq!(
            std::fs::read_to_string(root.join("a/change.yml")).unwrap(),
            "new"
        );
        assert!(!root.join("a/b/remove.yml").exists());
        assert!(
            root.join("a/b").is_dir(),
            "emptied directories stay, as in the scratch"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("n/created.yml")).unwrap(),
            "hi"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("keep.yml")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(".git/HEAD")).unwrap(),
            "ref"
        );
    }

    #[cfg(unix)]
    #[test]
    fn scratch_dirs_are_private_named_by_pid_locked_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let scratch = ScratchDir::create(base.path()).expect("scratch dir");
        let name = scratch.path.file_name().and_then(|n| n.to_str()).unwrap();
        let prefix = format!("{SCRATCH_PREFIX}{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        let mode = std::fs::metadata(&scratch.path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let other = File::open(&scratch.path).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "held by its owner"
        );
        let path = scratch.path.clone();
        drop(scratch);
        assert!(!path.exists());
    }

    #[test]
    fn failure_changes_nothing() {
        let dir = tree();
        let (_base, place) = place();
        let out: Result<(), &str> =
            with_scratch_copy(&place, dir.path(), &ViewLock::default(), |s| {
                std::fs::write(s.join("a/change.yml"), "half").unwrap();
                std::fs::remove_file(s.join("keep.yml")).unwrap();
                Err("trap")
            })
            .unwrap();
        assert_eq!(out, Err("trap"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/change.yml")).unwrap(),
            "old"
        );
        assert!(dir.path().join("keep.yml").exists());
    }

    #[test]
    fn file_replaced_by_directory_and_back() {
        let dir = tree();
        let (_base, place) = place();
        let out: Result<(), ()> =
            with_scratch_copy(&place, dir.path(), &ViewLock::default(), |s| {
                std::fs::remove_file(s.join("keep.yml")).unwrap();
                std::fs::create_dir(s.join("keep.yml")).unwrap();
                std::fs::remove_dir_all(s.join("a/b")).unwrap();
                std::fs::write(s.join("a/b"), "file").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(out.is_ok());
        assert!(dir.path().join("keep.yml").is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b")).unwrap(),
            "file"
        );
    }

    #[test]
    fn after_a_failed_copy_copies_skip_the_first_directory_for_a_while() {
        let source = tree();
        let base = tempfile::tempdir().unwrap();
        let first = base.path().join("first");
        let fallback = base.path().join("fallback");
        std::fs::create_dir(&fallback).unwrap();
        let place = ScratchPlace::new(first.clone(), Some(fallback.clone()));
        let copy_parent = |place: &ScratchPlace| {
            let scratch = place.copy_of(source.path()).unwrap();
            let parent = scratch.path.parent().unwrap().to_owned();
            discard(scratch);
            parent
        };
        // `first` does not exist yet: the copy goes to the fallback, and a detour starts.
        assert_eq!(copy_parent(&place), fallback);
        // Usable again, but still skipped while the detour lasts.
        std::fs::create_dir(&first).unwrap();
        assert_eq!(copy_parent(&place), fallback);
        // Once the detour is over, `first` is tried (and used) again.
        let long_ago = Instant::now().checked_sub(DETOUR).unwrap();
        *place.detour() = Some(long_ago);
        assert_eq!(copy_parent(&place), first);
        assert!(!place.on_detour(Instant::now()));
        // Comparisons ignore the detour.
        *place.detour() = Some(Instant::now());
        assert_eq!(place, ScratchPlace::new(first, Some(fallback)));
    }

    #[test]
    fn a_copy_that_cannot_be_made_first_goes_to_the_fallback() {
        let dir = tree();
        let fallback = tempfile::tempdir().unwrap();
        // A file, not a directory: nothing can be made in it.
        let place = ScratchPlace::new(
            dir.path().join("keep.yml"),
            Some(fallback.path().to_owned()),
        );
        let out: Result<(), ()> =
            with_scratch_copy(&place, dir.path(), &ViewLock::default(), |s| {
                assert!(s.starts_with(fallback.path()), "{}", s.display());
                std::fs::write(s.join("a/change.yml"), "new").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(out.is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/change.yml")).unwrap(),
            "new"
        );
        // Removed after the write (on the remover thread).
        for _ in 0..200 {
            if entries(fallback.path()).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(entries(fallback.path()), Vec::<String>::new());
    }

    #[test]
    fn memory_limits_are_found_in_this_cgroup_or_an_ancestor() {
        let files = |entries: &[(&str, &str)]| {
            let entries: Vec<(PathBuf, String)> = entries
                .iter()
                .map(|(path, value)| (PathBuf::from(path), format!("{value}\n")))
                .collect();
            move |file: &Path| {
                entries
                    .iter()
                    .find(|(path, _)| path == file)
                    .map(|(_, value)| value.clone())
            }
        };
        let v2 = "0::/system.slice/cupd.service\n";
        let parent_limited = files(&[
            ("/sys/fs/cgroup/system.slice/cupd.service/memory.max", "max"),
            ("/sys/fs/cgroup/system.slice/memory.max", "1073741824"),
        ]);
        assert!(under_memory_limit(v2, parent_limited));
        let unlimited = files(&[
            ("/sys/fs/cgroup/system.slice/cupd.service/memory.max", "max"),
            ("/sys/fs/cgroup/system.slice/memory.max", "max"),
        ]);
        assert!(!under_memory_limit(v2, unlimited));
        let v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        let v1_unlimited = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712",
        )]);
        assert!(!under_memory_limit(v1, v1_unlimited));
        let v1_limited = files(&[(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "536870912",
        )]);
        assert!(under_memory_limit(v1, v1_limited));
        let joint = "5:cpu,memory:/a\n";
        assert!(under_memory_limit(
            joint,
            files(&[("/sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912")])
        ));
        assert!(!under_memory_limit("0::/\n", files(&[])));
        assert!(!under_memory_limit("not a cgroup line", files(&[])));
    }

    /// The filesystem check agrees with the kernel's own list of mounts.
    #[cfg(target_os = "linux")]
    #[test]
    fn memory_backed_directories_are_recognised() {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let tmpfs_mounts: Vec<&str> = mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let (point, kind) = (fields.nth(1)?, fields.next()?);
                (kind == "tmpfs").then_some(point)
            })
            .collect();
        assert!(!memory_backed(Path::new("/proc")), "procfs is not tmpfs");
        for point in &tmpfs_mounts {
            assert!(memory_backed(Path::new(point)), "{point} is tmpfs");
        }
        let default = ScratchPlace::default_for_this_host();
        let tmp = std::env::temp_dir();
        if memory_backed(&tmp) {
            assert_eq!(default, ScratchPlace::explicit(tmp));
        } else if default.dir() != tmp {
            assert_eq!(default.dir(), Path::new("/dev/shm"));
            assert_eq!(default.dirs().nth(1), Some(tmp.as_path()));
        }
    }
}

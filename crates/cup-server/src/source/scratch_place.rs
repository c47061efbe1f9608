//! Where the scratch copies of wasm writes are made ([`ScratchPlace`]: in memory when the
//! host allows, with a fallback), and the copies themselves ([`ScratchDir`]: private,
//! locked for as long as they exist, removed off the request path).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use cup_git::WriteLimits;

use super::write::{self, WriteError};

/// Name prefix of scratch directories (the startup sweep looks for it).
pub(crate) const SCRATCH_PREFIX: &str = "cupd-scratch-";

/// Where scratch copies are made: a directory, and one to use instead when a copy does not
/// fit there.
///
/// The default prefers memory: the guest's own `fsync` of the copy is then free (on a disk
/// it is a large share of a put), and nothing in the copy needs to outlive the request,
/// since the apply step writes each changed file to the real tree through a temp file,
/// `fsync` and rename.
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

    pub(super) fn new(dir: PathBuf, fallback: Option<PathBuf>) -> ScratchPlace {
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
    pub(super) fn copy_of(
        &self,
        root: BorrowedFd<'_>,
        limits: &WriteLimits,
    ) -> Result<ScratchDir, WriteError> {
        let Some(fallback) = &self.fallback else {
            return ScratchDir::copy_of(root, &self.dir, limits);
        };
        if self.on_detour(Instant::now()) {
            return ScratchDir::copy_of(root, fallback, limits);
        }
        match ScratchDir::copy_of(root, &self.dir, limits) {
            // Only a failure of the place itself sends copies elsewhere; the source's own
            // problems (a limit, an unreadable file) would be the same there.
            Err(WriteError::Copy(error)) => {
                tracing::warn!(dir = %self.dir.display(), %error, fallback = %fallback.display(),
                    "no scratch copy where it was wanted; making copies in the fallback for the next {} s",
                    DETOUR.as_secs());
                *self.detour() = Some(Instant::now());
                ScratchDir::copy_of(root, fallback, limits)
            }
            other => other,
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

/// A scratch directory, `flock`ed from its first moment until it is removed, so a starting
/// cupd can tell a live write's scratch (locked) from a killed one's (the kernel dropped the
/// lock with the process).
pub(super) struct ScratchDir {
    pub(super) path: PathBuf,
    _lock: File,
}

impl ScratchDir {
    /// A new scratch directory in `base` holding a copy of `root`; removed again (inline)
    /// if the copy fails.
    fn copy_of(
        root: BorrowedFd<'_>,
        base: &Path,
        limits: &WriteLimits,
    ) -> Result<ScratchDir, WriteError> {
        let scratch = ScratchDir::create(base).map_err(WriteError::Copy)?;
        let to = write::open_root(&scratch.path).map_err(WriteError::Copy)?;
        write::copy_tree(root, to.as_fd(), limits)?;
        Ok(scratch)
    }

    /// The copy, opened.
    pub(super) fn open(&self) -> std::io::Result<OwnedFd> {
        write::open_root(&self.path)
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
pub(super) fn discard(scratch: ScratchDir) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("keep.yml"), "keep").unwrap();
        dir
    }

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
    fn after_a_failed_copy_copies_skip_the_first_directory_for_a_while() {
        let source = tree();
        let base = tempfile::tempdir().unwrap();
        let first = base.path().join("first");
        let fallback = base.path().join("fallback");
        std::fs::create_dir(&fallback).unwrap();
        let place = ScratchPlace::new(first.clone(), Some(fallback.clone()));
        let copy_parent = |place: &ScratchPlace| {
            let scratch = place
                .copy_of(
                    write::open_root(source.path()).unwrap().as_fd(),
                    &WriteLimits::default(),
                )
                .unwrap();
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

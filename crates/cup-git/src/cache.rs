//! The bare cache of a remote: opening it ([`GitRepo::open`]), its lock file, the startup
//! sweep of what a crash left, owner-only modes, and the `cup-remote` record of the remote's
//! default branch and last good fetch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use git2::{Oid, Repository};

use crate::checkout::{PRIVATE_DIR, PRIVATE_FILE};
use crate::error::io;
use crate::fetch::FetchStatus;
use crate::remote::RemoteOptions;
use crate::revision::{REMOTE_REFS, RefTips, check_revision};
use crate::snapshot::Unreadable;
use crate::{Author, GitError, remote_url};

/// The file in the bare cache that records the remote's default branch and the time of the
/// last good fetch, so that a restart while the remote is unreachable can serve the cache.
pub(crate) const REMOTE_RECORD: &str = "cup-remote";
/// Prefix of a [`REMOTE_RECORD`] being written.
const REMOTE_RECORD_TEMP: &str = ".tmp-cup-remote";

/// A remote repository and its local bare cache.
pub struct GitRepo {
    pub(crate) url: String,
    pub(crate) display_url: String,
    pub(crate) dir: PathBuf,
    pub(crate) author: Author,
    pub(crate) options: RemoteOptions,
    pub(crate) default_branch: Mutex<Option<String>>,
    /// Fetches, pushes and ref updates: one at a time.
    pub(crate) remote: Mutex<()>,
    /// Whole writes (propose, merge): one at a time.
    pub(crate) writes: Mutex<()>,
    /// Commits whose tree cannot be written out, and why. Never cleared, as neither a
    /// commit's content nor the limits change; without it every read of such a revision
    /// would write out its tree again up to the bad entry.
    pub(crate) bad_trees: Mutex<HashMap<Oid, Unreadable>>,
    /// The commits the remote's branches and tags reach (`reachable.rs`).
    pub(crate) reachable_commits: Mutex<crate::reachable::ReachableCommits>,
    /// Held while a snapshot is made: readers of a new commit wait for the one snapshot
    /// rather than each writing out its own copy, and at most one is half-made on disk.
    pub(crate) making_snapshot: Mutex<()>,
    /// The snapshots on disk, their leases and last uses (`snapshot.rs`).
    pub(crate) snapshots: std::sync::Arc<Mutex<crate::snapshot::SnapshotIndex>>,
    /// Refs pushed so far: the cache's refs are packed every
    /// [`PACK_REFS_EVERY`](crate::propose::PACK_REFS_EVERY).
    pub(crate) pushed_refs: std::sync::atomic::AtomicU64,
    /// The branches and tags as of the last pruning of snapshots ([`GitRepo::fetch`]).
    pub(crate) tips: Mutex<Option<RefTips>>,
    /// Full fetches started so far ([`GitRepo::fetch_ticket`]).
    pub(crate) fetches_started: AtomicU64,
    /// Held for the whole of a full fetch: the number of the last one and its outcome, which
    /// callers that asked before it started share ([`GitRepo::fetch_since`]).
    pub(crate) last_full_fetch: Mutex<Option<(u64, Result<(), GitError>)>>,
    /// Successes and failures of every fetch, for an operator.
    pub(crate) fetch_status: Mutex<FetchStatus>,
    /// The pull requests of proposals, as opened, reported or looked up.
    pub(crate) pull_request_book: crate::PullRequestBook,
    /// When the forge was last asked about the pull request of each branch (`/proposals`).
    pub(crate) pull_request_lookups: Mutex<crate::proposals::Lookups>,
    /// Proposal branches seen merged, with their tip then and when first seen so: the
    /// retention of merged branches counts from there.
    pub(crate) seen_merged: Mutex<crate::ended::SeenMerged>,
    /// Held (flock) for the life of this value: the startup sweep below removes checkouts
    /// and half-made snapshots, which is only safe when no other process uses the cache.
    _cache_lock: std::fs::File,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL with its credentials.
        f.debug_struct("GitRepo")
            .field("url", &self.display_url)
            .field("dir", &self.dir)
            .finish()
    }
}

impl GitRepo {
    /// The pull requests of proposals known so far.
    pub fn pull_request_book(&self) -> &crate::PullRequestBook {
        &self.pull_request_book
    }

    /// Opens (or creates) the bare cache of `url` under `cache_root` and fetches once. When
    /// that fetch fails, a cache holding refs from an earlier run is served as it is (a
    /// warning is logged and [`GitRepo::fetch_status`] says why); an empty one is an error
    /// here, not at the first request.
    pub fn open(
        url: &str,
        cache_root: &Path,
        author: Author,
        options: RemoteOptions,
    ) -> Result<GitRepo, GitError> {
        // Refused before anything shows it: an unparsable URL may hold a password anywhere.
        let display_url = remote_url::Remote::parse(url)?.redacted();
        let dir = cache_root.join(cache_name(&display_url));
        private_cache_root(cache_root)?;
        create_private_dir(&dir, "creating the git cache")?;
        let cache_lock = lock_cache(&dir)?;
        if Repository::open_bare(&dir).is_err() {
            Repository::init_bare(&dir).map_err(|source| GitError::Cache {
                path: dir.clone(),
                source,
            })?;
        }
        let record = RemoteRecord::read(&dir);
        let repo = GitRepo {
            url: url.to_owned(),
            display_url,
            author,
            options,
            default_branch: Mutex::new(record.default_branch),
            remote: Mutex::new(()),
            writes: Mutex::new(()),
            bad_trees: Mutex::new(HashMap::new()),
            reachable_commits: Mutex::default(),
            making_snapshot: Mutex::new(()),
            snapshots: std::sync::Arc::default(),
            pushed_refs: std::sync::atomic::AtomicU64::new(0),
            tips: Mutex::new(None),
            fetches_started: AtomicU64::new(0),
            last_full_fetch: Mutex::new(None),
            fetch_status: Mutex::new(FetchStatus {
                last_success: record.fetched_at,
                ..FetchStatus::default()
            }),
            pull_request_book: crate::PullRequestBook::default(),
            pull_request_lookups: Mutex::default(),
            seen_merged: Mutex::default(),
            dir,
            _cache_lock: cache_lock,
        };
        // Leftovers of a crash: half-made snapshots and checkouts.
        let work = repo.work_dir();
        let _ = std::fs::remove_dir_all(&work);
        create_private_dir(&work, "creating")?;
        let snapshots = repo.snapshot_dir();
        create_private_dir(&snapshots, "creating")?;
        if let Ok(entries) = std::fs::read_dir(&snapshots) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        repo.adopt_snapshots()?;
        if let Ok(entries) = std::fs::read_dir(&repo.dir) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(REMOTE_RECORD_TEMP)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if let Err(error) = repo.fetch() {
            if !repo.has_refs()? {
                return Err(error);
            }
            let status = repo.fetch_status();
            let fetched_at = status.last_success.map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
            tracing::warn!(url = repo.display_url, %error,
                default_branch = repo.default_branch().as_deref().unwrap_or("<unknown>"),
                last_good_fetch_unix = fetched_at,
                "the remote cannot be fetched: serving the git cache as last fetched until a fetch succeeds");
        }
        // What an earlier run left may be over bounds set lower since.
        repo.prune_least_recently_used();
        Ok(repo)
    }

    /// Whether the cache holds any branch or tag of the remote (from this run or an earlier).
    fn has_refs(&self) -> Result<bool, GitError> {
        let repo = self.repo()?;
        for glob in [format!("{REMOTE_REFS}*"), "refs/tags/*".to_owned()] {
            if repo.references_glob(&glob)?.next().is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The URL without credentials.
    pub fn redacted_url(&self) -> &str {
        &self.display_url
    }

    /// The bare cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.dir
    }

    /// Where write checkouts live (empty between writes).
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("cup-work")
    }

    /// The remote's default branch (its HEAD) as of the last fetch.
    pub fn default_branch(&self) -> Option<String> {
        lock(&self.default_branch).clone()
    }

    pub(crate) fn repo(&self) -> Result<Repository, GitError> {
        Repository::open_bare(&self.dir).map_err(|source| GitError::Cache {
            path: self.dir.clone(),
            source,
        })
    }
}

/// What the cache remembers of the remote between runs ([`REMOTE_RECORD`]).
#[derive(Debug, Default)]
pub(crate) struct RemoteRecord {
    pub(crate) default_branch: Option<String>,
    pub(crate) fetched_at: Option<SystemTime>,
}

impl RemoteRecord {
    /// The record in `dir`; anything unreadable or unknown in it is left out.
    fn read(dir: &Path) -> RemoteRecord {
        use std::io::Read as _;
        let mut text = String::new();
        let read = std::fs::File::open(dir.join(REMOTE_RECORD))
            .and_then(|f| f.take(4096).read_to_string(&mut text));
        let mut record = RemoteRecord::default();
        if read.is_err() {
            return record;
        }
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("default-branch", branch)) if check_revision(branch).is_ok() => {
                    record.default_branch = Some(branch.to_owned());
                }
                Some(("fetched-at", secs)) => {
                    record.fetched_at = secs
                        .parse()
                        .ok()
                        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)));
                }
                _ => {}
            }
        }
        record
    }

    /// Replaces the record in `dir` (a temp file renamed over it, 0600).
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut text = String::new();
        if let Some(branch) = &self.default_branch {
            text.push_str(&format!("default-branch {branch}\n"));
        }
        if let Some(at) = self
            .fetched_at
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        {
            text.push_str(&format!("fetched-at {}\n", at.as_secs()));
        }
        let mut file = tempfile::Builder::new()
            .prefix(REMOTE_RECORD_TEMP)
            .permissions(private_file_permissions())
            .tempfile_in(dir)?;
        file.write_all(text.as_bytes())?;
        file.persist(dir.join(REMOTE_RECORD))
            .map(drop)
            .map_err(|e| e.error)
    }
}

/// Takes the cache's lock file, or says that another process holds it (a shared cache).
fn lock_cache(dir: &Path) -> Result<std::fs::File, GitError> {
    let path = dir.join("cup.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening the cache lock", &path))?;
    // Held a moment longer than its owner lives when a child process was forked (by any
    // thread) just before the owner closed it: the child keeps the lock until it execs. So
    // a busy lock is tried again for a short while before the cache is called in use.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(GitError::CacheInUse {
                    path: dir.to_owned(),
                    lock: path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &path)(e)),
        }
    }
}

/// How long [`lock_cache`] waits for a busy lock before the cache is called in use.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Creates `dir` (and its parents) and sets it to [`PRIVATE_DIR`] whatever the umask, an
/// existing directory included.
fn create_private_dir(dir: &Path, what: &'static str) -> Result<(), GitError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir).map_err(io(what, dir))?;
    set_mode(dir, PRIVATE_DIR)
}

/// Creates the cache root owner-only, or tightens an existing one of ours that other users
/// can enter (earlier cupds made it 0755), saying so in the log. A shared directory (sticky,
/// like `/tmp`, or someone else's) is left as it is: the bare cache inside is 0700 anyway.
// std has no binding for geteuid.
#[allow(unsafe_code)]
fn private_cache_root(root: &Path) -> Result<(), GitError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(root) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o7777;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        if meta.is_dir() && mode & 0o077 != 0 {
            if !ours || mode & 0o1000 != 0 {
                tracing::warn!(cache = %root.display(), mode = format!("{mode:o}"),
                    "the git cache root is shared with other users; only the cache inside is 0700");
                return Ok(());
            }
            tracing::info!(cache = %root.display(), from = format!("{mode:o}"),
                "the git cache root was open to other users; setting it to 0700");
            return set_mode(root, PRIVATE_DIR);
        }
    }
    create_private_dir(root, "creating the git cache root")
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), GitError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", path))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<(), GitError> {
    Ok(())
}

/// For a file of the cache written whole (tempfile's default is 0600 already; said so).
fn private_file_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(PRIVATE_FILE)
}

/// A readable, collision-free directory name for a remote: its last path segment and an
/// FNV-1a hash of the redacted URL.
fn cache_name(url: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let last: String = url
        .trim_end_matches('/')
        .rsplit(['/', '\\', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(40)
        .collect();
    format!(
        "{}-{hash:016x}.git",
        if last.is_empty() { "repo" } else { &last }
    )
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

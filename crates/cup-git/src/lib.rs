//! cupd's Git plumbing, on libgit2 through `git2`.
//!
//! ```text
//! <cache>/<name>-<hash>.git     bare clone of the remote: refs/remotes/origin/*, refs/tags/*
//!          ├── cup-snapshots/<commit>/   read-only view of one commit's tree (made once,
//!          │                             temp dir + rename, so readers never see half a tree)
//!          └── cup-work/cup-proposal-*   one fresh checkout per write, removed when it ends
//! ```
//!
//! * Everything cupd makes there is owner-only, set explicitly whatever the umask: the cache
//!   root, the bare cache, work and snapshot directories 0700, snapshot and checkout files
//!   0600 (0700 when executable). They are copies of the remote's files, and the cache of
//!   compiled code is private too; an existing root open to others is tightened at open.
//! * Reads never check out the cache: a revision's tree is materialised once per commit
//!   into a snapshot directory, because wasm controllers need a real directory to mount.
//! * A commit id names a commit only if a branch or tag of the remote (as of the last fetch)
//!   reaches it, with 7 to 40 hex digits: the cache keeps objects the remote dropped, which
//!   are neither served nor used as write bases, and their snapshots go after a fetch.
//! * A write materialises the base tree into a temp dir, lets the caller change it, builds
//!   a tree from the result with the object database (no index, no worktree state), and if
//!   it differs from the base commits it and pushes it as `cup/proposal/<ULID>`. The local
//!   ref used as the push source is not a branch and is removed whatever the outcome.
//!   The tree is built within [`WriteLimits`] (file and total sizes, entries, depth), from
//!   metadata before any file is read, so a controller's sparse or runaway files are
//!   refused rather than stored and pushed (`tree.rs`).
//! * Writes are serialised per repository ([`GitRepo::propose`], [`GitRepo::propose_all`]
//!   and [`GitRepo::merge`] take one lock); fetches and pushes share another, so ref
//!   updates never race. [`GitRepo::propose_all`] commits several writes one by one and
//!   pushes all their branches at once: a push costs an advertisement of every ref on the
//!   remote, which queued writes then share.
//! * Remote URLs are parsed, never split by hand (`remote_url.rs`); one that does not parse is
//!   refused and never shown, as any part of it may be a password.
//! * HTTP(S) credentials come from the URL's userinfo (`https://user:token@host/...`) or a
//!   git-credential-store file ([`credentials`]); SSH remotes authenticate through the
//!   ssh-agent after their host key is checked against known_hosts ([`ssh`]). Secrets are
//!   never written to the cache's config (the remote is anonymous) nor logged.
//! * After a proposal branch is pushed, a [`PullRequests`] implementation is told about it
//!   and may return a pull request's URL ([`scm`]).
//! * Only refs that name a commit are kept: a tag (or branch) of a blob or a tree is dropped
//!   after the fetch that brought it, because libgit2's local transport (path and `file://`
//!   remotes) fails every fetch that has something to download while the cache holds one.
//! * A full fetch is shared: callers that asked for one before it started use it (and its
//!   outcome) instead of starting another ([`GitRepo::fetch_since`]).
//! * After each good fetch the remote's default branch and the time are recorded in the
//!   cache (`cup-remote`), so that [`GitRepo::open`] with an unreachable remote serves the
//!   last fetched state instead of failing ([`GitRepo::fetch_status`] says since when).

mod checkout;
pub mod credentials;
mod remote_url;
pub mod scm;
pub mod ssh;
mod tree;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    PushOptions, RemoteCallbacks, Repository, Signature, Tree,
};
use serde::Serialize;
use ulid::Ulid;

use checkout::{PRIVATE_DIR, materialise, private_dir_permissions};

pub use checkout::{SnapshotLimitExceeded, SnapshotLimits};
pub use credentials::{CredentialOrigin, CredentialStore, CredentialsError};
pub use remote_url::{UNPARSABLE, UrlError, redact};
pub use scm::{BranchesOnly, NewProposal, PullRequests, ScmError};
pub use ssh::{AgentProblem, HostKeyError};
pub use tree::{WriteLimit, WriteLimitExceeded, WriteLimits};

/// Bounds every connection libgit2 makes to a remote (HTTP(S), `git://`, SSH): a connect
/// may take at most `connect`, and a connection may stay silent at most `silence` before the
/// fetch or push fails. Without them a remote that accepts and never answers holds the one
/// thread cupd runs remote calls on forever.
///
/// # Safety
/// libgit2 keeps these in unsynchronised globals: call this before any thread that may use
/// libgit2 is started (cupd does, first thing in `main`).
// git2 offers these settings only as unsafe setters of libgit2's globals.
#[allow(unsafe_code)]
pub unsafe fn set_network_timeouts(
    connect: std::time::Duration,
    silence: std::time::Duration,
) -> Result<(), GitError> {
    let millis = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: the caller promises no other thread uses libgit2 yet.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect))?;
        git2::opts::set_server_timeout_in_milliseconds(millis(silence))?;
    }
    Ok(())
}

/// Prefix of proposal branches on the remote.
pub const PROPOSAL_PREFIX: &str = "cup/proposal/";
const REMOTE_REFS: &str = "refs/remotes/origin/";
const FETCH_REFSPECS: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];
/// Fewest hex digits of a commit id `?revision=` accepts.
const MIN_COMMIT_HEX: usize = 7;
const MODE_TREE: i32 = 0o040000;
/// How many pushed refs between two packings of the cache's refs.
const PACK_REFS_EVERY: u64 = 32;
const MODE_BLOB: i32 = 0o100644;
/// How many unreadable commits [`GitRepo::snapshot`] remembers.
const MAX_BAD_TREES: usize = 1024;
/// The file in the bare cache that records the remote's default branch and the time of the
/// last good fetch, so that a restart while the remote is unreachable can serve the cache.
const REMOTE_RECORD: &str = "cup-remote";
/// Prefix of a [`REMOTE_RECORD`] being written.
const REMOTE_RECORD_TEMP: &str = ".tmp-cup-remote";
const MODE_EXEC: i32 = 0o100755;

/// Why a Git operation failed. [`GitError::kind`] says how an API should report it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A write's tree is over one of its [`WriteLimits`]; nothing was committed or pushed.
    #[error(transparent)]
    WriteLimit(#[from] WriteLimitExceeded),
    /// A commit's tree is over one of the [`SnapshotLimits`]: it is neither read nor
    /// written on.
    #[error(transparent)]
    SnapshotLimit(#[from] SnapshotLimitExceeded),
    #[error("git cache {path}: {source}")]
    Cache { path: PathBuf, source: git2::Error },
    #[error(
        "git cache {path} is in use by another cupd (its lock file {lock} is held); give each cupd its own cache"
    )]
    CacheInUse { path: PathBuf, lock: PathBuf },
    #[error("fetching from {url}: {reason}")]
    Fetch { url: String, reason: String },
    /// The remote or cupd refused to authenticate; says which credentials were used.
    #[error("{operation} {url}: {problem}")]
    Auth {
        operation: &'static str,
        url: String,
        problem: Box<AuthProblem>,
    },
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("invalid revision {revision:?}: {why}")]
    InvalidRevision { revision: String, why: &'static str },
    #[error(
        "revision {revision:?} not found in {url} (not a branch, a tag or a commit reachable from one)"
    )]
    RevisionNotFound { revision: String, url: String },
    #[error("the default branch of {url} is unknown or missing ({why}); pass ?revision=BRANCH")]
    NoDefaultBranch { url: String, why: String },
    #[error("pushing changes to {url}: {reason}")]
    Push { url: String, reason: String },
    #[error("pushing changes to {url}: the remote rejected {refname}: {reason}")]
    Rejected {
        url: String,
        refname: String,
        reason: String,
    },
    #[error("proposal {0:?} not found")]
    ProposalNotFound(String),
    #[error("merging proposal {id}: {why}")]
    MergeConflict { id: String, why: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A commit's tree cannot be written out, whatever cupd does: two entries of one name
    /// (`git mktree` and libgit2 make such trees; `git fsck` refuses them), a path too long
    /// for this host, a missing object. The revision cannot be read (nor written on); the
    /// entry is named by its path in the repository, never by the cache's.
    #[error(
        "commit {commit} cannot be read: its tree entry {entry:?} cannot be written out: {reason}"
    )]
    BadTree {
        commit: String,
        entry: String,
        reason: String,
    },
    /// Writing a tree entry out failed for a reason of this host (a full disk, say).
    #[error("commit {commit}: writing its tree entry {entry:?} out of the git cache: {source}")]
    Materialise {
        commit: String,
        entry: String,
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    /// The failure of a push (or of opening the cache) that carried this write with others.
    #[error("{0}")]
    SharedPush(String),
}

/// Why authenticating to the remote failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthProblem {
    /// The server answered the credentials with another authentication request (HTTP 401).
    Refused { origin: CredentialOrigin },
    /// The server wants credentials and none match the URL.
    NoCredentials { file: Option<PathBuf> },
    /// The ssh-agent is missing, unreachable or empty.
    Agent(AgentProblem),
    /// The SSH server accepted none of the agent's keys.
    KeyRefused { user: String, socket: String },
    /// The SSH host key is not trusted.
    HostKey(HostKeyError),
}

impl std::fmt::Display for AuthProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthProblem::Refused { origin } => write!(
                f,
                "authentication refused by the server (HTTP 401) for the {origin}"
            ),
            AuthProblem::NoCredentials { file: None } => write!(
                f,
                "the server requires authentication (HTTP 401) and no credentials are configured: \
                 put USER:TOKEN@ in the URL or pass --api-git-credentials FILE"
            ),
            AuthProblem::NoCredentials { file: Some(file) } => write!(
                f,
                "the server requires authentication (HTTP 401) and no credentials match: \
                 no USER:TOKEN@ in the URL and no line for this scheme and host in {}",
                file.display()
            ),
            AuthProblem::Agent(problem) => write!(f, "{problem}"),
            AuthProblem::KeyRefused { user, socket } => write!(
                f,
                "the SSH server accepted none of the keys in the ssh-agent at {socket} for user {user:?}"
            ),
            AuthProblem::HostKey(problem) => write!(f, "{problem}"),
        }
    }
}

/// How cupd reaches a remote and what it does with the proposals it pushes.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// HTTP(S) credentials for remotes whose URL has none.
    pub credentials: Option<CredentialStore>,
    /// known_hosts for SSH remotes; `None` = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Told about every pushed proposal.
    pub pull_requests: Arc<dyn PullRequests>,
    /// What one write may put in its tree.
    pub write_limits: WriteLimits,
    /// What a commit's tree may hold to be read or written on.
    pub snapshot_limits: SnapshotLimits,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            credentials: None,
            known_hosts: None,
            pull_requests: Arc::new(BranchesOnly),
            write_limits: WriteLimits::default(),
            snapshot_limits: SnapshotLimits::default(),
        }
    }
}

/// What the callbacks of one remote operation learnt about a failure.
#[derive(Default)]
struct AuthState {
    problem: Option<AuthProblem>,
    /// `(user, socket)` once the agent was offered to the server.
    agent_offered: Option<(String, String)>,
}

/// How an API should classify a [`GitError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    Internal,
}

impl GitError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::InvalidRevision { .. } => ErrorKind::BadRequest,
            GitError::RevisionNotFound { .. }
            | GitError::NoDefaultBranch { .. }
            | GitError::ProposalNotFound(_) => ErrorKind::NotFound,
            GitError::MergeConflict { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Internal,
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GitError + 'a {
    move |source| GitError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Name and email of commits cupd makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: "cup".into(),
            email: "cup@localhost".into(),
        }
    }
}

impl std::str::FromStr for Author {
    type Err = String;

    /// `Name <email>`, as Git writes it.
    fn from_str(s: &str) -> Result<Author, String> {
        let bad = || format!("expected \"Name <email>\", got {s:?}");
        let (name, rest) = s.split_once('<').ok_or_else(bad)?;
        let email = rest.strip_suffix('>').ok_or_else(bad)?;
        let (name, email) = (name.trim(), email.trim());
        if name.is_empty() || email.is_empty() || email.contains(['<', '>']) {
            return Err(bad());
        }
        Ok(Author {
            name: name.into(),
            email: email.into(),
        })
    }
}

/// A resolved revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub commit: Oid,
}

/// A pushed proposal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Proposal {
    pub id: String,
    pub branch: String,
    pub commit: String,
    /// The pull request [`PullRequests`] opened for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One write for [`GitRepo::propose_all`].
pub struct Write<'a> {
    /// Its base: a branch, a tag or a commit (`None` = the default branch).
    pub revision: Option<&'a str>,
    /// The commit message.
    pub message: &'a str,
    /// Changes the checkout it is given; returns whether to keep the changes.
    pub change: Box<dyn FnOnce(&Path) -> bool + 'a>,
}

/// A write committed in the cache, not pushed yet.
struct Committed {
    id: String,
    branch: String,
    commit: Oid,
    base_branch: Option<String>,
    files: Vec<ChangedFile>,
    message: String,
}

/// An open proposal, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalSummary {
    pub id: String,
    pub branch: String,
    pub commit: String,
    pub message: String,
}

/// One proposal with what it changes relative to where it left the base.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalDetail {
    pub id: String,
    pub branch: String,
    pub commit: String,
    pub base: String,
    pub merged: bool,
    pub message: String,
    pub files: Vec<ChangedFile>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed` or `typechange`.
    pub status: &'static str,
}

/// How to land a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeStrategy {
    /// Fast-forward when the base has not moved, else a merge commit.
    #[default]
    FastForwardOrMerge,
    /// Always a merge commit.
    Merge,
}

/// What a merge did.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    pub id: String,
    pub base: String,
    pub commit: String,
    pub fast_forward: bool,
}

/// What the fetches of the remote did lately (for an operator; see `/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchStatus {
    /// When a fetch last succeeded: in this run, or in an earlier one as the cache recorded.
    pub last_success: Option<SystemTime>,
    /// Why the last fetch failed; `None` when it succeeded.
    pub error: Option<String>,
    /// When the last fetch failed.
    pub error_at: Option<SystemTime>,
}

/// The moment a caller asked for the remote's current state: any full fetch that started
/// after it serves the caller ([`GitRepo::fetch_ticket`], [`GitRepo::fetch_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTicket(u64);

/// Which open proposals to list ([`GitRepo::proposals_since`]).
#[derive(Debug, Clone, Copy)]
pub struct ProposalQuery<'a> {
    /// The base branch (`None` = the default branch).
    pub revision: Option<&'a str>,
    /// Only ids after this one (the last id of the previous page).
    pub after: Option<&'a str>,
    /// At most this many.
    pub limit: usize,
}

/// One page of open proposals, by id.
#[derive(Debug, Clone)]
pub struct ProposalPage {
    pub items: Vec<ProposalSummary>,
    /// More open proposals follow the last one.
    pub more: bool,
}

/// What the cache remembers of the remote between runs ([`REMOTE_RECORD`]).
#[derive(Debug, Default)]
struct RemoteRecord {
    default_branch: Option<String>,
    fetched_at: Option<SystemTime>,
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
    fn write(&self, dir: &Path) -> std::io::Result<()> {
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

/// What one fetch changed: the refs it updated, and the remote's default branch.
struct Fetched {
    updated: Vec<String>,
    head: Option<String>,
}

/// A failed fetch, and whether libgit2 failed on a ref of the cache that names no commit.
struct FetchFailed {
    error: GitError,
    names_no_commit: bool,
}

/// Takes the cache's lock file, or says which cupd-wide mistake (a shared cache) it is.
fn lock_cache(dir: &Path) -> Result<std::fs::File, GitError> {
    let path = dir.join("cup.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening the cache lock", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(GitError::CacheInUse {
            path: dir.to_owned(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("locking", &path)(e)),
    }
}

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

/// A remote repository and its local bare cache.
pub struct GitRepo {
    url: String,
    display_url: String,
    dir: PathBuf,
    author: Author,
    options: RemoteOptions,
    default_branch: Mutex<Option<String>>,
    /// Fetches, pushes and ref updates: one at a time.
    remote: Mutex<()>,
    /// Whole writes (propose, merge): one at a time.
    writes: Mutex<()>,
    /// Commits whose tree cannot be written out, and why. Never cleared, as neither a
    /// commit's content nor the limits change; without it every read of such a revision
    /// would write out its tree again up to the bad entry.
    bad_trees: Mutex<HashMap<Oid, Unreadable>>,
    /// Held while a snapshot is made: readers of a new commit wait for the one snapshot
    /// rather than each writing out its own copy, and at most one is half-made on disk.
    making_snapshot: Mutex<()>,
    /// Refs pushed so far (the cache's refs are packed every [`PACK_REFS_EVERY`]).
    pushed_refs: std::sync::atomic::AtomicU64,
    /// The branches and tags as of the last pruning of snapshots ([`GitRepo::fetch`]).
    tips: Mutex<Option<RefTips>>,
    /// Full fetches started so far ([`GitRepo::fetch_ticket`]).
    fetches_started: AtomicU64,
    /// Held for the whole of a full fetch: the number of the last one and its outcome, which
    /// callers that asked before it started share ([`GitRepo::fetch_since`]).
    last_full_fetch: Mutex<Option<(u64, Result<(), GitError>)>>,
    /// Successes and failures of every fetch, for an operator.
    fetch_status: Mutex<FetchStatus>,
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
            making_snapshot: Mutex::new(()),
            pushed_refs: std::sync::atomic::AtomicU64::new(0),
            tips: Mutex::new(None),
            fetches_started: AtomicU64::new(0),
            last_full_fetch: Mutex::new(None),
            fetch_status: Mutex::new(FetchStatus {
                last_success: record.fetched_at,
                ..FetchStatus::default()
            }),
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

    /// Successes and failures of the fetches so far.
    pub fn fetch_status(&self) -> FetchStatus {
        lock(&self.fetch_status).clone()
    }

    /// `text` (a libgit2 message) without the URL's secrets, should libgit2 quote them.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.display_url);
        let encoded = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned));
        let decoded = credentials::from_url(&self.url).map(|s| s.password);
        for secret in [encoded, decoded].into_iter().flatten() {
            if !secret.is_empty() {
                out = out.replace(&secret, "***");
            }
        }
        out
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

    fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("cup-snapshots")
    }

    /// The remote's default branch (its HEAD) as of the last fetch.
    pub fn default_branch(&self) -> Option<String> {
        lock(&self.default_branch).clone()
    }

    fn repo(&self) -> Result<Repository, GitError> {
        Repository::open_bare(&self.dir).map_err(|source| GitError::Cache {
            path: self.dir.clone(),
            source,
        })
    }

    /// Callbacks for one remote operation; what goes wrong is recorded in `state`.
    fn callbacks(&self, state: &Rc<RefCell<AuthState>>) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(self.credential_provider(state.clone()));
        callbacks.certificate_check(self.host_key_checker(state.clone()));
        callbacks
    }

    /// Answers libgit2's credential requests: the ssh-agent for SSH; for HTTP(S) the URL's
    /// userinfo, else the credentials file's matching line. Each is offered once: libgit2
    /// asks again after a refusal, and answering forever would hang the request.
    fn credential_provider(
        &self,
        state: Rc<RefCell<AuthState>>,
    ) -> impl FnMut(&str, Option<&str>, CredentialType) -> Result<Cred, git2::Error> + 'static {
        let store = self.options.credentials.as_ref();
        let secret = credentials::from_url(&self.url)
            .or_else(|| store.and_then(|store| store.lookup(&self.url)));
        let file = store.map(|s| s.path().to_owned());
        let (mut http_tried, mut ssh_tried) = (false, false);
        move |_, url_user, allowed| {
            let user = url_user.map_or_else(local_user, str::to_owned);
            if allowed.contains(CredentialType::SSH_KEY) {
                let offered = offer_agent(user, ssh_tried, &state);
                ssh_tried = true;
                offered
            } else if allowed.contains(CredentialType::USERNAME) {
                Cred::username(&user)
            } else {
                let offered = offer_secret(secret.as_ref(), http_tried, file.as_ref(), &state);
                http_tried = true;
                offered
            }
        }
    }

    /// Checks SSH host keys against known_hosts; TLS certificates are left to libgit2 and
    /// OpenSSL (the system roots).
    fn host_key_checker(
        &self,
        state: Rc<RefCell<AuthState>>,
    ) -> impl FnMut(&git2::cert::Cert<'_>, &str) -> Result<CertificateCheckStatus, git2::Error> + 'static
    {
        let known_hosts = self
            .options
            .known_hosts
            .clone()
            .or_else(ssh::default_known_hosts);
        let host_name = ssh::known_hosts_name(&self.url);
        move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let name = host_name.clone().unwrap_or_else(|| host.to_owned());
            let verdict = match (&known_hosts, hostkey.hostkey(), hostkey.hostkey_type()) {
                (None, _, _) => Err(HostKeyError::NoFile { host: name }),
                (Some(file), Some(key), Some(kind)) => {
                    ssh::check_host_key(file, &name, kind.name(), key)
                }
                (Some(_), _, _) => Err(HostKeyError::NoKey { host: name }),
            };
            verdict
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|problem| record(&state, AuthProblem::HostKey(problem)))
        }
    }

    /// A failed fetch or push: the recorded authentication problem if there is one.
    fn remote_error(
        &self,
        operation: &'static str,
        error: &git2::Error,
        state: &Rc<RefCell<AuthState>>,
    ) -> Option<GitError> {
        let mut state = state.borrow_mut();
        let problem = state.problem.take().or_else(|| {
            // libssh2 may give up on the agent's keys without asking for more credentials.
            let refused =
                error.class() == git2::ErrorClass::Ssh && error.code() == git2::ErrorCode::Auth;
            let (user, socket) = state.agent_offered.take().filter(|_| refused)?;
            Some(AuthProblem::KeyRefused { user, socket })
        })?;
        Some(GitError::Auth {
            operation,
            url: self.display_url.clone(),
            problem: Box::new(problem),
        })
    }

    /// Fetches every branch and tag from the remote and records its default branch, then
    /// removes the snapshots of commits no branch or tag reaches any more.
    pub fn fetch(&self) -> Result<(), GitError> {
        let mut last = lock(&self.last_full_fetch);
        self.full_fetch(&mut last)
    }

    /// Now, for [`GitRepo::fetch_since`]: taken when a caller asks (a request arrives), before
    /// it waits for its turn.
    pub fn fetch_ticket(&self) -> FetchTicket {
        FetchTicket(self.fetches_started.load(Ordering::SeqCst))
    }

    /// Makes sure a full fetch that started after `ticket` was taken has run: if one has,
    /// its outcome is this call's; else this call fetches. Callers queued behind one fetch
    /// share the next one instead of fetching one after the other, and none is served a
    /// fetch that started before it asked.
    pub fn fetch_since(&self, ticket: FetchTicket) -> Result<(), GitError> {
        let mut last = lock(&self.last_full_fetch);
        if let Some((number, outcome)) = last.as_ref()
            && *number > ticket.0
        {
            return match outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(error.clone_shared()),
            };
        }
        self.full_fetch(&mut last)
    }

    /// One full fetch, numbered and remembered in `last` (the held [`GitRepo::last_full_fetch`]).
    fn full_fetch(&self, last: &mut Option<(u64, Result<(), GitError>)>) -> Result<(), GitError> {
        let number = self.fetches_started.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.fetch_all_and_prune();
        let kept = match &outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(error.clone_shared()),
        };
        *last = Some((number, kept));
        outcome
    }

    fn fetch_all_and_prune(&self) -> Result<(), GitError> {
        self.fetch_refspecs(&FETCH_REFSPECS, true)?;
        // Checking every snapshot costs ancestry walks: only when a ref moved, came or went
        // since the last pruning (and after the first fetch, for what an earlier run left).
        let after = self.repo().and_then(|repo| ref_tips(&repo));
        if let Ok(after) = &after
            && lock(&self.tips).as_ref() == Some(after)
        {
            return Ok(());
        }
        // The refs are fetched; a snapshot left behind is only disk, not served.
        match self.prune_snapshots() {
            Ok(()) => *lock(&self.tips) = after.ok(),
            Err(error) => {
                tracing::warn!(%error, "removing snapshots of unreachable commits failed")
            }
        }
        Ok(())
    }

    /// Removes the snapshot of each commit no branch or tag reaches any more (one
    /// force-pushed away, a merged and deleted proposal), so its files do not stay on disk
    /// after the remote dropped them. A read that resolved the commit just before may find
    /// its snapshot gone and fail; it would be refused from now on anyway.
    fn prune_snapshots(&self) -> Result<(), GitError> {
        let dir = self.snapshot_dir();
        let repo = self.repo()?;
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let name = entry.file_name();
            // Half-made snapshots (`.tmp-*`) are their makers' to publish or remove.
            let Some(commit) = name.to_str().and_then(|n| Oid::from_str(n).ok()) else {
                continue;
            };
            if name.len() != 40 || reachable(&repo, commit)? {
                continue;
            }
            // Renamed first, so the commit's name never points at a half-removed tree.
            let doomed = dir.join(format!(".tmp-pruned-{commit}"));
            let path = entry.path();
            std::fs::rename(&path, &doomed).map_err(io("removing snapshot", &path))?;
            std::fs::remove_dir_all(&doomed).map_err(io("removing snapshot", &doomed))?;
            tracing::debug!(%commit, "snapshot of an unreachable commit removed");
        }
        Ok(())
    }

    /// What a write needs before it starts: the base branch or tag as the remote has it now
    /// (every branch and tag when the base is a commit id, to know it is still reachable).
    /// Fetching every branch
    /// and pruning, as [`GitRepo::fetch`] does, costs a read of every remote-tracking ref per
    /// write, which grows with the number of proposal branches (docs/RELIABILITY.md).
    fn fetch_for_write(&self, revision: Option<&str>) -> Result<(), GitError> {
        let branch = match revision {
            None => self.default_branch(),
            Some(rev) => {
                let repo = self.repo()?;
                if repo.find_reference(&format!("refs/tags/{rev}")).is_ok() {
                    let spec = format!("+refs/tags/{rev}:refs/tags/{rev}");
                    return self.fetch_refspecs(&[spec.as_str()], false);
                }
                if repo.find_reference(&format!("{REMOTE_REFS}{rev}")).is_ok() {
                    Some(rev.to_owned())
                } else {
                    // A commit id, or not known yet: look at everything. A commit is
                    // immutable, but whether a branch or tag still reaches it is not, and
                    // a write must not push back a commit the remote has dropped.
                    None
                }
            }
        };
        match branch {
            Some(branch) if check_revision(&branch).is_ok() => {
                let spec = format!("+refs/heads/{branch}:{REMOTE_REFS}{branch}");
                self.fetch_refspecs(&[spec.as_str()], false)
            }
            // Unknown so far (a new branch, or no default yet): look at everything.
            _ => self.fetch(),
        }
    }

    /// Fetches `refspecs` (under the remote lock) and records the outcome.
    fn fetch_refspecs(&self, refspecs: &[&str], prune: bool) -> Result<(), GitError> {
        let _remote = lock(&self.remote);
        let outcome = self.fetch_recovering(refspecs, prune);
        let now = SystemTime::now();
        {
            let mut status = lock(&self.fetch_status);
            match &outcome {
                Ok(()) => {
                    status.last_success = Some(now);
                    status.error = None;
                    status.error_at = None;
                }
                Err(error) => {
                    status.error = Some(error.to_string());
                    status.error_at = Some(now);
                }
            }
        }
        if outcome.is_ok() {
            let record = RemoteRecord {
                default_branch: self.default_branch(),
                fetched_at: Some(now),
            };
            // Without it a restart with the remote away cannot serve: worth a line, not a
            // failed fetch.
            if let Err(error) = record.write(&self.dir) {
                tracing::warn!(%error, "recording the remote's default branch in the git cache");
            }
        }
        outcome
    }

    /// One fetch; if libgit2 fails on a ref of the cache that names no commit (one an
    /// earlier version kept), every such ref is dropped and the fetch tried once more. Refs
    /// the fetch brings that name no commit are dropped after it.
    fn fetch_recovering(&self, refspecs: &[&str], prune: bool) -> Result<(), GitError> {
        let repo = self.repo()?;
        let fetched = match self.fetch_once(&repo, refspecs, prune) {
            Ok(fetched) => fetched,
            Err(FetchFailed {
                error,
                names_no_commit: true,
            }) => {
                let names = all_ref_names(&repo)?;
                let dropped = drop_refs_naming_no_commit(&repo, &names);
                tracing::warn!(%error, dropped = dropped.join(" "),
                    "the git cache held refs that name no commit; dropped them and fetching again");
                self.fetch_once(&repo, refspecs, prune)
                    .map_err(|failed| failed.error)?
            }
            Err(failed) => return Err(failed.error),
        };
        let dropped = drop_refs_naming_no_commit(&repo, &fetched.updated);
        if !dropped.is_empty() {
            tracing::debug!(
                refs = dropped.join(" "),
                "refs that name no commit left out of the cache"
            );
        }
        *lock(&self.default_branch) = fetched.head;
        Ok(())
    }

    fn fetch_once(
        &self,
        repo: &Repository,
        refspecs: &[&str],
        prune: bool,
    ) -> Result<Fetched, FetchFailed> {
        let state = Rc::new(RefCell::new(AuthState::default()));
        let fail = |e: git2::Error| FetchFailed {
            names_no_commit: names_no_commit(&e),
            error: self
                .remote_error("fetching from", &e, &state)
                .unwrap_or_else(|| GitError::Fetch {
                    url: self.display_url.clone(),
                    reason: self.scrub(e.message()),
                }),
        };
        let mut remote = repo.remote_anonymous(&self.url).map_err(fail)?;
        let updated = Rc::new(RefCell::new(Vec::new()));
        let mut callbacks = self.callbacks(&state);
        let seen = updated.clone();
        callbacks.update_tips(move |name, _, _| {
            seen.borrow_mut().push(name.to_owned());
            true
        });
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks)
            .prune(if prune {
                FetchPrune::On
            } else {
                FetchPrune::Off
            })
            .download_tags(AutotagOption::None);
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(fail)?;
        drop(options);
        let head = remote
            .default_branch()
            .ok()
            .and_then(|b| b.as_str().ok().map(str::to_owned))
            .and_then(|b| b.strip_prefix("refs/heads/").map(str::to_owned));
        let updated = updated.take();
        Ok(Fetched { updated, head })
    }

    /// Resolves `revision` (a branch, a tag or a commit id; `None` = the default branch).
    pub fn resolve(&self, revision: Option<&str>) -> Result<Resolved, GitError> {
        let repo = self.repo()?;
        let commit = match revision {
            None => {
                let branch = self.default_branch().ok_or_else(|| self.no_head())?;
                let refname = format!("{REMOTE_REFS}{branch}");
                repo.refname_to_id(&refname)
                    .map_err(|_| GitError::NoDefaultBranch {
                        url: self.display_url.clone(),
                        why: format!("HEAD names {branch:?}, which does not exist"),
                    })?
            }
            Some(rev) => self.resolve_named(&repo, rev)?,
        };
        Ok(Resolved { commit })
    }

    fn resolve_named(&self, repo: &Repository, rev: &str) -> Result<Oid, GitError> {
        check_revision(rev)?;
        let not_found = || GitError::RevisionNotFound {
            revision: rev.to_owned(),
            url: self.display_url.clone(),
        };
        for refname in [format!("{REMOTE_REFS}{rev}"), format!("refs/tags/{rev}")] {
            if let Ok(reference) = repo.find_reference(&refname) {
                let commit = reference.peel_to_commit().map_err(|_| not_found())?;
                return Ok(commit.id());
            }
        }
        if !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        // Short prefixes make guessing the ids of commits cheap: 7 hex digits at least.
        if rev.len() < MIN_COMMIT_HEX {
            return Err(GitError::InvalidRevision {
                revision: rev.to_owned(),
                why: "not a branch or tag, and a commit id needs 7 to 40 hex digits",
            });
        }
        if rev.len() > 40 {
            return Err(not_found());
        }
        // A prefix lookup in the object database only: never a ref or an expression.
        let Ok(commit) = repo.find_commit_by_prefix(rev) else {
            return Err(not_found());
        };
        // The cache keeps objects the remote dropped (a force-pushed-away commit, say one
        // that leaked a secret): only what its branches and tags still reach is served or
        // used as a write base. Unreachable and absent answer alike, so the answer does
        // not tell whether the cache still holds the object.
        if reachable(repo, commit.id())? {
            Ok(commit.id())
        } else {
            Err(not_found())
        }
    }

    /// A read-only directory holding the tree of `commit`, made once per commit.
    pub fn snapshot(&self, commit: Oid) -> Result<PathBuf, GitError> {
        let target = self.snapshot_dir().join(commit.to_string());
        if target.is_dir() {
            return Ok(target);
        }
        self.known_unreadable(commit)?;
        let _making = lock(&self.making_snapshot);
        // Made (or found unreadable) by the reader this one waited for.
        if target.is_dir() {
            return Ok(target);
        }
        self.known_unreadable(commit)?;
        let repo = self.repo()?;
        let tree = repo.find_commit(commit)?.tree()?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(private_dir_permissions())
            .tempdir_in(self.snapshot_dir())
            .map_err(io("creating a snapshot in", &self.snapshot_dir()))?;
        let limits = self.options.snapshot_limits;
        if let Err(error) = materialise(&repo, &tree, temp.path(), commit, limits) {
            if let Some(unreadable) = Unreadable::of(&error) {
                let mut bad = lock(&self.bad_trees);
                // Bounded: whoever can push could make bad commits without end.
                if bad.len() < MAX_BAD_TREES {
                    bad.insert(commit, unreadable);
                }
            }
            return Err(error);
        }
        let made = temp.keep();
        if let Err(e) = std::fs::rename(&made, &target) {
            let _ = std::fs::remove_dir_all(&made);
            return Err(io("publishing snapshot", &target)(e));
        }
        Ok(target)
    }

    /// The error a read of `commit` met before, if its tree cannot be written out.
    fn known_unreadable(&self, commit: Oid) -> Result<(), GitError> {
        match lock(&self.bad_trees).get(&commit) {
            Some(unreadable) => Err(unreadable.error(commit)),
            None => Ok(()),
        }
    }

    /// Resolves `revision` and returns its snapshot directory.
    pub fn view(&self, revision: Option<&str>) -> Result<PathBuf, GitError> {
        let resolved = self.resolve(revision)?;
        self.snapshot(resolved.commit)
    }

    /// Runs `change` on a fresh checkout of `revision` (fetched first). `change` returns
    /// its own outcome and whether to keep its changes. If kept and the tree differs from
    /// the base, the result is committed and pushed as a new proposal branch.
    pub fn propose<T>(
        &self,
        revision: Option<&str>,
        message: &str,
        change: impl FnOnce(&Path) -> (T, bool),
    ) -> Result<(T, Option<Proposal>), GitError> {
        let mut outcome = None;
        let write = Write {
            revision,
            message,
            change: Box::new(|dir: &Path| {
                let (value, keep) = change(dir);
                outcome = Some(value);
                keep
            }),
        };
        let proposal = self.propose_all(vec![write]).into_iter().next();
        match (proposal, outcome) {
            (Some(Ok(proposal)), Some(value)) => Ok((value, proposal)),
            (Some(Err(error)), _) => Err(error),
            // propose_all answers every write, and only after running its change.
            _ => Err(GitError::SharedPush("the write was not run".into())),
        }
    }

    /// Proposes several writes with one push: each is committed on its own base, one
    /// after the other (each `change` runs alone, as in [`GitRepo::propose`]), then every
    /// resulting branch goes to the remote in a single push. A push costs one advertisement
    /// of every ref of the remote, so writes that queued up while the previous push was
    /// on the wire share that cost. One answer per write, in order: its proposal, `None`
    /// when it changed nothing, or why it failed (a refused branch fails only its write).
    pub fn propose_all(&self, writes: Vec<Write<'_>>) -> Vec<Result<Option<Proposal>, GitError>> {
        let _write = lock(&self.writes);
        let repo = match self.repo() {
            Ok(repo) => repo,
            Err(error) => return writes.iter().map(|_| Err(shared_error(&error))).collect(),
        };
        // Each base is fetched once per batch; how that went, for the writes on it.
        let mut fetched: Vec<(Option<String>, Option<GitError>)> = Vec::new();
        let committed: Vec<Result<Option<Committed>, GitError>> = writes
            .into_iter()
            .map(|write| {
                let revision = write.revision.map(str::to_owned);
                let failed = match fetched.iter().find(|(r, _)| *r == revision) {
                    Some((_, failed)) => failed.as_ref().map(GitError::clone_shared),
                    None => {
                        let failed = self.fetch_for_write(write.revision).err();
                        let shared = failed.as_ref().map(GitError::clone_shared);
                        fetched.push((revision, shared));
                        failed
                    }
                };
                // No write on a base the remote did not confirm: the cached one may be a
                // commit the remote dropped, and a remote that cannot be fetched from
                // would only make the push wait out its own timeout too.
                if let Some(error) = failed {
                    return Err(error);
                }
                self.commit_write(&repo, write)
            })
            .collect();
        let updates: Vec<(Oid, String)> = committed
            .iter()
            .filter_map(|c| c.as_ref().ok()?.as_ref())
            .map(|c| (c.commit, format!("refs/heads/{}", c.branch)))
            .collect();
        let mut timer = PhaseTimer::start();
        let pushed = if updates.is_empty() {
            Ok(Default::default())
        } else {
            self.push_refs(&repo, &updates, false)
        };
        tracing::debug!(
            branches = updates.len(),
            push_ms = timer.lap(),
            "proposals pushed"
        );
        committed
            .into_iter()
            .map(|c| match (c, &pushed) {
                (Err(error), _) => Err(error),
                (Ok(None), _) => Ok(None),
                (Ok(Some(_)), Err(error)) => Err(error.clone_shared()),
                (Ok(Some(c)), Ok(rejected)) => {
                    match rejected.get(&format!("refs/heads/{}", c.branch)) {
                        Some(reason) => Err(GitError::Rejected {
                            url: self.display_url.clone(),
                            refname: format!("refs/heads/{}", c.branch),
                            reason: reason.clone(),
                        }),
                        None => Ok(Some(self.announce_committed(c))),
                    }
                }
            })
            .collect()
    }

    /// One write of [`GitRepo::propose_all`] up to its local commit (`None`: no change).
    fn commit_write(
        &self,
        repo: &Repository,
        write: Write<'_>,
    ) -> Result<Option<Committed>, GitError> {
        let mut timer = PhaseTimer::start();
        let base = self.resolve(write.revision)?;
        let base_commit = repo.find_commit(base.commit)?;
        let base_tree = base_commit.tree()?;
        let checkout = tempfile::Builder::new()
            .prefix("cup-proposal-")
            .permissions(private_dir_permissions())
            .tempdir_in(self.work_dir())
            .map_err(io("creating a checkout in", &self.work_dir()))?;
        let limits = self.options.snapshot_limits;
        materialise(repo, &base_tree, checkout.path(), base.commit, limits)?;
        let checkout_ms = timer.lap();
        let keep = (write.change)(checkout.path());
        let change_ms = timer.lap();
        if !keep {
            return Ok(None);
        }
        let tree_id = tree::build_tree(
            repo,
            checkout.path(),
            Some(&base_tree),
            self.options.write_limits,
        )?;
        drop(checkout);
        if tree_id == base_tree.id() {
            return Ok(None);
        }
        let tree = repo.find_tree(tree_id)?;
        let signature = Signature::now(&self.author.name, &self.author.email)?;
        let commit = repo.commit(
            None,
            &signature,
            &signature,
            write.message,
            &tree,
            &[&base_commit],
        )?;
        let id = Ulid::new().to_string();
        let branch = format!("{PROPOSAL_PREFIX}{id}");
        tracing::debug!(%branch, checkout_ms, change_ms, commit_ms = timer.lap(),
            "proposal committed");
        Ok(Some(Committed {
            files: changed_files(repo, &base_tree, &tree)?,
            base_branch: self.branch_of(repo, write.revision),
            message: write.message.to_owned(),
            id,
            branch,
            commit,
        }))
    }

    /// A pushed proposal: tells the pull-request interface and returns what the API shows.
    fn announce_committed(&self, c: Committed) -> Proposal {
        let commit = c.commit.to_string();
        let url = self.announce(&NewProposal {
            id: &c.id,
            branch: &c.branch,
            base: c.base_branch.as_deref(),
            commit: &commit,
            message: &c.message,
            files: &c.files,
            remote: &self.display_url,
        });
        Proposal {
            id: c.id,
            branch: c.branch,
            commit,
            url,
        }
    }

    /// The branch a write based on `revision` belongs to: the default branch, or
    /// `revision` when it names a branch (not a tag or a commit).
    fn branch_of(&self, repo: &Repository, revision: Option<&str>) -> Option<String> {
        match revision {
            None => self.default_branch(),
            Some(rev) => repo
                .find_reference(&format!("{REMOTE_REFS}{rev}"))
                .ok()
                .map(|_| rev.to_owned()),
        }
    }

    /// Tells the pull-request interface; its failure does not undo the pushed branch.
    fn announce(&self, proposal: &NewProposal<'_>) -> Option<String> {
        let scm = &self.options.pull_requests;
        match scm.proposed(proposal) {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(%error, scm = scm.name(), branch = proposal.branch,
                    "the proposal branch is pushed but no pull request was opened");
                None
            }
        }
    }

    /// Pushes `commit` to `dest` on the remote and, on success, updates the matching
    /// remote-tracking ref.
    fn push(
        &self,
        repo: &Repository,
        commit: Oid,
        dest: &str,
        force: bool,
    ) -> Result<(), GitError> {
        let rejected = self.push_refs(repo, &[(commit, dest.to_owned())], force)?;
        match rejected.into_iter().next() {
            Some((refname, reason)) => Err(GitError::Rejected {
                url: self.display_url.clone(),
                refname,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Pushes every `(commit, dest)` in one push and updates the remote-tracking ref of
    /// each one the remote accepted. Returns the refused destinations with the remote's
    /// reasons; `Err` when the push as a whole failed. The push sources are temporary
    /// non-branch refs, always removed.
    fn push_refs(
        &self,
        repo: &Repository,
        updates: &[(Oid, String)],
        force: bool,
    ) -> Result<HashMap<String, String>, GitError> {
        let _remote = lock(&self.remote);
        let batch = Ulid::new();
        let mut temps = Vec::with_capacity(updates.len());
        let mut refspecs = Vec::with_capacity(updates.len());
        for (i, (commit, dest)) in updates.iter().enumerate() {
            let temp = format!("refs/cup/push/{batch}-{i}");
            let made = repo.reference(&temp, *commit, true, "cup: push source");
            temps.push(temp.clone());
            if let Err(error) = made {
                remove_refs(repo, &temps);
                return Err(error.into());
            }
            refspecs.push(format!("{}{temp}:{dest}", if force { "+" } else { "" }));
        }
        let pushed = self.push_refspecs(repo, &refspecs);
        remove_refs(repo, &temps);
        let rejected = pushed?;
        for (commit, dest) in updates {
            if let Some(branch) = dest.strip_prefix("refs/heads/")
                && !rejected.contains_key(dest)
            {
                repo.reference(
                    &format!("{REMOTE_REFS}{branch}"),
                    *commit,
                    true,
                    "cup: pushed",
                )?;
            }
        }
        self.pack_refs_now_and_then(repo, updates.len());
        Ok(rejected)
    }

    /// Every proposal adds a loose ref file to the cache, and libgit2 reads each of them on
    /// every fetch and push; packing them into `packed-refs` (`git pack-refs`) every
    /// [`PACK_REFS_EVERY`] pushed refs keeps that one file read. Best effort: loose refs still work.
    fn pack_refs_now_and_then(&self, repo: &Repository, written: usize) {
        let written = written as u64;
        let before = self
            .pushed_refs
            .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
        if before / PACK_REFS_EVERY != (before + written) / PACK_REFS_EVERY
            && let Err(error) = repo.refdb().and_then(|refdb| refdb.compress())
        {
            tracing::warn!(%error, "packing the git cache's refs");
        }
    }

    /// One push of `refspecs`; the refused destinations with the remote's reasons.
    fn push_refspecs(
        &self,
        repo: &Repository,
        refspecs: &[String],
    ) -> Result<HashMap<String, String>, GitError> {
        let rejected: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
        let state = Rc::new(RefCell::new(AuthState::default()));
        let mut callbacks = self.callbacks(&state);
        callbacks.push_update_reference(|refname, status| {
            if let Some(reason) = status {
                rejected
                    .borrow_mut()
                    .insert(refname.to_owned(), reason.to_owned());
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let result = repo
            .remote_anonymous(&self.url)
            .and_then(|mut remote| remote.push(refspecs, Some(&mut options)));
        drop(options);
        let rejected = rejected.into_inner();
        if !rejected.is_empty() {
            // The remote answered for each ref: a refused one is not a failed push.
            return Ok(rejected);
        }
        result.map_err(|e| {
            self.remote_error("pushing to", &e, &state)
                .unwrap_or_else(|| GitError::Push {
                    url: self.display_url.clone(),
                    reason: self.scrub(e.message()),
                })
        })?;
        Ok(rejected)
    }

    /// Why there is no default branch.
    fn no_head(&self) -> GitError {
        let why = if self.fetch_status().last_success.is_none() {
            "no fetch of the remote has succeeded yet"
        } else {
            "the remote has no HEAD"
        };
        GitError::NoDefaultBranch {
            url: self.display_url.clone(),
            why: why.into(),
        }
    }

    /// The base branch of proposal operations: `revision` if given (must be a branch),
    /// else the default branch.
    fn base_branch(
        &self,
        repo: &Repository,
        revision: Option<&str>,
    ) -> Result<(String, Oid), GitError> {
        let branch = match revision {
            Some(rev) => {
                check_revision(rev)?;
                rev.to_owned()
            }
            None => self.default_branch().ok_or_else(|| self.no_head())?,
        };
        let oid = repo
            .refname_to_id(&format!("{REMOTE_REFS}{branch}"))
            .map_err(|_| GitError::RevisionNotFound {
                revision: branch.clone(),
                url: self.display_url.clone(),
            })?;
        Ok((branch, oid))
    }

    fn proposal_commit(&self, repo: &Repository, id: &str) -> Result<Oid, GitError> {
        check_proposal_id(id)?;
        repo.refname_to_id(&format!("{REMOTE_REFS}{PROPOSAL_PREFIX}{id}"))
            .map_err(|_| GitError::ProposalNotFound(id.to_owned()))
    }

    /// Open proposals: `cup/proposal/*` branches not merged into the base, by id (fetches
    /// first).
    pub fn proposals(&self, revision: Option<&str>) -> Result<Vec<ProposalSummary>, GitError> {
        self.fetch()?;
        let query = ProposalQuery {
            revision,
            after: None,
            limit: usize::MAX,
        };
        Ok(self.list_proposals(&query)?.items)
    }

    /// One page of open proposals, after a full fetch that started after `fetched` was taken
    /// ([`GitRepo::fetch_since`]).
    pub fn proposals_since(
        &self,
        fetched: FetchTicket,
        query: &ProposalQuery<'_>,
    ) -> Result<ProposalPage, GitError> {
        self.fetch_since(fetched)?;
        self.list_proposals(query)
    }

    /// Open proposals as the cache has them. Whether each branch is merged is decided for
    /// all of them by one walk of the history (every tip pushed, the base hidden): a
    /// remote may hold thousands of proposal branches, and one ancestry check each would
    /// walk the base's history thousands of times. Only the page's commits are read.
    fn list_proposals(&self, query: &ProposalQuery<'_>) -> Result<ProposalPage, GitError> {
        let repo = self.repo()?;
        let (_, base) = self.base_branch(&repo, query.revision)?;
        let mut branches: Vec<(String, Oid)> = Vec::new();
        for reference in repo.references_glob(&format!("{REMOTE_REFS}{PROPOSAL_PREFIX}*"))? {
            let reference = reference?;
            let (Ok(name), Some(oid)) = (reference.name(), reference.target()) else {
                continue;
            };
            let Some(id) = name
                .strip_prefix(REMOTE_REFS)
                .and_then(|b| b.strip_prefix(PROPOSAL_PREFIX))
            else {
                continue;
            };
            if query.after.is_some_and(|after| id <= after) {
                continue;
            }
            branches.push((id.to_owned(), oid));
        }
        let tips: Vec<Oid> = branches.iter().map(|(_, oid)| *oid).collect();
        let open = unmerged(&repo, base, &tips)?;
        branches.retain(|(_, oid)| open.contains(oid));
        branches.sort();
        let more = branches.len() > query.limit;
        branches.truncate(query.limit);
        let items = branches
            .into_iter()
            .map(|(id, oid)| {
                let message = repo
                    .find_commit(oid)
                    .map(|c| c.summary().ok().flatten().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                ProposalSummary {
                    branch: format!("{PROPOSAL_PREFIX}{id}"),
                    id,
                    commit: oid.to_string(),
                    message,
                }
            })
            .collect();
        Ok(ProposalPage { items, more })
    }

    /// One proposal and the files it changes since it left the base.
    pub fn proposal(&self, id: &str, revision: Option<&str>) -> Result<ProposalDetail, GitError> {
        // Before any network call: a client cannot make the remote serve a fetch for an id
        // that cannot exist.
        check_proposal_id(id)?;
        self.fetch()?;
        self.show_proposal(id, revision)
    }

    /// [`GitRepo::proposal`] after a full fetch that started after `fetched` was taken.
    pub fn proposal_since(
        &self,
        fetched: FetchTicket,
        id: &str,
        revision: Option<&str>,
    ) -> Result<ProposalDetail, GitError> {
        check_proposal_id(id)?;
        self.fetch_since(fetched)?;
        self.show_proposal(id, revision)
    }

    fn show_proposal(&self, id: &str, revision: Option<&str>) -> Result<ProposalDetail, GitError> {
        let repo = self.repo()?;
        let (branch, base) = self.base_branch(&repo, revision)?;
        let oid = self.proposal_commit(&repo, id)?;
        let fork = repo.merge_base(base, oid)?;
        let old = repo.find_commit(fork)?.tree()?;
        let commit = repo.find_commit(oid)?;
        let new = commit.tree()?;
        let files = changed_files(&repo, &old, &new)?;
        Ok(ProposalDetail {
            id: id.to_owned(),
            branch: format!("{PROPOSAL_PREFIX}{id}"),
            commit: oid.to_string(),
            base: branch,
            merged: is_merged(&repo, base, oid)?,
            message: commit.message().unwrap_or_default().to_owned(),
            files,
        })
    }

    /// Lands a proposal on the base branch and pushes the base.
    pub fn merge(
        &self,
        id: &str,
        revision: Option<&str>,
        strategy: MergeStrategy,
    ) -> Result<Merged, GitError> {
        check_proposal_id(id)?;
        let _write = lock(&self.writes);
        self.fetch()?;
        let repo = self.repo()?;
        let (branch, base) = self.base_branch(&repo, revision)?;
        let proposal = self.proposal_commit(&repo, id)?;
        let conflict = |why: String| GitError::MergeConflict {
            id: id.to_owned(),
            why,
        };
        if is_merged(&repo, base, proposal)? {
            return Err(conflict(format!("already merged into {branch}")));
        }
        let fast_forward = strategy == MergeStrategy::FastForwardOrMerge
            && repo.graph_descendant_of(proposal, base)?;
        let commit = if fast_forward {
            proposal
        } else {
            let ours = repo.find_commit(base)?;
            let theirs = repo.find_commit(proposal)?;
            let mut index = repo.merge_commits(&ours, &theirs, None)?;
            if index.has_conflicts() {
                let paths: Vec<String> = index
                    .conflicts()?
                    .flatten()
                    .filter_map(|c| c.our.or(c.their).or(c.ancestor))
                    .map(|e| String::from_utf8_lossy(&e.path).into_owned())
                    .collect();
                return Err(conflict(format!(
                    "conflicts with {branch} in {}",
                    paths.join(", ")
                )));
            }
            let tree = repo.find_tree(index.write_tree_to(&repo)?)?;
            let signature = Signature::now(&self.author.name, &self.author.email)?;
            let message = format!("Merge branch '{PROPOSAL_PREFIX}{id}' into {branch}");
            repo.commit(
                None,
                &signature,
                &signature,
                &message,
                &tree,
                &[&ours, &theirs],
            )?
        };
        // Not forced: if the base moved on the remote since the fetch, the push is refused
        // and nothing is overwritten.
        self.push(&repo, commit, &format!("refs/heads/{branch}"), false)
            .map_err(|e| match e {
                GitError::Rejected { reason, .. } if moved_on(&reason) => {
                    conflict(format!("{branch} changed on the remote ({reason}); retry"))
                }
                // A hook or a branch protection said no: retrying would not help.
                GitError::Rejected { reason, .. } => {
                    conflict(format!("the remote refused to update {branch}: {reason}"))
                }
                other => other,
            })?;
        Ok(Merged {
            id: id.to_owned(),
            base: branch,
            commit: commit.to_string(),
            fast_forward,
        })
    }
}

/// Records why authentication failed; returns the error handed back to libgit2.
fn record(state: &Rc<RefCell<AuthState>>, problem: AuthProblem) -> git2::Error {
    let error = git2::Error::from_str(&problem.to_string());
    state.borrow_mut().problem = Some(problem);
    error
}

/// Offers the ssh-agent's keys for `user`, or says why not.
fn offer_agent(
    user: String,
    tried: bool,
    state: &Rc<RefCell<AuthState>>,
) -> Result<Cred, git2::Error> {
    if tried {
        let socket = std::env::var("SSH_AUTH_SOCK").unwrap_or_default();
        return Err(record(state, AuthProblem::KeyRefused { user, socket }));
    }
    let socket = ssh::agent_socket().map_err(|p| record(state, AuthProblem::Agent(p)))?;
    let credential = Cred::ssh_key_from_agent(&user);
    state.borrow_mut().agent_offered = Some((user, socket));
    credential
}

/// Offers the HTTP(S) user and password, or says why not.
fn offer_secret(
    secret: Option<&credentials::Secret>,
    tried: bool,
    file: Option<&PathBuf>,
    state: &Rc<RefCell<AuthState>>,
) -> Result<Cred, git2::Error> {
    match (secret, tried) {
        (Some(secret), false) => Cred::userpass_plaintext(&secret.username, &secret.password),
        (Some(secret), true) => Err(record(
            state,
            AuthProblem::Refused {
                origin: secret.origin.clone(),
            },
        )),
        (None, _) => Err(record(
            state,
            AuthProblem::NoCredentials {
                file: file.cloned(),
            },
        )),
    }
}

/// The files that differ between two trees, as the API lists them.
fn changed_files(
    repo: &Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
) -> Result<Vec<ChangedFile>, GitError> {
    let diff = repo.diff_tree_to_tree(Some(old), Some(new), None)?;
    Ok(diff
        .deltas()
        .map(|d| {
            let file = if d.status() == git2::Delta::Deleted {
                d.old_file()
            } else {
                d.new_file()
            };
            ChangedFile {
                path: file
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                status: match d.status() {
                    git2::Delta::Added => "added",
                    git2::Delta::Deleted => "deleted",
                    git2::Delta::Renamed => "renamed",
                    git2::Delta::Typechange => "typechange",
                    _ => "modified",
                },
            }
        })
        .collect())
}

/// The login name SSH uses when the URL names no user, like `ssh` does.
fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "git".to_owned())
}

/// Deletes `refs`, best effort (they are cupd's own temporary refs).
fn remove_refs(repo: &Repository, refs: &[String]) {
    for name in refs {
        if let Ok(mut r) = repo.find_reference(name) {
            let _ = r.delete();
        }
    }
}

/// The error of a push (or of opening the cache) that several writes shared.
fn shared_error(error: &GitError) -> GitError {
    GitError::SharedPush(error.to_string())
}

impl GitError {
    /// This error again, for another write of the same batch or another caller of the same
    /// fetch (the message is kept; the kind is kept for the variants that carry no
    /// `git2::Error`).
    fn clone_shared(&self) -> GitError {
        match self {
            GitError::Push { url, reason } => GitError::Push {
                url: url.clone(),
                reason: reason.clone(),
            },
            GitError::Fetch { url, reason } => GitError::Fetch {
                url: url.clone(),
                reason: reason.clone(),
            },
            GitError::Auth {
                operation,
                url,
                problem,
            } => GitError::Auth {
                operation,
                url: url.clone(),
                problem: problem.clone(),
            },
            other => shared_error(other),
        }
    }
}

/// Why a commit's tree cannot be written out, whatever cupd does: what
/// [`GitRepo::snapshot`] remembers.
enum Unreadable {
    BadTree { entry: String, reason: String },
    Limit(SnapshotLimitExceeded),
}

impl Unreadable {
    /// `None` for failures another try may not meet (a full disk).
    fn of(error: &GitError) -> Option<Unreadable> {
        match error {
            GitError::BadTree { entry, reason, .. } => Some(Unreadable::BadTree {
                entry: entry.clone(),
                reason: reason.clone(),
            }),
            GitError::SnapshotLimit(over) => Some(Unreadable::Limit(over.clone())),
            _ => None,
        }
    }

    fn error(&self, commit: Oid) -> GitError {
        match self {
            Unreadable::BadTree { entry, reason } => GitError::BadTree {
                commit: commit.to_string(),
                entry: entry.clone(),
                reason: reason.clone(),
            },
            Unreadable::Limit(over) => GitError::SnapshotLimit(over.clone()),
        }
    }
}

/// Milliseconds spent in each phase of a write, for the debug log.
struct PhaseTimer(std::time::Instant);

impl PhaseTimer {
    fn start() -> Self {
        PhaseTimer(std::time::Instant::now())
    }

    /// Milliseconds since the previous lap (or the start).
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.0).as_secs_f64() * 1e3;
        self.0 = now;
        ms
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `commit` is reachable from a branch or tag of the remote, as the cache mirrors
/// them after the last fetch (`refs/remotes/origin/*`, `refs/tags/*`).
///
/// Cost: one ancestry check per ref tip, and a remote may have thousands of proposal
/// branches. Branches and tags other than proposals are checked first, since an ordinary
/// commit id is almost always reached from one of them; proposal branches only for ids
/// no other ref reaches (a proposal's own commit, or one that is not there at all).
fn reachable(repo: &Repository, commit: Oid) -> Result<bool, GitError> {
    let mut proposals = Vec::new();
    for glob in [format!("{REMOTE_REFS}*"), "refs/tags/*".to_owned()] {
        for reference in repo.references_glob(&glob)? {
            let reference = reference?;
            let Ok(tip) = reference.peel_to_commit() else {
                continue; // a tag of a tree or a blob reaches no commit
            };
            let proposal = reference
                .name_bytes()
                .strip_prefix(REMOTE_REFS.as_bytes())
                .is_some_and(|n| n.starts_with(PROPOSAL_PREFIX.as_bytes()));
            if proposal {
                proposals.push(tip.id());
            } else if is_merged(repo, tip.id(), commit)? {
                return Ok(true);
            }
        }
    }
    for tip in proposals {
        if is_merged(repo, tip, commit)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Branch and tag names with their targets, sorted: what reachability depends on.
type RefTips = Vec<(Vec<u8>, Option<Oid>)>;

/// Every branch and tag of the cache with its target.
fn ref_tips(repo: &Repository) -> Result<RefTips, GitError> {
    let mut tips = Vec::new();
    for glob in [format!("{REMOTE_REFS}*"), "refs/tags/*".to_owned()] {
        for reference in repo.references_glob(&glob)? {
            let reference = reference?;
            tips.push((reference.name_bytes().to_vec(), reference.target()));
        }
    }
    tips.sort();
    Ok(tips)
}

/// Which of `tips` the history of `base` does not hold, in one walk: every tip pushed, the
/// base hidden; the walk yields exactly the commits reachable from a tip and not from the
/// base, so a tip is unmerged iff the walk yields it. It stops once every tip was seen. A
/// tip that names no commit is left out.
fn unmerged(repo: &Repository, base: Oid, tips: &[Oid]) -> Result<HashSet<Oid>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.hide(base)?;
    let mut wanted = HashSet::new();
    for &tip in tips {
        if tip != base && !wanted.contains(&tip) && walk.push(tip).is_ok() {
            wanted.insert(tip);
        }
    }
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    for commit in walk {
        let commit = commit?;
        if wanted.contains(&commit) {
            found.insert(commit);
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    Ok(found)
}

/// The names of every ref in the cache.
fn all_ref_names(repo: &Repository) -> Result<Vec<String>, GitError> {
    let mut names = Vec::new();
    for reference in repo.references()? {
        let reference = reference?;
        if let Ok(name) = reference.name() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Deletes those of `names` that exist and name no commit (through tags); returns them.
fn drop_refs_naming_no_commit(repo: &Repository, names: &[String]) -> Vec<String> {
    let mut dropped = Vec::new();
    for name in names {
        let Ok(mut reference) = repo.find_reference(name) else {
            continue; // pruned, or a name that is no ref
        };
        if reference.kind() != Some(git2::ReferenceType::Direct)
            || reference.peel_to_commit().is_ok()
        {
            continue;
        }
        if reference.delete().is_ok() {
            dropped.push(name.clone());
        }
    }
    dropped
}

/// Whether libgit2 failed on an object that is no commit (a ref of a blob or a tree in the
/// cache, over the local transport: `object is not a committish`).
fn names_no_commit(error: &git2::Error) -> bool {
    matches!(
        error.code(),
        git2::ErrorCode::Peel | git2::ErrorCode::InvalidSpec
    ) || error.message().contains("not a committish")
}

fn is_merged(repo: &Repository, base: Oid, commit: Oid) -> Result<bool, GitError> {
    Ok(base == commit || repo.graph_descendant_of(base, commit)?)
}

/// Plain names only: revision expressions (`a..b`, `x^`, `@{1}`) are not resolved.
fn check_revision(rev: &str) -> Result<(), GitError> {
    let bad = |why| {
        Err(GitError::InvalidRevision {
            revision: rev.to_owned(),
            why,
        })
    };
    if rev.is_empty() {
        return bad("it is empty");
    }
    if rev.contains("..") || rev.contains("@{") || rev.starts_with(['/', '-']) || rev.ends_with('/')
    {
        return bad("not a branch, tag or commit name");
    }
    if rev
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad("not a branch, tag or commit name");
    }
    Ok(())
}

/// For a file of the cache cupd writes whole (tempfile's default is 0600 already; said so).
fn private_file_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(checkout::PRIVATE_FILE)
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
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

/// A proposal id is a ULID (what `propose` names branches with); anything else cannot exist.
fn check_proposal_id(id: &str) -> Result<(), GitError> {
    match Ulid::from_string(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(GitError::ProposalNotFound(id.to_owned())),
    }
}

/// Whether a refused ref update means the ref moved on the remote (the push was not a
/// fast-forward of what the remote now has), as opposed to a refusal by policy.
fn moved_on(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "non-fast-forward",
        "fetch first",
        "stale info",
        "not a fast-forward",
    ]
    .iter()
    .any(|words| reason.contains(words))
}

#[cfg(test)]
mod tests;

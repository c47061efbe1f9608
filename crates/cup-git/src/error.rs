//! What can go wrong: [`GitError`] and, for failed authentication, [`AuthProblem`].

use std::path::{Path, PathBuf};

use crate::{
    AgentProblem, CredentialOrigin, CredentialsError, HostKeyError, SnapshotLimitExceeded,
    UrlError, WriteLimitExceeded,
};

/// Why a Git operation failed. Each variant is one class of failure (a bad revision, one
/// not found, a merge conflict, …), so a caller can answer each in its own way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A write's tree is over one of its [`WriteLimits`](crate::WriteLimits); nothing was committed or pushed.
    #[error(transparent)]
    WriteLimit(#[from] WriteLimitExceeded),
    /// A commit's tree is over one of the [`SnapshotLimits`](crate::SnapshotLimits): it is neither read nor
    /// written on.
    #[error(transparent)]
    SnapshotLimit(#[from] SnapshotLimitExceeded),
    #[error("git cache {path}: {source}")]
    Cache { path: PathBuf, source: git2::Error },
    #[error(
        "git cache {path} is in use by another process (its lock file {lock} is held); a cache serves one process at a time"
    )]
    CacheInUse { path: PathBuf, lock: PathBuf },
    #[error("fetching from {url}: {reason}")]
    Fetch { url: String, reason: String },
    /// The remote refused the credentials, or there were none to offer; says which were used.
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
    #[error("the default branch of {url} is unknown or missing ({why}); name a branch")]
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
    /// A commit's tree cannot be written out, whatever the caller does: two entries of one name
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
#[non_exhaustive]
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
                 put USER:TOKEN@ in the URL or name a credentials file"
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

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> GitError + 'a {
    move |source| GitError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The error of a push (or of opening the cache) that several writes shared.
pub(crate) fn shared_error(error: &GitError) -> GitError {
    GitError::SharedPush(error.to_string())
}

impl GitError {
    /// This error again, for another write of the same batch or another caller of the same
    /// fetch (the message is kept; the kind is kept for the variants that carry no
    /// `git2::Error`).
    pub(crate) fn clone_shared(&self) -> GitError {
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

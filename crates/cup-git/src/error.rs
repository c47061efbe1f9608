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
    /// The remote does not parse as a URL, an scp-like address or a path.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A write's tree is over one of its [`WriteLimits`](crate::WriteLimits); nothing was committed or pushed.
    #[error(transparent)]
    WriteLimit(#[from] WriteLimitExceeded),
    /// A commit's tree is over one of the [`SnapshotLimits`](crate::SnapshotLimits): it is neither read nor
    /// written on.
    #[error(transparent)]
    SnapshotLimit(#[from] SnapshotLimitExceeded),
    /// The bare cache repository cannot be created or opened.
    #[error("git cache {path}: {source}")]
    Cache {
        /// The cache repository's directory.
        path: PathBuf,
        /// libgit2's error.
        source: git2::Error,
    },
    /// Another process holds the cache's lock file.
    #[error(
        "git cache {path} is in use by another process (its lock file {lock} is held); a cache serves one process at a time"
    )]
    CacheInUse {
        /// The cache repository's directory.
        path: PathBuf,
        /// The lock file that is held.
        lock: PathBuf,
    },
    /// Fetching from the remote failed for a reason other than authentication.
    #[error("fetching from {url}: {reason}")]
    Fetch {
        /// The remote, without credentials.
        url: String,
        /// libgit2's message, without the URL's secrets.
        reason: String,
    },
    /// The remote refused the credentials, or there were none to offer; says which were used.
    #[error("{operation} {url}: {problem}")]
    Auth {
        /// What was being done (`fetching from`, `pushing to`).
        operation: &'static str,
        /// The remote, without credentials.
        url: String,
        /// What went wrong, and with which credentials.
        problem: Box<AuthProblem>,
    },
    /// The credentials file cannot be read or has a malformed line.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A revision that can never name anything: an expression such as `a..b`, or a commit id
    /// shorter than 7 hex digits. Refused before the remote is asked.
    #[error("invalid revision {revision:?}: {why}")]
    InvalidRevision {
        /// The revision as given.
        revision: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The revision is not a branch or tag of the remote, nor a commit reachable from one, as of
    /// the last fetch.
    #[error(
        "revision {revision:?} not found in {url} (not a branch, a tag or a commit reachable from one)"
    )]
    RevisionNotFound {
        /// The revision as given.
        revision: String,
        /// The remote, without credentials.
        url: String,
    },
    /// No revision was named and the remote's default branch is unknown or gone.
    #[error("the default branch of {url} is unknown or missing ({why}); name a branch")]
    NoDefaultBranch {
        /// The remote, without credentials.
        url: String,
        /// Why it is not known.
        why: String,
    },
    /// Pushing to the remote failed for a reason other than authentication or a refused ref.
    #[error("pushing changes to {url}: {reason}")]
    Push {
        /// The remote, without credentials.
        url: String,
        /// libgit2's message, without the URL's secrets.
        reason: String,
    },
    /// The remote refused a ref update (a hook, a protected branch, or a branch that moved on).
    #[error("pushing changes to {url}: the remote rejected {refname}: {reason}")]
    Rejected {
        /// The remote, without credentials.
        url: String,
        /// The ref the remote refused.
        refname: String,
        /// The remote's message.
        reason: String,
    },
    /// No proposal branch has this id (or the id is not a ULID); holds the id.
    #[error("proposal {0:?} not found")]
    ProposalNotFound(String),
    /// A proposal cannot be merged: it conflicts with its base, or is already merged.
    #[error("merging proposal {id}: {why}")]
    MergeConflict {
        /// The proposal's id.
        id: String,
        /// What stands in the way.
        why: String,
    },
    /// A proposal's pull request could not be looked up or merged: its forge did not answer
    /// (or answered with an error), so nothing was merged.
    #[error("merging proposal {id}: {scm} cannot be reached: {reason}")]
    ScmUnavailable {
        /// The proposal's id.
        id: String,
        /// The forge integration's name.
        scm: String,
        /// What went wrong.
        reason: String,
    },
    /// A file operation in the cache failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
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
        /// The commit id (hex).
        commit: String,
        /// The entry's path in the repository.
        entry: String,
        /// Why it cannot be written out.
        reason: String,
    },
    /// Writing a tree entry out failed for a reason of this host (a full disk, say).
    #[error("commit {commit}: writing its tree entry {entry:?} out of the git cache: {source}")]
    Materialise {
        /// The commit id (hex).
        commit: String,
        /// The entry's path in the repository.
        entry: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The git program, which garbage collection of the cache runs, is not there.
    #[error("the git program {program:?} is not found, so the git cache is not garbage-collected")]
    GcProgramMissing {
        /// The program as named.
        program: PathBuf,
    },
    /// Garbage collection of the cache failed (the program's message, or why it stopped).
    #[error("garbage-collecting the git cache: {reason}")]
    Gc {
        /// What went wrong.
        reason: String,
    },
    /// Any other libgit2 failure.
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
    Refused {
        /// Where the refused credentials came from.
        origin: CredentialOrigin,
    },
    /// The server wants credentials and none match the URL.
    NoCredentials {
        /// The credentials file that was searched, if one is configured.
        file: Option<PathBuf>,
    },
    /// The ssh-agent is missing, unreachable or empty.
    Agent(AgentProblem),
    /// The SSH server accepted none of the agent's keys.
    KeyRefused {
        /// The SSH user name offered.
        user: String,
        /// The ssh-agent socket whose keys were offered.
        socket: String,
    },
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

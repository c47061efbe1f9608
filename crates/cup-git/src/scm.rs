//! The pull-request interface: what happens on a forge (GitHub, Gitea, …) when cupd has
//! pushed a proposal branch.
//!
//! A proposal is always a `cup/proposal/<id>` branch on the remote, listed, shown and
//! merged under `/proposals`. A [`PullRequests`] implementation may in addition open a
//! pull request for it and return its URL, which the write's response then carries as
//! `proposal.url`. [`BranchesOnly`] opens nothing (`-api-git-scm none`).
//!
//! Writing an implementation (drop-in):
//! 1. implement [`PullRequests`] (it runs on a blocking thread while the repository's write
//!    lock is held: use a blocking HTTP client, keep a timeout, do not retry forever);
//! 2. select it in cupd's `-api-git-scm` parsing (`crates/cupd/src/main.rs`), which today
//!    refuses `github` and `gitea` at startup;
//! 3. return `Ok(Some(url))` for the pull request opened. An `Err` does not undo the push:
//!    the branch is the proposal; cupd logs the error and answers without a URL.

use std::fmt;

use crate::ChangedFile;

/// A proposal branch that was just pushed.
#[derive(Debug, Clone)]
pub struct NewProposal<'a> {
    /// The ULID in the branch name.
    pub id: &'a str,
    /// `cup/proposal/<id>`: the pull request's head.
    pub branch: &'a str,
    /// The branch the proposal starts from and should be merged into (the pull request's
    /// base): the requested `?revision=` when it names a branch, else the default branch.
    /// `None` when the write was based on a tag or a commit id.
    pub base: Option<&'a str>,
    /// The proposal's commit id (hex).
    pub commit: &'a str,
    /// The commit message (the pull request's title and body).
    pub message: &'a str,
    /// What the commit changes relative to its parent.
    pub files: &'a [ChangedFile],
    /// The remote URL without credentials.
    pub remote: &'a str,
}

/// Why a pull request could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening a pull request on {scm}: {reason}")]
pub struct ScmError {
    /// Name of the forge integration ([`PullRequests::name`]).
    pub scm: String,
    /// What went wrong.
    pub reason: String,
}

/// Told about each new proposal; may open a pull request for it.
pub trait PullRequests: Send + Sync + fmt::Debug {
    /// A short name for logs (`none`, `github`, …).
    fn name(&self) -> &str;

    /// Called once per pushed proposal branch. Returns the pull request's URL, or `None`
    /// when nothing external was opened.
    fn proposed(&self, proposal: &NewProposal<'_>) -> Result<Option<String>, ScmError>;
}

/// Proposals are branches only (cupd's `-api-git-scm none`): nothing is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct BranchesOnly;

impl PullRequests for BranchesOnly {
    fn name(&self) -> &str {
        "none"
    }

    fn proposed(&self, _: &NewProposal<'_>) -> Result<Option<String>, ScmError> {
        Ok(None)
    }
}

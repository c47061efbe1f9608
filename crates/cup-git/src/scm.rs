//! The pull-request interface: what happens on a forge (GitHub, Gitea, GitLab) when cupd has
//! pushed a proposal branch, and what the forge says about it later.
//!
//! A proposal is always a `cup/proposal/<id>` branch on the remote, listed, shown and
//! merged under `/proposals`. A [`PullRequests`] implementation may in addition open a
//! pull request for it, report its state and merge it. [`BranchesOnly`] opens nothing
//! (`-api-git-scm none`). The forge clients are in the `cup-scm` crate.
//!
//! Every call runs on a blocking thread, some while the repository's write lock is held: an
//! implementation uses a blocking HTTP client, bounds every call's time and its retries.
//! An `Err` from [`PullRequests::proposed`] does not undo the push: the branch is the
//! proposal; cupd logs the error and answers without a URL.

use std::fmt;

use serde::Serialize;

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

/// Where a pull request stands on its forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PullRequestState {
    /// Open (draft or not).
    Open,
    /// Merged on the forge.
    Merged,
    /// Closed without being merged.
    Closed,
}

impl PullRequestState {
    /// `open`, `merged` or `closed`, as `/proposals` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            PullRequestState::Open => "open",
            PullRequestState::Merged => "merged",
            PullRequestState::Closed => "closed",
        }
    }
}

/// A pull request (GitLab: merge request) as its forge describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    /// Its number in the repository (GitHub and Gitea `number`, GitLab `iid`).
    pub number: u64,
    /// Its web page (`html_url`, GitLab `web_url`).
    pub url: String,
    /// Open, merged or closed.
    pub state: PullRequestState,
    /// Its head branch (`cup/proposal/<id>` for cupd's own).
    pub head: String,
}

/// A pull request merged through its forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedPullRequest {
    /// The merge's commit id on the base branch (hex), when the forge says.
    pub commit: Option<String>,
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

/// Told about each new proposal; may open a pull request for it, report and merge it.
pub trait PullRequests: Send + Sync + fmt::Debug {
    /// A short name for logs and the 202 body's `proposal.source` (`git` when nothing is
    /// opened, else `github`, `gitea`, `gitlab`).
    fn name(&self) -> &str;

    /// Called once per pushed proposal branch. Returns the pull request opened, or `None`
    /// when nothing external was opened.
    fn proposed(&self, proposal: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError>;

    /// The pull request whose head is `branch`, in any state (the newest when several).
    fn find(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        let _ = branch;
        Ok(None)
    }

    /// Merges `pull_request` on the forge (a merge commit, as the original cupd's helpers
    /// did). Only called when [`PullRequests::opens_pull_requests`] is true.
    fn merge(&self, pull_request: &PullRequest) -> Result<MergedPullRequest, ScmError> {
        Err(ScmError {
            scm: self.name().to_owned(),
            reason: format!(
                "cannot merge pull request {}: no forge",
                pull_request.number
            ),
        })
    }

    /// Whether this implementation opens pull requests at all (merges then go through the
    /// forge, not through a push of the base).
    fn opens_pull_requests(&self) -> bool {
        true
    }
}

/// Proposals are branches only (cupd's `-api-git-scm none`): nothing is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct BranchesOnly;

impl PullRequests for BranchesOnly {
    fn name(&self) -> &str {
        "git"
    }

    fn proposed(&self, _: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        Ok(None)
    }

    fn opens_pull_requests(&self) -> bool {
        false
    }
}

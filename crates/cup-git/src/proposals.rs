//! Proposals as they are on the remote: listing the open ones, one with what it changes,
//! and merging one into its base branch.

use git2::{Oid, Repository, Signature};
use serde::Serialize;
use ulid::Ulid;

use crate::cache::lock;
use crate::propose::changed_files;
use crate::revision::{REMOTE_REFS, check_revision, is_merged, unmerged};
use crate::{ChangedFile, FetchTicket, GitError, GitRepo, PROPOSAL_PREFIX};

/// An open proposal, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalSummary {
    /// The proposal's id, a ULID.
    pub id: String,
    /// Its branch on the remote, `cup/proposal/<id>`.
    pub branch: String,
    /// The branch's commit id (hex).
    pub commit: String,
    /// The first line of the commit message.
    pub message: String,
}

/// One proposal with what it changes relative to where it left the base.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalDetail {
    /// The proposal's id, a ULID.
    pub id: String,
    /// Its branch on the remote, `cup/proposal/<id>`.
    pub branch: String,
    /// The branch's commit id (hex).
    pub commit: String,
    /// The base branch it is compared with.
    pub base: String,
    /// Whether the base branch already contains the proposal's commit.
    pub merged: bool,
    /// The whole commit message.
    pub message: String,
    /// The files it changes since it left the base.
    pub files: Vec<ChangedFile>,
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
    /// The merged proposal's id.
    pub id: String,
    /// The branch it was merged into.
    pub base: String,
    /// The base branch's new commit id (hex): the proposal's own on a fast-forward, else the merge
    /// commit.
    pub commit: String,
    /// Whether the base was fast-forwarded rather than given a merge commit.
    pub fast_forward: bool,
}

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
    /// The proposals of this page, in id order.
    pub items: Vec<ProposalSummary>,
    /// More open proposals follow the last one.
    pub more: bool,
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

impl GitRepo {
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

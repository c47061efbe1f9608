//! Proposals as they are on the remote: listing the open ones, one with what it changes,
//! and merging one into its base branch (through the forge's pull request when there is
//! one). Each shows its pull request as the book has it; the forge is asked about a few
//! unknown ones per listing, and about one shown alone when unknown or stale.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use git2::{Oid, Repository, Signature};
use serde::{Serialize, Serializer};
use ulid::Ulid;

use crate::cache::lock;
use crate::propose::changed_files;
use crate::revision::{REMOTE_REFS, check_revision, is_merged, unmerged};
use crate::{
    ChangedFile, FetchTicket, GitError, GitRepo, MAX_PULL_REQUESTS, MergedPullRequest,
    PROPOSAL_PREFIX, PullRequest, PullRequestState, ScmError,
};

/// At most this many pull requests the book does not know are looked up on the forge per
/// listing (the first unknown ones of the page, in the order listed): a page of 500 must
/// not cost 500 forge calls. The others show no `pull_request` until a later listing, a
/// webhook or `/proposals/{id}` has found theirs.
pub const MAX_PULL_REQUEST_LOOKUPS: usize = 4;

/// A branch the forge was asked about is not asked about again by a listing for this
/// long (it may have no pull request at all), and after a failed lookup listings ask
/// nothing for this long; `/proposals/{id}` trusts the book's state of an open or closed
/// pull request for this long (a merged one for good).
pub const PULL_REQUEST_LOOKUP_INTERVAL: Duration = Duration::from_secs(60);

/// When the forge was last asked about each branch, bounded like the book.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    asked: HashMap<String, SystemTime>,
    failed_at: Option<SystemTime>,
}

fn older_than(at: SystemTime, now: SystemTime, age: Duration) -> bool {
    now.duration_since(at).is_ok_and(|d| d >= age)
}

impl Lookups {
    fn due(&self, branch: &str, now: SystemTime) -> bool {
        self.asked
            .get(branch)
            .is_none_or(|&at| older_than(at, now, PULL_REQUEST_LOOKUP_INTERVAL))
    }

    fn failing(&self, now: SystemTime) -> bool {
        self.failed_at
            .is_some_and(|at| !older_than(at, now, PULL_REQUEST_LOOKUP_INTERVAL))
    }

    fn asked(&mut self, branch: &str, now: SystemTime) {
        if self.asked.len() >= MAX_PULL_REQUESTS && !self.asked.contains_key(branch) {
            self.asked
                .retain(|_, &mut at| !older_than(at, now, PULL_REQUEST_LOOKUP_INTERVAL));
            if self.asked.len() >= MAX_PULL_REQUESTS {
                self.asked.clear();
            }
        }
        self.asked.insert(branch.to_owned(), now);
    }

    pub(crate) fn forget(&mut self, branch: &str) {
        self.asked.remove(branch);
    }
}

/// A pull request as `/proposals` shows it: its number, web page and state (its head is the
/// proposal's branch, shown beside it).
fn shown_pull_request<S: Serializer>(
    pull_request: &Option<PullRequest>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        number: u64,
        url: &'a str,
        state: PullRequestState,
    }
    match pull_request {
        Some(pr) => Shown {
            number: pr.number,
            url: &pr.url,
            state: pr.state,
        }
        .serialize(serializer),
        None => serializer.serialize_none(),
    }
}

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
    /// Its pull request, when one is known (see [`MAX_PULL_REQUEST_LOOKUPS`]).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "shown_pull_request"
    )]
    pub pull_request: Option<PullRequest>,
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
    /// Its pull request, when there is one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "shown_pull_request"
    )]
    pub pull_request: Option<PullRequest>,
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
    /// The pull request merged on the forge, when the merge went through one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "shown_pull_request"
    )]
    pub pull_request: Option<PullRequest>,
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
        let open = unmerged(&repo, &[base], &tips)?;
        branches.retain(|(_, oid)| open.contains(oid));
        branches.sort();
        let more = branches.len() > query.limit;
        branches.truncate(query.limit);
        let mut items: Vec<ProposalSummary> = branches
            .into_iter()
            .map(|(id, oid)| {
                let message = repo
                    .find_commit(oid)
                    .map(|c| c.summary().ok().flatten().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                let branch = format!("{PROPOSAL_PREFIX}{id}");
                ProposalSummary {
                    pull_request: self.pull_request_book.get(&branch),
                    branch,
                    id,
                    commit: oid.to_string(),
                    message,
                }
            })
            .collect();
        self.look_up_unknown_pull_requests(&mut items);
        Ok(ProposalPage { items, more })
    }

    /// Asks the forge about the first few listed proposals whose pull request the book
    /// does not know ([`MAX_PULL_REQUEST_LOOKUPS`]); stops at the first failure.
    fn look_up_unknown_pull_requests(&self, items: &mut [ProposalSummary]) {
        let scm = &self.options.pull_requests;
        let now = SystemTime::now();
        if !scm.opens_pull_requests() || lock(&self.pull_request_lookups).failing(now) {
            return;
        }
        let mut budget = MAX_PULL_REQUEST_LOOKUPS;
        for item in items.iter_mut().filter(|i| i.pull_request.is_none()) {
            if budget == 0 {
                break;
            }
            if !lock(&self.pull_request_lookups).due(&item.branch, now) {
                continue;
            }
            budget -= 1;
            match self.look_up_pull_request(&item.branch) {
                Ok(found) => item.pull_request = found,
                Err(error) => {
                    tracing::warn!(%error, scm = scm.name(), branch = item.branch,
                        "looking up the pull request of a proposal failed; listing without it");
                    break;
                }
            }
        }
    }

    /// Asks the forge for the pull request of `branch` and records what it says.
    fn look_up_pull_request(&self, branch: &str) -> Result<Option<PullRequest>, ScmError> {
        let now = SystemTime::now();
        lock(&self.pull_request_lookups).asked(branch, now);
        let found = self.options.pull_requests.find(branch);
        match &found {
            Ok(Some(pr)) => self.pull_request_book.record(pr.clone()),
            Ok(None) => self.pull_request_book.forget(branch),
            Err(_) => lock(&self.pull_request_lookups).failed_at = Some(now),
        }
        found
    }

    /// The pull request of `branch` for `/proposals/{id}`: the book's when it is fresh (see
    /// [`PULL_REQUEST_LOOKUP_INTERVAL`]), else the forge's; the book's when the forge
    /// cannot be asked.
    fn current_pull_request(&self, branch: &str) -> Option<PullRequest> {
        let known = self.pull_request_book.get_recorded(branch);
        let scm = &self.options.pull_requests;
        if !scm.opens_pull_requests() {
            return known.map(|(pr, _)| pr);
        }
        let now = SystemTime::now();
        if let Some((pr, at)) = &known
            && (pr.state == PullRequestState::Merged
                || !older_than(*at, now, PULL_REQUEST_LOOKUP_INTERVAL))
        {
            return Some(pr.clone());
        }
        match self.look_up_pull_request(branch) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, scm = scm.name(), branch,
                    "looking up the pull request of a proposal failed; showing the last known");
                known.map(|(pr, _)| pr)
            }
        }
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
        let branch_name = format!("{PROPOSAL_PREFIX}{id}");
        Ok(ProposalDetail {
            id: id.to_owned(),
            pull_request: self.current_pull_request(&branch_name),
            branch: branch_name,
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
        let scm = &self.options.pull_requests;
        if scm.opens_pull_requests() {
            let head = format!("{PROPOSAL_PREFIX}{id}");
            let found =
                self.look_up_pull_request(&head)
                    .map_err(|error| GitError::ScmUnavailable {
                        id: id.to_owned(),
                        scm: error.scm,
                        reason: error.reason,
                    })?;
            // No pull request (opening one failed when the branch was pushed): the base is
            // pushed as without a forge.
            if let Some(pull_request) = found {
                return self.merge_pull_request(id, branch, pull_request);
            }
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
            pull_request: None,
        })
    }

    /// Merges `pull_request` on its forge, then fetches the base it landed on.
    fn merge_pull_request(
        &self,
        id: &str,
        base: String,
        pull_request: PullRequest,
    ) -> Result<Merged, GitError> {
        let scm = &self.options.pull_requests;
        let conflict = |why: String| GitError::MergeConflict {
            id: id.to_owned(),
            why,
        };
        if pull_request.state != PullRequestState::Open {
            return Err(conflict(format!(
                "its pull request #{} on {} is already {}",
                pull_request.number,
                scm.name(),
                pull_request.state.as_str()
            )));
        }
        let merged = match scm.merge(&pull_request) {
            Ok(merged) => merged,
            // Asked again: a forge that answers refused the merge, one that does not
            // cannot be reached, and a merge whose answer was lost may have gone through.
            Err(refusal) => match self.look_up_pull_request(&pull_request.head) {
                Ok(Some(now)) if now.state == PullRequestState::Merged => {
                    MergedPullRequest { commit: None }
                }
                Ok(_) => {
                    return Err(conflict(format!(
                        "{} refused to merge pull request #{}: {}",
                        scm.name(),
                        pull_request.number,
                        refusal.reason
                    )));
                }
                Err(_) => {
                    return Err(GitError::ScmUnavailable {
                        id: id.to_owned(),
                        scm: refusal.scm,
                        reason: refusal.reason,
                    });
                }
            },
        };
        let pull_request = PullRequest {
            state: PullRequestState::Merged,
            ..pull_request
        };
        self.pull_request_book.record(pull_request.clone());
        let fetched = self.fetch();
        let commit = match (merged.commit, fetched) {
            (Some(commit), _) => commit,
            (None, Ok(())) => {
                let repo = self.repo()?;
                self.base_branch(&repo, Some(&base))?.1.to_string()
            }
            (None, Err(error)) => {
                return Err(GitError::Fetch {
                    url: self.display_url.clone(),
                    reason: format!(
                        "pull request #{} was merged on {}, but fetching the result failed: {error}",
                        pull_request.number,
                        scm.name()
                    ),
                });
            }
        };
        Ok(Merged {
            id: id.to_owned(),
            base,
            commit,
            fast_forward: false,
            pull_request: Some(pull_request),
        })
    }
}

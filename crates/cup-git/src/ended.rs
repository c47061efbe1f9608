//! Removing the branches of ended proposals, so the remote's ref count (and the cache's)
//! stays bounded: a proposal has ended when its tip is merged into a branch of the remote
//! that is not a proposal (in Git terms: nothing is lost when it goes), or when the book
//! says its pull request was merged or closed. Its branch goes once the retention has
//! passed since that was first seen.
//!
//! One push deletes a batch of at most [`MAX_REMOVALS_PER_RUN`] branches. A branch is
//! deleted only while the remote still has it at the commit the cache saw: the push's own
//! advertisement is checked before anything is sent, and the remote applies each deletion
//! only if the branch is still there (the old commit travels with the command). A branch
//! that moved meanwhile is kept; the next fetch shows where it went.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use git2::{Oid, PushOptions, Repository};

use crate::cache::lock;
use crate::remote::AuthState;
use crate::revision::{REMOTE_REFS, unmerged};
use crate::{GitError, GitRepo, PROPOSAL_PREFIX};

/// Most branches one run deletes (one push); the others wait for the next run.
pub const MAX_REMOVALS_PER_RUN: usize = 256;

/// Most merged branches whose first sighting is remembered; past it, newly merged ones wait
/// until room is made (their retention starts later, never earlier).
const MAX_SEEN_MERGED: usize = 65_536;

/// Proposal branches seen merged: their tip then, and when that was first seen.
#[derive(Debug, Default)]
pub(crate) struct SeenMerged {
    branches: HashMap<String, (Oid, SystemTime)>,
}

/// A branch to delete that the remote advertises at another commit (`Some`) or not at all.
type Elsewhere = (String, Option<Oid>);

/// What one run of [`GitRepo::remove_ended_proposals`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedProposals {
    /// Branches deleted on the remote, or found already gone there; their remote-tracking
    /// refs are gone from the cache.
    pub removed: Vec<String>,
    /// Branches kept because the remote has them at another commit than the cache saw.
    pub moved: Vec<String>,
    /// Branches whose deletion the remote refused, with its reason.
    pub refused: Vec<(String, String)>,
    /// Ended branches left for a later run: their retention has not passed, or this run's
    /// bound was reached.
    pub waiting: usize,
}

impl GitRepo {
    /// Deletes the branches of proposals that ended at least `retention` ago (zero: all that
    /// ended), as the cache saw the remote at the last fetch. Records when each merged
    /// branch was first seen so; that memory lasts as long as this value (a restart starts
    /// the retention of merged branches again).
    pub fn remove_ended_proposals(
        &self,
        retention: Duration,
    ) -> Result<RemovedProposals, GitError> {
        let _write = lock(&self.writes);
        let repo = self.repo()?;
        let now = SystemTime::now();
        let cutoff = now.checked_sub(retention);
        let mut proposals: HashMap<String, Oid> = HashMap::new();
        let mut bases = Vec::new();
        for reference in repo.references_glob(&format!("{REMOTE_REFS}*"))? {
            let reference = reference?;
            let (Ok(name), Some(oid)) = (reference.name(), reference.target()) else {
                continue;
            };
            let Some(branch) = name.strip_prefix(REMOTE_REFS) else {
                continue;
            };
            if branch.starts_with(PROPOSAL_PREFIX) {
                proposals.insert(branch.to_owned(), oid);
            } else {
                bases.push(oid);
            }
        }
        let tips: Vec<Oid> = proposals.values().copied().collect();
        let open = if bases.is_empty() {
            tips.iter().copied().collect()
        } else {
            unmerged(&repo, &bases, &tips)?
        };
        let mut due: BTreeMap<String, Oid> = BTreeMap::new();
        let mut waiting = 0;
        {
            let mut seen = lock(&self.seen_merged);
            seen.branches.retain(|branch, (tip, _)| {
                proposals.get(branch) == Some(tip) && !open.contains(tip)
            });
            for (branch, &tip) in &proposals {
                if open.contains(&tip) {
                    continue;
                }
                let first = match seen.branches.get(branch) {
                    Some(&(_, at)) => at,
                    None if seen.branches.len() < MAX_SEEN_MERGED => {
                        seen.branches.insert(branch.clone(), (tip, now));
                        now
                    }
                    None => {
                        waiting += 1;
                        continue;
                    }
                };
                if cutoff.is_some_and(|cutoff| first <= cutoff) {
                    due.insert(branch.clone(), tip);
                } else {
                    waiting += 1;
                }
            }
        }
        if let Some(cutoff) = cutoff {
            for branch in self.pull_request_book.ended_by(cutoff) {
                match proposals.get(&branch) {
                    Some(&tip) => {
                        due.insert(branch, tip);
                    }
                    // Its branch is gone already: nothing more to know about it.
                    None => self.pull_request_book.forget(&branch),
                }
            }
        }
        waiting += due.len().saturating_sub(MAX_REMOVALS_PER_RUN);
        let batch: Vec<(String, Oid)> = due.into_iter().take(MAX_REMOVALS_PER_RUN).collect();
        let mut outcome = if batch.is_empty() {
            RemovedProposals::default()
        } else {
            self.delete_branches(&repo, &batch)?
        };
        outcome.waiting += waiting;
        for branch in &outcome.removed {
            if let Ok(mut reference) = repo.find_reference(&format!("{REMOTE_REFS}{branch}")) {
                reference.delete()?;
            }
            self.pull_request_book.forget(branch);
            lock(&self.seen_merged).branches.remove(branch);
            lock(&self.pull_request_lookups).forget(branch);
        }
        if !outcome.removed.is_empty() {
            tracing::info!(
                removed = outcome.removed.len(),
                waiting = outcome.waiting,
                "deleted the branches of ended proposals"
            );
        }
        for (branch, reason) in &outcome.refused {
            tracing::warn!(
                branch,
                reason,
                "the remote refused to delete an ended proposal's branch"
            );
        }
        Ok(outcome)
    }

    /// Deletes `branches` on the remote in one push, each only where the remote still has
    /// it at the given commit. A push whose advertisement shows a branch elsewhere is called
    /// off before anything is sent, and sent once more without the branches that moved.
    fn delete_branches(
        &self,
        repo: &Repository,
        branches: &[(String, Oid)],
    ) -> Result<RemovedProposals, GitError> {
        let _remote = lock(&self.remote);
        let mut outcome = RemovedProposals::default();
        let mut pending: Vec<(String, Oid)> = branches.to_vec();
        for _ in 0..2 {
            if pending.is_empty() {
                break;
            }
            let expected: HashMap<String, Oid> = pending
                .iter()
                .map(|(branch, tip)| (format!("refs/heads/{branch}"), *tip))
                .collect();
            let elsewhere: Rc<RefCell<Vec<Elsewhere>>> = Rc::default();
            let rejected: Rc<RefCell<HashMap<String, String>>> = Rc::default();
            let state = Rc::new(RefCell::new(AuthState::default()));
            let mut callbacks = self.callbacks(&state);
            let seen = elsewhere.clone();
            callbacks.push_negotiation(move |updates| {
                let mut seen = seen.borrow_mut();
                for update in updates {
                    let Ok(dest) = update.dst_refname() else {
                        continue;
                    };
                    let advertised = update.src();
                    if expected.get(dest) != Some(&advertised) {
                        seen.push((
                            dest.to_owned(),
                            (!advertised.is_zero()).then_some(advertised),
                        ));
                    }
                }
                if seen.is_empty() {
                    Ok(())
                } else {
                    Err(git2::Error::from_str(
                        "a branch to delete moved on the remote",
                    ))
                }
            });
            let refused = rejected.clone();
            callbacks.push_update_reference(move |refname, status| {
                if let Some(reason) = status {
                    refused
                        .borrow_mut()
                        .insert(refname.to_owned(), reason.to_owned());
                }
                Ok(())
            });
            let refspecs: Vec<String> = pending
                .iter()
                .map(|(branch, _)| format!(":refs/heads/{branch}"))
                .collect();
            let mut options = PushOptions::new();
            options.remote_callbacks(callbacks);
            let result = repo
                .remote_anonymous(&self.url)
                .and_then(|mut remote| remote.push(&refspecs, Some(&mut options)));
            drop(options);
            let elsewhere = elsewhere.take();
            if !elsewhere.is_empty() {
                for (dest, advertised) in elsewhere {
                    let branch = dest.strip_prefix("refs/heads/").unwrap_or(&dest).to_owned();
                    pending.retain(|(b, _)| *b != branch);
                    match advertised {
                        Some(_) => outcome.moved.push(branch),
                        None => outcome.removed.push(branch),
                    }
                }
                continue;
            }
            result.map_err(|e| self.push_error(&e, &state))?;
            let rejected = rejected.take();
            for (branch, _) in pending.drain(..) {
                match rejected.get(&format!("refs/heads/{branch}")) {
                    Some(reason) => outcome.refused.push((branch, reason.clone())),
                    None => outcome.removed.push(branch),
                }
            }
        }
        // Not sent: another branch moved on the second try too; left for the next run.
        outcome.waiting = pending.len();
        outcome.removed.sort();
        outcome.moved.sort();
        Ok(outcome)
    }
}

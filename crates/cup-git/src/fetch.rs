//! Fetching: full fetches (shared by the callers that asked before one started), the
//! narrow fetch before a write, the record of what fetches did, and dropping refs that
//! name no commit.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use git2::{AutotagOption, FetchOptions, FetchPrune, Repository};

use crate::cache::{RemoteRecord, lock};
use crate::remote::AuthState;
use crate::revision::{REMOTE_REFS, check_revision, ref_tips};
use crate::{GitError, GitRepo};

const FETCH_REFSPECS: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// What the fetches of the remote did lately, for an operator.
#[derive(Debug, Clone, Default)]
pub struct FetchStatus {
    /// When a fetch last succeeded: in this run, or in an earlier one as the cache recorded.
    pub last_success: Option<SystemTime>,
    /// Why the last fetch failed; `None` when it succeeded. The error itself, so that the
    /// caller can say what to do about it in its own terms.
    pub error: Option<Arc<GitError>>,
    /// When the last fetch failed.
    pub error_at: Option<SystemTime>,
}

/// The moment a caller asked for the remote's current state: any full fetch that started
/// after it serves the caller ([`GitRepo::fetch_ticket`], [`GitRepo::fetch_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchTicket(u64);

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

impl GitRepo {
    /// Successes and failures of the fetches so far.
    pub fn fetch_status(&self) -> FetchStatus {
        lock(&self.fetch_status).clone()
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
            // Snapshots readers held are looked at again after the next fetch.
            Ok(all_gone) => *lock(&self.tips) = after.ok().filter(|_| all_gone),
            Err(error) => {
                tracing::warn!(%error, "removing snapshots of unreachable commits failed")
            }
        }
        Ok(())
    }

    /// What a write needs before it starts: the base branch or tag as the remote has it now
    /// (every branch and tag when the base is a commit id, to know it is still reachable).
    /// Fetching every branch
    /// and pruning, as [`GitRepo::fetch`] does, costs a read of every remote-tracking ref per
    /// write, which grows with the number of proposal branches (docs/RELIABILITY.md).
    pub(crate) fn fetch_for_write(&self, revision: Option<&str>) -> Result<(), GitError> {
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
                    status.error = Some(Arc::new(error.clone_shared()));
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
}

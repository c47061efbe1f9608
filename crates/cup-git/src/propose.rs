//! Proposing: each write committed on its base in the cache, then pushed with the others
//! of its batch as `cup/proposal/<ULID>` branches; pushes and the refs they update.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use git2::{Oid, PushOptions, Repository, Signature, Tree};
use serde::Serialize;
use ulid::Ulid;

use crate::cache::lock;
use crate::checkout::{materialise, private_dir_permissions};
use crate::error::{io, shared_error};
use crate::remote::AuthState;
use crate::revision::REMOTE_REFS;
use crate::{GitError, GitRepo, NewProposal, PullRequest, tree};

/// Prefix of proposal branches on the remote.
pub const PROPOSAL_PREFIX: &str = "cup/proposal/";

/// How many pushed refs between two packings of the cache's refs.
pub(crate) const PACK_REFS_EVERY: u64 = 32;

/// Name and email of the commits made (proposals, merges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// The name in the author and committer lines.
    pub name: String,
    /// The email address in the author and committer lines.
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

/// A pushed proposal.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Proposal {
    /// Who keeps it: `git` (a branch only) or the forge's name
    /// ([`PullRequests::name`](crate::PullRequests::name)).
    pub source: String,
    /// The proposal's id, a ULID.
    pub id: String,
    /// Its branch on the remote, `cup/proposal/<id>`.
    pub branch: String,
    /// The pushed commit id (hex).
    pub commit: String,
    /// The pull request [`PullRequests`](crate::PullRequests) opened for it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequest>,
}

/// A change to propose as a branch: its base, its commit message and the change itself, one
/// of the writes [`GitRepo::propose_all`] commits and pushes together.
pub struct ProposedWrite<'a> {
    /// Its base: a branch, a tag or a commit (`None` = the default branch).
    pub revision: Option<&'a str>,
    /// The commit message.
    pub message: &'a str,
    /// The commit's author when not the repository's own (who asked for the change);
    /// the committer is always the repository's author.
    pub author: Option<&'a Author>,
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

/// A file a proposal changes, relative to its base.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangedFile {
    /// The file's path in the repository.
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed` or `typechange`.
    pub status: &'static str,
}

/// The files that differ between two trees, as the API lists them.
pub(crate) fn changed_files(
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

/// Deletes `refs`, best effort (they are this crate's own temporary refs).
fn remove_refs(repo: &Repository, refs: &[String]) {
    for name in refs {
        if let Ok(mut r) = repo.find_reference(name) {
            let _ = r.delete();
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

impl GitRepo {
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
        let write = ProposedWrite {
            revision,
            message,
            author: None,
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
    pub fn propose_all(
        &self,
        writes: Vec<ProposedWrite<'_>>,
    ) -> Vec<Result<Option<Proposal>, GitError>> {
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
        write: ProposedWrite<'_>,
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
        let committer = Signature::now(&self.author.name, &self.author.email)?;
        let author = match write.author {
            Some(author) => Signature::now(&author.name, &author.email)?,
            None => committer.clone(),
        };
        let commit = repo.commit(
            None,
            &author,
            &committer,
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
        let pull_request = self.announce(&NewProposal {
            id: &c.id,
            branch: &c.branch,
            base: c.base_branch.as_deref(),
            commit: &commit,
            message: &c.message,
            files: &c.files,
            remote: &self.display_url,
        });
        Proposal {
            source: self.options.pull_requests.name().to_owned(),
            id: c.id,
            branch: c.branch,
            commit,
            pull_request,
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
    fn announce(&self, proposal: &NewProposal<'_>) -> Option<PullRequest> {
        let scm = &self.options.pull_requests;
        match scm.proposed(proposal) {
            Ok(pull_request) => {
                if let Some(pr) = &pull_request {
                    self.pull_request_book.record(pr.clone());
                }
                pull_request
            }
            Err(error) => {
                tracing::warn!(%error, scm = scm.name(), branch = proposal.branch,
                    "the proposal branch is pushed but no pull request was opened");
                None
            }
        }
    }

    /// Pushes `commit` to `dest` on the remote and, on success, updates the matching
    /// remote-tracking ref.
    pub(crate) fn push(
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
        result.map_err(|e| self.push_error(&e, &state))?;
        Ok(rejected)
    }
}

//! Which commits the remote's branches and tags still reach, kept as a set so that asking
//! costs a lookup rather than an ancestry walk.
//!
//! Reads at `?revision=<commit>` and the snapshot pruning after every fetch ask this of many
//! commits. An ancestry check per ref tip walks the history between the tip and the commit,
//! which for a commit an hour old on a busy branch is thousands of commits: the checks grew
//! with the history until they were most of the server's work. Instead, the commits the
//! ordinary branches and tags (every ref but proposal branches) reach are walked once,
//! nearest the tips first, up to [`MAX_REACHABLE_COMMITS`], and after a fetch only the
//! commits that became reachable are walked (from the new tips down to commits already
//! known).
//!
//! **Invariant:** the set never holds a commit those refs no longer reach. A set is only
//! extended when every ref it was made from still exists and only moved forward (its new tip
//! descends from its old one); a ref deleted or moved elsewhere (a force push) drops the set,
//! and the next question walks afresh from the refs as they are.

use std::collections::{HashSet, VecDeque};

use git2::{Oid, Repository};

use crate::revision::{REMOTE_REFS, is_merged};
use crate::{GitError, GitRepo, PROPOSAL_PREFIX};

/// At most this many commits are remembered as reachable (about 40 bytes each). A commit
/// further from the tips than that is checked by an ancestry walk per ref.
pub const MAX_REACHABLE_COMMITS: usize = 65_536;

/// The ordinary refs' tips, each peeled to its commit, sorted by ref name.
type BaseTips = Vec<(Vec<u8>, Oid)>;

/// The refs of the cache a commit may be reached from, split: ordinary branches and tags,
/// peeled to their commits; and proposal branches, which come and go with every write and
/// so are not part of the set.
struct Refs {
    bases: BaseTips,
    proposals: Vec<Oid>,
}

fn refs(repo: &Repository) -> Result<Refs, GitError> {
    let mut bases = Vec::new();
    let mut proposals = Vec::new();
    for glob in [format!("{REMOTE_REFS}*"), "refs/tags/*".to_owned()] {
        for reference in repo.references_glob(&glob)? {
            let reference = reference?;
            let Ok(tip) = reference.peel_to_commit() else {
                continue; // a tag of a tree or a blob reaches no commit
            };
            let name = reference.name_bytes();
            let proposal = name
                .strip_prefix(REMOTE_REFS.as_bytes())
                .is_some_and(|n| n.starts_with(PROPOSAL_PREFIX.as_bytes()));
            if proposal {
                proposals.push(tip.id());
            } else {
                bases.push((name.to_vec(), tip.id()));
            }
        }
    }
    bases.sort();
    Ok(Refs { bases, proposals })
}

/// The commits the ordinary refs reach, as far as walked.
#[derive(Debug)]
pub(crate) struct ReachableCommits {
    /// The tips the set was made from; `None` until the first walk and after a drop.
    tips: Option<BaseTips>,
    commits: HashSet<Oid>,
    /// Whether the walk reached the end of history: then a commit not in the set is reached
    /// by no ordinary ref. Otherwise it may be older than the walk went.
    complete: bool,
    /// At most this many commits ([`MAX_REACHABLE_COMMITS`]).
    bound: usize,
}

impl Default for ReachableCommits {
    fn default() -> Self {
        ReachableCommits::with_bound(MAX_REACHABLE_COMMITS)
    }
}

/// What the set says of one commit.
#[derive(Debug, PartialEq, Eq)]
enum Known {
    Reached,
    NotReached,
    /// Older than the set goes: to be checked by walking.
    Unknown,
}

impl ReachableCommits {
    fn with_bound(bound: usize) -> Self {
        ReachableCommits {
            tips: None,
            commits: HashSet::new(),
            complete: false,
            bound,
        }
    }

    fn drop_all(&mut self) {
        *self = ReachableCommits::with_bound(self.bound);
    }

    /// Brings the set up to the refs' tips `now`.
    fn update(&mut self, repo: &Repository, now: &BaseTips) -> Result<(), GitError> {
        match &self.tips {
            Some(old) if old == now => return Ok(()),
            Some(old) if only_moved_forward(repo, old, now)? => {
                if !self.walk(repo, now)? {
                    // Over the bound: start again from the newest commits.
                    self.drop_all();
                    self.walk(repo, now)?;
                }
            }
            _ => {
                self.drop_all();
                self.walk(repo, now)?;
            }
        }
        self.tips = Some(now.clone());
        Ok(())
    }

    /// Adds the commits reachable from `tips` that are not in the set yet, nearest the
    /// tips first (breadth first: commit times cannot order them, a busy branch has many
    /// commits in one second), while the set stays within its bound. A commit already in the
    /// set is not walked past: its history is in the set too, or beyond the bound. Returns
    /// false if the bound stopped the walk.
    fn walk(&mut self, repo: &Repository, tips: &BaseTips) -> Result<bool, GitError> {
        let fresh = self.commits.is_empty();
        let mut queue: VecDeque<Oid> = VecDeque::new();
        let mut pending: Vec<Oid> = tips.iter().map(|(_, tip)| *tip).collect();
        loop {
            for commit in pending.drain(..) {
                if self.commits.contains(&commit) {
                    continue;
                }
                if self.commits.len() >= self.bound {
                    return Ok(false);
                }
                self.commits.insert(commit);
                queue.push_back(commit);
            }
            let Some(commit) = queue.pop_front() else {
                break;
            };
            pending.extend(repo.find_commit(commit)?.parent_ids());
        }
        if fresh {
            self.complete = true;
        }
        Ok(true)
    }

    fn known(&self, commit: Oid) -> Known {
        if self.commits.contains(&commit) {
            Known::Reached
        } else if self.complete {
            Known::NotReached
        } else {
            Known::Unknown
        }
    }
}

/// Whether every ref of `old` is still in `now` at its old tip or a descendant of it: then
/// nothing `old` reached became unreachable.
fn only_moved_forward(repo: &Repository, old: &BaseTips, now: &BaseTips) -> Result<bool, GitError> {
    for (name, old_tip) in old {
        let Ok(at) = now.binary_search_by(|(n, _)| n.as_slice().cmp(name)) else {
            return Ok(false);
        };
        let new_tip = now[at].1;
        if new_tip != *old_tip && !repo.graph_descendant_of(new_tip, *old_tip)? {
            return Ok(false);
        }
    }
    Ok(true)
}

impl GitRepo {
    /// Whether `commit` is reachable from a branch or tag of the remote, as the cache mirrors
    /// them after the last fetch (`refs/remotes/origin/*`, `refs/tags/*`).
    ///
    /// Ordinary branches and tags answer from the set of commits they reach; a commit older
    /// than the set goes is checked against each of them by walking. Proposal branches are
    /// checked only for commits no other ref reaches (a proposal's own commit, or one that
    /// is not there at all), one ancestry check each.
    pub(crate) fn reachable(&self, repo: &Repository, commit: Oid) -> Result<bool, GitError> {
        let refs = refs(repo)?;
        let known = {
            let mut set = crate::cache::lock(&self.reachable_commits);
            if let Err(error) = set.update(repo, &refs.bases) {
                set.drop_all();
                return Err(error);
            }
            set.known(commit)
        };
        match known {
            Known::Reached => return Ok(true),
            Known::NotReached => {}
            Known::Unknown => {
                for (_, tip) in &refs.bases {
                    if is_merged(repo, *tip, commit)? {
                        return Ok(true);
                    }
                }
            }
        }
        for tip in refs.proposals {
            if is_merged(repo, tip, commit)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A repository whose `refs/remotes/origin/main` has `n` commits; returns it and the ids,
    /// oldest first.
    fn history(n: usize) -> (tempfile::TempDir, Repository, Vec<Oid>) {
        let tmp = tempfile::tempdir().unwrap();
        git(tmp.path(), &["init", "-q", "."]);
        let mut ids = Vec::new();
        for i in 0..n {
            git(
                tmp.path(),
                &["commit", "-q", "--allow-empty", "-m", &format!("c{i}")],
            );
            ids.push(head(tmp.path()));
        }
        set_ref(tmp.path(), "refs/remotes/origin/main", ids[n - 1]);
        let repo = Repository::open(tmp.path()).unwrap();
        (tmp, repo, ids)
    }

    fn head(dir: &std::path::Path) -> Oid {
        git(dir, &["rev-parse", "HEAD"]).parse().unwrap()
    }

    fn set_ref(dir: &std::path::Path, name: &str, to: Oid) {
        git(dir, &["update-ref", name, &to.to_string()]);
    }

    fn known(set: &mut ReachableCommits, repo: &Repository, commit: Oid) -> Known {
        set.update(repo, &refs(repo).unwrap().bases).unwrap();
        set.known(commit)
    }

    #[test]
    fn a_branch_moving_forward_extends_the_set_and_a_force_push_drops_it() {
        let (tmp, repo, ids) = history(5);
        let mut set = ReachableCommits::default();
        assert_eq!(known(&mut set, &repo, ids[0]), Known::Reached);
        assert!(set.complete);

        // Forward: main gains two commits; the old ones stay, the new ones join.
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "c5"]);
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "c6"]);
        let head: Oid = head(tmp.path());
        set_ref(tmp.path(), "refs/remotes/origin/main", head);
        assert_eq!(known(&mut set, &repo, head), Known::Reached);
        assert_eq!(known(&mut set, &repo, ids[4]), Known::Reached);
        assert_eq!(set.commits.len(), 7);

        // A force push back to c2: c3 onwards are no longer reached.
        set_ref(tmp.path(), "refs/remotes/origin/main", ids[2]);
        assert_eq!(known(&mut set, &repo, ids[3]), Known::NotReached);
        assert_eq!(known(&mut set, &repo, head), Known::NotReached);
        assert_eq!(known(&mut set, &repo, ids[2]), Known::Reached);
        assert_eq!(set.commits.len(), 3);
    }

    #[test]
    fn a_deleted_branch_or_tag_drops_what_only_it_reached() {
        let (tmp, repo, ids) = history(3);
        // A side branch and a tag, each with a commit main and the other do not have.
        git(
            tmp.path(),
            &["checkout", "-q", "-b", "side", &ids[0].to_string()],
        );
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "side"]);
        let side: Oid = head(tmp.path());
        set_ref(tmp.path(), "refs/remotes/origin/side", side);
        git(
            tmp.path(),
            &["checkout", "-q", "--detach", &ids[0].to_string()],
        );
        git(
            tmp.path(),
            &["commit", "-q", "--allow-empty", "-m", "tagged"],
        );
        let tagged: Oid = head(tmp.path());
        git(
            tmp.path(),
            &["tag", "-a", "-m", "t", "v1", &tagged.to_string()],
        );
        let mut set = ReachableCommits::default();
        assert_eq!(known(&mut set, &repo, side), Known::Reached);
        assert_eq!(
            known(&mut set, &repo, tagged),
            Known::Reached,
            "an annotated tag, peeled"
        );

        git(
            tmp.path(),
            &["update-ref", "-d", "refs/remotes/origin/side"],
        );
        assert_eq!(known(&mut set, &repo, side), Known::NotReached);
        assert_eq!(known(&mut set, &repo, tagged), Known::Reached);
        git(tmp.path(), &["tag", "-d", "v1"]);
        assert_eq!(known(&mut set, &repo, tagged), Known::NotReached);
        assert_eq!(known(&mut set, &repo, ids[0]), Known::Reached);
    }

    #[test]
    fn proposal_branches_are_not_in_the_set_but_still_reach_their_commits() {
        let (tmp, _repo, ids) = history(2);
        git(
            tmp.path(),
            &["commit", "-q", "--allow-empty", "-m", "proposed"],
        );
        let proposed: Oid = head(tmp.path());
        let branch = format!("{REMOTE_REFS}{PROPOSAL_PREFIX}01ABC");
        set_ref(tmp.path(), &branch, proposed);
        let repo = Repository::open(tmp.path()).unwrap();
        let mut set = ReachableCommits::default();
        assert_eq!(known(&mut set, &repo, proposed), Known::NotReached);
        assert_eq!(known(&mut set, &repo, ids[1]), Known::Reached);
        // Proposals coming and going do not drop the set.
        git(tmp.path(), &["update-ref", "-d", &branch]);
        set.update(&repo, &refs(&repo).unwrap().bases).unwrap();
        assert_eq!(set.commits.len(), 2);
    }

    #[test]
    fn the_set_keeps_the_newest_commits_within_its_bound() {
        let (tmp, repo, ids) = history(5);
        let mut set = ReachableCommits::with_bound(3);
        assert_eq!(known(&mut set, &repo, ids[4]), Known::Reached);
        assert_eq!(known(&mut set, &repo, ids[2]), Known::Reached);
        assert_eq!(
            known(&mut set, &repo, ids[1]),
            Known::Unknown,
            "older than the set goes"
        );
        assert!(!set.complete);
        // Moving past the bound starts again from the newest.
        git(tmp.path(), &["commit", "-q", "--allow-empty", "-m", "c5"]);
        let head: Oid = head(tmp.path());
        set_ref(tmp.path(), "refs/remotes/origin/main", head);
        assert_eq!(known(&mut set, &repo, head), Known::Reached);
        assert_eq!(known(&mut set, &repo, ids[2]), Known::Unknown);
        assert_eq!(set.commits.len(), 3);
    }
}

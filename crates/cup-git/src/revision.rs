//! Revisions: resolving a branch, tag or commit id (only one the remote still reaches:
//! `reachable.rs`), and the ancestry checks behind merges and proposal listings.

use std::collections::HashSet;

use git2::{Oid, Repository};

use crate::{GitError, GitRepo};

pub(crate) const REMOTE_REFS: &str = "refs/remotes/origin/";

/// Fewest hex digits of a commit id a revision may be.
const MIN_COMMIT_HEX: usize = 7;

/// A resolved revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The commit the revision names.
    pub commit: Oid,
}

/// Branch and tag names with their targets, sorted: what reachability depends on.
pub(crate) type RefTips = Vec<(Vec<u8>, Option<Oid>)>;

/// Every branch and tag of the cache with its target.
pub(crate) fn ref_tips(repo: &Repository) -> Result<RefTips, GitError> {
    let mut tips = Vec::new();
    for glob in [format!("{REMOTE_REFS}*"), "refs/tags/*".to_owned()] {
        for reference in repo.references_glob(&glob)? {
            let reference = reference?;
            tips.push((reference.name_bytes().to_vec(), reference.target()));
        }
    }
    tips.sort();
    Ok(tips)
}

/// Which of `tips` the history of `bases` does not hold, in one walk: every tip pushed, the
/// bases hidden; the walk yields exactly the commits reachable from a tip and from no
/// base, so a tip is unmerged iff the walk yields it. It stops once every tip was seen. A
/// tip that names no commit is left out.
pub(crate) fn unmerged(
    repo: &Repository,
    bases: &[Oid],
    tips: &[Oid],
) -> Result<HashSet<Oid>, GitError> {
    let mut walk = repo.revwalk()?;
    for &base in bases {
        walk.hide(base)?;
    }
    let mut wanted = HashSet::new();
    for &tip in tips {
        if !bases.contains(&tip) && !wanted.contains(&tip) && walk.push(tip).is_ok() {
            wanted.insert(tip);
        }
    }
    let mut found = HashSet::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    for commit in walk {
        let commit = commit?;
        if wanted.contains(&commit) {
            found.insert(commit);
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    Ok(found)
}

pub(crate) fn is_merged(repo: &Repository, base: Oid, commit: Oid) -> Result<bool, GitError> {
    Ok(base == commit || repo.graph_descendant_of(base, commit)?)
}

/// Plain names only: revision expressions (`a..b`, `x^`, `@{1}`) are not resolved.
pub(crate) fn check_revision(rev: &str) -> Result<(), GitError> {
    let bad = |why| {
        Err(GitError::InvalidRevision {
            revision: rev.to_owned(),
            why,
        })
    };
    if rev.is_empty() {
        return bad("it is empty");
    }
    if rev.contains("..") || rev.contains("@{") || rev.starts_with(['/', '-']) || rev.ends_with('/')
    {
        return bad("not a branch, tag or commit name");
    }
    if rev
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        return bad("not a branch, tag or commit name");
    }
    Ok(())
}

impl GitRepo {
    /// Resolves `revision` (a branch, a tag or a commit id; `None` = the default branch).
    pub fn resolve(&self, revision: Option<&str>) -> Result<Resolved, GitError> {
        let repo = self.repo()?;
        let commit = match revision {
            None => {
                let branch = self.default_branch().ok_or_else(|| self.no_head())?;
                let refname = format!("{REMOTE_REFS}{branch}");
                repo.refname_to_id(&refname)
                    .map_err(|_| GitError::NoDefaultBranch {
                        url: self.display_url.clone(),
                        why: format!("HEAD names {branch:?}, which does not exist"),
                    })?
            }
            Some(rev) => self.resolve_named(&repo, rev)?,
        };
        Ok(Resolved { commit })
    }

    fn resolve_named(&self, repo: &Repository, rev: &str) -> Result<Oid, GitError> {
        check_revision(rev)?;
        let not_found = || GitError::RevisionNotFound {
            revision: rev.to_owned(),
            url: self.display_url.clone(),
        };
        for refname in [format!("{REMOTE_REFS}{rev}"), format!("refs/tags/{rev}")] {
            if let Ok(reference) = repo.find_reference(&refname) {
                let commit = reference.peel_to_commit().map_err(|_| not_found())?;
                return Ok(commit.id());
            }
        }
        if !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        // Short prefixes make guessing the ids of commits cheap: 7 hex digits at least.
        if rev.len() < MIN_COMMIT_HEX {
            return Err(GitError::InvalidRevision {
                revision: rev.to_owned(),
                why: "not a branch or tag, and a commit id needs 7 to 40 hex digits",
            });
        }
        if rev.len() > 40 {
            return Err(not_found());
        }
        // A prefix lookup in the object database only: never a ref or an expression.
        let Ok(commit) = repo.find_commit_by_prefix(rev) else {
            return Err(not_found());
        };
        // The cache keeps objects the remote dropped (a force-pushed-away commit, say one
        // that leaked a secret): only what its branches and tags still reach is served or
        // used as a write base. Unreachable and absent answer alike, so the answer does
        // not tell whether the cache still holds the object.
        if self.reachable(repo, commit.id())? {
            Ok(commit.id())
        } else {
            Err(not_found())
        }
    }

    /// Why there is no default branch.
    pub(crate) fn no_head(&self) -> GitError {
        let why = if self.fetch_status().last_success.is_none() {
            "no fetch of the remote has succeeded yet"
        } else {
            "the remote has no HEAD"
        };
        GitError::NoDefaultBranch {
            url: self.display_url.clone(),
            why: why.into(),
        }
    }
}

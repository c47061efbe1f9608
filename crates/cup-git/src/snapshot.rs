//! Snapshots: the read-only tree of one commit, made once (the writing-out is in
//! `checkout.rs`), the memo of commits whose tree cannot be written out, and removing the
//! snapshots of commits no branch or tag reaches any more.

use std::path::PathBuf;

use git2::Oid;

use crate::cache::lock;
use crate::checkout::{materialise, private_dir_permissions};
use crate::error::io;
use crate::revision::reachable;
use crate::{GitError, GitRepo, SnapshotLimitExceeded};

/// How many unreadable commits [`GitRepo::snapshot`] remembers.
const MAX_BAD_TREES: usize = 1024;

/// Why a commit's tree cannot be written out, whatever the caller does: what
/// [`GitRepo::snapshot`] remembers.
pub(crate) enum Unreadable {
    BadTree { entry: String, reason: String },
    Limit(SnapshotLimitExceeded),
}

impl Unreadable {
    /// `None` for failures another try may not meet (a full disk).
    fn of(error: &GitError) -> Option<Unreadable> {
        match error {
            GitError::BadTree { entry, reason, .. } => Some(Unreadable::BadTree {
                entry: entry.clone(),
                reason: reason.clone(),
            }),
            GitError::SnapshotLimit(over) => Some(Unreadable::Limit(over.clone())),
            _ => None,
        }
    }

    fn error(&self, commit: Oid) -> GitError {
        match self {
            Unreadable::BadTree { entry, reason } => GitError::BadTree {
                commit: commit.to_string(),
                entry: entry.clone(),
                reason: reason.clone(),
            },
            Unreadable::Limit(over) => GitError::SnapshotLimit(over.clone()),
        }
    }
}

impl GitRepo {
    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("cup-snapshots")
    }

    /// Removes the snapshot of each commit no branch or tag reaches any more (one
    /// force-pushed away, a merged and deleted proposal), so its files do not stay on disk
    /// after the remote dropped them. A read that resolved the commit just before may find
    /// its snapshot gone and fail; it would be refused from now on anyway.
    pub(crate) fn prune_snapshots(&self) -> Result<(), GitError> {
        let dir = self.snapshot_dir();
        let repo = self.repo()?;
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let name = entry.file_name();
            // Half-made snapshots (`.tmp-*`) are their makers' to publish or remove.
            let Some(commit) = name.to_str().and_then(|n| Oid::from_str(n).ok()) else {
                continue;
            };
            if name.len() != 40 || reachable(&repo, commit)? {
                continue;
            }
            // Renamed first, so the commit's name never points at a half-removed tree.
            let doomed = dir.join(format!(".tmp-pruned-{commit}"));
            let path = entry.path();
            std::fs::rename(&path, &doomed).map_err(io("removing snapshot", &path))?;
            std::fs::remove_dir_all(&doomed).map_err(io("removing snapshot", &doomed))?;
            tracing::debug!(%commit, "snapshot of an unreachable commit removed");
        }
        Ok(())
    }

    /// A read-only directory holding the tree of `commit`, made once per commit.
    pub fn snapshot(&self, commit: Oid) -> Result<PathBuf, GitError> {
        let target = self.snapshot_dir().join(commit.to_string());
        if target.is_dir() {
            return Ok(target);
        }
        self.known_unreadable(commit)?;
        let _making = lock(&self.making_snapshot);
        // Made (or found unreadable) by the reader this one waited for.
        if target.is_dir() {
            return Ok(target);
        }
        self.known_unreadable(commit)?;
        let repo = self.repo()?;
        let tree = repo.find_commit(commit)?.tree()?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(private_dir_permissions())
            .tempdir_in(self.snapshot_dir())
            .map_err(io("creating a snapshot in", &self.snapshot_dir()))?;
        let limits = self.options.snapshot_limits;
        if let Err(error) = materialise(&repo, &tree, temp.path(), commit, limits) {
            if let Some(unreadable) = Unreadable::of(&error) {
                let mut bad = lock(&self.bad_trees);
                // Bounded: whoever can push could make bad commits without end.
                if bad.len() < MAX_BAD_TREES {
                    bad.insert(commit, unreadable);
                }
            }
            return Err(error);
        }
        let made = temp.keep();
        if let Err(e) = std::fs::rename(&made, &target) {
            let _ = std::fs::remove_dir_all(&made);
            return Err(io("publishing snapshot", &target)(e));
        }
        Ok(target)
    }

    /// The error a read of `commit` met before, if its tree cannot be written out.
    fn known_unreadable(&self, commit: Oid) -> Result<(), GitError> {
        match lock(&self.bad_trees).get(&commit) {
            Some(unreadable) => Err(unreadable.error(commit)),
            None => Ok(()),
        }
    }

    /// Resolves `revision` and returns its snapshot directory.
    pub fn view(&self, revision: Option<&str>) -> Result<PathBuf, GitError> {
        let resolved = self.resolve(revision)?;
        self.snapshot(resolved.commit)
    }
}

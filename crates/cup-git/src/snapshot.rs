//! Snapshots: the read-only tree of one commit, made once (the writing-out is in
//! `checkout.rs`), leased to each reader for the whole of its read ([`Snapshot`]), the memo
//! of commits whose tree cannot be written out, and removing snapshots: those of commits no
//! branch or tag reaches any more, and the least recently used beyond the
//! [`SnapshotRetention`] bounds. A leased snapshot is never removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::Oid;

use crate::cache::lock;
use crate::checkout::{DiskUse, materialise, private_dir_permissions};
use crate::error::io;
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

/// How many snapshots, and how many bytes of files in them, are kept once no reader uses
/// them. Beyond either bound the least recently used ones that no reader holds are removed
/// after a new snapshot is made; snapshots in use are kept whatever the bounds, so one
/// snapshot larger than `max_bytes` alone is still made and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotRetention {
    /// Snapshot directories kept (at least 1).
    pub max_snapshots: usize,
    /// Bytes of the files of all kept snapshots (directories and blocks not counted).
    pub max_bytes: u64,
}

impl Default for SnapshotRetention {
    fn default() -> Self {
        SnapshotRetention {
            max_snapshots: 32,
            max_bytes: 1 << 30,
        }
    }
}

/// How much the snapshots on disk hold, as [`GitRepo::snapshot_usage`] reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotUsage {
    /// Snapshot directories.
    pub snapshots: usize,
    /// Of those, the ones a reader holds now.
    pub leased: usize,
    /// Bytes of their files.
    pub bytes: u64,
    /// Their files.
    pub files: u64,
}

/// The snapshots on disk: who uses each and how much it holds. A snapshot is leased and
/// removed only under this index's lock, so a lease is never of a removed directory.
#[derive(Debug, Default)]
pub(crate) struct SnapshotIndex {
    entries: HashMap<Oid, Entry>,
    /// A clock that ticks at each lease taken or given back: the order of last use.
    clock: u64,
    /// Removals so far, for unique names of the directories being removed.
    removals: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Readers holding it now.
    leases: usize,
    /// [`SnapshotIndex::clock`] at its last lease taken or given back.
    last_use: u64,
    disk: DiskUse,
}

impl SnapshotIndex {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Takes a lease on the snapshot of `commit`, if there is one.
    fn lease(
        &mut self,
        index: &Arc<Mutex<SnapshotIndex>>,
        dir: &Path,
        commit: Oid,
    ) -> Option<Snapshot> {
        let now = self.tick();
        let entry = self.entries.get_mut(&commit)?;
        entry.leases += 1;
        entry.last_use = now;
        Some(Snapshot::leased(
            index,
            dir.join(commit.to_string()),
            commit,
        ))
    }

    /// Takes `commit` out of the index and renames its directory out of the way (under the
    /// index's lock, so no lease can be taken on it any more); returns where it now is.
    fn take_out(&mut self, dir: &Path, commit: Oid) -> Option<PathBuf> {
        self.entries.remove(&commit)?;
        self.removals += 1;
        let path = dir.join(commit.to_string());
        // Renamed first, so the commit's name never points at a half-removed tree.
        let doomed = dir.join(format!(".tmp-pruned-{commit}-{}", self.removals));
        match std::fs::rename(&path, &doomed) {
            Ok(()) => Some(doomed),
            Err(error) => {
                tracing::warn!(%commit, %error, "cannot remove a snapshot");
                None
            }
        }
    }

    fn usage(&self) -> SnapshotUsage {
        let mut usage = SnapshotUsage {
            snapshots: self.entries.len(),
            ..SnapshotUsage::default()
        };
        for entry in self.entries.values() {
            usage.leased += usize::from(entry.leases > 0);
            usage.bytes = usage.bytes.saturating_add(entry.disk.bytes);
            usage.files = usage.files.saturating_add(entry.disk.files);
        }
        usage
    }
}

/// A reader's hold on the snapshot of one commit: the directory stays as it is until every
/// clone of this value is dropped. Dereferences to the directory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    lease: Arc<Lease>,
}

#[derive(Debug)]
struct Lease {
    path: PathBuf,
    commit: Oid,
    index: Arc<Mutex<SnapshotIndex>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut index = lock(&self.index);
        let now = index.tick();
        if let Some(entry) = index.entries.get_mut(&self.commit) {
            entry.leases = entry.leases.saturating_sub(1);
            entry.last_use = now;
        }
    }
}

impl Snapshot {
    /// The lease on `commit` whose count the caller has just raised.
    fn leased(index: &Arc<Mutex<SnapshotIndex>>, path: PathBuf, commit: Oid) -> Snapshot {
        Snapshot {
            lease: Arc::new(Lease {
                path,
                commit,
                index: index.clone(),
            }),
        }
    }

    /// The read-only directory holding the commit's tree.
    pub fn path(&self) -> &Path {
        &self.lease.path
    }

    /// The commit whose tree this is.
    pub fn commit(&self) -> Oid {
        self.lease.commit
    }
}

impl std::ops::Deref for Snapshot {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.path()
    }
}

impl AsRef<Path> for Snapshot {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

impl GitRepo {
    pub(crate) fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("cup-snapshots")
    }

    /// Puts the snapshots an earlier run left into the index (at open, before any read):
    /// their sizes are measured, and their order of last use is that of their times of
    /// change, oldest first.
    pub(crate) fn adopt_snapshots(&self) -> Result<(), GitError> {
        let dir = self.snapshot_dir();
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
            let entry = entry.map_err(io("reading", &dir))?;
            let name = entry.file_name();
            let Some(commit) = name
                .to_str()
                .filter(|n| n.len() == 40)
                .and_then(|n| Oid::from_str(n).ok())
            else {
                continue;
            };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let changed = meta.modified().unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            found.push((changed, commit, disk_use(&path)));
        }
        found.sort_by_key(|(changed, commit, _)| (*changed, *commit));
        let mut index = lock(&self.snapshots);
        for (_, commit, disk) in found {
            let last_use = index.tick();
            index.entries.insert(
                commit,
                Entry {
                    leases: 0,
                    last_use,
                    disk,
                },
            );
        }
        Ok(())
    }

    /// What the snapshots on disk hold now.
    pub fn snapshot_usage(&self) -> SnapshotUsage {
        lock(&self.snapshots).usage()
    }

    /// Removes the snapshot of each commit no branch or tag reaches any more (one
    /// force-pushed away, a merged and deleted proposal), so its files do not stay on disk
    /// after the remote dropped them. One a reader holds is left to a later pruning; returns
    /// whether every such snapshot went.
    pub(crate) fn prune_snapshots(&self) -> Result<bool, GitError> {
        let dir = self.snapshot_dir();
        let repo = self.repo()?;
        let known: Vec<Oid> = lock(&self.snapshots).entries.keys().copied().collect();
        let mut unreachable = Vec::new();
        for commit in known {
            if !self.reachable(&repo, commit)? {
                unreachable.push(commit);
            }
        }
        let mut all_gone = true;
        let mut doomed = Vec::new();
        {
            let mut index = lock(&self.snapshots);
            for commit in unreachable {
                match index.entries.get(&commit) {
                    Some(entry) if entry.leases > 0 => all_gone = false,
                    Some(_) => doomed.extend(index.take_out(&dir, commit).map(|d| (commit, d))),
                    None => {}
                }
            }
        }
        for (commit, path) in doomed {
            std::fs::remove_dir_all(&path).map_err(io("removing snapshot", &path))?;
            tracing::debug!(%commit, "snapshot of an unreachable commit removed");
        }
        Ok(all_gone)
    }

    /// Removes the least recently used snapshots no reader holds while the snapshots are
    /// over either [`SnapshotRetention`] bound.
    pub(crate) fn prune_least_recently_used(&self) {
        remove_pruned(self.take_out_least_recently_used());
    }

    /// Takes the least recently used snapshots no reader holds out of the index while the
    /// snapshots are over either [`SnapshotRetention`] bound, and renames them out of the
    /// way; returns them, to be removed with [`remove_pruned`].
    fn take_out_least_recently_used(&self) -> Vec<(Oid, PathBuf)> {
        let dir = self.snapshot_dir();
        let bounds = self.options.snapshot_retention;
        let mut index = lock(&self.snapshots);
        let usage = index.usage();
        let (mut count, mut bytes) = (usage.snapshots, usage.bytes);
        let over = |count: usize, bytes: u64| {
            count > bounds.max_snapshots.max(1) || bytes > bounds.max_bytes
        };
        let mut doomed = Vec::new();
        if !over(count, bytes) {
            return doomed;
        }
        let mut idle: Vec<(u64, Oid, u64)> = index
            .entries
            .iter()
            .filter(|(_, e)| e.leases == 0)
            .map(|(commit, e)| (e.last_use, *commit, e.disk.bytes))
            .collect();
        idle.sort_unstable();
        for (_, commit, size) in idle {
            if !over(count, bytes) {
                break;
            }
            count -= 1;
            bytes = bytes.saturating_sub(size);
            doomed.extend(index.take_out(&dir, commit).map(|d| (commit, d)));
        }
        doomed
    }

    /// A read-only directory holding the tree of `commit`, made once per commit, leased to
    /// the caller: it is not removed while the returned value (or a clone) lives.
    pub fn snapshot(&self, commit: Oid) -> Result<Snapshot, GitError> {
        let dir = self.snapshot_dir();
        if let Some(found) = lock(&self.snapshots).lease(&self.snapshots, &dir, commit) {
            return Ok(found);
        }
        self.known_unreadable(commit)?;
        let (made, pruned) = {
            let _making = lock(&self.making_snapshot);
            // Made (or found unreadable) by the reader this one waited for.
            if let Some(found) = lock(&self.snapshots).lease(&self.snapshots, &dir, commit) {
                return Ok(found);
            }
            self.known_unreadable(commit)?;
            let made = self.make_snapshot(commit)?;
            // Taken out before the next snapshot is made, so the directory never holds
            // more than the bounds plus the snapshots leased.
            (made, self.take_out_least_recently_used())
        };
        remove_pruned(pruned);
        Ok(made)
    }

    /// Writes out the tree of `commit` and publishes it, leased (the caller holds
    /// [`GitRepo::making_snapshot`]).
    fn make_snapshot(&self, commit: Oid) -> Result<Snapshot, GitError> {
        let dir = self.snapshot_dir();
        let target = dir.join(commit.to_string());
        let repo = self.repo()?;
        let tree = repo.find_commit(commit)?.tree()?;
        let temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(private_dir_permissions())
            .tempdir_in(&dir)
            .map_err(io("creating a snapshot in", &dir))?;
        let limits = self.options.snapshot_limits;
        let disk = match materialise(&repo, &tree, temp.path(), commit, limits) {
            Ok(disk) => disk,
            Err(error) => {
                if let Some(unreadable) = Unreadable::of(&error) {
                    let mut bad = lock(&self.bad_trees);
                    // Bounded: whoever can push could make bad commits without end.
                    if bad.len() < MAX_BAD_TREES {
                        bad.insert(commit, unreadable);
                    }
                }
                return Err(error);
            }
        };
        let made = temp.keep();
        // A directory of that name the index does not know (a removal that failed half-way)
        // is replaced.
        if target.exists() {
            let _ = std::fs::remove_dir_all(&target);
        }
        if let Err(e) = std::fs::rename(&made, &target) {
            let _ = std::fs::remove_dir_all(&made);
            return Err(io("publishing snapshot", &target)(e));
        }
        let mut index = lock(&self.snapshots);
        let last_use = index.tick();
        index.entries.insert(
            commit,
            Entry {
                leases: 1,
                last_use,
                disk,
            },
        );
        Ok(Snapshot::leased(&self.snapshots, target, commit))
    }

    /// The error a read of `commit` met before, if its tree cannot be written out.
    fn known_unreadable(&self, commit: Oid) -> Result<(), GitError> {
        match lock(&self.bad_trees).get(&commit) {
            Some(unreadable) => Err(unreadable.error(commit)),
            None => Ok(()),
        }
    }

    /// Resolves `revision` and leases its snapshot.
    pub fn view(&self, revision: Option<&str>) -> Result<Snapshot, GitError> {
        let resolved = self.resolve(revision)?;
        self.snapshot(resolved.commit)
    }
}

/// Removes the snapshots [`GitRepo::take_out_least_recently_used`] took out.
fn remove_pruned(pruned: Vec<(Oid, PathBuf)>) {
    for (commit, path) in pruned {
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::debug!(%commit, "least recently used snapshot removed"),
            Err(error) => tracing::warn!(%commit, %error, "cannot remove a snapshot"),
        }
    }
}

/// The files under `dir` and their bytes, links not followed (a snapshot made by an
/// earlier run).
fn disk_use(dir: &Path) -> DiskUse {
    let mut use_ = DiskUse::default();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                use_.files += 1;
                use_.bytes = use_.bytes.saturating_add(meta.len());
            }
        }
    }
    use_
}

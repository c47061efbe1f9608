//! Writing a commit's tree out to a directory: a read's snapshot, a write's checkout.
//!
//! The tree comes from the remote, and whoever can push there controls it: a blob of
//! gigabytes that compresses to a few kilobytes, a hundred thousand entries, paths nested
//! thousands deep. The tree is written out within [`SnapshotLimits`], counted over the
//! whole tree before anything is loaded or written: a blob's size comes from its object header (no inflating), so one
//! over the limit is never read. libgit2 inflates a packed blob whole, so a blob is held
//! in memory while it is written; the file-size limit bounds that.
//!
//! Only what a controller can see and change is written out ([`written_name`]):
//! directories and regular files, named in UTF-8 (WASI carries no other names), other than
//! `.git`. Links, submodules, other names and modes are left in the tree:
//! [`crate::tree::build_tree`] carries every base entry not written out over unchanged, so
//! a write never deletes what its controller could not see.

use std::path::Path;

use git2::{ObjectType, Odb, Oid, Repository, Tree, TreeEntry};

use crate::{GitError, WriteLimit};

/// Git's modes of a tree, a file and an executable file.
pub(crate) const MODE_TREE: i32 = 0o040000;
pub(crate) const MODE_BLOB: i32 = 0o100644;
pub(crate) const MODE_EXEC: i32 = 0o100755;

/// Owner-only modes for everything a snapshot or checkout holds: they are copies of the
/// remote's files.
pub(crate) const PRIVATE_DIR: u32 = 0o700;
pub(crate) const PRIVATE_FILE: u32 = 0o600;
pub(crate) const PRIVATE_EXEC: u32 = 0o700;

/// What one commit's tree may hold to be written out (a snapshot for reads, a checkout for
/// writes). Over any of them the revision cannot be read or written on, with
/// [`SnapshotLimitExceeded`]; nothing is left on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Bytes of one file.
    pub max_file_bytes: u64,
    /// Bytes of all the files.
    pub max_total_bytes: u64,
    /// Files and directories.
    pub max_entries: u64,
    /// Directories nested below the root.
    pub max_depth: u32,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        SnapshotLimits {
            max_file_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
            max_entries: 100_000,
            max_depth: 64,
        }
    }
}

/// A commit's tree is over one of the [`SnapshotLimits`], at `entry` (its path in the
/// repository).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commit {commit} cannot be read: {}", self.describe())]
pub struct SnapshotLimitExceeded {
    /// The commit id (hex) whose tree is over the limit.
    pub commit: String,
    /// Which limit it went over.
    pub limit: WriteLimit,
    /// The path in the repository where the limit was reached.
    pub entry: String,
    /// What was found: bytes, entries or levels (at least this much).
    pub found: u64,
    /// The limit: bytes, entries or levels.
    pub max: u64,
}

impl SnapshotLimitExceeded {
    fn describe(&self) -> String {
        let (entry, found, max) = (&self.entry, self.found, self.max);
        match self.limit {
            WriteLimit::FileBytes => {
                format!("file {entry} has {found} bytes, over the limit of {max} bytes per file")
            }
            WriteLimit::TotalBytes => format!(
                "its files reach {found} bytes at {entry}, over the limit of {max} bytes per revision"
            ),
            WriteLimit::Entries => format!(
                "its tree has more than {max} files and directories (at {entry}), over the limit"
            ),
            WriteLimit::Depth => format!(
                "directory {entry} is nested {found} levels deep, over the limit of {max} levels"
            ),
        }
    }
}

/// The name `entry` is written out under, or `None` when it stays in the tree only (see
/// the module documentation). [`crate::tree::build_tree`] carries over exactly the
/// entries this refuses.
pub(crate) fn written_name<'e>(entry: &'e TreeEntry<'_>) -> Option<&'e str> {
    let name = std::str::from_utf8(entry.name_bytes()).ok()?;
    // `/` and the dot names come only from malformed trees; `.git` would be a repository
    // inside the snapshot, which Git itself never checks out.
    if matches!(name, "" | "." | ".." | ".git") || name.contains(['/', '\0']) {
        return None;
    }
    match (entry.kind(), entry.filemode()) {
        (Some(ObjectType::Tree), _) | (Some(ObjectType::Blob), MODE_BLOB | MODE_EXEC) => Some(name),
        _ => None,
    }
}

/// Writes `tree` (of `commit`) into the empty directory `dir`, within `limits`: the whole
/// tree is measured first (tree objects and blob headers only), so a revision over a limit
/// costs no disk. A failure names the entry by its path in the repository, never by `dir`
/// (see [`GitError::BadTree`]); the caller removes `dir`.
pub(crate) fn materialise(
    repo: &Repository,
    tree: &Tree<'_>,
    dir: &Path,
    commit: Oid,
    limits: SnapshotLimits,
) -> Result<DiskUse, GitError> {
    let mut writer = Writer {
        repo,
        odb: repo.odb()?,
        commit,
        limits,
        entries: 0,
        files: 0,
        total: 0,
    };
    writer.measure(tree, "", 0)?;
    writer.tree(tree, dir, "")?;
    Ok(DiskUse {
        bytes: writer.total,
        files: writer.files,
    })
}

/// What a written-out tree holds: the bytes of its files and how many there are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskUse {
    pub(crate) bytes: u64,
    pub(crate) files: u64,
}

struct Writer<'r> {
    repo: &'r Repository,
    odb: Odb<'r>,
    commit: Oid,
    limits: SnapshotLimits,
    entries: u64,
    /// Files (not directories) so far.
    files: u64,
    /// Bytes of the files so far.
    total: u64,
}

impl Writer<'_> {
    fn over(&self, limit: WriteLimit, entry: &str, found: u64, max: u64) -> GitError {
        GitError::SnapshotLimit(SnapshotLimitExceeded {
            commit: self.commit.to_string(),
            limit,
            entry: entry.to_owned(),
            found,
            max,
        })
    }

    /// Counts `tree`, found at `prefix` in the repository and `depth` levels below its
    /// root, against the limits: entries, depth, and file sizes from the object headers
    /// (which need no inflating).
    fn measure(&mut self, tree: &Tree<'_>, prefix: &str, depth: u32) -> Result<(), GitError> {
        for entry in tree.iter() {
            let Some(name) = written_name(&entry) else {
                continue;
            };
            let entry_path = join(prefix, name);
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                let max = self.limits.max_entries;
                return Err(self.over(WriteLimit::Entries, &entry_path, self.entries, max));
            }
            let object = |e: git2::Error| bad_object(self.commit, &entry_path, e);
            if entry.kind() == Some(ObjectType::Tree) {
                let depth = depth + 1;
                if depth > self.limits.max_depth {
                    let max = u64::from(self.limits.max_depth);
                    return Err(self.over(WriteLimit::Depth, &entry_path, depth.into(), max));
                }
                let sub = self.repo.find_tree(entry.id()).map_err(object)?;
                self.measure(&sub, &entry_path, depth)?;
                continue;
            }
            let (size, _) = self.odb.read_header(entry.id()).map_err(object)?;
            let size = size as u64;
            self.files += 1;
            let max = self.limits.max_file_bytes;
            if size > max {
                return Err(self.over(WriteLimit::FileBytes, &entry_path, size, max));
            }
            self.total = self.total.saturating_add(size);
            let max = self.limits.max_total_bytes;
            if self.total > max {
                return Err(self.over(WriteLimit::TotalBytes, &entry_path, self.total, max));
            }
        }
        Ok(())
    }

    /// Writes `tree`, found at `prefix` in the repository and measured before, into `dir`.
    fn tree(&mut self, tree: &Tree<'_>, dir: &Path, prefix: &str) -> Result<(), GitError> {
        for entry in tree.iter() {
            let Some(name) = written_name(&entry) else {
                continue;
            };
            let path = dir.join(name);
            let entry_path = join(prefix, name);
            let object = |e: git2::Error| bad_object(self.commit, &entry_path, e);
            if entry.kind() == Some(ObjectType::Tree) {
                create_dir_private(&path)
                    .map_err(|e| unwritable(&path, &entry_path, self.commit, e))?;
                let sub = self.repo.find_tree(entry.id()).map_err(object)?;
                self.tree(&sub, &path, &entry_path)?;
                continue;
            }
            // Measured by its header: an object's id is the hash of its content, so the
            // blob read now is the one measured.
            let blob = self.repo.find_blob(entry.id()).map_err(object)?;
            write_private(&path, blob.content(), entry.filemode() == MODE_EXEC)
                .map_err(|e| unwritable(&path, &entry_path, self.commit, e))?;
        }
        Ok(())
    }
}

/// `name` below `prefix` (a path in the repository).
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

/// An object of the tree that cannot be read (missing, or not what its entry says).
fn bad_object(commit: Oid, entry: &str, e: git2::Error) -> GitError {
    GitError::BadTree {
        commit: commit.to_string(),
        entry: entry.to_owned(),
        reason: e.message().to_owned(),
    }
}

/// A tree entry that could not be written to `host` (logged here, the only place the host
/// path appears): [`GitError::BadTree`] when the tree itself is the cause (two entries of
/// one name, a path too long for this host), [`GitError::Materialise`] otherwise (a full
/// disk: another try may work).
fn unwritable(host: &Path, entry: &str, commit: Oid, error: std::io::Error) -> GitError {
    tracing::warn!(%commit, entry, path = %host.display(), %error,
        "cannot write a tree entry out of the git cache");
    let reason = match error.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Some("another entry of the same name comes before it (a malformed tree)")
        }
        std::io::ErrorKind::InvalidFilename => Some("the path is too long for this host"),
        _ if error.raw_os_error() == Some(libc::ENAMETOOLONG) => {
            Some("the path is too long for this host")
        }
        _ => None,
    };
    match reason {
        Some(reason) => GitError::BadTree {
            commit: commit.to_string(),
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        },
        None => GitError::Materialise {
            commit: commit.to_string(),
            entry: entry.to_owned(),
            source: error,
        },
    }
}

/// For the top directory of a snapshot or checkout (tempfile's default follows the umask).
pub(crate) fn private_dir_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(PRIVATE_DIR)
}

/// A new directory of a snapshot or checkout, [`PRIVATE_DIR`] (the umask can only take
/// bits away, and there are none for others to take).
fn create_dir_private(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(path)
}

/// A new file of a snapshot or checkout: [`PRIVATE_FILE`], or [`PRIVATE_EXEC`] for an
/// executable (the bit is what a write carries back into the tree). The mode is set
/// explicitly after writing, so a umask that strips the owner's bits changes nothing.
fn write_private(path: &Path, content: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mode = if executable {
        PRIVATE_EXEC
    } else {
        PRIVATE_FILE
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(path)?;
    file.write_all(content)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

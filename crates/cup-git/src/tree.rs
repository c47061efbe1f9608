//! Building a write's tree from its checkout, within [`WriteLimits`].
//!
//! The checkout was changed by a controller, which may have left anything in it: a sparse
//! file of gigabytes (`set_len` costs it nothing), millions of entries, directories nested
//! thousands deep, links and special files. Sizes are read from `symlink_metadata` before a
//! file is opened, a file is read through a bound one byte past its limit (so one that grew
//! meanwhile is caught too) and streamed into the object database, never held in memory.
//! Links and special files are never followed: they are left out, as
//! [`crate::checkout::materialise`] never writes them. Every entry of the base tree that was
//! not written out (links, submodules, nested `.git`, names that are not UTF-8) is carried
//! over unchanged, so a write cannot delete what its controller never saw. Names are
//! handled as bytes throughout.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use git2::{ObjectType, Odb, Oid, Repository, Tree};

use crate::GitError;
use crate::checkout::written_name;
use crate::checkout::{MODE_BLOB, MODE_EXEC, MODE_TREE};
use crate::error::io;

/// What one write may put in its tree. Over any of them the write is refused with
/// [`WriteLimitExceeded`] and nothing is committed or pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// Bytes of one file.
    pub max_file_bytes: u64,
    /// Bytes of the files the write adds or changes (unchanged files are free).
    pub max_total_bytes: u64,
    /// Files and directories in the written tree.
    pub max_entries: u64,
    /// Directories nested below the root.
    pub max_depth: u32,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            max_file_bytes: 64 << 20,
            max_total_bytes: 256 << 20,
            max_entries: 100_000,
            max_depth: 64,
        }
    }
}

/// Which limit a tree went over: one of the [`WriteLimits`] of a write, or of the
/// [`SnapshotLimits`](crate::SnapshotLimits) of a commit's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLimit {
    /// `max_file_bytes`: one file is too large.
    FileBytes,
    /// `max_total_bytes`: the files together are too large (for a write, only the new or
    /// changed ones count).
    TotalBytes,
    /// `max_entries`: too many files and directories.
    Entries,
    /// `max_depth`: directories nested too deep.
    Depth,
}

/// A write went over one of its [`WriteLimits`] at `path` (relative to the tree's root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct WriteLimitExceeded {
    /// Which limit it went over.
    pub limit: WriteLimit,
    /// Where the limit was reached, relative to the tree's root.
    pub path: String,
    /// What was found: bytes, entries or levels (at least this much).
    pub found: u64,
    /// The limit: bytes, entries or levels.
    pub max: u64,
}

impl WriteLimitExceeded {
    fn describe(&self) -> String {
        let (path, found, max) = (&self.path, self.found, self.max);
        let what = match self.limit {
            WriteLimit::FileBytes => {
                format!("file {path} has {found} bytes, over the limit of {max} bytes per file")
            }
            WriteLimit::TotalBytes => format!(
                "the new or changed files reach {found} bytes at {path}, over the limit of {max} bytes per write"
            ),
            WriteLimit::Entries => format!(
                "the tree has more than {max} files and directories (at {path}), over the limit"
            ),
            WriteLimit::Depth => format!(
                "directory {path} is nested {found} levels deep, over the limit of {max} levels"
            ),
        };
        format!("the controller's write was refused, nothing was committed: {what}")
    }
}

/// Builds the tree of `dir` in the object database. Empty directories vanish (Git cannot
/// store them); entries of `base` that [`crate::checkout::materialise`] left out are
/// carried over.
pub(crate) fn build_tree(
    repo: &Repository,
    dir: &Path,
    base: Option<&Tree<'_>>,
    limits: WriteLimits,
) -> Result<Oid, GitError> {
    let mut builder = Builder {
        repo,
        odb: repo.odb()?,
        root: dir,
        limits,
        entries: 0,
        total: 0,
    };
    builder.dir(dir, base, 0)
}

struct Builder<'r> {
    repo: &'r Repository,
    odb: Odb<'r>,
    root: &'r Path,
    limits: WriteLimits,
    entries: u64,
    /// Bytes of new or changed blobs so far.
    total: u64,
}

impl Builder<'_> {
    fn exceeded(&self, limit: WriteLimit, path: &Path, found: u64, max: u64) -> GitError {
        let relative = path.strip_prefix(self.root).unwrap_or(path);
        GitError::WriteLimit(WriteLimitExceeded {
            limit,
            path: relative.display().to_string(),
            found,
            max,
        })
    }

    /// Adds `bytes` of new or changed content, refusing past the total.
    fn count(&mut self, bytes: u64, path: &Path) -> Result<(), GitError> {
        self.total = self.total.saturating_add(bytes);
        let max = self.limits.max_total_bytes;
        if self.total > max {
            return Err(self.exceeded(WriteLimit::TotalBytes, path, self.total, max));
        }
        Ok(())
    }

    /// `dir` is `depth` levels below the root.
    fn dir(&mut self, dir: &Path, base: Option<&Tree<'_>>, depth: u32) -> Result<Oid, GitError> {
        // Starts as the base: an entry the checkout never showed stays exactly as it was,
        // without going through libgit2's checks of new names (which refuse `.git`).
        let mut builder = self.repo.treebuilder(base)?;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
        for entry in entries {
            let entry = entry.map_err(io("reading", dir))?;
            let file_name = entry.file_name();
            let name = file_name.as_bytes();
            // A repository inside the tree is never taken from the checkout (Git refuses
            // such entries); the base's, if any, stays.
            if name == b".git" {
                continue;
            }
            let path = entry.path();
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                let max = self.limits.max_entries;
                return Err(self.exceeded(WriteLimit::Entries, &path, self.entries, max));
            }
            let base_entry = base.and_then(|t| t.get_name_bytes(name));
            // Never follows a link: a link reports itself, not its target.
            let meta = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?;
            let (id, mode) = if meta.is_dir() {
                let depth = depth + 1;
                if depth > self.limits.max_depth {
                    let max = u64::from(self.limits.max_depth);
                    return Err(self.exceeded(WriteLimit::Depth, &path, depth.into(), max));
                }
                let sub_base = base_entry
                    .as_ref()
                    .filter(|e| e.kind() == Some(ObjectType::Tree))
                    .and_then(|e| self.repo.find_tree(e.id()).ok());
                let sub = self.dir(&path, sub_base.as_ref(), depth)?;
                if self.repo.find_tree(sub)?.is_empty() {
                    continue;
                }
                (sub, MODE_TREE)
            } else if meta.is_file() {
                let base_blob = base_entry
                    .as_ref()
                    .filter(|e| e.kind() == Some(ObjectType::Blob))
                    .map(|e| e.id());
                let Some(blob) = self.blob(&path, meta.len(), base_blob)? else {
                    continue;
                };
                let mode = if is_executable(&meta) {
                    MODE_EXEC
                } else {
                    MODE_BLOB
                };
                (blob, mode)
            } else {
                continue;
            };
            seen.insert(name.to_owned());
            let unchanged = base_entry
                .as_ref()
                .is_some_and(|e| e.id() == id && e.filemode() == mode);
            if !unchanged {
                builder.insert(name, id, mode)?;
            }
        }
        // What the checkout showed and no longer holds was deleted by the write.
        if let Some(base) = base {
            for entry in base.iter() {
                if written_name(&entry).is_some() && !seen.contains(entry.name_bytes()) {
                    builder.remove(entry.name_bytes())?;
                }
            }
        }
        Ok(builder.write()?)
    }

    /// Streams the file at `path` (`size` bytes by its metadata) into a blob; `None` if it
    /// turned into something other than a regular file since its metadata was read.
    fn blob(&mut self, path: &Path, size: u64, base: Option<Oid>) -> Result<Option<Oid>, GitError> {
        let max = self.limits.max_file_bytes;
        if size > max {
            return Err(self.exceeded(WriteLimit::FileBytes, path, size, max));
        }
        // A file the size of the base's blob at this path may be unchanged: counted once
        // its hash says otherwise. Any other is new content, counted before it is read.
        let base_size = base
            .and_then(|id| self.odb.read_header(id).ok())
            .map(|(bytes, _)| bytes as u64);
        let counted = base_size != Some(size);
        if counted {
            self.count(size, path)?;
        }
        let Some(file) = open_regular(path)? else {
            return Ok(None);
        };
        let mut writer = self.repo.blob_writer(None)?;
        let copied = std::io::copy(&mut file.take(max.saturating_add(1)), &mut writer)
            .map_err(io("reading", path))?;
        if copied > max {
            // Dropping the writer discards what it streamed.
            return Err(self.exceeded(WriteLimit::FileBytes, path, copied, max));
        }
        let oid = writer.commit()?;
        if counted {
            // It may have changed size since its metadata was read.
            self.total = self.total.saturating_sub(size);
            self.count(copied, path)?;
        } else if Some(oid) != base {
            self.count(copied, path)?;
        }
        Ok(Some(oid))
    }
}

/// Opens `path` for reading without following a link and without blocking on a FIFO;
/// `None` when it is not a regular file (any more).
fn open_regular(path: &Path) -> Result<Option<std::fs::File>, GitError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(file) => file,
        // ELOOP: it became a link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(io("opening", path)(e)),
    };
    let meta = file.metadata().map_err(io("reading", path))?;
    Ok(meta.is_file().then_some(file))
}

#[cfg(unix)]
pub(crate) fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
pub(crate) fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

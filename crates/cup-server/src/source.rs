//! The local source (`-api-source local`): the directory itself, read in place and written
//! in place.
//!
//! Guarantees (the original had none: no lock, writes straight into the live tree):
//! * Writes to one source are serialised (one async mutex per source), so two puts never
//!   interleave and none is lost.
//! * Template controller writes are a temp file + rename of the one file they touch.
//! * A wasm controller's put/delete runs on a **scratch copy** of the tree; only if the
//!   controller succeeds are the files it changed, created or removed carried over to the
//!   real tree, each through a temp file + rename. A controller that fails, traps, times
//!   out or is killed half-way changes nothing. Not covered: a crash of cupd itself while
//!   the (short) apply step moves several files, which can leave some of them updated.
//! * The copy leaves out the top-level `.git` directory, symbolic links and special files:
//!   controllers never see them and they are never changed.
//!
//! Reads take no lock: a reader sees each file either before or after a write.

use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::git::GitSource;

/// Where resources live: a local directory or a Git repository.
#[derive(Debug)]
pub enum Source {
    Local(LocalSource),
    Git(GitSource),
}

/// A local directory source.
#[derive(Debug)]
pub struct LocalSource {
    root: PathBuf,
    writes: Mutex<()>,
}

impl LocalSource {
    /// Opens `path`, which must be an existing directory.
    pub fn open(path: &Path) -> std::io::Result<LocalSource> {
        let root = path.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(LocalSource {
            root,
            writes: Mutex::new(()),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs a blocking write under this source's write lock.
    pub async fn write<T, F>(&self, write: F) -> Result<T, tokio::task::JoinError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> T + Send + 'static,
    {
        let _guard = self.writes.lock().await;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || write(&root)).await
    }
}

/// Why a scratch write failed before or after the controller ran.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("preparing a scratch copy of the source: {0}")]
    Copy(std::io::Error),
    #[error("applying the controller's changes to {path}: {source}")]
    Apply {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Copies `root` to a scratch directory, runs `run` on it, and if it returns `Ok`, applies
/// the differences to `root`. The inner result is the controller's own outcome.
pub fn with_scratch_copy<T, E>(
    root: &Path,
    run: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<Result<T, E>, ScratchError> {
    let scratch = tempfile::Builder::new()
        .prefix("cupd-scratch-")
        .tempdir()
        .map_err(ScratchError::Copy)?;
    copy_tree(root, scratch.path(), true).map_err(ScratchError::Copy)?;
    let outcome = run(scratch.path());
    if outcome.is_ok() {
        apply(scratch.path(), root)?;
    }
    Ok(outcome)
}

/// The entries a controller may see: regular files and directories, not `.git` at the top.
fn visible_entries(dir: &Path, top: bool) -> std::io::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if top && name == ".git" {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() || kind.is_file() {
            out.push((name, kind.is_dir()));
        }
    }
    out.sort();
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
    for (name, is_dir) in visible_entries(from, top)? {
        let (src, dst) = (from.join(&name), to.join(&name));
        if is_dir {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst, false)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Makes `real` look like `scratch` (for the entries a controller may see).
fn apply(scratch: &Path, real: &Path) -> Result<(), ScratchError> {
    apply_dir(scratch, real, true)
}

fn apply_dir(scratch: &Path, real: &Path, top: bool) -> Result<(), ScratchError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| ScratchError::Apply { path, source }
    };
    let wanted = visible_entries(scratch, top).map_err(err(scratch))?;
    let existing = visible_entries(real, top).map_err(err(real))?;
    // Removals first, so a file replaced by a directory (or back) has room.
    for (name, is_dir) in &existing {
        if wanted.iter().any(|(n, d)| n == name && d == is_dir) {
            continue;
        }
        let path = real.join(name);
        let removed = if *is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(err(&path))?;
    }
    for (name, is_dir) in &wanted {
        let (src, dst) = (scratch.join(name), real.join(name));
        if *is_dir {
            if !dst.is_dir() {
                std::fs::create_dir(&dst).map_err(err(&dst))?;
            }
            apply_dir(&src, &dst, false)?;
        } else {
            let bytes = std::fs::read(&src).map_err(err(&src))?;
            if std::fs::read(&dst).ok().as_deref() != Some(bytes.as_slice()) {
                replace_file(&dst, &bytes).map_err(err(&dst))?;
            }
        }
    }
    Ok(())
}

/// Temp file beside `path`, fsync, rename; keeps the old file's permissions.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".cup-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    match std::fs::metadata(path) {
        Ok(meta) => temp.as_file().set_permissions(meta.permissions())?,
        Err(_) => set_default_mode(temp.as_file())?,
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// New files get 0644 like the original's (the temp file starts as 0600).
#[cfg(unix)]
fn set_default_mode(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_default_mode(_: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        std::fs::write(dir.path().join("keep.yml"), "keep").unwrap();
        std::fs::write(dir.path().join("a/change.yml"), "old").unwrap();
        std::fs::write(dir.path().join("a/b/remove.yml"), "gone").unwrap();
        dir
    }

    #[test]
    fn success_applies_changes_creations_and_removals() {
        let dir = tree();
        let out: Result<(), ()> = with_scratch_copy(dir.path(), |s| {
            assert!(!s.join(".git").exists(), "the guest does not see .git");
            std::fs::write(s.join("a/change.yml"), "new").unwrap();
            std::fs::remove_file(s.join("a/b/remove.yml")).unwrap();
            std::fs::create_dir_all(s.join("n")).unwrap();
            std::fs::write(s.join("n/created.yml"), "hi").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(out.is_ok());
        let root = dir.path();
        assert_eq!(
            std::fs::read_to_string(root.join("a/change.yml")).unwrap(),
            "new"
        );
        assert!(!root.join("a/b/remove.yml").exists());
        assert!(
            root.join("a/b").is_dir(),
            "emptied directories stay, as in the scratch"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("n/created.yml")).unwrap(),
            "hi"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("keep.yml")).unwrap(),
            "keep"
        );
        assert_eq!(
            std::fs::read_to_string(root.join(".git/HEAD")).unwrap(),
            "ref"
        );
    }

    #[test]
    fn failure_changes_nothing() {
        let dir = tree();
        let out: Result<(), &str> = with_scratch_copy(dir.path(), |s| {
            std::fs::write(s.join("a/change.yml"), "half").unwrap();
            std::fs::remove_file(s.join("keep.yml")).unwrap();
            Err("trap")
        })
        .unwrap();
        assert_eq!(out, Err("trap"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/change.yml")).unwrap(),
            "old"
        );
        assert!(dir.path().join("keep.yml").exists());
    }

    #[test]
    fn file_replaced_by_directory_and_back() {
        let dir = tree();
        let out: Result<(), ()> = with_scratch_copy(dir.path(), |s| {
            std::fs::remove_file(s.join("keep.yml")).unwrap();
            std::fs::create_dir(s.join("keep.yml")).unwrap();
            std::fs::remove_dir_all(s.join("a/b")).unwrap();
            std::fs::write(s.join("a/b"), "file").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(out.is_ok());
        assert!(dir.path().join("keep.yml").is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/b")).unwrap(),
            "file"
        );
    }
}

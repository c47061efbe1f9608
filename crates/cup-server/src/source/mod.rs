//! The local source (`-api-source local`): the directory itself, read in place and written
//! in place.
//!
//! Guarantees (the original had none: no lock, writes straight into the live tree):
//! * Writes to one source are serialised (one async mutex per source), so two puts never
//!   interleave and none is lost.
//! * Template controller writes are a temp file + rename of the one file they touch.
//! * A wasm controller's put/delete runs on a **scratch copy** of the tree
//!   (`scratch_place`); only if the controller succeeds are the files it changed, created
//!   or removed carried over to the real tree (`write`): checked against [`WriteLimits`]
//!   and staged first, then renamed into place, all or nothing. A controller that fails,
//!   traps, times out or is killed half-way changes nothing. Not covered: a crash of cupd
//!   itself during the renames, which can leave some of them made (the next start removes
//!   the staged and set-aside `.cup-*.tmp` entries).
//! * Nothing under the root is followed: symbolic links and special files are left out of
//!   the copy, and a write that would touch one is refused (`tree`). `.git` at the top is
//!   never seen nor changed.
//!
//! Reads share a [`ViewLock`] that the apply step takes alone, each for at most the hold
//! limit: a read sees the tree entirely before or entirely after a write, or is answered
//! 503 (see [`ReadView::finish`]).

mod scratch_place;
mod tree;
mod view;
mod write;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::git::GitSource;

pub(crate) use scratch_place::SCRATCH_PREFIX;
pub use scratch_place::ScratchPlace;
pub use view::{DEFAULT_READ_HOLD, ReadView, ViewLock};
pub use write::WriteError;
pub(crate) use write::{SET_ASIDE_TAG, STAGED_TAG};

use cup_git::WriteLimits;

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
    /// Serialises writes. Owned guards move into the blocking write, so a client that
    /// disconnects (dropping its request future) cannot release the lock while its write
    /// still runs.
    writes: Arc<Mutex<()>>,
    view: ViewLock,
    scratch: Arc<ScratchPlace>,
    limits: WriteLimits,
}

impl LocalSource {
    /// Opens `path`, which must be an existing directory; wasm writes make their scratch
    /// copies in `scratch` and carry over at most `limits`; one read holds writes off for at
    /// most `read_hold`.
    pub fn open(
        path: &Path,
        scratch: ScratchPlace,
        limits: WriteLimits,
        read_hold: std::time::Duration,
    ) -> std::io::Result<LocalSource> {
        let root = path.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(LocalSource {
            root,
            writes: Arc::new(Mutex::new(())),
            view: ViewLock::new(read_hold),
            scratch: Arc::new(scratch),
            limits,
        })
    }

    /// Where this source's wasm writes make their scratch copies.
    pub fn scratch(&self) -> Arc<ScratchPlace> {
        Arc::clone(&self.scratch)
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What one wasm write may carry over.
    pub fn limits(&self) -> WriteLimits {
        self.limits
    }

    /// Holds off the apply step of writes while a read runs (across a wasm controller's get
    /// or list, or a template read), up to the hold limit; [`ReadView::finish`] then tells
    /// whether the read saw one tree.
    pub async fn reading(&self) -> ReadView {
        self.view.shared().await
    }

    /// Runs a blocking write under this source's write lock. The write must take
    /// [`ViewLock::exclusive`] while it changes files under the root.
    pub async fn write<T, F>(&self, write: F) -> Result<T, tokio::task::JoinError>
    where
        T: Send + 'static,
        F: FnOnce(&Path, &ViewLock) -> T + Send + 'static,
    {
        let serialised = Arc::clone(&self.writes).lock_owned().await;
        let (root, view) = (self.root.clone(), self.view.clone());
        tokio::task::spawn_blocking(move || {
            let _serialised = serialised;
            write(&root, &view)
        })
        .await
    }
}

/// Copies `root` to a scratch directory in `place`, runs `run` on it, and if it returns
/// `Ok`, carries the differences over to `root` within `limits`. The inner result is the
/// controller's own outcome; on any error the real tree is as it was.
pub fn with_scratch_copy<T, E>(
    place: &ScratchPlace,
    root: &Path,
    view: &ViewLock,
    limits: &WriteLimits,
    run: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<Result<T, E>, WriteError> {
    let real = write::open_root(root).map_err(|source| WriteError::Io {
        action: "opening the source",
        path: root.display().to_string(),
        source,
    })?;
    let scratch = place.copy_of(real.as_fd(), limits)?;
    let outcome = run(&scratch.path);
    let result = match outcome {
        Ok(_) => carry_over(&scratch, real.as_fd(), view, limits).map(|()| outcome),
        Err(_) => Ok(outcome),
    };
    scratch_place::discard(scratch);
    result
}

/// Checks and stages the controller's changes with the view open to readers, then applies
/// them under the exclusive lock.
fn carry_over(
    scratch: &scratch_place::ScratchDir,
    real: std::os::fd::BorrowedFd<'_>,
    view: &ViewLock,
    limits: &WriteLimits,
) -> Result<(), WriteError> {
    let copy = scratch.open().map_err(|source| WriteError::Io {
        action: "opening the controller's copy",
        path: scratch.path.display().to_string(),
        source,
    })?;
    let plan = write::Plan::make(copy.as_fd(), real, limits)?;
    if plan.is_empty() {
        return Ok(());
    }
    let _exclusive = view.exclusive();
    plan.apply(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scratch copies in a directory of the test's own (kept alive by the returned guard).
    fn place() -> (tempfile::TempDir, ScratchPlace) {
        let base = tempfile::tempdir().unwrap();
        let place = ScratchPlace::explicit(base.path().to_owned());
        (base, place)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// [`with_scratch_copy`] with a fresh view lock and the default limits.
    fn write_with_defaults<T, E>(
        place: &ScratchPlace,
        root: &Path,
        run: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<Result<T, E>, WriteError> {
        with_scratch_copy(
            place,
            root,
            &ViewLock::default(),
            &WriteLimits::default(),
            run,
        )
    }

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
        let (_base, place) = place();
        let out: Result<(), ()> = write_with_defaults(&place, dir.path(), |s| {
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

    #[cfg(unix)]
    #[test]
    fn failure_changes_nothing() {
        let dir = tree();
        let (_base, place) = place();
        let out: Result<(), &str> = write_with_defaults(&place, dir.path(), |s| {
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
        let (_base, place) = place();
        let out: Result<(), ()> = write_with_defaults(&place, dir.path(), |s| {
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

    #[test]
    fn a_copy_that_cannot_be_made_first_goes_to_the_fallback() {
        let dir = tree();
        let fallback = tempfile::tempdir().unwrap();
        // A file, not a directory: nothing can be made in it.
        let place = ScratchPlace::new(
            dir.path().join("keep.yml"),
            Some(fallback.path().to_owned()),
        );
        let out: Result<(), ()> = write_with_defaults(&place, dir.path(), |s| {
            assert!(s.starts_with(fallback.path()), "{}", s.display());
            std::fs::write(s.join("a/change.yml"), "new").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(out.is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a/change.yml")).unwrap(),
            "new"
        );
        // Removed after the write (on the remover thread).
        for _ in 0..200 {
            if entries(fallback.path()).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(entries(fallback.path()), Vec::<String>::new());
    }
}

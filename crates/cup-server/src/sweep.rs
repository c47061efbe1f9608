//! The startup sweep: removes what a killed cupd left behind.
//!
//! A cupd killed in the middle of a write can leave two kinds of debris (`fault_kill_cupd`
//! found both): the scratch copy of the source it was running the controller on
//! (`<scratch dir>/cupd-scratch-<pid>-*`), and a temp file of the apply step (`.cup-*.tmp` beside the
//! file being replaced, anywhere in the local source). Neither is visible through the API, but
//! they waste disk and would pile up over crashes.
//!
//! A scratch directory is locked (`flock`) by its owner from its first moment (see
//! `source::ScratchDir`), so the sweep removes only directories whose lock it can take: those of
//! a dead process, never those of a live cupd sharing the same directory. Temp files carry no
//! lock: the sweep runs before this cupd serves, and one source directory is served by one
//! cupd.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use cup_template::{is_temp_name, is_temp_name_tagged};

use crate::source::{SCRATCH_PREFIX, SET_ASIDE_TAG, STAGED_TAG};

/// What the sweep removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub scratch_dirs: Vec<PathBuf>,
    pub temp_files: Vec<PathBuf>,
}

/// Sweeps `scratch_dirs` (where cupd makes scratch copies: its `TMPDIR`, and
/// `-scratch-dir` or the default place) and, for the local source, `source_root`. Best
/// effort: what cannot be read or removed is logged and left.
pub fn at_startup(scratch_dirs: &[PathBuf], source_root: Option<&Path>) -> Swept {
    let mut swept = Swept {
        scratch_dirs: scratch_dirs
            .iter()
            .flat_map(|dir| stale_scratch_dirs(dir))
            .collect(),
        temp_files: Vec::new(),
    };
    if let Some(root) = source_root {
        temp_files(root, &mut swept.temp_files);
    }
    for dir in &swept.scratch_dirs {
        tracing::info!(path = %dir.display(), "removed the scratch copy of a previous cupd");
    }
    for file in &swept.temp_files {
        tracing::info!(path = %file.display(), "removed a temp file of an interrupted write");
    }
    swept
}

/// Removes the `cupd-scratch-*` directories in `tmp` whose owner is gone.
fn stale_scratch_dirs(tmp: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %tmp.display(), %error, "cannot sweep old scratch copies");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let is_scratch = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(SCRATCH_PREFIX));
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_scratch && is_dir && remove_if_abandoned(&entry.path()) {
            removed.push(entry.path());
        }
    }
    removed
}

/// Takes the directory's lock (only possible when its owner is dead), then removes it.
fn remove_if_abandoned(dir: &Path) -> bool {
    // Another user's scratch (mode 0700) cannot even be opened: not ours to judge.
    let Ok(handle) = File::open(dir) else {
        return false;
    };
    match handle.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return false,
        Err(TryLockError::Error(error)) => {
            tracing::warn!(path = %dir.display(), %error, "cannot lock an old scratch copy");
            return false;
        }
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(path = %dir.display(), %error, "cannot remove an old scratch copy");
            false
        }
    }
}

/// Removes `.cup-*.tmp` regular files anywhere under `dir`, and the staged and set-aside
/// entries of an interrupted apply (`.cup-new-*.tmp`, `.cup-old-*.tmp`, files or whole
/// directories); symbolic links are not followed, and `.git` at the top is not entered.
/// Records them in `removed`.
fn temp_files(dir: &Path, removed: &mut Vec<PathBuf>) {
    temp_files_in(dir, true, removed);
}

fn temp_files_in(dir: &Path, top: bool, removed: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot sweep temp files");
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        let name = entry.file_name();
        if kind.is_dir() && is_apply_temp(&name) {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a temp directory");
                }
            }
        } else if kind.is_dir() {
            if !(top
                && name
                    .to_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(".git")))
            {
                temp_files_in(&path, false, removed);
            }
        } else if kind.is_file() && is_write_temp(&name) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove a temp file");
                }
            }
        }
    }
}

/// The temp files of cupd's atomic writes (the apply step and cup-template): `.cup-<random>.tmp`
/// ([`cup_template::temp_name`]).
fn is_write_temp(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(is_temp_name)
}

/// What the apply step of a wasm write stages (`.cup-new-…`) or sets aside (`.cup-old-…`),
/// which may be whole directories.
fn is_apply_temp(name: &std::ffi::OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        is_temp_name_tagged(n, STAGED_TAG) || is_temp_name_tagged(n, SET_ASIDE_TAG)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_anywhere_in_the_source_go_and_nothing_else() {
        let root = tempfile::tempdir().expect("temp dir");
        let deep = root.path().join("a/b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        for name in [".cup-x1.tmp", "a/.cup-y2.tmp", "a/b/.cup-z3.tmp"] {
            std::fs::write(root.path().join(name), "half").expect("write");
        }
        // A directory set aside by an interrupted apply goes whole.
        std::fs::create_dir_all(root.path().join("a/.cup-old-1-2-3.tmp/ns")).expect("mkdir");
        std::fs::write(
            root.path().join("a/.cup-old-1-2-3.tmp/ns/features.yml"),
            "old",
        )
        .expect("write");
        std::fs::create_dir_all(root.path().join(".git")).expect("mkdir");
        std::fs::write(root.path().join(".git/.cup-git.tmp"), "not ours").expect("write");
        for name in [
            "features.yml",
            "a/.cup-keep",
            "a/b/cup-x.tmp",
            "a/.cup-dir.tmp/f",
        ] {
            let path = root.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "keep").expect("write");
        }
        let mut removed = Vec::new();
        temp_files(root.path(), &mut removed);
        removed.sort();
        let expected: Vec<PathBuf> = [
            ".cup-x1.tmp",
            "a/.cup-old-1-2-3.tmp",
            "a/.cup-y2.tmp",
            "a/b/.cup-z3.tmp",
        ]
        .iter()
        .map(|n| root.path().join(n))
        .collect();
        assert_eq!(removed, expected);
        for name in [
            "features.yml",
            "a/.cup-keep",
            "a/b/cup-x.tmp",
            "a/.cup-dir.tmp/f",
            ".git/.cup-git.tmp",
        ] {
            assert!(root.path().join(name).exists(), "{name} was removed");
        }
    }

    #[test]
    fn only_unlocked_scratch_dirs_go() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dead = tmp.path().join(format!("{SCRATCH_PREFIX}1-dead"));
        let live = tmp.path().join(format!("{SCRATCH_PREFIX}2-live"));
        let other = tmp.path().join("other-dir");
        for dir in [&dead, &live, &other] {
            std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
            std::fs::write(dir.join("sub/features.yml"), "x").expect("write");
        }
        let held = File::open(&live).expect("open");
        held.lock().expect("lock");
        assert_eq!(stale_scratch_dirs(tmp.path()), vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.join("sub/features.yml").exists());
        assert!(other.join("sub/features.yml").exists());
    }
}

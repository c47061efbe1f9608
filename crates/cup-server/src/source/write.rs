//! A wasm controller's write to the local source: the scratch copy it runs on, and carrying
//! its changes back to the real tree.
//!
//! Invariants (each has a test in this module or in `tests/tests/cupd_write_safety.rs`):
//! * **Nothing is followed.** Both trees are walked through directory descriptors that never
//!   follow links (see `tree`). A symbolic link or special file in the real tree is left out
//!   of the copy; a write that would touch its path is refused (409) and changes nothing.
//!   A controller that leaves a link or special file in its copy is refused (500).
//! * **Everything is checked before the first change.** The copy the controller left is
//!   walked whole first: entry count, depth, path length, size of each new or changed file
//!   and their total are checked against [`WriteLimits`] (sizes from `fstat`, so a sparse
//!   file of any apparent size is refused before a byte of it is read), and every new or
//!   changed file is staged as a temp file (`.cup-new-*.tmp`) beside its destination (or in
//!   its nearest existing ancestor), written and `fsync`ed — before the view lock is taken.
//!   Memory stays bounded: contents are compared and copied block by block.
//! * **The view lock covers renames only.** Under it, each change is one or two renames (a
//!   replaced file keeps a second link to its old inode; a removed entry is renamed aside),
//!   each recorded with its inverse. If one fails, the ones before it are undone in reverse
//!   order, so the real tree is as it was; on success, the set-aside entries are removed.
//! * **`.git` at the top, in any letter case, and cupd's own `.cup-*.tmp` entries are
//!   invisible**: never copied, changed or removed. On a case-insensitive filesystem a name
//!   that leads to the same directory as `.git` is refused as well.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use cup_git::{WriteLimit, WriteLimits};
use cup_template::{NEW_FILE_MODE, is_temp_name, temp_name};

use super::tree::{self, Entry, Identity, Kind};

/// Longest relative path a write may create: Linux's `PATH_MAX`, so every path in the
/// source stays usable by ordinary tools (which resolve whole paths).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a write to the local source was refused or failed. Whatever the variant, the real
/// tree is as it was before the write.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("preparing a scratch copy of the source: {0}")]
    Copy(io::Error),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error(
        "{path} is a {what} in the source; cupd never writes through or over links and special files, so the write was refused and nothing changed"
    )]
    NotWritable { path: String, what: &'static str },
    #[error(
        "the controller left a {what} at {path}; controllers may only write regular files and directories, so nothing changed"
    )]
    ControllerMade { path: String, what: &'static str },
    #[error("{path}: {what} is over the limit of {max} ({}); nothing changed", crate::limit_flag(*limit))]
    Limit {
        path: String,
        what: &'static str,
        limit: WriteLimit,
        max: u64,
    },
    #[error("{path}: the path is longer than {MAX_PATH_BYTES} bytes (PATH_MAX); nothing changed")]
    PathTooLong { path: String },
    #[error(
        "{path} leads to the source's .git directory (the filesystem ignores letter case); nothing changed"
    )]
    Protected { path: String },
    #[error("applying the controller's changes at {path}: {source}; every change was undone")]
    Apply { path: String, source: io::Error },
}

impl WriteError {
    /// Whether the source (not the controller or cupd) is what stands in the way: the
    /// client can change that (409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            WriteError::NotWritable { .. } | WriteError::Protected { .. }
        )
    }
}

/// Whether an entry is never copied, changed or removed: `.git` at the top (any letter
/// case) and cupd's temp entries anywhere.
fn invisible(depth: usize, name: &str) -> bool {
    (depth == 0 && name.eq_ignore_ascii_case(".git")) || is_temp_name(name)
}

/// The tag of a new file's contents staged beside its destination (`.cup-new-….tmp`).
pub(crate) const STAGED_TAG: &str = "new-";
/// The tag of an entry set aside while it is replaced or removed (`.cup-old-….tmp`).
pub(crate) const SET_ASIDE_TAG: &str = "old-";

fn join(path: &[String], name: &str) -> String {
    let mut out = path.join("/");
    if !out.is_empty() {
        out.push('/');
    }
    out.push_str(name);
    out
}

fn io_at(action: &'static str, path: String) -> impl FnOnce(io::Error) -> WriteError {
    move |source| WriteError::Io {
        action,
        path,
        source,
    }
}

/// Opens the directory `path` (absolute), not following a link at its last name either.
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        rustix::fs::CWD,
        path,
        rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Copies the visible part of the real tree (`real`) into the empty directory `scratch`:
/// directories and regular files; links and special files are left out.
pub(crate) fn copy_tree(
    real: BorrowedFd<'_>,
    scratch: BorrowedFd<'_>,
    limits: &WriteLimits,
) -> Result<(), WriteError> {
    let mut count = 0;
    copy_dir(real, scratch, &mut Vec::new(), limits, &mut count)
}

fn copy_dir(
    real: BorrowedFd<'_>,
    scratch: BorrowedFd<'_>,
    path: &mut Vec<String>,
    limits: &WriteLimits,
    count: &mut u64,
) -> Result<(), WriteError> {
    let here = || path.join("/");
    let listed = tree::entries(real).map_err(io_at("reading the source at", here()))?;
    for entry in listed {
        if invisible(path.len(), &entry.name) {
            continue;
        }
        let at = join(path, &entry.name);
        match entry.kind {
            Kind::Other(_) => continue,
            Kind::Dir | Kind::File { .. } => {}
        }
        *count += 1;
        if *count > limits.max_entries {
            return Err(WriteError::Limit {
                path: at,
                what: "the number of files and directories in the source",
                limit: WriteLimit::Entries,
                max: limits.max_entries,
            });
        }
        if path.len() + 1 > limits.max_depth as usize {
            return Err(WriteError::Limit {
                path: at,
                what: "the depth of the source",
                limit: WriteLimit::Depth,
                max: limits.max_depth.into(),
            });
        }
        match entry.kind {
            Kind::Dir => {
                tree::make_dir(scratch, &entry.name).map_err(WriteError::Copy)?;
                let from = tree::open_dir(real, &entry.name)
                    .map_err(io_at("opening the source directory", at.clone()))?;
                let to = tree::open_dir(scratch, &entry.name).map_err(WriteError::Copy)?;
                path.push(entry.name);
                let copied = copy_dir(from.as_fd(), to.as_fd(), path, limits, count);
                path.pop();
                copied?;
            }
            Kind::File { .. } => {
                let (mut from, _) = tree::open_file(real, &entry.name)
                    .map_err(io_at("reading the source file", at))?;
                let mut to =
                    tree::create_file(scratch, &entry.name, 0o644).map_err(WriteError::Copy)?;
                io::copy(&mut from, &mut to).map_err(WriteError::Copy)?;
            }
            Kind::Other(_) => unreachable!("left out above"),
        }
    }
    Ok(())
}

/// What an existing entry of the real tree is replaced by a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaces {
    Nothing,
    File,
    Dir,
}

/// A temp file of new contents, written and synced, in an existing real directory.
#[derive(Debug)]
struct Staged {
    dir: Vec<String>,
    name: String,
}

/// One change to the real tree, in the order it is made.
#[derive(Debug)]
enum Change {
    Remove {
        dir: Vec<String>,
        name: String,
    },
    MakeDir {
        dir: Vec<String>,
        name: String,
        replaces: Replaces,
    },
    PutFile {
        dir: Vec<String>,
        name: String,
        staged: Staged,
        replaces: Replaces,
    },
}

/// The checked, staged difference between the controller's copy and the real tree.
pub(crate) struct Plan {
    changes: Vec<Change>,
}

impl Plan {
    /// Walks the controller's copy against the real tree, checks every limit and stages
    /// every new or changed file. On error, whatever was staged is removed again and the
    /// real tree is as it was.
    pub(crate) fn make(
        scratch: BorrowedFd<'_>,
        real: BorrowedFd<'_>,
        limits: &WriteLimits,
    ) -> Result<Plan, WriteError> {
        let protected = match tree::lookup(real, ".git") {
            Ok(Some(Entry {
                kind: Kind::Dir,
                id,
                ..
            })) => Some(id),
            _ => None,
        };
        let mut planner = Planner {
            limits,
            protected,
            changes: Vec::new(),
            entries: 0,
            bytes: 0,
        };
        let root = Some(real);
        match planner.dir(scratch, root, (real, &[]), &mut Vec::new()) {
            Ok(()) => Ok(Plan {
                changes: planner.changes,
            }),
            Err(error) => {
                discard_staged(real, &planner.changes);
                Err(error)
            }
        }
    }

    /// Whether the controller changed nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Makes the changes (hold the view lock exclusively). On error every change made is
    /// undone and the staged files are removed.
    pub(crate) fn apply(self, real: BorrowedFd<'_>) -> Result<(), WriteError> {
        let mut dirs = Dirs::new(real);
        let mut done: Vec<Undo> = Vec::new();
        for change in &self.changes {
            if let Err(error) = make(&mut dirs, change, &mut done) {
                undo(&mut dirs, done);
                discard_staged(real, &self.changes);
                return Err(error);
            }
        }
        // Committed: drop what was set aside (old versions, removed entries).
        for step in done {
            if let Undo::Rename {
                to, trash: true, ..
            } = step
            {
                let removed = dirs
                    .open(&to.0)
                    .and_then(|dir| tree::remove_all(dir.as_fd(), &to.1));
                if let Err(error) = removed {
                    tracing::warn!(path = %join(&to.0, &to.1), %error,
                        "removing the old version of a changed entry (the next start sweeps it)");
                }
            }
        }
        Ok(())
    }
}

fn discard_staged(real: BorrowedFd<'_>, changes: &[Change]) {
    let mut dirs = Dirs::new(real);
    for change in changes {
        if let Change::PutFile { staged, .. } = change {
            let removed = dirs.open(&staged.dir).and_then(|dir| {
                match rustix::fs::unlinkat(
                    dir.as_fd(),
                    staged.name.as_str(),
                    rustix::fs::AtFlags::empty(),
                ) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            });
            if let Err(error) = removed {
                tracing::warn!(path = %join(&staged.dir, &staged.name), %error,
                    "removing a staged file (the next start sweeps it)");
            }
        }
    }
}

struct Planner<'l> {
    limits: &'l WriteLimits,
    protected: Option<Identity>,
    changes: Vec<Change>,
    entries: u64,
    bytes: u64,
}

impl Planner<'_> {
    /// Plans the directory `path`: `scratch` is the controller's, `real` the real one if it
    /// exists, `stage` the real directory new files are staged in (the nearest existing
    /// one) and its path.
    fn dir(
        &mut self,
        scratch: BorrowedFd<'_>,
        real: Option<BorrowedFd<'_>>,
        stage: (BorrowedFd<'_>, &[String]),
        path: &mut Vec<String>,
    ) -> Result<(), WriteError> {
        let depth = path.len();
        let wanted: Vec<Entry> = tree::entries(scratch)
            .map_err(io_at("reading the controller's copy at", path.join("/")))?
            .into_iter()
            .filter(|e| !invisible(depth, &e.name))
            .collect();
        // Removals first, so that a name can change kind and, where the filesystem ignores
        // case, a renamed entry frees its old name before the new one is placed.
        let mut removed: Vec<Identity> = Vec::new();
        if let Some(real) = real {
            let existing =
                tree::entries(real).map_err(io_at("reading the source at", path.join("/")))?;
            for entry in existing {
                let kept = wanted.iter().any(|w| w.name == entry.name);
                if kept || invisible(depth, &entry.name) || matches!(entry.kind, Kind::Other(_)) {
                    continue;
                }
                self.check_protected(depth, &entry, path)?;
                removed.push(entry.id);
                self.changes.push(Change::Remove {
                    dir: path.clone(),
                    name: entry.name,
                });
            }
        }
        for want in wanted {
            let at = join(path, &want.name);
            if let Kind::Other(what) = want.kind {
                return Err(WriteError::ControllerMade { path: at, what });
            }
            self.count(&at, depth + 1)?;
            let existing = match real {
                Some(real) => tree::lookup(real, &want.name)
                    .map_err(io_at("reading the source at", at.clone()))?
                    .filter(|e| !removed.contains(&e.id)),
                None => None,
            };
            if let Some(existing) = &existing {
                self.check_protected(depth, existing, path)?;
            }
            let replaces = match existing.as_ref().map(|e| e.kind) {
                None => Replaces::Nothing,
                Some(Kind::File { .. }) => Replaces::File,
                Some(Kind::Dir) => Replaces::Dir,
                Some(Kind::Other(what)) => return Err(WriteError::NotWritable { path: at, what }),
            };
            match want.kind {
                Kind::Dir => {
                    let inner_scratch = tree::open_dir(scratch, &want.name)
                        .map_err(io_at("reading the controller's copy at", at.clone()))?;
                    if replaces == Replaces::Dir {
                        let real = real.expect("an existing entry has a real parent");
                        let inner_real = tree::open_dir(real, &want.name)
                            .map_err(io_at("opening the source directory", at.clone()))?;
                        path.push(want.name);
                        let inner_path = path.clone();
                        let planned = self.dir(
                            inner_scratch.as_fd(),
                            Some(inner_real.as_fd()),
                            (inner_real.as_fd(), &inner_path),
                            path,
                        );
                        path.pop();
                        planned?;
                    } else {
                        self.changes.push(Change::MakeDir {
                            dir: path.clone(),
                            name: want.name.clone(),
                            replaces,
                        });
                        path.push(want.name);
                        let planned = self.dir(inner_scratch.as_fd(), None, stage, path);
                        path.pop();
                        planned?;
                    }
                }
                Kind::File { .. } => {
                    let (mut new, size) = tree::open_file(scratch, &want.name)
                        .map_err(io_at("reading the controller's copy at", at.clone()))?;
                    let mut mode = NEW_FILE_MODE;
                    if let (
                        Some(real),
                        Some(Entry {
                            kind: Kind::File { size: old },
                            ..
                        }),
                    ) = (real, &existing)
                    {
                        let (mut old_file, _) = tree::open_file(real, &want.name)
                            .map_err(io_at("reading the source file", at.clone()))?;
                        if *old == size
                            && tree::same_contents(&mut old_file, &mut new)
                                .map_err(io_at("comparing", at.clone()))?
                        {
                            continue;
                        }
                        mode = tree::mode_of(&old_file)
                            .map_err(io_at("reading the source file", at.clone()))?;
                        rewind(&mut new)
                            .map_err(io_at("reading the controller's copy at", at.clone()))?;
                    }
                    let staged = self.stage(&mut new, size, mode, stage, &at)?;
                    self.changes.push(Change::PutFile {
                        dir: path.clone(),
                        name: want.name,
                        staged,
                        replaces,
                    });
                }
                Kind::Other(_) => unreachable!("refused above"),
            }
        }
        Ok(())
    }

    /// Counts one more entry of the controller's copy at `depth`, and checks its path.
    fn count(&mut self, at: &str, depth: usize) -> Result<(), WriteError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(WriteError::Limit {
                path: at.to_owned(),
                what: "the number of files and directories the controller left",
                limit: WriteLimit::Entries,
                max: self.limits.max_entries,
            });
        }
        if depth > self.limits.max_depth as usize {
            return Err(WriteError::Limit {
                path: truncated(at),
                what: "the depth of the path",
                limit: WriteLimit::Depth,
                max: self.limits.max_depth.into(),
            });
        }
        if at.len() > MAX_PATH_BYTES {
            return Err(WriteError::PathTooLong {
                path: truncated(at),
            });
        }
        Ok(())
    }

    fn check_protected(
        &self,
        depth: usize,
        entry: &Entry,
        path: &[String],
    ) -> Result<(), WriteError> {
        if depth == 0 && Some(entry.id) == self.protected {
            return Err(WriteError::Protected {
                path: join(path, &entry.name),
            });
        }
        Ok(())
    }

    /// Writes `new` (`size` bytes by its `fstat`) to a fresh temp file in `stage`, synced.
    fn stage(
        &mut self,
        new: &mut File,
        size: u64,
        mode: u32,
        (stage, stage_path): (BorrowedFd<'_>, &[String]),
        at: &str,
    ) -> Result<Staged, WriteError> {
        if size > self.limits.max_file_bytes {
            return Err(WriteError::Limit {
                path: at.to_owned(),
                what: "the size of a new or changed file",
                limit: WriteLimit::FileBytes,
                max: self.limits.max_file_bytes,
            });
        }
        self.bytes += size;
        if self.bytes > self.limits.max_total_bytes {
            return Err(WriteError::Limit {
                path: at.to_owned(),
                what: "the total size of the new and changed files of one write",
                limit: WriteLimit::TotalBytes,
                max: self.limits.max_total_bytes,
            });
        }
        let name = temp_name(STAGED_TAG);
        let mut temp = tree::create_file(stage, &name, mode)
            .map_err(io_at("staging the new contents of", at.to_owned()))?;
        let written =
            tree::copy_bounded(new, &mut temp, size.saturating_add(1)).and_then(|copied| {
                if copied == size {
                    temp.sync_all()
                } else {
                    Err(io::Error::other(format!(
                        "the file changed size while it was read ({size} bytes, then {copied})"
                    )))
                }
            });
        drop(temp);
        if let Err(error) = written {
            let _ = rustix::fs::unlinkat(stage, name.as_str(), rustix::fs::AtFlags::empty());
            return Err(WriteError::Io {
                action: "staging the new contents of",
                path: at.to_owned(),
                source: error,
            });
        }
        Ok(Staged {
            dir: stage_path.to_vec(),
            name,
        })
    }
}

fn rewind(file: &mut File) -> io::Result<()> {
    use std::io::Seek;
    file.rewind()
}

/// A path for a message: at most the last 200 bytes of a long one.
fn truncated(path: &str) -> String {
    const KEEP: usize = 200;
    if path.len() <= KEEP {
        return path.to_owned();
    }
    let mut start = path.len() - KEEP;
    while !path.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &path[start..])
}

/// How to take back one step of an apply.
#[derive(Debug)]
enum Undo {
    /// `from` was renamed (or linked) to `to`: rename `to` back to `from`. `trash` marks
    /// a set-aside old entry, removed once the whole apply succeeded.
    Rename {
        from: (Vec<String>, String),
        to: (Vec<String>, String),
        trash: bool,
    },
    /// The directory was created: remove it (it is empty again once later steps are undone).
    MadeDir { dir: Vec<String>, name: String },
}

/// Open real directories by path, so consecutive steps in one directory open it once.
struct Dirs<'r> {
    root: BorrowedFd<'r>,
    open: Vec<(Vec<String>, OwnedFd)>,
}

impl<'r> Dirs<'r> {
    fn new(root: BorrowedFd<'r>) -> Dirs<'r> {
        Dirs {
            root,
            open: Vec::new(),
        }
    }

    fn open(&mut self, path: &[String]) -> io::Result<BorrowedFd<'_>> {
        if let Some(at) = self.open.iter().position(|(p, _)| p == path) {
            return Ok(self.open[at].1.as_fd());
        }
        let fd = tree::open_path(self.root, path)?;
        // A handful is enough: changes come in tree order.
        if self.open.len() >= 8 {
            self.open.remove(0);
        }
        self.open.push((path.to_vec(), fd));
        Ok(self.open.last().expect("just pushed").1.as_fd())
    }

    /// Renames `from` to `to` (either may be in any directory of the tree).
    fn rename(
        &mut self,
        from: &(Vec<String>, String),
        to: &(Vec<String>, String),
        no_replace: bool,
    ) -> io::Result<()> {
        let from_dir = rustix::io::fcntl_dupfd_cloexec(self.open(&from.0)?, 0)?;
        let to_dir = self.open(&to.0)?;
        if no_replace {
            match rustix::fs::renameat_with(
                &from_dir,
                from.1.as_str(),
                to_dir,
                to.1.as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                // Filesystems without renameat2's flags: the plain rename (the name was
                // checked to be free, and writes are serialised).
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {}
                other => return Ok(other?),
            }
        }
        let to_dir = self.open(&to.0)?;
        Ok(rustix::fs::renameat(
            &from_dir,
            from.1.as_str(),
            to_dir,
            to.1.as_str(),
        )?)
    }
}

/// Makes one change, recording how to undo each step in `done`.
fn make(dirs: &mut Dirs<'_>, change: &Change, done: &mut Vec<Undo>) -> Result<(), WriteError> {
    let failed = |dir: &[String], name: &str| {
        let path = join(dir, name);
        move |source| WriteError::Apply { path, source }
    };
    match change {
        Change::Remove { dir, name } => {
            set_aside(dirs, dir, name, done).map_err(failed(dir, name))?;
        }
        Change::MakeDir {
            dir,
            name,
            replaces,
        } => {
            if *replaces != Replaces::Nothing {
                set_aside(dirs, dir, name, done).map_err(failed(dir, name))?;
            }
            let parent = dirs.open(dir).map_err(failed(dir, name))?;
            tree::make_dir(parent, name).map_err(failed(dir, name))?;
            done.push(Undo::MadeDir {
                dir: dir.clone(),
                name: name.clone(),
            });
        }
        Change::PutFile {
            dir,
            name,
            staged,
            replaces,
        } => {
            match replaces {
                Replaces::Nothing => {}
                // A second link to the old file, so the rename below replaces it atomically
                // for every other reader and the undo can put it back.
                Replaces::File => keep_old(dirs, dir, name, done).map_err(failed(dir, name))?,
                Replaces::Dir => set_aside(dirs, dir, name, done).map_err(failed(dir, name))?,
            }
            let from = (staged.dir.clone(), staged.name.clone());
            let to = (dir.clone(), name.clone());
            dirs.rename(&from, &to, *replaces != Replaces::File)
                .map_err(failed(dir, name))?;
            done.push(Undo::Rename {
                from,
                to,
                trash: false,
            });
        }
    }
    Ok(())
}

/// Renames `dir/name` to a temp name beside it.
fn set_aside(
    dirs: &mut Dirs<'_>,
    dir: &[String],
    name: &str,
    done: &mut Vec<Undo>,
) -> io::Result<()> {
    let from = (dir.to_vec(), name.to_owned());
    let to = (dir.to_vec(), temp_name(SET_ASIDE_TAG));
    dirs.rename(&from, &to, true)?;
    done.push(Undo::Rename {
        from,
        to,
        trash: true,
    });
    Ok(())
}

/// Links the file `dir/name` under a temp name beside it (renames it there where the
/// filesystem has no hard links).
fn keep_old(
    dirs: &mut Dirs<'_>,
    dir: &[String],
    name: &str,
    done: &mut Vec<Undo>,
) -> io::Result<()> {
    let old = temp_name(SET_ASIDE_TAG);
    let parent = dirs.open(dir)?;
    match rustix::fs::linkat(
        parent,
        name,
        parent,
        old.as_str(),
        rustix::fs::AtFlags::empty(),
    ) {
        Ok(()) => {
            done.push(Undo::Rename {
                from: (dir.to_vec(), name.to_owned()),
                to: (dir.to_vec(), old),
                trash: true,
            });
            Ok(())
        }
        Err(
            rustix::io::Errno::PERM
            | rustix::io::Errno::OPNOTSUPP
            | rustix::io::Errno::MLINK
            | rustix::io::Errno::XDEV,
        ) => set_aside(dirs, dir, name, done),
        Err(e) => Err(e.into()),
    }
}

/// Takes back the steps in `done`, last first. A step that cannot be undone is logged (the
/// tree then needs a look: the log names the path and where the old entry is).
fn undo(dirs: &mut Dirs<'_>, done: Vec<Undo>) {
    for step in done.into_iter().rev() {
        let result = match &step {
            Undo::Rename { from, to, .. } => dirs.rename(to, from, false),
            Undo::MadeDir { dir, name } => dirs.open(dir).and_then(|parent| {
                Ok(rustix::fs::unlinkat(
                    parent,
                    name.as_str(),
                    rustix::fs::AtFlags::REMOVEDIR,
                )?)
            }),
        };
        if let Err(error) = result {
            tracing::error!(?step, %error, "undoing a step of a failed write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A real tree and a scratch tree, each opened.
    struct Trees {
        real: tempfile::TempDir,
        scratch: tempfile::TempDir,
    }

    impl Trees {
        fn new() -> Trees {
            let real = tempfile::tempdir().unwrap();
            for dir in ["a/b", "ns", ".git"] {
                std::fs::create_dir_all(real.path().join(dir)).unwrap();
            }
            for (file, text) in [
                ("keep.yml", "keep"),
                ("a/change.yml", "old"),
                ("a/b/remove.yml", "gone"),
                ("ns/features.yml", "flags"),
                (".git/HEAD", "ref"),
            ] {
                std::fs::write(real.path().join(file), text).unwrap();
            }
            let scratch = tempfile::tempdir().unwrap();
            let trees = Trees { real, scratch };
            copy_tree(
                trees.real_fd().as_fd(),
                trees.scratch_fd().as_fd(),
                &WriteLimits::default(),
            )
            .unwrap();
            trees
        }

        fn real_fd(&self) -> OwnedFd {
            open_root(self.real.path()).unwrap()
        }

        fn scratch_fd(&self) -> OwnedFd {
            open_root(self.scratch.path()).unwrap()
        }

        fn s(&self, rel: &str) -> PathBuf {
            self.scratch.path().join(rel)
        }

        fn r(&self, rel: &str) -> PathBuf {
            self.real.path().join(rel)
        }

        fn plan(&self, limits: &WriteLimits) -> Result<Plan, WriteError> {
            Plan::make(self.scratch_fd().as_fd(), self.real_fd().as_fd(), limits)
        }

        fn carry_over(&self) -> Result<(), WriteError> {
            self.plan(&WriteLimits::default())?
                .apply(self.real_fd().as_fd())
        }

        /// Every path under the real root with its contents ("/" for a directory).
        fn snapshot(&self) -> Vec<(String, String)> {
            fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
                let mut names: Vec<_> = std::fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                for name in names {
                    let path = dir.join(&name);
                    let rel = format!("{rel}/{name}");
                    let meta = std::fs::symlink_metadata(&path).unwrap();
                    if meta.is_dir() {
                        out.push((rel.clone(), "/".into()));
                        walk(&path, &rel, out);
                    } else if meta.is_symlink() {
                        let target = std::fs::read_link(&path).unwrap();
                        out.push((rel, format!("-> {}", target.display())));
                    } else {
                        out.push((rel, std::fs::read_to_string(&path).unwrap()));
                    }
                }
            }
            let mut out = Vec::new();
            walk(self.real.path(), "", &mut out);
            out
        }
    }

    #[test]
    fn the_copy_leaves_out_git_links_special_files_and_cupd_temps() {
        let trees = Trees::new();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), trees.r("linked")).unwrap();
        std::fs::write(trees.r(".cup-x.tmp"), "temp").unwrap();
        std::fs::create_dir(trees.r(".GIT")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        copy_tree(
            trees.real_fd().as_fd(),
            open_root(scratch.path()).unwrap().as_fd(),
            &WriteLimits::default(),
        )
        .unwrap();
        let mut names: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "keep.yml", "ns"]);
    }

    #[test]
    fn changes_creations_and_removals_are_carried_over() {
        let trees = Trees::new();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        std::fs::remove_file(trees.s("a/b/remove.yml")).unwrap();
        std::fs::create_dir_all(trees.s("n/deeper")).unwrap();
        std::fs::write(trees.s("n/deeper/created.yml"), "hi").unwrap();
        // A file replaced by a directory, and a directory by a file.
        std::fs::remove_file(trees.s("keep.yml")).unwrap();
        std::fs::create_dir(trees.s("keep.yml")).unwrap();
        std::fs::remove_dir_all(trees.s("ns")).unwrap();
        std::fs::write(trees.s("ns"), "now a file").unwrap();
        trees.carry_over().unwrap();
        assert_eq!(
            trees.snapshot(),
            [
                ("/.git", "/"),
                ("/.git/HEAD", "ref"),
                ("/a", "/"),
                ("/a/b", "/"),
                ("/a/change.yml", "new"),
                ("/keep.yml", "/"),
                ("/n", "/"),
                ("/n/deeper", "/"),
                ("/n/deeper/created.yml", "hi"),
                ("/ns", "now a file"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }

    #[test]
    fn an_unchanged_copy_plans_nothing_and_a_changed_file_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let trees = Trees::new();
        assert!(trees.plan(&WriteLimits::default()).unwrap().is_empty());
        std::fs::set_permissions(
            trees.r("a/change.yml"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        trees.carry_over().unwrap();
        let mode = std::fs::metadata(trees.r("a/change.yml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        std::fs::write(trees.s("a/fresh.yml"), "x").unwrap();
        trees.carry_over().unwrap();
        let mode = std::fs::metadata(trees.r("a/fresh.yml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    /// The review's finding: a namespace directory that is a link to a directory outside the
    /// source. The copy leaves the link out, the controller re-creates the namespace as a
    /// directory, and carrying that over used to act inside the link's target.
    #[test]
    fn a_link_in_the_real_tree_refuses_the_write_and_nothing_changes() {
        let trees = Trees::new();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("OWNERS"), "shared").unwrap();
        std::fs::write(outside.path().join("features.yml"), "theirs").unwrap();
        std::os::unix::fs::symlink(outside.path(), trees.r("production")).unwrap();
        std::os::unix::fs::symlink("../keep.yml", trees.r("a/alias.yml")).unwrap();
        let before = trees.snapshot();
        std::fs::create_dir(trees.s("production")).unwrap();
        std::fs::write(trees.s("production/features.yml"), "mine").unwrap();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        let error = trees.carry_over().unwrap_err();
        assert!(error.is_conflict(), "{error}");
        assert!(
            error.to_string().contains("production is a symbolic link"),
            "{error}"
        );
        assert_eq!(trees.snapshot(), before);
        assert_eq!(
            std::fs::read_to_string(outside.path().join("OWNERS")).unwrap(),
            "shared"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("features.yml")).unwrap(),
            "theirs"
        );
        // A link the controller does not touch is neither removed nor a reason to refuse.
        std::fs::remove_dir_all(trees.s("production")).unwrap();
        trees.carry_over().unwrap();
        assert!(
            std::fs::symlink_metadata(trees.r("production"))
                .unwrap()
                .is_symlink()
        );
        assert!(
            std::fs::symlink_metadata(trees.r("a/alias.yml"))
                .unwrap()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(trees.r("a/change.yml")).unwrap(),
            "new"
        );
        // Writing over a linked file is refused too.
        std::fs::write(trees.s("a/alias.yml"), "through the link").unwrap();
        let error = trees.carry_over().unwrap_err();
        assert!(
            error.to_string().contains("a/alias.yml is a symbolic link"),
            "{error}"
        );
        assert_eq!(
            std::fs::read_to_string(trees.r("keep.yml")).unwrap(),
            "keep"
        );
    }

    #[test]
    fn a_link_or_fifo_left_by_the_controller_is_refused() {
        let trees = Trees::new();
        let before = trees.snapshot();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        std::os::unix::fs::symlink("/etc", trees.s("a/b/etc")).unwrap();
        let error = trees.carry_over().unwrap_err();
        assert!(!error.is_conflict());
        assert!(
            error
                .to_string()
                .contains("left a symbolic link at a/b/etc"),
            "{error}"
        );
        assert_eq!(trees.snapshot(), before);
        std::fs::remove_file(trees.s("a/b/etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            trees.s("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let error = trees.carry_over().unwrap_err();
        assert!(error.to_string().contains("left a FIFO at pipe"), "{error}");
        assert_eq!(trees.snapshot(), before);
    }

    #[test]
    fn a_sparse_file_is_refused_before_it_is_read() {
        let trees = Trees::new();
        let before = trees.snapshot();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        let file = File::create(trees.s("huge.bin")).unwrap();
        file.set_len(2 << 30).unwrap();
        let started = std::time::Instant::now();
        let error = trees.carry_over().unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let text = error.to_string();
        assert!(
            text.contains("huge.bin") && text.contains("--write-max-file-size"),
            "{text}"
        );
        // Nothing changed, and nothing staged was left behind.
        assert_eq!(trees.snapshot(), before);
        // Under the per-file limit but over the total.
        file.set_len(0).unwrap();
        let limits = WriteLimits {
            max_file_bytes: 10,
            max_total_bytes: 12,
            ..WriteLimits::default()
        };
        std::fs::write(trees.s("one"), "12345678").unwrap();
        std::fs::write(trees.s("two"), "12345678").unwrap();
        let error = trees.plan(&limits).err().expect("over the total");
        assert!(
            error.to_string().contains("--write-max-total-size"),
            "{error}"
        );
        assert_eq!(trees.snapshot(), before);
    }

    #[test]
    fn depth_entries_and_path_length_are_bounded_and_nothing_changes() {
        let trees = Trees::new();
        let before = trees.snapshot();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        let mut deep = trees.s("");
        for _ in 0..70 {
            deep.push("n");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let error = trees.carry_over().unwrap_err();
        assert!(error.to_string().contains("--write-max-depth"), "{error}");
        assert_eq!(trees.snapshot(), before);
        std::fs::remove_dir_all(trees.s("n")).unwrap();
        for i in 0..20 {
            std::fs::write(trees.s(&format!("f{i}")), "x").unwrap();
        }
        let few = WriteLimits {
            max_entries: 15,
            ..WriteLimits::default()
        };
        let error = trees.plan(&few).err().expect("too many entries");
        assert!(error.to_string().contains("--write-max-entries"), "{error}");
        // Paths longer than PATH_MAX, within the depth limit.
        let long = "x".repeat(250);
        let mut dir = trees.scratch_fd();
        for _ in 0..20 {
            tree::make_dir(dir.as_fd(), &long).unwrap();
            dir = tree::open_dir(dir.as_fd(), &long).unwrap();
        }
        let error = trees.carry_over().unwrap_err();
        assert!(error.to_string().contains("PATH_MAX"), "{error}");
        assert_eq!(trees.snapshot(), before);
        // The source still takes an ordinary write afterwards.
        tree::remove_all(trees.scratch_fd().as_fd(), &long).unwrap();
        for i in 0..20 {
            std::fs::remove_file(trees.s(&format!("f{i}"))).unwrap();
        }
        trees.carry_over().unwrap();
        assert_eq!(
            std::fs::read_to_string(trees.r("a/change.yml")).unwrap(),
            "new"
        );
    }

    #[test]
    fn a_failed_rename_undoes_every_change_before_it() {
        let trees = Trees::new();
        let before = trees.snapshot();
        std::fs::write(trees.s("a/change.yml"), "new").unwrap();
        std::fs::remove_file(trees.s("keep.yml")).unwrap();
        std::fs::write(trees.s("ns/features.yml"), "changed").unwrap();
        std::fs::write(trees.s("ns/more.yml"), "added").unwrap();
        let plan = trees.plan(&WriteLimits::default()).unwrap();
        // The tree changes under the plan: the last new file's name is taken when its turn
        // comes, after three other changes were made.
        std::fs::create_dir(trees.r("ns/more.yml")).unwrap();
        let error = plan.apply(trees.real_fd().as_fd()).unwrap_err();
        assert!(matches!(error, WriteError::Apply { .. }), "{error}");
        assert!(error.to_string().contains("ns/more.yml"), "{error}");
        std::fs::remove_dir(trees.r("ns/more.yml")).unwrap();
        // Everything before the failure is undone, and no temp entry is left.
        assert_eq!(trees.snapshot(), before);
    }

    #[test]
    fn git_in_any_letter_case_is_never_written() {
        let trees = Trees::new();
        let before = trees.snapshot();
        for dir in [".git", ".GIT", ".Git"] {
            std::fs::create_dir_all(trees.s(dir)).unwrap();
            std::fs::write(trees.s(&format!("{dir}/config")), "[core] hooksPath=/evil").unwrap();
        }
        std::fs::write(trees.s(".cup-mine.tmp"), "looks like ours").unwrap();
        assert!(trees.plan(&WriteLimits::default()).unwrap().is_empty());
        trees.carry_over().unwrap();
        assert_eq!(trees.snapshot(), before);
    }
}

//! Walking, copying and comparing source trees through directory descriptors that never
//! follow a symbolic link.
//!
//! Every directory is opened relative to its parent's descriptor with `O_NOFOLLOW |
//! O_DIRECTORY`, one name at a time, and every entry is judged by `fstatat(…,
//! AT_SYMLINK_NOFOLLOW)`. A symlink anywhere in the source (or a directory swapped for one
//! while a write runs) therefore fails the open instead of leading out of the tree, and no
//! path is ever resolved as a whole, so no path length limit of the kernel applies either.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// What a directory entry is, judged without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File {
        size: u64,
    },
    /// A symbolic link, FIFO, socket or device: never read, written, copied or removed.
    Other(&'static str),
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File { .. } => "regular file",
            Kind::Other(what) => what,
        }
    }
}

/// One entry of a directory: a UTF-8 name, its kind and its identity.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    pub kind: Kind,
    pub id: Identity,
}

/// Device and inode: which object a name leads to (on a case-insensitive filesystem,
/// `.Git` and `.git` lead to the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

fn kind_of(stat: &rustix::fs::Stat) -> Kind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File {
            size: u64::try_from(stat.st_size).unwrap_or(0),
        },
        FileType::Symlink => Kind::Other("symbolic link"),
        FileType::Fifo => Kind::Other("FIFO"),
        FileType::Socket => Kind::Other("socket"),
        FileType::CharacterDevice => Kind::Other("character device"),
        FileType::BlockDevice => Kind::Other("block device"),
        FileType::Unknown => Kind::Other("special file"),
    }
}

fn identity_of(stat: &rustix::fs::Stat) -> Identity {
    #[allow(clippy::unnecessary_cast)]
    Identity {
        dev: stat.st_dev as u64,
        ino: stat.st_ino as u64,
    }
}

/// The entry called `name` in `dir`, or `None` when there is none.
pub(crate) fn lookup(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<Entry>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(Entry {
            name: name.to_owned(),
            kind: kind_of(&stat),
            id: identity_of(&stat),
        })),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The entries of `dir` sorted by name, without `.` and `..`. Names that are not UTF-8
/// are left out: no controller can name them (WASI paths are strings), so none can ask
/// for them to change.
pub(crate) fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let raw: &CStr = entry.file_name();
        let Ok(name) = raw.to_str() else { continue };
        if name == "." || name == ".." {
            continue;
        }
        // The stat, not d_type: d_type may be DT_UNKNOWN, and an entry may change kind
        // between the listing and now (the stat is what later steps rely on).
        if let Some(found) = lookup(dir, name)? {
            out.push(found);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Opens the directory `name` in `parent`; fails (ELOOP/ENOTDIR) when it is a link or not a
/// directory.
pub(crate) fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory at `path` (names relative to `root`, each opened without following
/// links).
pub(crate) fn open_path(root: BorrowedFd<'_>, path: &[String]) -> io::Result<OwnedFd> {
    let mut dir = rustix::io::fcntl_dupfd_cloexec(root, 0)?;
    for name in path {
        dir = open_dir(dir.as_fd(), name)?;
    }
    Ok(dir)
}

/// Opens the regular file `name` in `dir` for reading. `O_NONBLOCK` so that a FIFO swapped
/// in after the listing cannot block the open; the result is checked to be a regular file.
pub(crate) fn open_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<(File, u64)> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let stat = rustix::fs::fstat(&fd)?;
    match kind_of(&stat) {
        Kind::File { size } => Ok((File::from(fd), size)),
        other => Err(io::Error::other(format!(
            "{name} is a {}, not a regular file",
            other.describe()
        ))),
    }
}

/// Creates the regular file `name` in `dir` (it must not exist; links are not followed).
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    // The process umask may have narrowed the mode; set it exactly.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(File::from(fd))
}

/// The permission bits of an open file.
pub(crate) fn mode_of(file: &File) -> io::Result<u32> {
    Ok(rustix::fs::fstat(file)?.st_mode & 0o7777)
}

/// Copies at most `limit` bytes from `from` into `to`; the number copied is returned, and
/// more than `limit` are never read (a file that grows under the copy is cut short and the
/// caller sees that the size changed).
pub(crate) fn copy_bounded(from: &mut File, to: &mut File, limit: u64) -> io::Result<u64> {
    io::copy(&mut from.take(limit), to)
}

/// Whether two open files have the same bytes, reading both in blocks of 64 KiB (the
/// sizes are compared first by the caller).
pub(crate) fn same_contents(a: &mut File, b: &mut File) -> io::Result<bool> {
    const BLOCK: usize = 64 * 1024;
    let mut left = vec![0u8; BLOCK];
    let mut right = vec![0u8; BLOCK];
    loop {
        let n = read_full(a, &mut left)?;
        let m = read_full(b, &mut right)?;
        if n != m || left[..n] != right[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Creates the directory `name` in `dir` with mode 0777 less the umask (as `mkdir` does).
pub(crate) fn make_dir(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o777))?)
}

/// Removes `name` from `dir`, with everything under it when it is a directory; links met
/// on the way are removed, never followed.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match lookup(dir, name)? {
        None => Ok(()),
        Some(Entry {
            kind: Kind::Dir, ..
        }) => {
            let inner = open_dir(dir, name)?;
            for entry in entries(inner.as_fd())? {
                remove_all(inner.as_fd(), &entry.name)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(path: &std::path::Path) -> OwnedFd {
        open_dir(rustix::fs::CWD, path.to_str().unwrap()).unwrap()
    }

    #[test]
    fn entries_judge_links_and_special_files_without_following_them() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("f"), "12345").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("l")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.path().join("p"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fd = dir_fd(root.path());
        let found: Vec<(String, Kind)> = entries(fd.as_fd())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        assert_eq!(
            found,
            vec![
                ("d".into(), Kind::Dir),
                ("f".into(), Kind::File { size: 5 }),
                ("l".into(), Kind::Other("symbolic link")),
                ("p".into(), Kind::Other("FIFO")),
            ]
        );
        assert!(open_dir(fd.as_fd(), "l").is_err(), "a link is not opened");
        assert!(open_file(fd.as_fd(), "p").is_err(), "a FIFO is not read");
        assert!(open_path(fd.as_fd(), &["l".into()]).is_err());
    }

    #[test]
    fn remove_all_removes_links_not_their_targets() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), "x").unwrap();
        std::fs::create_dir_all(root.path().join("gone/sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("gone/sub/link")).unwrap();
        let fd = dir_fd(root.path());
        remove_all(fd.as_fd(), "gone").unwrap();
        assert!(!root.path().join("gone").exists());
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn contents_compare_block_by_block() {
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1;
        std::fs::write(dir.path().join("a"), &big).unwrap();
        std::fs::write(dir.path().join("b"), &big).unwrap();
        std::fs::write(dir.path().join("c"), &other).unwrap();
        let open = |n: &str| File::open(dir.path().join(n)).unwrap();
        assert!(same_contents(&mut open("a"), &mut open("b")).unwrap());
        assert!(!same_contents(&mut open("a"), &mut open("c")).unwrap());
    }
}

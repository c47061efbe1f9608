//! Keeping rendered paths inside the source root.
//!
//! A rendered path must be a Go `fs.ValidPath` (relative, `/`-separated, no empty, `.` or
//! `..` elements), which rules out lexical escapes. Symbolic links inside the tree could
//! still point outside it, so the deepest existing ancestor (or the file itself) is
//! canonicalized and must stay under the canonical root.

use std::path::{Path, PathBuf};

use crate::Error;

/// Go's `fs.ValidPath`, minus the special case `"."` (a resource is never the root).
pub fn check_relative(path: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("the template rendered an empty path"));
    }
    if path.contains('\0') {
        return Err(bad("paths cannot contain NUL"));
    }
    if path.starts_with('/') {
        return Err(bad("paths are relative to the source root"));
    }
    if path
        .split('/')
        .any(|e| e.is_empty() || e == "." || e == "..")
    {
        return Err(bad(
            "empty, \".\" and \"..\" path elements are not allowed (the path must stay inside the source root)",
        ));
    }
    Ok(())
}

/// The host path of `rel` under `root`, after checking that neither the path nor any
/// existing symlink on the way leaves the root.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, Error> {
    check_relative(rel)?;
    let full = root.join(rel);
    let canonical_root = root.canonicalize().map_err(|source| Error::Io {
        path: root.to_owned(),
        source,
    })?;
    let mut probe = full.as_path();
    // Walk up to the first path that exists (the file, or a parent for a new file).
    loop {
        match probe.canonicalize() {
            Ok(real) if real.starts_with(&canonical_root) => return Ok(full),
            Ok(_) => {
                return Err(Error::Path {
                    path: rel.to_owned(),
                    reason: "a symbolic link leads outside the source root".into(),
                });
            }
            Err(_) => match probe.parent() {
                Some(parent) if parent.starts_with(root) => probe = parent,
                _ => return Ok(full),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_escapes_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "default/x.json", "a.b/..c", "...", "a/b/c"] {
            assert!(check_relative(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink(root.path().join("in"), root.path().join("alias")).unwrap();
        assert!(resolve(root.path(), "out/x.json").is_err());
        assert!(resolve(root.path(), "out/new/dir/x.json").is_err());
        assert!(resolve(root.path(), "alias/x.json").is_ok());
        assert!(resolve(root.path(), "new/dir/x.json").is_ok());
    }
}

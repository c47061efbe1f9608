//! cup's temporary entries in a source directory, and the mode of the files it creates there.
//!
//! Every writer that stages a file beside its destination (the template controller's atomic
//! writes, the apply step of a wasm controller's write) names it `.cup-<tag><unique>.tmp`, so
//! that readers and copies can leave such entries out and the startup sweep can remove what
//! a killed server left. The names and the test for them live here, in one place.

/// What every temporary entry's name starts with.
pub const TEMP_PREFIX: &str = ".cup-";
/// What every temporary entry's name ends with.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The permission bits of a file cup creates in a source, set exactly (the process umask
/// does not narrow them): readable by all, writable by the owner, as the original's files.
pub const NEW_FILE_MODE: u32 = 0o644;

/// Whether `name` is one of cup's temporary entries: `.cup-<anything>.tmp`.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Whether `name` is a temporary entry made by [`temp_name`] with `tag`.
pub fn is_temp_name_tagged(name: &str, tag: &str) -> bool {
    is_temp_name(name) && name[TEMP_PREFIX.len()..].starts_with(tag)
}

/// A fresh name for a temporary entry: `.cup-<tag><pid>-<counter>-<nanos>.tmp`, unique
/// within this process and unlikely to be taken by another one (callers still create it
/// exclusively).
pub fn temp_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{TEMP_PREFIX}{tag}{:x}-{count:x}-{nanos:x}{TEMP_SUFFIX}",
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_names_are_recognised_with_their_tag_and_others_are_not() {
        let a = temp_name("new-");
        let b = temp_name("new-");
        assert_ne!(a, b, "two names of one process differ");
        assert!(is_temp_name(&a));
        assert!(is_temp_name_tagged(&a, "new-"));
        assert!(!is_temp_name_tagged(&a, "old-"));
        for ours in [".cup-x.tmp", ".cup-.tmp", ".cup-old-1-2-3.tmp"] {
            assert!(is_temp_name(ours), "{ours}");
        }
        for theirs in [
            "cup-x.tmp",
            ".cup-x",
            ".cupx.tmp",
            ".cup-x.tmp.yml",
            ".CUP-x.tmp",
        ] {
            assert!(!is_temp_name(theirs), "{theirs}");
        }
    }
}

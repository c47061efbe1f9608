//! A file read again when it changes, so rotating tokens or editing the policy needs no
//! restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::error::AccessError;

/// How often a watched file is looked at, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        },
    })
}

/// The parsed content of a file, re-read (at most once per [`CHECK_INTERVAL`], by the
/// caller that finds it due) when its size, time or inode changes. A version that does not
/// load keeps the last good one in use and is reported once, and by [`Watched::problem`].
pub struct Watched<T> {
    path: PathBuf,
    load: fn(&Path) -> Result<T, AccessError>,
    interval: Duration,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamp: Option<Stamp>,
    checked: Instant,
    problem: Option<String>,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("path", &self.path).finish()
    }
}

impl<T> Watched<T> {
    /// Loads the file now; an error here is the caller's to report (at startup, fatal).
    pub fn open(
        path: &Path,
        load: fn(&Path) -> Result<T, AccessError>,
    ) -> Result<Self, AccessError> {
        Self::with_interval(path, load, CHECK_INTERVAL)
    }

    /// [`Watched::open`] with another check interval.
    pub fn with_interval(
        path: &Path,
        load: fn(&Path) -> Result<T, AccessError>,
        interval: Duration,
    ) -> Result<Self, AccessError> {
        let before = stamp(path);
        let current = load(path)?;
        Ok(Watched {
            path: path.to_owned(),
            load,
            interval,
            state: Mutex::new(State {
                current: Arc::new(current),
                stamp: before,
                checked: Instant::now(),
                problem: None,
            }),
        })
    }

    /// The current content, after a reload if the file changed.
    pub fn get(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            let now = stamp(&self.path);
            if now != state.stamp {
                // The stamp is taken before reading: a write racing with the read changes the
                // stamp again, so it is read once more at the next check.
                state.stamp = now;
                match (self.load)(&self.path) {
                    Ok(next) => {
                        tracing::info!(path = %self.path.display(), "reloaded");
                        state.current = Arc::new(next);
                        state.problem = None;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "keeping the previous version of a file that no longer loads");
                        state.problem = Some(error.to_string());
                    }
                }
            }
        }
        state.current.clone()
    }

    /// Why the file's newest version is not in use, if it is not.
    pub fn problem(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .problem
            .clone()
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::TokenSet;

    #[test]
    fn reloads_on_change_and_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "one,alice,1\n").unwrap();
        let watched = Watched::with_interval(&path, TokenSet::load, Duration::ZERO).unwrap();
        assert!(watched.get().authenticate("one").is_some());

        // A replacement by rename (a new inode), as editors and secret managers write.
        let next = dir.path().join("next");
        std::fs::write(&next, "two,bob,2\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(watched.get().authenticate("one").is_none());
        assert_eq!(watched.get().authenticate("two").unwrap().user, "bob");

        std::fs::write(&path, "broken\n").unwrap();
        assert_eq!(watched.get().authenticate("two").unwrap().user, "bob");
        assert!(watched.problem().unwrap().contains(":1: expected"));

        std::fs::write(&path, "three,carol,3,admins\n").unwrap();
        assert_eq!(watched.get().authenticate("three").unwrap().user, "carol");
        assert!(watched.problem().is_none());

        std::fs::remove_file(&path).unwrap();
        assert_eq!(watched.get().authenticate("three").unwrap().user, "carol");
        assert!(watched.problem().is_some());
    }

    #[test]
    fn checks_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        std::fs::write(&path, "one,alice,1\n").unwrap();
        let watched =
            Watched::with_interval(&path, TokenSet::load, Duration::from_secs(3600)).unwrap();
        std::fs::write(&path, "two,bob,2\n").unwrap();
        assert!(watched.get().authenticate("one").is_some());
    }
}

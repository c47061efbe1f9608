//! Watching the config directory (cupd's `--watch-config`): a change to it asks for a
//! reload, once the directory has been quiet for [`QUIET`].
//!
//! Copying a controller in is a stream of writes, and an editor saves through a temporary
//! file and a rename: reloading on the first event would read a half-written directory.
//! So a change starts a wait that each further change extends, for at most [`MAX_WAIT`]
//! (a directory that never stops changing is still reloaded), and then one reload is asked
//! for; changes during a reload make one more, as SIGHUPs do. Only changes are watched
//! (creating, removing, renaming, writing a file): reading, which every reload does, is
//! not, so a reload never triggers another. Links are not followed, as the reader of the
//! directory does not follow them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{Config, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::reload::ReloadHandle;

/// How long the directory must stay unchanged before a reload is asked for.
pub const QUIET: Duration = Duration::from_millis(500);
/// The longest a change waits for the directory to become quiet.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// The config directory could not be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the config directory {dir}: {source}")]
pub struct WatchError {
    dir: PathBuf,
    #[source]
    source: notify::Error,
}

/// A running watch of the config directory; dropping it stops the watch.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatch").finish_non_exhaustive()
    }
}

/// Watches `dir` and everything below it, asking `reload` for a reload after each quiet
/// change. Must be called within a Tokio runtime.
pub fn watch_config(dir: &Path, reload: ReloadHandle) -> Result<ConfigWatch, WatchError> {
    let changed = Arc::new(Notify::new());
    let on_event = {
        let changed = changed.clone();
        move |event: notify::Result<notify::Event>| match event {
            Ok(_) => changed.notify_one(),
            // A lost event (the kernel's queue overflowed) is a change not seen: reload.
            Err(error) => {
                tracing::warn!(%error, "watching the config directory");
                changed.notify_one();
            }
        }
    };
    let config = Config::default()
        .with_follow_symlinks(false)
        .with_event_kinds(
            EventKindMask::CREATE
                | EventKindMask::REMOVE
                | EventKindMask::MODIFY_DATA
                | EventKindMask::MODIFY_NAME
                | EventKindMask::ACCESS_CLOSE,
        );
    let failed = |source| WatchError {
        dir: dir.to_owned(),
        source,
    };
    let mut watcher = RecommendedWatcher::new(on_event, config).map_err(failed)?;
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(failed)?;
    let task = tokio::spawn(request_after_quiet(changed, reload));
    Ok(ConfigWatch {
        _watcher: watcher,
        task,
    })
}

async fn request_after_quiet(changed: Arc<Notify>, reload: ReloadHandle) {
    loop {
        changed.notified().await;
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let quiet_until = (Instant::now() + QUIET).min(deadline);
            if tokio::time::timeout_at(quiet_until, changed.notified())
                .await
                .is_err()
                || Instant::now() >= deadline
            {
                break;
            }
        }
        tracing::info!("config directory changed: reload requested");
        reload.request();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose requests the test sees, and the watch feeding it.
    fn watched(dir: &Path) -> (ConfigWatch, Arc<Notify>) {
        let wake = Arc::new(Notify::new());
        let handle = ReloadHandle { wake: wake.clone() };
        (watch_config(dir, handle).unwrap(), wake)
    }

    async fn requested_within(wake: &Notify, within: Duration) -> bool {
        tokio::time::timeout(within, wake.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn a_burst_of_writes_asks_for_one_reload_once_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let (_watch, wake) = watched(dir.path());
        let started = std::time::Instant::now();
        for i in 0..10 {
            std::fs::write(dir.path().join("flipt.json"), format!("{{\"n\":{i}}}")).unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let burst = started.elapsed();
        assert!(requested_within(&wake, Duration::from_secs(3)).await);
        assert!(
            started.elapsed() >= burst + QUIET - Duration::from_millis(100),
            "asked for only once the directory was quiet"
        );
        assert!(
            !requested_within(&wake, Duration::from_secs(1)).await,
            "one reload for the whole burst"
        );
    }

    #[tokio::test]
    async fn reading_the_directory_asks_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ctl")).unwrap();
        std::fs::write(dir.path().join("ctl/flipt.json"), "{}").unwrap();
        let (_watch, wake) = watched(dir.path());
        for _ in 0..5 {
            std::fs::read(dir.path().join("ctl/flipt.json")).unwrap();
            std::fs::read_dir(dir.path()).unwrap().for_each(drop);
        }
        assert!(!requested_within(&wake, Duration::from_millis(1500)).await);
    }

    #[tokio::test]
    async fn changes_below_new_directories_and_renames_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let (_watch, wake) = watched(dir.path());
        std::fs::create_dir(dir.path().join("ctl")).unwrap();
        assert!(requested_within(&wake, Duration::from_secs(3)).await);
        std::fs::write(dir.path().join("ctl/new.json.tmp"), "{}").unwrap();
        assert!(requested_within(&wake, Duration::from_secs(3)).await);
        std::fs::rename(
            dir.path().join("ctl/new.json.tmp"),
            dir.path().join("ctl/new.json"),
        )
        .unwrap();
        assert!(requested_within(&wake, Duration::from_secs(3)).await);
        std::fs::remove_file(dir.path().join("ctl/new.json")).unwrap();
        assert!(requested_within(&wake, Duration::from_secs(3)).await);
    }

    #[tokio::test]
    async fn a_directory_that_never_stops_changing_is_still_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let (_watch, wake) = watched(dir.path());
        let path = dir.path().join("busy.json");
        let writer = tokio::spawn(async move {
            for i in 0..100 {
                std::fs::write(&path, format!("{i}")).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = std::time::Instant::now();
        assert!(requested_within(&wake, MAX_WAIT + Duration::from_secs(2)).await);
        assert!(started.elapsed() >= MAX_WAIT - Duration::from_millis(500));
        writer.abort();
    }
}

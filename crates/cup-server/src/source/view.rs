//! The lock between reads of the live local tree and the apply step of writes, with a
//! bound on how long one read may hold writes off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedRwLockReadGuard, RwLock, RwLockWriteGuard};

/// How long one read may hold off the apply step of writes by default (`--max-read-hold`).
pub const DEFAULT_READ_HOLD: Duration = Duration::from_secs(2);

/// Readers of the live tree share it; the apply step of a write (and a template write) takes
/// it alone.
///
/// Without it a guest listing a directory can meet an entry that a concurrent apply renames
/// away between `readdir` and `stat` (wasmtime-wasi's `fd_readdir` stats every entry, and
/// fails the whole call), and a read could see one file of a write applied and another not.
///
/// A read holds its share for at most `hold`: the lock queues readers behind a waiting
/// writer (so writers are not starved), and one slow read must not stall every other read
/// behind that writer for its whole deadline. A read still running when its share is
/// released may meet a write; [`ReadView::finish`] tells, and the caller answers 503 rather
/// than something read from a tree that changed underneath.
///
/// A tokio lock because reads take it on async tasks; writes take it on threads that may
/// block.
#[derive(Debug, Clone)]
pub struct ViewLock {
    lock: Arc<RwLock<()>>,
    /// How many times the tree was taken for a change.
    changes: Arc<AtomicU64>,
    hold: Duration,
}

impl Default for ViewLock {
    fn default() -> ViewLock {
        ViewLock::new(DEFAULT_READ_HOLD)
    }
}

impl ViewLock {
    /// A lock whose readers hold it at most `hold` each.
    pub fn new(hold: Duration) -> ViewLock {
        ViewLock {
            lock: Arc::new(RwLock::new(())),
            changes: Arc::new(AtomicU64::new(0)),
            hold,
        }
    }

    /// Taken for a whole read, on an async task (the share is given up by a timer after
    /// the hold limit).
    pub async fn shared(&self) -> ReadView {
        let guard = Arc::clone(&self.lock).read_owned().await;
        // While the share is held no change can start, so this is the tree the read sees.
        let seen = self.changes.load(Ordering::SeqCst);
        let share = Arc::new(std::sync::Mutex::new(Some(guard)));
        let release = {
            let share = Arc::clone(&share);
            let hold = self.hold;
            tokio::spawn(async move {
                tokio::time::sleep(hold).await;
                lock_share(&share).take();
            })
        };
        ReadView {
            share,
            release: release.abort_handle(),
            seen,
            changes: Arc::clone(&self.changes),
            hold: self.hold,
        }
    }

    /// Held while files under the root change, from a thread that may block (not an async
    /// worker: it panics there).
    pub fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        let guard = self.lock.blocking_write();
        self.changes.fetch_add(1, Ordering::SeqCst);
        guard
    }
}

type Share = Arc<std::sync::Mutex<Option<OwnedRwLockReadGuard<()>>>>;

fn lock_share(share: &Share) -> std::sync::MutexGuard<'_, Option<OwnedRwLockReadGuard<()>>> {
    // The guarded value is only ever taken whole: a panic cannot leave it torn.
    share
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One read's share of a [`ViewLock`].
#[derive(Debug)]
pub struct ReadView {
    share: Share,
    release: tokio::task::AbortHandle,
    seen: u64,
    changes: Arc<AtomicU64>,
    hold: Duration,
}

/// A read outlived its hold on the tree and a write changed the tree meanwhile.
#[derive(Debug, thiserror::Error)]
#[error(
    "the source changed while this read ran (it took longer than {} s, the longest a read may hold writes off: --max-read-hold); retry",
    hold.as_secs_f64()
)]
pub struct Stale {
    hold: Duration,
}

impl ReadView {
    /// Ends the read: `Ok` when it saw one tree throughout (it held its share to the end,
    /// or no change was made after the share was given up).
    pub fn finish(self) -> Result<(), Stale> {
        let held = lock_share(&self.share).take().is_some();
        if held || self.changes.load(Ordering::SeqCst) == self.seen {
            Ok(())
        } else {
            Err(Stale { hold: self.hold })
        }
    }
}

impl Drop for ReadView {
    fn drop(&mut self) {
        self.release.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_holds_writes_off_only_up_to_its_limit() {
        let lock = ViewLock::new(Duration::from_millis(200));
        let slow = lock.shared().await;
        let writer = {
            let lock = lock.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                drop(lock.exclusive());
                started.elapsed()
            })
        };
        let waited = writer.await.unwrap();
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        // A later read is not held up by the slow one any more.
        let quick = tokio::time::timeout(Duration::from_secs(1), lock.shared())
            .await
            .expect("a new read gets its share");
        assert!(quick.finish().is_ok());
        // The slow read met a change: it must not be answered.
        assert!(slow.finish().is_err());
    }

    #[tokio::test]
    async fn a_read_that_holds_its_share_to_the_end_is_good() {
        let lock = ViewLock::new(Duration::from_secs(60));
        let read = lock.shared().await;
        assert!(read.finish().is_ok());
        // A read released early with no change meanwhile is good too.
        let lock = ViewLock::new(Duration::from_millis(10));
        let read = lock.shared().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(read.finish().is_ok());
    }
}

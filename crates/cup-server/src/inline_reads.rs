//! How many wasm reads may run on async workers at once.
//!
//! A get or list runs the guest on the request's own task when it can (no hand-off to
//! another thread and back, which costs more than the rest of cupd's share of a request), but
//! never on every worker at once: one worker is always left for I/O (accepting, reading
//! requests, writing responses, health checks), and reads beyond the budget go to the
//! blocking pool as before. Under concurrency the guests then run on as many threads as
//! there are requests, as with the blocking pool alone, instead of queueing behind the
//! workers; with one request at a time every read runs inline.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget, shared by every request of a server.
#[derive(Debug, Default)]
pub struct InlineReads {
    running: AtomicUsize,
    limit: OnceLock<usize>,
}

/// A place taken in the budget; given back on drop (also when the request is dropped).
#[derive(Debug)]
pub struct InlineRead<'a> {
    running: &'a AtomicUsize,
}

impl Drop for InlineRead<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InlineReads {
    /// A place to run one read inline, or `None` when the budget is spent.
    pub fn try_take(&self) -> Option<InlineRead<'_>> {
        let limit = *self.limit.get_or_init(limit_for_this_runtime);
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| InlineRead {
                running: &self.running,
            })
    }
}

/// All workers but one (at least one): the runtime's worker count when called on a tokio
/// runtime, else 1.
fn limit_for_this_runtime() -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    workers.saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_all_workers_but_one_and_places_come_back() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(3)
            .build()
            .expect("runtime");
        let reads = InlineReads::default();
        rt.block_on(async {
            let a = reads.try_take().expect("first place");
            let b = reads.try_take().expect("second place");
            assert!(reads.try_take().is_none(), "one worker is left for I/O");
            drop(a);
            let c = reads.try_take().expect("a place given back is free again");
            drop((b, c));
        });
        assert_eq!(reads.running.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_single_worker_still_reads_inline_one_at_a_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let reads = InlineReads::default();
        rt.block_on(async {
            let only = reads.try_take().expect("one place");
            assert!(reads.try_take().is_none());
            drop(only);
        });
    }
}

//! Progress reporting hooks, so the library stays free of terminal code (the CLI draws
//! bars with indicatif when stderr is a terminal).

use std::time::Duration;

/// Receives transfer progress. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A transfer of `total` bytes starts.
    fn start(&self, _label: &str, _total: u64) {}
    /// `bytes` more were transferred.
    fn advance(&self, _bytes: u64) {}
    /// The current transfer ended (successfully or not).
    fn finish(&self) {}
    /// Request step `step` failed (attempt `attempt` of `of`) with `error`; the next
    /// attempt starts in `delay`.
    fn retry(&self, _step: &str, _error: &str, _attempt: u32, _of: u32, _delay: Duration) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

//! Per-request resource limits.

use std::time::Duration;

/// The limits every invocation of every controller of a [`Runtime`](crate::Runtime) runs under.
///
/// Each limit ends only the request that hit it, with its own [`InvokeError`](crate::InvokeError)
/// variant; the host and the other requests are not affected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one invocation, instantiation included. Enforced with wasmtime's
    /// epoch interruption for wasm code and by the host for sleeps (`poll_oneoff`), so a guest
    /// can neither spin nor sleep past it. Precision: one [`epoch_tick`](Self::epoch_tick) late at
    /// most, never early. Default 10 s.
    pub deadline: Duration,
    /// Largest size the guest's linear memory may grow to, in bytes (for a component, all of
    /// its memories together). Growing past it traps the
    /// guest at once (rather than returning -1 from `memory.grow`), see
    /// [`InvokeError::MemoryLimit`](crate::InvokeError::MemoryLimit). Default 256 MiB.
    pub memory_bytes: usize,
    /// Largest number of elements a table may grow to. Tables hold function references; a hostile
    /// guest could otherwise grow one to 2^32 entries of host memory. Default 1,000,000, far above
    /// what compilers emit (Go puts one entry per function in its table).
    pub table_elements: usize,
    /// Largest stdout a request may produce, in bytes. Stdout is the response (get/list), so more
    /// is an error of that request ([`InvokeError::OutputTooLarge`](crate::InvokeError::OutputTooLarge)),
    /// never silently truncated. Default 16 MiB.
    pub stdout_bytes: usize,
    /// How much of stderr is kept, in bytes. Stderr is diagnostics only: the rest is dropped (the
    /// guest is not told, so chatty logging never fails a request) and
    /// [`Outcome::stderr_truncated`](crate::Outcome::stderr_truncated) is set. Default 64 KiB.
    pub stderr_bytes: usize,
    /// Period of the background thread that advances the engine's epoch. At every tick a
    /// running guest checks its deadline and yields to the other tasks of its thread
    /// ([`LoadedController::invoke_async`](crate::LoadedController::invoke_async)). Smaller is
    /// a more precise deadline and fairer sharing at the cost of more wakeups. Default 10 ms.
    pub epoch_tick: Duration,
    /// How many invocations at once run in reused instance slots of wasmtime's pooling
    /// allocator, for each kind of controller (commands and components have a pool each) (memory mapped once, reset in place between requests, so no `mmap`/`munmap`
    /// and TLB shootdown per request). Invocations beyond it, and controllers that do not fit a
    /// slot, run on freshly mapped memory as without a pool; nothing fails for lack of a slot.
    /// Each slot reserves address space (not memory) for [`memory_bytes`](Self::memory_bytes)
    /// plus guard pages. 0 turns the pool off. Default 16.
    pub pooled_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(10),
            memory_bytes: 256 << 20,
            table_elements: 1_000_000,
            stdout_bytes: 16 << 20,
            stderr_bytes: 64 << 10,
            epoch_tick: Duration::from_millis(10),
            pooled_instances: 16,
        }
    }
}

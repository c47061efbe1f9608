//! The pooling instance allocator: a second engine whose linear memories and tables live in
//! slots mapped once at start and reset in place after each request.
//!
//! Why: with wasmtime's default (on-demand) allocator every request maps a fresh linear
//! memory and unmaps it when the store drops. In a multi-threaded server the `munmap` costs a
//! TLB shootdown on every core, and the fresh pages fault in again on the next request; that
//! was about a fifth of cupd's CPU per request (docs/BENCHMARKS.md). A pooled slot is reused:
//! only the pages the guest dirtied are reset (`PAGEMAP_SCAN` on Linux ≥ 6.7, `memset` of the
//! kept-resident prefix otherwise).
//!
//! The pool never makes a request fail: [`Pool::try_slot`] hands out at most as many slots
//! as the pool has, and the caller runs on the on-demand engine when none is free. Compiled
//! code does not depend on the allocator, so one compiled artifact loads into either engine.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig,
};

use crate::Limits;
use crate::invoke::HostState;

/// Bytes of each linear memory kept mapped and reset in place between requests rather than
/// given back to the kernel: about the working set of a small controller (the Flipt example
/// touches about 1.2 MiB). Larger guests pay page faults only above it.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Same for tables (8 bytes per function reference).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// The pooled engine and its slot accounting.
pub(crate) struct Pool {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    capacity: u32,
    in_use: AtomicU32,
    /// Invocations that found every slot taken and ran on the on-demand engine.
    fallbacks: AtomicU64,
}

/// How the pool is doing, for tests and status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Slots in the pool (`Limits::pooled_instances`); 0 when there is no pool.
    pub capacity: u32,
    /// Slots running an invocation right now.
    pub in_use: u32,
    /// Invocations so far that found every slot taken and ran on freshly mapped memory.
    pub fallbacks: u64,
}

/// A slot taken from the pool; given back on drop.
pub(crate) struct Slot<'a> {
    in_use: &'a AtomicU32,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// The pooled engine for `limits`, or why there is none (pool turned off, or the address
    /// space for the slots could not be reserved, e.g. under `ulimit -v`).
    pub(crate) fn new(
        base: &Config,
        limits: &Limits,
        link: impl FnOnce(&Engine) -> Result<Linker<HostState>, String>,
    ) -> Result<Pool, String> {
        if limits.pooled_instances == 0 {
            return Err("turned off (pooled_instances = 0)".into());
        }
        let mut config = base.clone();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(limits)));
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        let linker = link(&engine)?;
        Ok(Pool {
            engine,
            linker,
            capacity: limits.pooled_instances,
            in_use: AtomicU32::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }

    /// A free slot, or `None` (and the fallback counted) when all are taken.
    pub(crate) fn try_slot(&self) -> Option<Slot<'_>> {
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            });
        match taken {
            Ok(_) => Some(Slot {
                in_use: &self.in_use,
            }),
            Err(_) => {
                self.note_fallback();
                None
            }
        }
    }

    /// Counts an invocation that ran on the on-demand engine although the pool exists.
    pub(crate) fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            capacity: self.capacity,
            in_use: self.in_use.load(Ordering::Acquire),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// One slot per pooled invocation; each slot fits the largest memory and table a request may
/// grow to, so the [`Limits`] (checked by the store's limiter before the pool's own bounds)
/// stay the only limits a guest meets. A module needing more (two memories, an initial memory
/// above the limit) does not fit and runs on the on-demand engine.
fn pooling_config(limits: &Limits) -> PoolingAllocationConfig {
    const WASM_PAGE: usize = 64 << 10;
    let slots = limits.pooled_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        // Core modules only: reserve nothing for components.
        .total_component_instances(0)
        .max_memory_size(
            limits
                .memory_bytes
                .div_ceil(WASM_PAGE)
                .saturating_mul(WASM_PAGE),
        )
        .table_elements(limits.table_elements)
        // Guests run on fiber stacks (`invoke_async`); one per slot, not wasmtime's
        // default 1,000 (each reserves `async_stack_size` of address space).
        .total_stacks(slots)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        // Reset only the pages the guest touched, where the kernel can say which.
        .pagemap_scan(Enabled::Auto);
    pool
}

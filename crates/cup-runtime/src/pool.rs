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

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::Limits;
use crate::component::{COMPONENT_INSTANCES, COMPONENT_MEMORIES};

/// Bytes of each linear memory kept mapped and reset in place between requests rather than
/// given back to the kernel: about the working set of a small controller (the Flipt example
/// touches about 1.2 MiB). Larger guests pay page faults only above it.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;

/// Same for tables (8 bytes per function reference).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// A pooled engine, its imports (`L`: a core linker for commands, a component linker for
/// components), and its slot accounting.
pub(crate) struct Pool<L> {
    pub(crate) engine: Engine,
    pub(crate) linker: L,
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

impl<L> Pool<L> {
    /// The pooled engine for `limits` with the slots `pooling` describes, or why there is
    /// none (pool turned off, or the address space for the slots could not be reserved, e.g.
    /// under `ulimit -v`).
    pub(crate) fn new(
        base: &Config,
        limits: &Limits,
        pooling: PoolingAllocationConfig,
        link: impl FnOnce(&Engine) -> Result<L, String>,
    ) -> Result<Pool<L>, String> {
        if limits.pooled_instances == 0 {
            return Err("turned off (pooled_instances = 0)".into());
        }
        let mut config = base.clone();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
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

/// Memories a pooled component may have: enough for the toolchains' output (one per core
/// module that defines one). A component with more runs on the on-demand engine.
const POOLED_COMPONENT_MEMORIES: u32 = 4;

/// Tables a pooled component may have (function tables of its core modules and shims).
const POOLED_COMPONENT_TABLES: u32 = 16;

/// The command pool: one slot per pooled invocation; each slot fits the largest memory and
/// table a request may grow to, so the [`Limits`] (checked by the store's limiter before the
/// pool's own bounds) stay the only limits a guest meets. A module needing more (two
/// memories, an initial memory above the limit) does not fit and runs on the on-demand engine.
pub(crate) fn command_pooling(limits: &Limits) -> PoolingAllocationConfig {
    let slots = limits.pooled_instances;
    let mut pool = base_pooling(limits, slots);
    pool.total_core_instances(slots)
        .total_memories(slots)
        .total_tables(slots)
        .max_tables_per_module(1)
        // Core modules only: reserve nothing for components.
        .total_component_instances(0);
    pool
}

/// The component pool: as many component invocations at once as the command pool has slots,
/// each with up to [`COMPONENT_INSTANCES`] core instances, [`POOLED_COMPONENT_MEMORIES`]
/// memories and [`POOLED_COMPONENT_TABLES`] tables; every memory slot fits the whole memory
/// limit.
pub(crate) fn component_pooling(limits: &Limits) -> PoolingAllocationConfig {
    let slots = limits.pooled_instances;
    let mut pool = base_pooling(limits, slots);
    let instances = u32::try_from(COMPONENT_INSTANCES).unwrap_or(u32::MAX);
    let memories =
        POOLED_COMPONENT_MEMORIES.min(u32::try_from(COMPONENT_MEMORIES).unwrap_or(u32::MAX));
    pool.total_component_instances(slots)
        .max_core_instances_per_component(instances)
        .max_memories_per_component(memories)
        .max_tables_per_component(POOLED_COMPONENT_TABLES)
        .total_core_instances(slots.saturating_mul(instances))
        .total_memories(slots.saturating_mul(memories))
        .total_tables(slots.saturating_mul(POOLED_COMPONENT_TABLES))
        .max_tables_per_module(POOLED_COMPONENT_TABLES);
    pool
}

/// What both pools share: memory and table slot sizes, stacks, and how slots are reset.
fn base_pooling(limits: &Limits, slots: u32) -> PoolingAllocationConfig {
    const WASM_PAGE: usize = 64 << 10;
    let mut pool = PoolingAllocationConfig::new();
    pool.max_memories_per_module(1)
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

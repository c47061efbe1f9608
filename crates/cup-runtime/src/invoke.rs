//! One request: a fresh WASI context, store and instance (in a pooled slot when one is free),
//! run to completion, then dropped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{
    InstancePre, PoolConcurrencyLimitError, ResourceLimiter, Store, StoreLimits,
    StoreLimitsBuilder, Trap, UpdateDeadline, WasmBacktrace,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, I32Exit, WasiCtxBuilder};

use crate::output::{CappedOutput, Overflow};
use crate::runtime::LoadedController;
use crate::{ControllerError, InvokeError, Limits};

/// How the directory mounted at `/` may be used by the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// get and list: every mutation (create, write, truncate, append, resize, mkdir, remove,
    /// rename, link, set times) fails inside the guest with a permission error.
    ReadOnly,
    /// put and delete.
    ReadWrite,
}

/// One request to a controller.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// argv as the guest sees it. cup passes `["wasi", verb, Kind, namespace, name?]`.
    pub args: Vec<String>,
    /// The guest's whole stdin (the resource JSON for put, empty otherwise).
    pub stdin: Vec<u8>,
    /// Host directory mounted at the guest's `/` (its working directory, too).
    pub root: PathBuf,
    /// Whether the guest may change the mounted directory.
    pub access: Access,
}

/// How a request that ran to completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// 0 when `_start` returned, otherwise the code the guest passed to `proc_exit`.
    pub exit_code: i32,
    /// Everything the guest wrote to stdout (at most [`Limits::stdout_bytes`], or the invocation
    /// fails with [`InvokeError::OutputTooLarge`]).
    pub stdout: Vec<u8>,
    /// The first [`Limits::stderr_bytes`] bytes of stderr.
    pub stderr: Vec<u8>,
    /// The guest wrote more to stderr than was kept.
    pub stderr_truncated: bool,
    /// Wall time of the whole invocation, instantiation included.
    pub elapsed: Duration,
    /// A component's typed error (`exit_code` is then 2 for not-found, 1 otherwise, and
    /// `stderr` holds its logs); always `None` for a preview 1 command, whose only answer is
    /// its exit code.
    pub error: Option<ControllerError>,
}

/// Everything a store owns for one request.
pub(crate) struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    limiter: Limiter,
    /// When the request's time is up (for the sleep path; wasm code is stopped at an epoch
    /// tick). `None` when it lies beyond what an `Instant` can hold: never.
    pub(crate) deadline: Option<Instant>,
    /// Zero of the guest's monotonic clock, so host-side sleeps can read absolute timeouts.
    pub(crate) clock_base: Instant,
    pub(crate) slept_past_deadline: bool,
}

/// `StoreLimits` does the accounting; this adds the policy. Growing past a cup limit traps at
/// once instead of failing `memory.grow` softly: a guest that gets -1 reacts in its own way (Rust
/// aborts, Go exits with code 2, which cup reads as "not found"), so a trap that the host can
/// name is the only clear signal. Growth refused for other reasons (the module's own declared
/// maximum) keeps wasm's normal -1 semantics.
pub(crate) struct Limiter {
    inner: StoreLimits,
    memory_bytes: usize,
    table_elements: usize,
    /// Bytes of every linear memory of the store together: `memory_bytes` bounds the sum,
    /// so a component cannot multiply it by having several memories.
    memory_total: usize,
    memory_hit: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("growing {what} to {desired} exceeds the limit of {limit}")]
struct LimitExceeded {
    what: &'static str,
    desired: usize,
    limit: usize,
}

impl Limiter {
    /// `memories` and `instances` bound how many of each the store may create (a command has
    /// one memory and one instance; a component a few of each).
    pub(crate) fn new(limits: &Limits, memories: usize, instances: usize) -> Self {
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements)
                .memories(memories)
                .instances(instances)
                .trap_on_grow_failure(false)
                .build(),
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            memory_total: 0,
            memory_hit: false,
        }
    }

    /// Whether the guest was stopped for going over the memory limit.
    pub(crate) fn memory_hit(&self) -> bool {
        self.memory_hit
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        let allowed =
            self.inner.memory_growing(current, desired, maximum)? && total <= self.memory_bytes;
        if !allowed && total > self.memory_bytes {
            self.memory_hit = true;
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "memory (bytes)",
                desired: total,
                limit: self.memory_bytes,
            }));
        }
        if allowed {
            self.memory_total = total;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.table_growing(current, desired, maximum)?;
        if !allowed && desired > self.table_elements {
            return Err(wasmtime::Error::new(LimitExceeded {
                what: "a table (elements)",
                desired,
                limit: self.table_elements,
            }));
        }
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The guest's monotonic clock: nanoseconds since the request started. Shares its zero with
/// [`HostState::clock_base`] so the sleep path agrees with what the guest reads.
struct GuestMonotonicClock {
    base: Instant,
}

impl HostMonotonicClock for GuestMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One request's inputs, borrowed by each attempt to run it.
struct Request<'a> {
    args: &'a [String],
    stdin: Bytes,
    root: &'a Path,
    access: Access,
    started: Instant,
}

/// How one attempt to run a request ended.
pub(crate) enum Attempt {
    Finished(Result<Outcome, InvokeError>),
    /// The pool had no slot after all; nothing ran.
    NoSlot,
}

impl LoadedController {
    /// Runs one request in a fresh instance and waits for it to end.
    ///
    /// Blocking: call it from a thread that may block (in tokio, inside `spawn_blocking` or a
    /// thread of one's own; it panics on an async worker thread, where
    /// [`invoke_async`](Self::invoke_async) is the way). It drives `invoke_async` to the end on
    /// the ambient tokio runtime, or on a small runtime of wasmtime-wasi's own when there is
    /// none (the guest's sleeps need a timer).
    pub fn invoke(&self, invocation: Invocation) -> Result<Outcome, InvokeError> {
        wasmtime_wasi::runtime::in_tokio(self.invoke_async(invocation))
    }

    /// Runs one request in a fresh instance, as a future: the guest runs on the thread that
    /// polls it, with no hand-off to another thread. Needs a tokio runtime with its timer
    /// (the guest's sleeps are tokio sleeps).
    ///
    /// The guest's file I/O runs inline, so each poll may block for as long as one WASI call
    /// on the mounted directory takes (local files: microseconds). Long-running wasm code
    /// yields back to the executor at every epoch tick ([`Limits::epoch_tick`]), so one busy
    /// guest delays other tasks on its thread by a tick at most. Dropping the future ends the
    /// guest at its next yield point. Concurrent calls on the same (or cloned) controller are
    /// fine: they share nothing but the compiled code. The instance lives in a slot of the
    /// runtime's pool when one is free, on freshly mapped memory otherwise; the guest cannot
    /// tell the difference.
    pub async fn invoke_async(&self, invocation: Invocation) -> Result<Outcome, InvokeError> {
        let started = Instant::now();
        let Invocation {
            args,
            stdin,
            root,
            access,
        } = invocation;
        if let Some(index) = args.iter().position(|a| a.contains('\0')) {
            return Err(InvokeError::BadArgument { index });
        }
        if self.is_component() {
            let invocation = Invocation {
                args,
                stdin,
                root,
                access,
            };
            let limits = self.limits();
            if let Some((pre, slot)) = self.pooled_component() {
                let attempt = crate::component::run(pre, &invocation, limits, started).await;
                drop(slot);
                match attempt {
                    Attempt::Finished(result) => return result,
                    Attempt::NoSlot => self.note_component_fallback(),
                }
            }
            let pre = match self.component_on_demand() {
                Some(pre) => pre.map_err(InvokeError::Instantiate)?,
                None => return Err(InvokeError::Instantiate("no compiled code".into())),
            };
            return match crate::component::run(pre, &invocation, limits, started).await {
                Attempt::Finished(result) => result,
                Attempt::NoSlot => Err(InvokeError::Instantiate(
                    "no instance could be allocated".into(),
                )),
            };
        }
        let request = Request {
            args: &args,
            stdin: Bytes::from(stdin),
            root: &root,
            access,
            started,
        };
        if let Some((pre, slot)) = self.pooled() {
            let attempt = self.run(pre, &request).await;
            // The store (and with it the slot's memory) is gone once `run` returns.
            drop(slot);
            match attempt {
                Attempt::Finished(result) => return result,
                Attempt::NoSlot => self.note_fallback(),
            }
        }
        let pre = self.on_demand().map_err(InvokeError::Instantiate)?;
        match self.run(pre, &request).await {
            Attempt::Finished(result) => result,
            // The on-demand allocator has no slots to run out of.
            Attempt::NoSlot => Err(InvokeError::Instantiate(
                "no instance could be allocated".into(),
            )),
        }
    }

    /// One attempt on the engine `pre` belongs to.
    async fn run(&self, pre: &InstancePre<HostState>, request: &Request<'_>) -> Attempt {
        let limits = self.limits();
        let started = request.started;
        let stdout = CappedOutput::new(limits.stdout_bytes, Overflow::Trap);
        let stderr = CappedOutput::new(limits.stderr_bytes, Overflow::Truncate);
        let mut builder = match sandbox(
            request.root,
            request.access,
            started,
            MemoryInputPipe::new(request.stdin.clone()),
            stdout.clone(),
            stderr.clone(),
        ) {
            Ok(builder) => builder,
            Err(e) => return Attempt::Finished(Err(e)),
        };
        builder.args(request.args);

        let deadline = started.checked_add(limits.deadline);
        let state = HostState {
            wasi: builder.build_p1(),
            // A command has one memory and one instance.
            limiter: Limiter::new(limits, 1, 1),
            deadline,
            clock_base: started,
            slept_past_deadline: false,
        };
        let mut store = Store::new(pre.module().engine(), state);
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, deadline);

        let run = match pre.instantiate_async(&mut store).await {
            Err(e) if e.downcast_ref::<PoolConcurrencyLimitError>().is_some() => {
                return Attempt::NoSlot;
            }
            Err(e) => Err((Phase::Instantiate, e)),
            Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Err(e) => Err((Phase::Instantiate, e)),
                Ok(start) => start
                    .call_async(&mut store, ())
                    .await
                    .map_err(|e| (Phase::Run, e)),
            },
        };

        let memory_hit = store.data().limiter.memory_hit;
        let slept_past_deadline = store.data().slept_past_deadline;
        // The store holds WASI's clones of the output handles; drop it before reading them.
        drop(store);
        Attempt::Finished(finish(
            run,
            started.elapsed(),
            Outputs { stdout, stderr },
            Flags {
                stdout_overflowed: false,
                memory_hit,
                slept_past_deadline,
            },
            limits,
        ))
    }
}

/// The WASI context every guest starts from, command or component: `root` mounted at `/`
/// (also the working directory) with `access`, the given stdio, a monotonic clock that
/// starts at 0 for this request, no sockets. No env vars, no inherited stdio, no other
/// preopens: the builder starts empty.
pub(crate) fn sandbox(
    root: &Path,
    access: Access,
    started: Instant,
    stdin: MemoryInputPipe,
    stdout: CappedOutput,
    stderr: CappedOutput,
) -> Result<WasiCtxBuilder, InvokeError> {
    let perms = match access {
        Access::ReadOnly => FsPerms::ReadOnly,
        Access::ReadWrite => FsPerms::ReadWrite,
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        // File I/O runs inline on the polling thread instead of bouncing every WASI call
        // through tokio's blocking pool: the mounted trees are local directories, where a
        // call takes microseconds and a hop to another thread costs more than the call
        // (wasmtime-wasi hands every such call to `spawn_blocking` unless told otherwise).
        // Must come before `preopened_dir`, which reads it.
        .allow_blocking_current_thread(true)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .monotonic_clock(GuestMonotonicClock { base: started })
        // Preview 1 has no way to open sockets and none are preopened; for components, whose
        // WASI 0.2 imports include sockets, these refuse every address and lookup.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
        .preopened_dir(root, "/", perms)
        .map_err(|e| InvokeError::Mount {
            root: root.to_owned(),
            reason: format!("{e:#}"),
        })?;
    Ok(builder)
}

/// At every epoch tick: past the deadline, stop the guest (a trap read as a timeout);
/// otherwise let other tasks of this thread run, then go on until the next tick.
pub(crate) fn arm_deadline<T>(store: &mut Store<T>, deadline: Option<Instant>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if deadline.is_some_and(|d| Instant::now() >= d) {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
        })
    });
}

/// The guest's output handles, read once its store is gone.
struct Outputs {
    stdout: CappedOutput,
    stderr: CappedOutput,
}

/// Turns a finished run into the request's result.
fn finish(
    run: Result<(), (Phase, wasmtime::Error)>,
    elapsed: Duration,
    outputs: Outputs,
    mut flags: Flags,
    limits: &Limits,
) -> Result<Outcome, InvokeError> {
    let Outputs { stdout, stderr } = outputs;
    flags.stdout_overflowed = stdout.overflowed();
    let stderr_truncated = stderr.overflowed();
    let stderr = stderr.take();

    let exit_code = match run {
        Ok(()) => 0,
        Err((phase, e)) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) if !flags.stdout_overflowed => *code,
            _ => return Err(classify(phase, &e, flags, limits, stderr)),
        },
    };
    if flags.stdout_overflowed {
        // Cannot happen (the overflowing write traps), but never hand out a truncated
        // response as complete.
        return Err(InvokeError::OutputTooLarge {
            limit: limits.stdout_bytes,
            stderr,
        });
    }
    Ok(Outcome {
        exit_code,
        stdout: stdout.take(),
        stderr,
        stderr_truncated,
        elapsed,
        error: None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Instantiate,
    Run,
}

/// What the host observed while the guest ran. Flags, rather than downcasting the error,
/// because WASI and wasmtime wrap errors in context layers of their own.
pub(crate) struct Flags {
    pub(crate) stdout_overflowed: bool,
    pub(crate) memory_hit: bool,
    pub(crate) slept_past_deadline: bool,
}

pub(crate) fn classify(
    phase: Phase,
    error: &wasmtime::Error,
    flags: Flags,
    limits: &Limits,
    stderr: Vec<u8>,
) -> InvokeError {
    if flags.stdout_overflowed {
        return InvokeError::OutputTooLarge {
            limit: limits.stdout_bytes,
            stderr,
        };
    }
    if flags.slept_past_deadline || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return InvokeError::Timeout {
            after: limits.deadline,
            stderr,
        };
    }
    if flags.memory_hit {
        return InvokeError::MemoryLimit {
            limit: limits.memory_bytes,
            stderr,
        };
    }
    match phase {
        Phase::Instantiate => InvokeError::Instantiate(describe_trap(error)),
        Phase::Run => InvokeError::Trap {
            message: describe_trap(error),
            stderr,
        },
    }
}

/// Frames shown in a trap message; deep recursion would otherwise make it megabytes long.
const BACKTRACE_LINES: usize = 16;

/// The cause chain on one line, then a short wasm backtrace with runs of the same frame
/// (recursion) folded into one line.
fn describe_trap(error: &wasmtime::Error) -> String {
    let backtrace = error.downcast_ref::<WasmBacktrace>();
    // The backtrace is attached as a context layer of the chain; print it separately, shortened.
    let backtrace_text = backtrace.map(|b| b.to_string());
    let causes: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string())
        .filter(|cause| Some(cause) != backtrace_text.as_ref())
        .collect();
    let mut message = causes.join(": ");
    let Some(backtrace) = backtrace else {
        return message;
    };
    let frames = backtrace.frames();
    if frames.is_empty() {
        return message;
    }
    message.push_str("\nwasm backtrace (innermost first):");
    let mut shown = 0;
    let mut i = 0;
    while i < frames.len() {
        if shown == BACKTRACE_LINES {
            message.push_str(&format!("\n  ... {} more frames", frames.len() - i));
            break;
        }
        let frame = &frames[i];
        let same = frames[i..]
            .iter()
            .take_while(|f| {
                f.func_index() == frame.func_index() && f.module_offset() == frame.module_offset()
            })
            .count();
        let name = match frame.func_name() {
            Some(name) => name.to_string(),
            None => format!("<wasm function {}>", frame.func_index()),
        };
        let offset = frame
            .module_offset()
            .map(|o| format!(" at {o:#x}"))
            .unwrap_or_default();
        let repeat = if same > 1 {
            format!(" (x{same})")
        } else {
            String::new()
        };
        message.push_str(&format!("\n  {i}: {name}{offset}{repeat}"));
        shown += 1;
        i += same;
    }
    message
}

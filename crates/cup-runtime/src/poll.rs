//! A deadline-aware `poll_oneoff`.
//!
//! Epoch interruption only stops *wasm code*. A guest that sleeps (`std::thread::sleep`,
//! Go's `time.Sleep`, its scheduler waiting for a timer) sits in wasmtime-wasi's `poll_oneoff`,
//! which blocks the host thread for as long as the guest asked (a plain `thread::sleep`, or a
//! tokio timer). A one-line `sleep(1 year)` would hold a server thread and never time out.
//!
//! So `poll_oneoff` is implemented here instead. When every subscription is a clock (a pure
//! sleep, the common case) the guest's task waits on a tokio timer until the earliest one
//! (no thread is held while it waits), but never past the request's deadline: a guest that
//! wants to sleep longer is ended with a timeout. When there
//! are file descriptor subscriptions, they are reported ready at once, which is what
//! wasmtime-wasi reports too for every descriptor a cup guest can have (in-memory stdio and
//! regular files are always ready), so nothing ever waits. The difference: an fd that is not
//! open, or is a directory, is reported ready here where wasmtime-wasi fails the call with
//! `EBADF`; the guest's next read or write on it fails with `EBADF` anyway. (Calling
//! wasmtime-wasi's own `poll_oneoff` from here is not possible: a host function called from the
//! host has no access to the guest's memory.)

use std::time::{Duration, Instant, SystemTime};

use wasmtime::{Caller, Linker};

use crate::command::WASI_P1_MODULE;
use crate::invoke::HostState;

// WASI preview 1 ABI (witx `typenames.witx`): sizes, offsets and codes.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const TAG_CLOCK: u8 = 0;
const TAG_FD_READ: u8 = 1;
const TAG_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCKFLAGS_ABSTIME: u16 = 1;
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// More subscriptions than this are refused (`EINVAL`): the decoded list lives in host memory,
/// and no program waits on anywhere near this many things at once (Go polls its open
/// descriptors plus one timer).
const MAX_SUBSCRIPTIONS: u32 = 1 << 16;

/// Marker error ending a guest that asked to sleep past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the controller slept past its deadline")]
pub(crate) struct SleptPastDeadline;

enum Subscription {
    /// Fires after `wait` from now.
    Clock { userdata: u64, wait: Duration },
    /// Ready now; `event_type` is the subscription tag (the event types use the same codes).
    Fd { userdata: u64, event_type: u8 },
}

/// Defines `wasi_snapshot_preview1::poll_oneoff` in `linker`, replacing wasmtime-wasi's (which
/// must already be there).
pub(crate) fn bound_sleeps(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        WASI_P1_MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, HostState>,
         (subs, events, nsubs, nevents): (i32, i32, i32, i32)| {
            Box::new(async move {
                // wasm i32s are addresses and counts here: reinterpret the bits as u32.
                poll_oneoff(
                    &mut caller,
                    subs as u32,
                    events as u32,
                    nsubs as u32,
                    nevents as u32,
                )
                .await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

async fn poll_oneoff(
    caller: &mut Caller<'_, HostState>,
    subs: u32,
    events: u32,
    nsubs: u32,
    nevents: u32,
) -> wasmtime::Result<i32> {
    if nsubs == 0 || nsubs > MAX_SUBSCRIPTIONS {
        // Zero: "indefinite sleeping is not supported" (wasmtime-wasi does the same).
        return Ok(ERRNO_INVAL);
    }
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return Ok(ERRNO_FAULT);
    };
    let Ok(nsubs) = usize::try_from(nsubs) else {
        return Ok(ERRNO_FAULT);
    };
    // Every pointer is checked before anything waits, so a bad call fails at once.
    let memory_len = memory.data_size(&*caller);
    let ranges = (
        region(subs, nsubs.checked_mul(SUBSCRIPTION_SIZE), 8),
        region(events, nsubs.checked_mul(EVENT_SIZE), 8),
        region(nevents, Some(4), 4),
    );
    let (Some(subs_range), Some(events_range), Some(nevents_range)) = ranges else {
        return Ok(ERRNO_FAULT);
    };
    if [&subs_range, &events_range, &nevents_range]
        .iter()
        .any(|r| r.end > memory_len)
    {
        return Ok(ERRNO_FAULT);
    }

    let now_monotonic = nanos(caller.data().clock_base.elapsed());
    let Some(bytes) = memory.data(&*caller).get(subs_range) else {
        return Ok(ERRNO_FAULT);
    };
    let Some(subscriptions) = parse(bytes, now_monotonic) else {
        return Ok(ERRNO_INVAL);
    };

    let any_fd = subscriptions
        .iter()
        .any(|s| matches!(s, Subscription::Fd { .. }));
    let wait = if any_fd {
        Duration::ZERO
    } else {
        let wait = subscriptions
            .iter()
            .filter_map(|s| match s {
                Subscription::Clock { wait, .. } => Some(*wait),
                Subscription::Fd { .. } => None,
            })
            .min()
            .unwrap_or_default();
        let left = caller.data().deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        if wait > left {
            tokio::time::sleep(left).await;
            caller.data_mut().slept_past_deadline = true;
            return Err(wasmtime::Error::new(SleptPastDeadline));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    };

    let data = memory.data_mut(&mut *caller);
    let mut fired: u32 = 0;
    let mut at = events_range.start;
    for sub in &subscriptions {
        let (userdata, event_type, nbytes) = match *sub {
            Subscription::Clock { userdata, wait: w } if w <= wait => (userdata, TAG_CLOCK, 0u64),
            Subscription::Clock { .. } => continue,
            Subscription::Fd {
                userdata,
                event_type,
            } => (userdata, event_type, 1),
        };
        let Some(event) = data.get_mut(at..at + EVENT_SIZE) else {
            return Ok(ERRNO_FAULT);
        };
        event.fill(0);
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        // error (u16 at 8) stays 0 = success.
        event[10] = event_type;
        event[16..24].copy_from_slice(&nbytes.to_le_bytes());
        at += EVENT_SIZE;
        fired += 1;
    }
    let Some(count) = data.get_mut(nevents_range) else {
        return Ok(ERRNO_FAULT);
    };
    count.copy_from_slice(&fired.to_le_bytes());
    Ok(ERRNO_SUCCESS)
}

/// Decodes the subscriptions; `None` if one is invalid (`EINVAL`, as wasmtime-wasi answers).
fn parse(bytes: &[u8], now_monotonic: u64) -> Option<Vec<Subscription>> {
    let now_realtime = nanos(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut out = Vec::with_capacity(bytes.len() / SUBSCRIPTION_SIZE);
    for sub in bytes.chunks_exact(SUBSCRIPTION_SIZE) {
        let userdata = u64::from_le_bytes(sub[0..8].try_into().ok()?);
        match sub[8] {
            TAG_CLOCK => {
                let id = u32::from_le_bytes(sub[16..20].try_into().ok()?);
                let timeout = u64::from_le_bytes(sub[24..32].try_into().ok()?);
                let flags = u16::from_le_bytes(sub[40..42].try_into().ok()?);
                if flags & !SUBCLOCKFLAGS_ABSTIME != 0 {
                    return None;
                }
                let absolute = flags & SUBCLOCKFLAGS_ABSTIME != 0;
                let wait = match (id, absolute) {
                    (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => timeout,
                    (CLOCK_REALTIME, true) => timeout.saturating_sub(now_realtime),
                    (CLOCK_MONOTONIC, true) => timeout.saturating_sub(now_monotonic),
                    // CPU-time clocks are not supported by wasmtime-wasi either.
                    _ => return None,
                };
                out.push(Subscription::Clock {
                    userdata,
                    wait: Duration::from_nanos(wait),
                });
            }
            tag @ (TAG_FD_READ | TAG_FD_WRITE) => out.push(Subscription::Fd {
                userdata,
                event_type: tag,
            }),
            _ => return None,
        }
    }
    Some(out)
}

/// The byte range `[ptr, ptr + len)` if `ptr` is aligned and the range does not overflow.
fn region(ptr: u32, len: Option<usize>, align: u32) -> Option<std::ops::Range<usize>> {
    if !ptr.is_multiple_of(align) {
        return None;
    }
    let start = usize::try_from(ptr).ok()?;
    Some(start..start.checked_add(len?)?)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

//! Capped in-memory stdout/stderr for guests.
//!
//! wasmtime-wasi's `MemoryOutputPipe` also has a capacity, but past it the guest gets `EIO` and
//! the host only sees a full buffer: it cannot tell "exactly at the cap" from "tried to write
//! more", and a Rust guest whose `eprintln!` fails panics, so a chatty log would fail a request.
//! This stream records the overflow and lets each stream choose what overflow means: stdout
//! stops the guest (the response would be incomplete, so the request must fail), stderr drops
//! the excess silently (diagnostics only).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much a writer may write per readiness check. Any value works as writes are accounted in
/// `write`; this only bounds how much WASI copies per step.
const PERMIT: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Keep the first `cap` bytes, drop the rest, let the guest carry on.
    Truncate,
    /// Keep the first `cap` bytes, then trap the guest.
    Trap,
}

/// Marker error that stops a guest whose stdout went over the cap.
#[derive(Debug, thiserror::Error)]
#[error("stdout exceeded its limit of {limit} bytes")]
pub(crate) struct OutputLimitExceeded {
    pub(crate) limit: usize,
}

#[derive(Debug)]
struct Buffer {
    data: Vec<u8>,
    overflowed: bool,
}

/// A cheaply clonable handle: WASI gets one clone, the host keeps one to read the result.
#[derive(Debug, Clone)]
pub(crate) struct CappedOutput {
    cap: usize,
    mode: Overflow,
    buffer: Arc<Mutex<Buffer>>,
}

impl CappedOutput {
    pub(crate) fn new(cap: usize, mode: Overflow) -> Self {
        CappedOutput {
            cap,
            mode,
            buffer: Arc::new(Mutex::new(Buffer {
                data: Vec::new(),
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still
        // a valid prefix, so keep using them rather than propagating the panic.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends what fits. Returns false if some bytes did not fit.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut buf = self.lock();
        let room = self.cap.saturating_sub(buf.data.len());
        if bytes.len() <= room {
            buf.data.extend_from_slice(bytes);
            true
        } else {
            buf.data.extend_from_slice(&bytes[..room]);
            buf.overflowed = true;
            false
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes the collected bytes (without copying them).
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().data)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    // Memory is always writable.
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) || self.mode == Overflow::Truncate {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::new(
                OutputLimitExceeded { limit: self.cap },
            )))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Never 0: WASI's blocking write would wait for readiness forever. The cap is enforced
        // in `write`.
        Ok(PERMIT)
    }
}

// Used by WASI preview 3 only; implemented because `StdoutStream` requires it.
impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.append(buf) || self.mode == Overflow::Truncate {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(std::io::Error::other(OutputLimitExceeded {
                limit: self.cap,
            })))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_at_cap_is_not_overflow() {
        let out = CappedOutput::new(4, Overflow::Trap);
        let mut s = out.clone();
        assert!(s.write(Bytes::from_static(b"ab")).is_ok());
        assert!(s.write(Bytes::from_static(b"cd")).is_ok());
        assert!(!out.overflowed());
        assert!(s.write(Bytes::from_static(b"e")).is_err());
        assert!(out.overflowed());
        assert_eq!(out.take(), b"abcd");
    }

    #[test]
    fn truncate_keeps_prefix_and_accepts_more() {
        let out = CappedOutput::new(3, Overflow::Truncate);
        let mut s = out.clone();
        assert!(s.write(Bytes::from_static(b"abcdef")).is_ok());
        assert!(s.write(Bytes::from_static(b"gh")).is_ok());
        assert!(out.overflowed());
        assert_eq!(out.take(), b"abc");
    }
}

//! The listener: HTTP/1 connections served by hyper, with the limits `axum::serve` lacks.
//!
//! * **Connections**: at most `max_connections` at once (a semaphore taken before each
//!   `accept`). When all are taken cupd stops accepting: new connections wait in the
//!   kernel's listen backlog (1024) and are served as soon as one closes, rather than being
//!   accepted and closed at once, so a burst is delayed, not refused. The timeouts below
//!   make every slot held by a silent or slow client free itself.
//! * **Header timeout**: a connection must deliver a complete request head within
//!   `header_timeout` of being accepted, or of the first byte of its next request.
//! * **Idle timeout**: between requests (after the response is written), a keep-alive
//!   connection that sends nothing for `idle_timeout` is closed.
//!
//! Both timeouts close the connection without an answer (as Go's `net/http` does). Request
//! bodies have their own deadline (`http::read_body`), handlers the controller's limits.
//!
//! **TLS** (`crate::tls`): the handshake runs on the connection's own task, so a slow or
//! silent client never holds up the accept loop, and it counts toward the header timeout
//! (handshake and first request head together must arrive within `header_timeout`). A
//! failed handshake closes the connection, is logged at debug and counted in
//! `cupd_tls_handshake_failures_total`.
//!
//! Every request carries a [`Peer`] extension: who is at the other end of its connection.
//!
//! Shutdown: stop accepting, ask every connection to finish its request in flight and close
//! (hyper's graceful shutdown; idle ones close at once), then wait for all of them.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::tls::TlsConfigs;

/// The other end of a request's connection, as a request extension: what authentication
/// (`access`) maps to a caller.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The TCP peer address.
    pub addr: SocketAddr,
    /// DER of the client's certificate (its leaf), verified against the client CA during
    /// the handshake; `None` over plain HTTP or when the client presented none.
    pub client_certificate: Option<Arc<[u8]>>,
}

/// Limits of the listener (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes and every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    tls: Option<Arc<TlsConfigs>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // A semaphore holds at most u32::MAX >> 3 permits; the flag is capped far below that.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    // Typically EMFILE: retrying at once would spin.
                    tracing::warn!(%error, "accepting a connection failed; retrying in 1 s");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // Responses are written whole and at once; without this, a response TLS splits into
        // several records waits on Nagle's algorithm for the client's delayed ACK (as Go's
        // net/http, the original's server, always sets it).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY could not be set");
        }
        let router = router.clone();
        let stopping = stopping.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            metrics.connection_opened();
            accepted(
                stream,
                addr,
                tls.as_deref(),
                router,
                limits,
                stopping,
                &metrics,
            )
            .await;
            metrics.connection_closed();
            drop(permit);
        });
    }
    drop(listener);
    let open = limits.max_connections - slots.available_permits();
    if open > 0 {
        tracing::info!(connections = open, "waiting for open connections to finish");
    }
    let _ = stop.send(true);
    // Every connection task holds a permit until it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Errors that concern one connection only (the client went away before the accept).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one accepted connection, over TLS when `tls` is set.
async fn accepted(
    stream: TcpStream,
    addr: SocketAddr,
    tls: Option<&TlsConfigs>,
    router: Router,
    limits: ConnLimits,
    mut stopping: watch::Receiver<bool>,
    metrics: &Metrics,
) {
    let clock = Arc::new(Clock::new(limits));
    let watched = Watched {
        inner: stream,
        clock: clock.clone(),
    };
    let Some(tls) = tls else {
        let peer = Peer {
            addr,
            client_certificate: None,
        };
        return connection(watched, peer, clock, router, stopping, metrics).await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(watched));
    let stream = tokio::select! {
        finished = handshake => match finished {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                let reason = handshake_failure(&error);
                tracing::debug!(%addr, %error, reason, "TLS handshake failed");
                metrics.tls_handshake_failed(reason);
                return;
            }
            Err(_) => {
                tracing::debug!(%addr, "TLS handshake timed out");
                metrics.tls_handshake_failed("timeout");
                return;
            }
        },
        // Shutting down: a connection with no request yet has nothing to finish.
        _ = stopping.changed() => return,
    };
    let client_certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::from(leaf.as_ref()));
    let peer = Peer {
        addr,
        client_certificate,
    };
    connection(stream, peer, clock, router, stopping, metrics).await;
}

/// The `reason` label of a failed handshake: a fixed set, whatever the client sent.
fn handshake_failure(error: &io::Error) -> &'static str {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_),
        ) => "client_certificate",
        Some(_) => "protocol",
        None => "io",
    }
}

async fn connection<S>(
    io: S,
    peer: Peer,
    clock: Arc<Clock>,
    router: Router,
    mut stopping: watch::Receiver<bool>,
    metrics: &Metrics,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = Busy::start(clock.clone());
            let router = router.clone();
            request.extensions_mut().insert(peer.clone());
            async move {
                let response = router.oneshot(request).await;
                drop(busy);
                response
            }
        })
    };
    let mut conn = pin!(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    let mut draining = false;
    loop {
        let deadline = clock.deadline();
        let changed = clock.changed.notified();
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = changed => {}
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some(kind) = clock.expired(Instant::now()) {
                    tracing::debug!(timeout = kind, "closing a connection that timed out");
                    metrics.connection_timed_out(kind);
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is between requests, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a complete request head (since the accept or the head's first byte).
    Head(Instant),
    /// A request is being served.
    Busy,
    /// Waiting for the next request; the instant of the last byte moved.
    Idle(Instant),
}

/// The connection's phase, updated by its I/O and its requests.
struct Clock {
    limits: ConnLimits,
    phase: Mutex<Phase>,
    /// Woken when the deadline may have moved earlier (or gone).
    changed: Notify,
}

impl Clock {
    fn new(limits: ConnLimits) -> Clock {
        Clock {
            limits,
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn set(&self, update: impl FnOnce(Phase) -> Option<Phase>) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(next) = update(*phase) {
            let wake = !matches!((*phase, next), (Phase::Idle(_), Phase::Idle(_)));
            *phase = next;
            drop(phase);
            if wake {
                self.changed.notify_one();
            }
        }
    }

    fn read(&self) {
        self.set(|phase| match phase {
            Phase::Idle(_) => Some(Phase::Head(Instant::now())),
            _ => None,
        });
    }

    fn wrote(&self) {
        self.set(|phase| match phase {
            Phase::Idle(_) => Some(Phase::Idle(Instant::now())),
            _ => None,
        });
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Head(since) => Some(since + self.limits.header_timeout),
            Phase::Idle(since) => Some(since + self.limits.idle_timeout),
            Phase::Busy => None,
        }
    }

    /// Which timeout has passed at `now`, if one has.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        let phase = *self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Phase::Head(since) if now >= since + self.limits.header_timeout => Some("header"),
            Phase::Idle(since) if now >= since + self.limits.idle_timeout => Some("idle"),
            _ => None,
        }
    }
}

/// Marks the connection busy while a request is served (also when the client goes away
/// and hyper drops the request's future).
struct Busy(Arc<Clock>);

impl Busy {
    fn start(clock: Arc<Clock>) -> Busy {
        clock.set(|_| Some(Phase::Busy));
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(|_| Some(Phase::Idle(Instant::now())));
    }
}

/// A TCP stream that tells its connection's clock about the bytes it moves.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            max_connections: 1,
        }
    }

    #[test]
    fn phases_pick_the_timeout() {
        let second = Duration::from_secs(1);
        let clock = Arc::new(Clock::new(limits()));
        let head = clock
            .deadline()
            .expect("a new connection has a header deadline");
        assert_eq!(clock.expired(head - second), None);
        assert_eq!(clock.expired(head), Some("header"));

        let busy = Busy::start(clock.clone());
        assert_eq!(clock.deadline(), None);
        assert_eq!(clock.expired(head + 100 * second), None);
        drop(busy);
        let idle = clock.deadline().expect("an idle connection has a deadline");
        assert!(idle >= head + 7 * second, "the idle timeout (10 s) applies");
        assert_eq!(clock.expired(idle - second), None);
        assert_eq!(clock.expired(idle), Some("idle"));

        clock.wrote();
        assert!(clock.deadline().expect("still idle") >= idle);
        clock.read();
        let next = clock.deadline().expect("the next head has a deadline");
        assert!(
            next < idle,
            "the first byte of a request starts the header timeout"
        );
        assert_eq!(clock.expired(next), Some("header"));
    }

    /// A client of `ca`'s server over a fresh connection: the response to `GET /`, or the
    /// error (a refused client certificate shows when reading, in TLS 1.3).
    async fn tls_get(
        addr: SocketAddr,
        ca: &crate::tls::testing::Ca,
        identity: Option<(&str, &str)>,
    ) -> Result<(SocketAddr, String), io::Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(addr).await?;
        let local = tcp.local_addr()?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        tls.read_to_string(&mut response).await?;
        Ok((local, response))
    }

    #[tokio::test]
    async fn tls_requests_carry_their_peer_and_bad_client_certificates_are_refused() {
        use crate::tls::testing::{client, leaf, new_ca};

        let ca = new_ca();
        let other_ca = new_ca();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, _) = leaf(&ca, 1);
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
        let options = crate::tls::TlsOptions {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            client_ca_file: Some(dir.path().join("ca.pem")),
            client_crl_files: Vec::new(),
        };
        let configs = Arc::new(TlsConfigs::load(options).unwrap());
        let router = Router::new().route(
            "/",
            axum::routing::get(|axum::Extension(peer): axum::Extension<Peer>| async move {
                let certificate = peer.client_certificate.map_or(0, |der| der.len());
                format!("peer={} certificate={certificate}", peer.addr)
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ConnLimits {
            max_connections: 8,
            ..limits()
        };
        let server = tokio::spawn(serve(
            listener,
            router,
            limits,
            Some(configs),
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ));

        let (local, response) = tls_get(addr, &ca, None).await.unwrap();
        assert!(
            response.ends_with(&format!("peer={local} certificate=0")),
            "{response}"
        );
        let (cert, key, der) = client(&ca, "alice");
        let (local, response) = tls_get(addr, &ca, Some((&cert, &key))).await.unwrap();
        assert!(
            response.ends_with(&format!("peer={local} certificate={}", der.len())),
            "{response}"
        );

        let (cert, key, _) = client(&other_ca, "mallory");
        let refused = tls_get(addr, &ca, Some((&cert, &key))).await;
        assert!(refused.is_err(), "{refused:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !metrics
            .render()
            .contains(r#"cupd_tls_handshake_failures_total{reason="client_certificate"} 1"#)
        {
            assert!(Instant::now() < deadline, "{}", metrics.render());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Plain HTTP gets no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

        // A client that never starts its handshake is closed after the header timeout.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut Vec::new()).await;
        assert!(started.elapsed() >= limits.header_timeout - Duration::from_millis(100));
        assert!(
            metrics
                .render()
                .contains(r#"cupd_tls_handshake_failures_total{reason="timeout"} 1"#),
            "{}",
            metrics.render()
        );

        // Nor does one hold up shutdown.
        let _silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        tokio::time::timeout(limits.header_timeout / 2, server)
            .await
            .expect("shutdown waits for no handshake")
            .unwrap();
    }
}

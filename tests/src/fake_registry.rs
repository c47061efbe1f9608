//! A hand-written registry for what a real one never does: serve a "manifest" far larger
//! than any cap (announced with a `Content-Length`, or chunked with none), or answer every
//! request with a credential challenge naming a token service on another host. And a
//! [`Recorder`]: a listener (on any loopback address, e.g. 127.0.0.2) that keeps every
//! request it receives, to prove credentials never reached it.
//!
//! One request per connection (`Connection: close`); each connection on its own thread.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake registry answers.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// `GET /v2/` answers 200; a manifest GET answers 200 with `size` bytes of body, with a
    /// `Content-Length` unless `chunked`.
    HugeManifest { size: u64, chunked: bool },
    /// Every request answers 401 with `WWW-Authenticate: Bearer realm="<realm>",…`.
    Challenge { realm: String },
}

/// A running fake registry (or recorder); stopped on drop.
pub struct FakeServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    /// Body bytes of manifests written to clients, all connections together.
    served: Arc<AtomicU64>,
    /// Request heads received (request line and headers), in order.
    requests: Arc<Mutex<Vec<String>>>,
}

/// A fake registry on `127.0.0.1`.
pub type FakeRegistry = FakeServer;
/// A listener that records requests and answers each with a token.
pub type Recorder = FakeServer;

impl FakeServer {
    /// A fake registry on a free port of 127.0.0.1.
    pub fn registry(behaviour: Behaviour) -> FakeServer {
        FakeServer::start("127.0.0.1", Some(behaviour))
    }

    /// A recorder on a free port of `ip` (answers `{"token":"t"}`).
    pub fn recorder(ip: &str) -> FakeServer {
        FakeServer::start(ip, None)
    }

    fn start(ip: &str, behaviour: Option<Behaviour>) -> FakeServer {
        let listener = TcpListener::bind((ip, 0)).expect("binding the fake server");
        listener.set_nonblocking(true).expect("nonblocking");
        let server = FakeServer {
            addr: listener.local_addr().expect("addr"),
            stop: Arc::default(),
            served: Arc::default(),
            requests: Arc::default(),
        };
        let (stop, served, requests) = (
            server.stop.clone(),
            server.served.clone(),
            server.requests.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (behaviour, served, requests) =
                            (behaviour.clone(), served.clone(), requests.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, behaviour.as_ref(), &served, &requests);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        server
    }

    /// `ip:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Manifest body bytes written to clients so far (a client that stops reading stops
    /// the writes once the socket buffers are full).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    behaviour: Option<&Behaviour>,
    served: &AtomicU64,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    requests.lock().expect("lock").push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut out = stream;
    match behaviour {
        None => answer(&mut out, "200 OK", &[], br#"{"token":"t"}"#),
        Some(Behaviour::Challenge { realm }) => answer(
            &mut out,
            "401 Unauthorized",
            &[format!(
                r#"WWW-Authenticate: Bearer realm="{realm}",service="fake-registry""#
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ),
        Some(Behaviour::HugeManifest { .. }) if !path.contains("/manifests/") => {
            answer(&mut out, "200 OK", &[], b"{}")
        }
        Some(Behaviour::HugeManifest { size, chunked }) => huge(&mut out, *size, *chunked, served),
    }
}

fn answer(
    out: &mut TcpStream,
    status: &str,
    headers: &[String],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// A manifest-looking body of `size` bytes (`{"schemaVersion":2,` then spaces), until the
/// client hangs up.
fn huge(out: &mut TcpStream, size: u64, chunked: bool, served: &AtomicU64) -> std::io::Result<()> {
    let length = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {size}")
    };
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n{length}\r\nConnection: close\r\n\r\n"
    )?;
    let mut chunk = vec![b' '; 64 << 10];
    chunk[..19].copy_from_slice(b"{\"schemaVersion\":2,");
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if chunked {
            write!(out, "{n:x}\r\n")?;
        }
        out.write_all(&chunk[..n])?;
        if chunked {
            out.write_all(b"\r\n")?;
        }
        served.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
        chunk[..19].fill(b' ');
    }
    if chunked {
        out.write_all(b"0\r\n\r\n")?;
    }
    out.flush()
}

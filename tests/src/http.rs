//! HTTP for the test harnesses: a blocking request helper over reqwest (one request per
//! connection, the whole response read), a raw one for request targets no URL client sends,
//! loopback ports, and the one chunked-body decoder the hand-written test servers share.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// A loopback port that was free a moment ago, for a child process that binds it itself.
/// Another test may take it first: callers start the child again on a new port when it
/// reports `Address already in use`. A port nothing must listen on is a [`ClosedPort`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// A loopback port held bound but never listening, so connecting to it is refused and no
/// other test or server can take it while this value lives.
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("binding a loopback port");
        ClosedPort { socket }
    }

    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("bound address").port()
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// One runtime and client for every blocking request of the process. No pooling and no
/// retries: each request is one connection, closed after the response, as a test expects
/// when it counts connections or requests.
fn client() -> &'static (tokio::runtime::Runtime, reqwest::Client) {
    static CLIENT: OnceLock<(tokio::runtime::Runtime, reqwest::Client)> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-http")
            .enable_all()
            .build()
            .expect("the test HTTP runtime");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .pool_max_idle_per_host(0)
            .read_timeout(Duration::from_secs(60))
            .build()
            .expect("the test HTTP client");
        (runtime, client)
    })
}

/// One request to `127.0.0.1:port`; `None` when the connection or the response fails.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Response> {
    let (runtime, client) = client();
    let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{path}")).ok()?;
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    // A URL client resolves `..` and `.` segments and escapes some bytes: a test must know
    // its request went out as written.
    assert_eq!(
        target, path,
        "the request target would be rewritten; send it with raw_status"
    );
    let mut builder = client
        .request(method, url)
        .header("Connection", "close")
        .body(body.to_vec());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    runtime.block_on(async {
        let response = builder.send().await.ok()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        let body = response.bytes().await.ok()?.to_vec();
        Some(Response {
            status,
            headers,
            body,
        })
    })
}

/// The status code of one request sent byte for byte as `method target`, without a body:
/// for targets a URL client would rewrite (`..` segments). `None` when nothing answers.
pub fn raw_status(port: u16, method: &str, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// Copies a `Transfer-Encoding: chunked` body from `reader` to `sink`, decoded: chunk
/// extensions are ignored, trailers read and dropped.
pub fn copy_chunked(reader: &mut impl BufRead, sink: &mut impl Write) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text.trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the blank line that ends the body.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let copied = std::io::copy(&mut reader.take(size), sink)?;
        if copied != size {
            return Err(std::io::Error::other("chunk ended early"));
        }
        line.clear();
        reader.read_line(&mut line)?; // the CRLF after the chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_decoded() {
        let mut body = Vec::new();
        let wire = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\nnext";
        let mut reader = &wire[..];
        copy_chunked(&mut reader, &mut body).unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(reader, b"next", "the body ends at the blank line");
        let mut short = &b"a\r\nabc"[..];
        assert!(copy_chunked(&mut short, &mut Vec::new()).is_err());
        assert!(copy_chunked(&mut &b"zz\r\n"[..], &mut Vec::new()).is_err());
    }

    #[test]
    #[should_panic(expected = "would be rewritten")]
    fn a_target_a_url_client_would_rewrite_is_refused() {
        let closed = ClosedPort::new();
        request(closed.port(), "GET", "/a/../b", &[], b"");
    }

    #[test]
    fn a_closed_port_refuses_connections() {
        let closed = ClosedPort::new();
        assert!(std::net::TcpStream::connect(("127.0.0.1", closed.port())).is_err());
        assert!(request(closed.port(), "GET", "/", &[], b"").is_none());
    }
}

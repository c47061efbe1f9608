//! A real smart-HTTP Git server on 127.0.0.1 that requires HTTP Basic auth: each request's
//! `Authorization` header is checked, then `git http-backend` runs as a CGI program with
//! the request body streamed to its stdin (chunked bodies, which libgit2 sends for large
//! pushes, are decoded) and its output streamed back as a chunked response. One request per connection
//! (`Connection: close`), one thread per connection; the accept loop stops at drop.
//!
//! Plain HTTP on loopback: the credential logic under test (401 → credentials → retry) is
//! the same for https, only TLS is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request the server answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The query string (`service=git-upload-pack` on the advertisement of each fetch).
    pub query: String,
    pub status: u16,
    /// The body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// A running server exporting every repository under its root.
pub struct GitHttp {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    /// The one `user:password` accepted.
    accepted: Mutex<(String, String)>,
    /// Every request, in order.
    log: Mutex<Vec<Request>>,
    stop: AtomicBool,
    /// While set, connections are accepted and held open without a byte of answer.
    stalled: AtomicBool,
    held: Mutex<Vec<TcpStream>>,
}

impl GitHttp {
    /// Serves the bare repositories under `root`, accepting only `user:password`.
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            root: root.to_owned(),
            accepted: Mutex::new((user.to_owned(), password.to_owned())),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(&listener, &shared))
        };
        GitHttp {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/<repo>` (no credentials).
    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    /// `http://user:password@127.0.0.1:PORT/<repo>`.
    pub fn url_with(&self, user: &str, password: &str, repo: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}/{repo}", self.port)
    }

    /// `http://127.0.0.1:PORT`, as a credentials file names the server.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the accepted credentials (a rotated token).
    pub fn set_credentials(&self, user: &str, password: &str) {
        *lock(&self.shared.accepted) = (user.to_owned(), password.to_owned());
    }

    /// From now on (`true`) new connections are accepted and never answered, as a remote
    /// that hangs; `false` serves again and closes the held ones.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
        if !stalled {
            lock(&self.shared.held).clear();
        }
    }

    /// Connections held unanswered so far (see [`GitHttp::stall`]).
    pub fn held(&self) -> usize {
        lock(&self.shared.held).len()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if shared.stalled.load(Ordering::SeqCst) {
            lock(&shared.held).push(stream);
            continue;
        }
        let shared = shared.clone();
        std::thread::spawn(move || {
            // A client hanging up once it has what it needs is not worth a line.
            if let Err(e) = serve(stream, &shared)
                && !matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                )
            {
                eprintln!("githttp: {e}");
            }
        });
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Head> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(std::io::Error::other(format!("bad request line {line:?}")));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok(head);
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            head.headers
                .push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut output = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader)?;
    let (user, password) = lock(&shared.accepted).clone();
    let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    if head.header("authorization") != Some(expected.as_str()) {
        // Drain the body first so the client is not reset while still sending it.
        copy_body(&mut reader, &head, &mut std::io::sink())?;
        log(shared, &head, 401);
        return output.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cup-test\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        output.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut status = None;
    let result = run_backend(reader, &head, &user, &shared.root, &mut output, &mut status);
    // Logged even if the client hung up early: the answer was given.
    if let Some(status) = status {
        log(shared, &head, status);
    }
    result.map_err(|e| std::io::Error::new(e.kind(), format!("{} {}: {e}", head.method, head.path)))
}

fn log(shared: &Shared, head: &Head, status: u16) {
    lock(&shared.log).push(Request {
        method: head.method.clone(),
        path: head.path.clone(),
        query: head.query.clone(),
        status,
        chunked: head.chunked(),
    });
}

/// Runs `git http-backend` for one authenticated request; `status` is set once the
/// response head is sent.
fn run_backend(
    mut reader: BufReader<TcpStream>,
    head: &Head,
    user: &str,
    root: &Path,
    output: &mut TcpStream,
    status: &mut Option<u16>,
) -> std::io::Result<()> {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root) // no user or system config changes what is served
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &head.method)
        .env("PATH_INFO", &head.path)
        .env("QUERY_STRING", &head.query)
        .env("REMOTE_USER", user) // enables receive-pack (push)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (header, variable) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(value) = head.header(header) {
            command.env(variable, value);
        }
    }
    // Chunked: no CONTENT_LENGTH, http-backend reads its stdin to the end.
    if let (Some(length), false) = (head.header("content-length"), head.chunked()) {
        command.env("CONTENT_LENGTH", length);
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let feeder = {
        let head_copy = Head {
            method: head.method.clone(),
            path: head.path.clone(),
            query: String::new(),
            headers: head.headers.clone(),
        };
        std::thread::spawn(move || copy_body(&mut reader, &head_copy, &mut stdin))
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut cgi = BufReader::new(stdout);
    let relayed = relay_head(&mut cgi, output).and_then(|code| {
        *status = Some(code);
        relay_body(&mut cgi, output)
    });
    drop(cgi); // a backend still writing gets EPIPE rather than blocking forever
    let fed = feeder
        .join()
        .map_err(|_| std::io::Error::other("body thread panicked"))?;
    child.wait()?;
    fed?;
    relayed
}

/// Turns the CGI response head (headers, blank line) into an HTTP/1.1 one; returns the
/// status.
fn relay_head(cgi: &mut impl BufRead, output: &mut TcpStream) -> std::io::Result<u16> {
    let mut status = 200;
    let mut reason = "OK".to_owned();
    let mut headers = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if cgi.read_line(&mut line)? == 0 {
            break;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        match trimmed.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => {
                let v = v.trim();
                let (code, text) = v.split_once(' ').unwrap_or((v, ""));
                status = code.parse().unwrap_or(500);
                reason = text.to_owned();
            }
            _ => {
                headers.push_str(trimmed);
                headers.push_str("\r\n");
            }
        }
    }
    // Chunked rather than ended by closing the connection: libgit2 does not accept a body
    // that only the end of the connection delimits.
    write!(
        output,
        "HTTP/1.1 {status} {reason}\r\n{headers}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    Ok(status)
}

/// Streams the CGI body as chunks.
fn relay_body(cgi: &mut impl Read, output: &mut TcpStream) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = cgi.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        write!(output, "{n:x}\r\n")?;
        output.write_all(&buffer[..n])?;
        output.write_all(b"\r\n")?;
    }
    output.write_all(b"0\r\n\r\n")?;
    output.flush()
}

/// Copies the request body to `sink`: `Content-Length` bytes, or decoded chunks.
fn copy_body(reader: &mut impl BufRead, head: &Head, sink: &mut impl Write) -> std::io::Result<()> {
    if head.chunked() {
        return crate::http::copy_chunked(reader, sink);
    }
    let length: u64 = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let copied = std::io::copy(&mut reader.take(length), sink)?;
    if copied != length {
        return Err(std::io::Error::other("request body ended early"));
    }
    Ok(())
}

/// Standard base64 with padding (for the expected `Authorization` value).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648() {
        assert_eq!(super::base64(b"cup:s3cret"), "Y3VwOnMzY3JldA==");
        assert_eq!(super::base64(b"foob"), "Zm9vYg==");
        assert_eq!(super::base64(b"fooba"), "Zm9vYmE=");
    }
}

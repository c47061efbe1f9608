//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) serving a
//! temp directory on 127.0.0.1, stopped by PID when dropped. Also raw requests, to push
//! hand-made manifests (other tools' layouts, broken ones) that no client would produce.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry; killed and reaped on drop.
pub struct TestRegistry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

pub use crate::http::Response;
use crate::http::free_port;

impl TestRegistry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers.
    pub fn start() -> TestRegistry {
        Self::start_with(None)
    }

    /// Starts a registry that requires HTTP basic auth for `user`/`password` (htpasswd;
    /// the bcrypt hash comes from Python's `crypt`, at the lowest cost to keep requests fast).
    pub fn start_with_auth(user: &str, password: &str) -> TestRegistry {
        let script = "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))";
        let out = Command::new("python3")
            .args(["-W", "ignore", "-c", script, password])
            .output()
            .expect("python3 for bcrypt");
        assert!(
            out.status.success(),
            "bcrypt: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hash = String::from_utf8(out.stdout).expect("utf8");
        Self::start_with(Some(format!("{user}:{}\n", hash.trim())))
    }

    fn start_with(htpasswd: Option<String>) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: the OCI tests need a real registry; install it with \
             `apt-get install docker-registry` (.ci/run does)"
        );
        // The port can be taken between probing and binding; retry a few times.
        for _ in 0..5 {
            if let Some(registry) = Self::try_start(htpasswd.as_deref()) {
                return registry;
            }
        }
        panic!("docker-registry did not start (see its log in the temp dir)");
    }

    fn try_start(htpasswd: Option<&str>) -> Option<TestRegistry> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        let mut yaml = config_yaml(&dir.path().join("data"), port);
        if let Some(entry) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, entry).expect("htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd: {{ realm: cup-test, path: {} }}\n",
                file.display()
            ));
        }
        std::fs::write(&config, yaml).expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        let mut registry = TestRegistry {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // 401 is an answer too (a registry with auth). Only once this registry logged
            // its listener is the answer its own, not another test's server on the port.
            if registry.log().contains("listening on ")
                && registry
                    .try_get("/v2/")
                    .is_some_and(|r| r.status == 200 || r.status == 401)
            {
                return Some(registry);
            }
            let exited = registry
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file holding a blob in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Blob uploads completed so far (the final `PUT …/blobs/uploads/…?digest=`).
    pub fn completed_uploads(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("http.request.method=PUT") && l.contains("/blobs/uploads/"))
            .count()
    }

    /// Kills the registry and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    // ---- raw HTTP ----

    fn try_get(&self, path: &str) -> Option<Response> {
        self.try_request("GET", path, &[], &[])
    }

    /// Sends one request (HTTP/1.1, `Connection: close`) and reads the whole response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|| panic!("{method} {path}: no response from the registry"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Response> {
        crate::http::request(self.port, method, path, headers, body)
    }

    /// Uploads a blob (POST then PUT with the digest) and returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = cup_sections::sha256_digest(bytes);
        let started = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], &[]);
        assert_eq!(started.status, 202, "starting an upload: {started:?}");
        let location = started.header("Location").expect("upload location");
        let path = location
            .find("/v2/")
            .map(|at| &location[at..])
            .expect("location has a /v2/ path");
        let sep = if path.contains('?') { '&' } else { '?' };
        let done = self.request(
            "PUT",
            &format!("{path}{sep}digest={}", digest.replace(':', "%3A")),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(done.status, 201, "finishing an upload: {done:?}");
        digest
    }

    /// Puts a manifest under a tag and returns the registry's answer.
    pub fn put_manifest(&self, repo: &str, tag: &str, body: &[u8], media_type: &str) -> Response {
        self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            body,
        )
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_yaml(data: &Path, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log: {{ level: info, fields: {{ service: registry }} }}\n\
         storage:\n  filesystem: {{ rootdirectory: {} }}\n  delete: {{ enabled: true }}\n  \
         cache: {{ blobdescriptor: inmemory }}\n\
         http:\n  addr: 127.0.0.1:{port}\n  headers: {{ X-Content-Type-Options: [nosniff] }}\n",
        data.display()
    )
}

/// What a [`FaultyProxy`] does to a response once a connection has sent `after` bytes
/// back to the client.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Close the connection: the body arrives truncated.
    Cut { after: usize },
    /// Stop forwarding and hold the connection open: the client hangs mid-body.
    Stall { after: usize },
}

/// A TCP proxy in front of a registry that breaks responses mid-stream. Its threads end
/// with the test process.
pub struct FaultyProxy {
    port: u16,
}

impl FaultyProxy {
    pub fn start(registry: &TestRegistry, fault: Fault) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = registry.port;
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                std::thread::spawn(move || proxy_connection(client, upstream, fault));
            }
        });
        FaultyProxy { port }
    }

    /// `127.0.0.1:<proxy port>`: use it in references instead of the registry's host.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn proxy_connection(mut client: TcpStream, upstream: u16, fault: Fault) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    std::thread::spawn(move || std::io::copy(&mut client_read, &mut server_write));
    let after = match fault {
        Fault::Cut { after } | Fault::Stall { after } => after,
    };
    let mut sent = 0usize;
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            return;
        }
        let n = n.min(after.saturating_sub(sent));
        if client.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n;
        if sent >= after {
            break;
        }
    }
    match fault {
        Fault::Cut { .. } => {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        Fault::Stall { .. } => std::thread::sleep(Duration::from_secs(600)),
    }
}

// ---- a programmable HTTP proxy ----

/// What a [`RegistryProxy`] does to a request that matches a [`Rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Read the request and hold the connection open, answering nothing.
    Stall,
    /// Answer this status (a 5xx, say) with a plain-text body; the registry never sees it.
    Status(u16),
    /// Answer 429 with `Retry-After: 1`.
    TooManyRequests,
    /// Forward, then send the response head and only `keep` body bytes, and close.
    Truncate { keep: usize },
    /// Forward, then announce `Content-Length` as the real length plus `extra` (which may
    /// be negative), send what fits and close.
    LieLength { extra: i64 },
    /// Forward, then replace the `Docker-Content-Digest` header (and the digest in a
    /// `Location`) with the digest of other bytes.
    LieDigest,
    /// Forward, then flip bits across the response body (same length: wrong bytes).
    WrongBytes,
    /// Forward a request body with bits flipped (an upload corrupted on the way).
    CorruptUpload,
    /// Answer 307 with the same path on the real registry.
    Redirect,
    /// Forward, then send the response body at about this many bytes per second.
    Throttle { bytes_per_sec: usize },
    /// Forward, then wait this long before answering (the registry has done the work).
    Delay { ms: u64 },
}

/// Which requests a rule applies to, what it does, and to how many of them.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `GET`, `PUT`, …, or `*` for any method.
    pub method: &'static str,
    /// A substring of the request target (`/blobs/sha256:`, `/manifests/`, `/blobs/uploads/`).
    pub path: String,
    pub action: Action,
    /// The first this-many matching requests get the action; later ones pass through.
    pub times: usize,
    /// Only requests with a body of at least this many bytes match (0: any request).
    pub body_at_least: usize,
}

impl Rule {
    /// A rule for the first `times` requests matching `method` and `path`.
    pub fn new(method: &'static str, path: &str, action: Action, times: usize) -> Rule {
        Rule {
            method,
            path: path.to_owned(),
            action,
            times,
            body_at_least: 0,
        }
    }

    /// The same rule, for requests that carry a body only (an upload PUT with the blob,
    /// not the empty PUT that closes a chunked upload).
    pub fn with_body(mut self) -> Rule {
        self.body_at_least = 1;
        self
    }

    /// A rule for every matching request.
    pub fn always(method: &'static str, path: &str, action: Action) -> Rule {
        Self::new(method, path, action, usize::MAX)
    }

    fn matches(&self, method: &str, target: &str, body: usize) -> bool {
        (self.method == "*" || self.method == method)
            && target.contains(&self.path)
            && body >= self.body_at_least
    }
}

/// One request the proxy saw, and what it did to it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub action: Option<Action>,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a [`TestRegistry`] that applies [`Rule`]s to
/// requests and counts every request, so tests can inject faults and assert retries. Every
/// request is forwarded on its own upstream connection; responses go back with an exact
/// `Content-Length` (keep-alive towards the client). Its threads end with the test process.
pub struct RegistryProxy {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

impl RegistryProxy {
    pub fn start(registry: &TestRegistry, rules: Vec<Rule>) -> RegistryProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState {
            rules,
            seen: Vec::new(),
        }));
        let upstream = registry.port;
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve_client(client, upstream, &state));
            }
        });
        RegistryProxy { port, state }
    }

    /// `127.0.0.1:<proxy port>`: use it in references instead of the registry's host.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<proxy port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// Replaces the rules (the request log is kept).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.lock().rules = rules;
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Requests so far with this method (`*`: any) whose target contains `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.lock()
            .seen
            .iter()
            .filter(|s| (method == "*" || s.method == method) && s.target.contains(path))
            .count()
    }

    /// Requests so far that a rule acted on.
    pub fn faults_injected(&self) -> usize {
        self.lock()
            .seen
            .iter()
            .filter(|s| s.action.is_some())
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A parsed HTTP message head and its (de-chunked) body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value));
    }

    /// The head with hop-by-hop framing replaced by an exact `Content-Length`.
    fn head(&self, content_length: i64, close: bool) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            let framing = ["content-length", "transfer-encoding", "connection"];
            if !framing.iter().any(|f| k.eq_ignore_ascii_case(f)) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!("Content-Length: {content_length}\r\n"));
        let connection = if close { "close" } else { "keep-alive" };
        out.push_str(&format!("Connection: {connection}\r\n\r\n"));
        out.into_bytes()
    }
}

/// Reads one message; `has_body` says whether a body may follow (not for HEAD answers).
fn read_message(
    reader: &mut impl std::io::BufRead,
    has_body: impl Fn(&str) -> bool,
) -> Option<Message> {
    let mut start = String::new();
    if reader.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut message = Message {
        start: start.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    if !has_body(&message.start) {
        return Some(message);
    }
    if message
        .header("Transfer-Encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        crate::http::copy_chunked(reader, &mut message.body).ok()?;
    } else if let Some(length) = message.header("Content-Length") {
        let mut body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        message.body = body;
    } else if !message.start.starts_with("HTTP/") {
        // A request without framing has no body.
    } else {
        reader.read_to_end(&mut message.body).ok()?;
    }
    Some(message)
}

fn serve_client(client: TcpStream, upstream: u16, state: &std::sync::Mutex<ProxyState>) {
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = std::io::BufReader::new(read_half);
    let mut client = client;
    while let Some(request) = read_message(&mut reader, |_| true) {
        let action = note_request(state, &request);
        if !answer(&mut client, request, action, upstream) {
            return;
        }
    }
}

/// Logs the request and consumes one use of the first rule that matches it.
fn note_request(state: &std::sync::Mutex<ProxyState>, request: &Message) -> Option<Action> {
    let mut parts = request.start.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let action = state
        .rules
        .iter_mut()
        .find(|r| r.times > 0 && r.matches(&method, &target, request.body.len()))
        .map(|rule| {
            rule.times = rule.times.saturating_sub(1);
            rule.action
        });
    state.seen.push(Seen {
        method,
        target,
        action,
    });
    action
}

/// Answers one request; false when the connection must end.
fn answer(client: &mut TcpStream, mut request: Message, action: Option<Action>, up: u16) -> bool {
    let canned = |status: u16, reason: &str, extra: &str| {
        format!(
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{reason}",
            reason.len()
        )
    };
    let reply = match action {
        Some(Action::Drop) => return false,
        Some(Action::Stall) => {
            std::thread::sleep(Duration::from_secs(300));
            return false;
        }
        Some(Action::Status(code)) => Some(canned(code, "injected fault", "")),
        Some(Action::TooManyRequests) => Some(canned(429, "slow down", "Retry-After: 1\r\n")),
        Some(Action::Redirect) => {
            let target = request.start.split_whitespace().nth(1).unwrap_or("/");
            let location = format!("Location: http://127.0.0.1:{up}{target}\r\n");
            Some(canned(307, "redirect", &location))
        }
        _ => None,
    };
    if let Some(reply) = reply {
        return client.write_all(reply.as_bytes()).is_ok();
    }
    if action == Some(Action::CorruptUpload) {
        flip_bits(&mut request.body);
    }
    let is_head = request.start.starts_with("HEAD ");
    let Some(mut response) = forward(&request, up, is_head) else {
        return false;
    };
    if let Some(Action::Delay { ms }) = action {
        std::thread::sleep(Duration::from_millis(ms));
    }
    send_response(client, &mut response, action, is_head)
}

/// Sends the request upstream on a fresh connection and reads the whole answer.
fn forward(request: &Message, up: u16, is_head: bool) -> Option<Message> {
    let mut server = TcpStream::connect(("127.0.0.1", up)).ok()?;
    server
        .write_all(&request.head(request.body.len() as i64, true))
        .ok()?;
    server.write_all(&request.body).ok()?;
    let mut reader = std::io::BufReader::new(server);
    read_message(&mut reader, |start| {
        let status = start.split_whitespace().nth(1).unwrap_or("");
        !is_head && status != "204" && status != "304"
    })
}

fn send_response(
    client: &mut TcpStream,
    response: &mut Message,
    action: Option<Action>,
    is_head: bool,
) -> bool {
    let real = if is_head {
        response
            .header("Content-Length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0)
    } else {
        response.body.len() as i64
    };
    let (announced, send, close) = match action {
        Some(Action::Truncate { keep }) => (real, keep.min(response.body.len()), true),
        Some(Action::LieLength { extra }) => {
            let announced = (real + extra).max(0);
            (announced, response.body.len().min(announced as usize), true)
        }
        _ => (real, response.body.len(), false),
    };
    match action {
        Some(Action::LieDigest) => lie_about_digest(response),
        Some(Action::WrongBytes) => flip_bits(&mut response.body),
        _ => {}
    }
    if client.write_all(&response.head(announced, close)).is_err() {
        return false;
    }
    let body = &response.body[..send];
    let written = match action {
        Some(Action::Throttle { bytes_per_sec }) => write_slowly(client, body, bytes_per_sec),
        _ => client.write_all(body).is_ok(),
    };
    written && !close
}

fn lie_about_digest(response: &mut Message) {
    let other = cup_sections::sha256_digest(b"not what was sent");
    if let Some(real) = response.header("Docker-Content-Digest").map(str::to_owned) {
        response.set_header("Docker-Content-Digest", other.clone());
        if let Some(location) = response.header("Location").map(str::to_owned) {
            response.set_header("Location", location.replace(&real, &other));
        }
    }
}

/// Flips one bit every 4 KiB (and in the last byte): same length, other content.
fn flip_bits(body: &mut [u8]) {
    let len = body.len();
    let last = len.checked_sub(1).filter(|l| l % 4096 != 0);
    for at in (0..len).step_by(4096).chain(last) {
        body[at] ^= 0x01;
    }
}

fn write_slowly(client: &mut TcpStream, body: &[u8], bytes_per_sec: usize) -> bool {
    const SLICE: usize = 16 << 10;
    let pause = Duration::from_secs_f64(SLICE as f64 / bytes_per_sec.max(1) as f64);
    for piece in body.chunks(SLICE) {
        if client.write_all(piece).is_err() {
            return false;
        }
        std::thread::sleep(pause);
    }
    true
}

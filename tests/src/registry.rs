//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) serving a
//! temp directory on 127.0.0.1, stopped by PID when dropped. Also a tiny raw HTTP client,
//! to push hand-made manifests (other tools' layouts, broken ones) that no client would
//! produce.

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
            // 401 is an answer too (a registry with auth).
            if registry
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

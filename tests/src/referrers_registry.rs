//! A registry speaking the OCI distribution API 1.1 **with the referrers API**, for the
//! signature tests: no registry with that API can be installed here (Debian's
//! docker-registry is distribution 2.8, which has none), so this one serves an OCI image
//! layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`) over plain HTTP on
//! 127.0.0.1. It implements what a client pushing and pulling signatures uses: blob HEAD,
//! GET and monolithic upload (POST then PUT `?digest=`, the digest checked), manifest PUT
//! by tag or digest (a manifest with a `subject` is indexed as its referrer and answered
//! with `OCI-Subject`), manifest GET/HEAD, and `GET /v2/<name>/referrers/<digest>` with the
//! `artifactType` filter. One request per connection (`Connection: close`); the accept
//! loop stops at drop.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A running registry with the referrers API.
pub struct ReferrersRegistry {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

#[derive(Default)]
struct State {
    /// (repository, tag) → manifest digest.
    tags: HashMap<(String, String), String>,
    /// (repository, subject digest) → referrer descriptors.
    referrers: HashMap<(String, String), Vec<serde_json::Value>>,
    /// Every request as `METHOD path`, in order.
    log: Vec<String>,
}

struct Shared {
    layout: PathBuf,
    state: Mutex<State>,
    uploads: AtomicU64,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ReferrersRegistry {
    pub fn start() -> ReferrersRegistry {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = dir.path().join("layout");
        std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        std::fs::write(
            layout.join("index.json"),
            r#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .expect("index.json");
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared {
            layout,
            state: Mutex::new(State::default()),
            uploads: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &shared);
                    });
                }
            })
        };
        ReferrersRegistry {
            port,
            shared,
            accept: Some(accept),
            _dir: dir,
        }
    }

    /// `127.0.0.1:<port>/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("127.0.0.1:{}/{name}", self.port)
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared.state).log.clone()
    }

    /// Removes a tag (the manifest stays, as after a registry's tag deletion).
    pub fn remove_tag(&self, repository: &str, tag: &str) {
        lock(&self.shared.state)
            .tags
            .remove(&(repository.to_owned(), tag.to_owned()));
    }

    /// Lists `descriptor` as a referrer of `subject`, whatever it says its subject is (a
    /// registry answering falsely).
    pub fn list_as_referrer(&self, repository: &str, subject: &str, descriptor: serde_json::Value) {
        lock(&self.shared.state)
            .referrers
            .entry((repository.to_owned(), subject.to_owned()))
            .or_default()
            .push(descriptor);
    }

    /// The descriptors listed as referrers of `subject`.
    pub fn referrers(&self, repository: &str, subject: &str) -> Vec<serde_json::Value> {
        lock(&self.shared.state)
            .referrers
            .get(&(repository.to_owned(), subject.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for ReferrersRegistry {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    fn header(mut self, name: &str, value: impl Into<String>) -> Answer {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    fn json(self, value: &serde_json::Value) -> Answer {
        let mut a = self.header("Content-Type", "application/json");
        a.body = serde_json::to_vec(value).expect("JSON");
        a
    }
    fn error(status: u16, code: &str) -> Answer {
        Answer::new(status).json(&serde_json::json!({"errors": [{"code": code, "message": code}]}))
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    lock(&shared.state).log.push(format!("{method} {path}"));
    let answer = route(shared, &method, path, query, &headers, body);
    let mut out = stream;
    write!(out, "HTTP/1.1 {} X\r\n", answer.status)?;
    for (k, v) in &answer.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    write!(
        out,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        answer.body.len()
    )?;
    if method != "HEAD" {
        out.write_all(&answer.body)?;
    }
    out.flush()
}

fn blob_path(layout: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| layout.join("blobs/sha256").join(hex))
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3A", ":")
                .replace("%2F", "/")
                .replace("%2B", "+")
        })
    })
}

fn route(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Answer {
    if path == "/v2/" {
        return Answer::new(200).json(&serde_json::json!({}));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Answer::error(404, "NOT_FOUND");
    };
    // `<name>/<kind>/<ref>`, where the name may hold slashes.
    for kind in ["/blobs/uploads/", "/blobs/", "/manifests/", "/referrers/"] {
        if let Some(at) = rest.rfind(kind) {
            let name = &rest[..at];
            let reference = &rest[at + kind.len()..];
            return match kind {
                "/blobs/uploads/" => upload(shared, method, name, reference, query, body),
                "/blobs/" => blob(shared, reference),
                "/manifests/" => manifest(shared, method, name, reference, headers, body),
                _ => referrers(shared, name, reference, query),
            };
        }
    }
    Answer::error(404, "NOT_FOUND")
}

fn upload(
    shared: &Shared,
    method: &str,
    name: &str,
    session: &str,
    query: &str,
    body: Vec<u8>,
) -> Answer {
    match method {
        "POST" => {
            let n = shared.uploads.fetch_add(1, Ordering::SeqCst);
            Answer::new(202).header("Location", format!("/v2/{name}/blobs/uploads/{n}"))
        }
        "PUT" if !session.is_empty() => {
            let Some(digest) = query_value(query, "digest") else {
                return Answer::error(400, "DIGEST_INVALID");
            };
            if cup_sections::sha256_digest(&body) != digest {
                return Answer::error(400, "DIGEST_INVALID");
            }
            let Some(path) = blob_path(&shared.layout, &digest) else {
                return Answer::error(400, "DIGEST_INVALID");
            };
            std::fs::write(path, &body).expect("writing a blob");
            Answer::new(201)
                .header("Location", format!("/v2/{name}/blobs/{digest}"))
                .header("Docker-Content-Digest", digest)
        }
        _ => Answer::error(405, "UNSUPPORTED"),
    }
}

/// GET and HEAD alike: `serve` writes no body for HEAD, but its length.
fn blob(shared: &Shared, digest: &str) -> Answer {
    let Some(bytes) = blob_path(&shared.layout, digest).and_then(|p| std::fs::read(p).ok()) else {
        return Answer::error(404, "BLOB_UNKNOWN");
    };
    let mut answer = Answer::new(200).header("Docker-Content-Digest", digest);
    answer.body = bytes;
    answer
}

fn manifest(
    shared: &Shared,
    method: &str,
    name: &str,
    reference: &str,
    headers: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Answer {
    if method == "PUT" {
        let digest = cup_sections::sha256_digest(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Answer::error(400, "DIGEST_INVALID");
        }
        let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Answer::error(400, "MANIFEST_INVALID");
        };
        let path = blob_path(&shared.layout, &digest).expect("a sha256 digest");
        std::fs::write(path, &body).expect("writing a manifest");
        let media_type = headers
            .get("content-type")
            .cloned()
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        let mut state = lock(&shared.state);
        if !reference.starts_with("sha256:") {
            state
                .tags
                .insert((name.to_owned(), reference.to_owned()), digest.clone());
        }
        let mut answer = Answer::new(201)
            .header("Location", format!("/v2/{name}/manifests/{digest}"))
            .header("Docker-Content-Digest", digest.clone());
        if let Some(subject) = parsed["subject"]["digest"].as_str() {
            let mut descriptor = serde_json::json!({
                "mediaType": media_type,
                "digest": digest,
                "size": body.len(),
            });
            if let Some(t) = parsed["artifactType"].as_str() {
                descriptor["artifactType"] = t.into();
            }
            if let Some(a) = parsed.get("annotations") {
                descriptor["annotations"] = a.clone();
            }
            state
                .referrers
                .entry((name.to_owned(), subject.to_owned()))
                .or_default()
                .push(descriptor);
            answer = answer.header("OCI-Subject", subject);
        }
        drop(state);
        write_index(shared);
        return answer;
    }
    let digest = if reference.starts_with("sha256:") {
        Some(reference.to_owned())
    } else {
        lock(&shared.state)
            .tags
            .get(&(name.to_owned(), reference.to_owned()))
            .cloned()
    };
    let Some(bytes) = digest
        .as_deref()
        .and_then(|d| blob_path(&shared.layout, d))
        .and_then(|p| std::fs::read(p).ok())
    else {
        return Answer::error(404, "MANIFEST_UNKNOWN");
    };
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
    let mut answer = Answer::new(200)
        .header("Content-Type", media_type)
        .header("Docker-Content-Digest", digest.unwrap_or_default());
    answer.body = bytes;
    answer
}

fn referrers(shared: &Shared, name: &str, subject: &str, query: &str) -> Answer {
    let filter = query_value(query, "artifactType");
    let listed: Vec<serde_json::Value> = lock(&shared.state)
        .referrers
        .get(&(name.to_owned(), subject.to_owned()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| filter.as_deref().is_none_or(|f| d["artifactType"] == f))
        .collect();
    let mut answer = Answer::new(200).json(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": listed,
    }));
    answer.headers[0].1 = "application/vnd.oci.image.index.v1+json".into();
    if filter.is_some() {
        answer = answer.header("OCI-Filters-Applied", "artifactType");
    }
    answer
}

/// `index.json` lists every tagged manifest, named `repository:tag`.
fn write_index(shared: &Shared) {
    let state = lock(&shared.state);
    let manifests: Vec<serde_json::Value> = state
        .tags
        .iter()
        .filter_map(|((repo, tag), digest)| {
            let size = std::fs::metadata(blob_path(&shared.layout, digest)?)
                .ok()?
                .len();
            Some(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": format!("{repo}:{tag}")},
            }))
        })
        .collect();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    let temp = shared.layout.join("index.json.tmp");
    std::fs::write(&temp, serde_json::to_vec(&index).expect("JSON")).expect("index");
    std::fs::rename(temp, shared.layout.join("index.json")).expect("index");
}

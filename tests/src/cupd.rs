//! The real `cupd` binary for tests: started on a free loopback port with a config
//! directory, a source directory and a private OCI store, waited for until `/readyz` says
//! ready, killed and reaped on drop. Requests go through `crate::http::request`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take: a cold debug build compiles wasm modules slowly.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What cupd logs (at info, the default level) once its listener is bound.
const LISTENING: &str = "cupd listening";

/// A running cupd.
pub struct Cupd {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

pub use crate::http::{Response, free_port, request};

/// What to start cupd with.
pub struct CupdConfig<'a> {
    pub config_dir: &'a Path,
    pub source_dir: &'a Path,
    pub store: &'a Path,
    /// Extra arguments after the standard ones.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Whether cupd on this port is ready, for a cupd plain HTTP cannot ask (HTTPS);
    /// `None`: `GET /readyz` over HTTP answers 200.
    pub ready_probe: Option<&'a dyn Fn(u16) -> bool>,
}

impl<'a> CupdConfig<'a> {
    pub fn new(config_dir: &'a Path, source_dir: &'a Path, store: &'a Path) -> Self {
        CupdConfig {
            config_dir,
            source_dir,
            store,
            args: Vec::new(),
            env: Vec::new(),
            ready_probe: None,
        }
    }
}

impl Cupd {
    /// Starts cupd and waits until it is ready; panics with its log if it is not.
    pub fn start(config: &CupdConfig<'_>) -> Cupd {
        for _ in 0..5 {
            match Self::try_start(config) {
                Ok(cupd) => return cupd,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("cupd did not become ready:\n{log}"),
            }
        }
        panic!("cupd could not find a free port");
    }

    /// Starts cupd under a wrapper command (`["prlimit", "--nofile=128:128"]`: the wrapper
    /// gets cupd's path and arguments after its own) and waits until it is ready.
    pub fn start_under(config: &CupdConfig<'_>, wrapper: &[&str]) -> Cupd {
        for _ in 0..5 {
            match Self::try_start_under(config, wrapper) {
                Ok(cupd) => return cupd,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("cupd did not become ready:\n{log}"),
            }
        }
        panic!("cupd could not find a free port");
    }

    /// Starts cupd; `Err(log)` if it exits or is not ready in time.
    pub fn try_start(config: &CupdConfig<'_>) -> Result<Cupd, String> {
        Self::try_start_under(config, &[])
    }

    fn try_start_under(config: &CupdConfig<'_>, wrapper: &[&str]) -> Result<Cupd, String> {
        let log_dir = tempfile::tempdir().expect("temp dir");
        let log = log_dir.path().join("cupd.log");
        let port = free_port();
        let mut command = match wrapper.split_first() {
            None => Command::new(crate::bin("cupd")),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(crate::bin("cupd"));
                command
            }
        };
        command
            .args(["serve", "-api-address"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-api-resources")
            .arg(config.config_dir)
            .arg("-api-local-path")
            .arg(config.source_dir)
            .arg("--store")
            .arg(config.store)
            .args(&config.args)
            .env_remove("RUST_LOG")
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = command.spawn().expect("spawning cupd");
        let mut cupd = Cupd {
            child: Some(child),
            port,
            log,
            _log_dir: log_dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            // Only once this cupd has bound the port is the answer its own: until then
            // another test's server may hold the port (this one then exits with
            // `Address already in use` and is started again on another).
            if cupd.log().contains(LISTENING)
                && match config.ready_probe {
                    Some(ready) => ready(cupd.port),
                    None => cupd
                        .try_request("GET", "/readyz", &[], b"")
                        .is_some_and(|r| r.status == 200),
                }
            {
                return Ok(cupd);
            }
            if let Some(status) = cupd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("cupd exited with {status}:\n{}", cupd.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!(
            "cupd was not ready after {READY_TIMEOUT:?}:\n{}",
            cupd.log()
        ))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A line of cupd's `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let pid = self.pid().expect("cupd runs");
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("cupd's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
    }

    /// cupd's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        self.status_kib("VmHWM") / 1024
    }

    /// The loopback port cupd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// cupd's process id (under a wrapper that execs it, the wrapper's).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything cupd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"")
    }

    pub fn put(&self, path: &str, body: &str) -> Response {
        self.request(
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, &[], b"")
    }

    /// The `/status` entry of the controller `name`; panics (with the log) if there is none.
    pub fn controller_status(&self, name: &str) -> serde_json::Value {
        let status = self.get("/status").json();
        status["controllers"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no controller {name} in {status}\n{}", self.log()))
    }

    /// One request; panics (with the log) if there is no response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|| panic!("{method} {path}: no response from cupd\n{}", self.log()))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<Response> {
        request(self.port, method, path, headers, body)
    }

    /// Sends SIGHUP: cupd reloads its config directory.
    pub fn hangup(&self) {
        let pid = self.pid().expect("cupd runs");
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP {pid}: {status}");
    }

    /// `/status`'s `reload` (null before the first reload).
    pub fn reload_status(&self) -> serde_json::Value {
        self.get("/status").json()["reload"].clone()
    }

    /// Sends SIGHUP and waits until a reload that started after it has ended; returns
    /// `/status`'s `reload` then. Panics (with the log) if none ends within the start
    /// timeout.
    pub fn reload(&self) -> serde_json::Value {
        let before = self.reload_status();
        let ended = before["count"].as_u64().unwrap_or(0);
        // A reload running now may have read the directory already: wait for the one after.
        let want = ended + if before["running"] == true { 2 } else { 1 };
        self.hangup();
        self.wait_for_reloads(want)
    }

    /// Waits until `count` reloads have ended and none runs; returns `/status`'s `reload`.
    pub fn wait_for_reloads(&self, count: u64) -> serde_json::Value {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let now = self.reload_status();
            if now["count"].as_u64().unwrap_or(0) >= count && now["running"] == false {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "reload {count} did not end in {READY_TIMEOUT:?}: {now}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit status code (None if killed by a signal).
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Cupd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One object of the config directory (a resource definition or a controller) in the
/// `cup.flipt.io/v1alpha1` API group; `body` is the JSON after `metadata`, without braces.
pub fn config_object(kind: &str, name: &str, body: &str) -> String {
    format!(
        r#"{{"apiVersion":"cup.flipt.io/v1alpha1","kind":"{kind}","metadata":{{"name":"{name}"}},{body}}}"#
    )
}

/// The `probe` guest in `dir` as the Controller `probe`, with a definition of each of
/// `kinds` (group `example.com`, version `v1`, plural: the Kind in lower case plus `s`, any
/// object) bound to it.
pub fn write_probe_controller(dir: &Path, kinds: &[&str]) {
    std::fs::copy(crate::probe_wasm(), dir.join("probe.wasm")).expect("copying the probe");
    let mut keys = Vec::new();
    for kind in kinds {
        let (singular, plural) = (kind.to_lowercase(), format!("{}s", kind.to_lowercase()));
        std::fs::write(
            dir.join(format!("{plural}-def.json")),
            config_object(
                "ResourceDefinition",
                &format!("{plural}.example.com"),
                &format!(r#""names":{{"kind":"{kind}","singular":"{singular}","plural":"{plural}"}},"spec":{{"group":"example.com","versions":{{"v1":{{"type":"object"}}}}}}"#),
            ),
        )
        .expect("writing a probe definition");
        keys.push(format!(r#""example.com/v1/{plural}""#));
    }
    for (file, kind, body) in [
        (
            "probe-ctl.json",
            "Controller",
            r#""spec":{"type":"wasm","spec":{"path":"probe.wasm"}}"#.to_owned(),
        ),
        (
            "probe-bind.json",
            "Binding",
            format!(
                r#""spec":{{"controller":"probe","resources":[{}]}}"#,
                keys.join(",")
            ),
        ),
    ] {
        std::fs::write(dir.join(file), config_object(kind, "probe", &body))
            .expect("writing the probe's controller and binding");
    }
}

/// PUT of the probe resource `kind`/`name` (namespace `default`, empty spec).
pub fn probe_put(cupd: &Cupd, kind: &str, name: &str) -> Response {
    cupd.put(
        &format!(
            "/apis/example.com/v1/namespaces/default/{}s/{name}",
            kind.to_lowercase()
        ),
        &format!(
            r#"{{"apiVersion":"example.com/v1","kind":"{kind}","metadata":{{"namespace":"default","name":"{name}"}},"spec":{{}}}}"#
        ),
    )
}

/// The template controller of the original's fixture in `dir`: the definition of
/// `test.cup.flipt.io/v1alpha1` Resources (`version_schema` is its v1alpha1 schema), the
/// `template` Controller and the Binding between them.
pub fn write_template_controller(dir: &Path, version_schema: &str) {
    let files = [
        (
            "tmpl-def.json",
            config_object(
                "ResourceDefinition",
                "resources.test.cup.flipt.io",
                &format!(
                    r#""names":{{"kind":"Resource","singular":"resource","plural":"resources"}},"spec":{{"group":"test.cup.flipt.io","versions":{{"v1alpha1":{version_schema}}}}}"#
                ),
            ),
        ),
        (
            "tmpl-ctl.json",
            config_object("Controller", "template", r#""spec":{"type":"template"}"#),
        ),
        (
            "tmpl-bind.json",
            config_object(
                "Binding",
                "template",
                r#""spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}"#,
            ),
        ),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("writing the template controller's config");
    }
}

/// The `cupd-scratch-*` entries of `dir` (cupd's scratch copies of the source), sorted.
pub fn scratch_copies(dir: &Path) -> Vec<String> {
    crate::dir_listing(dir)
        .into_iter()
        .filter(|n| n.starts_with("cupd-scratch-"))
        .collect()
}

/// Copies a directory tree (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("readable dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

/// The example Flipt controller by path in the config directory `dir`: its package (with
/// the definitions embedded) at `dir/wasm_path` and the `flipt` Controller naming it.
pub fn write_flipt_controller(dir: &Path, wasm_path: &str) {
    let wasm = dir.join(wasm_path);
    if let Some(parent) = wasm.parent() {
        std::fs::create_dir_all(parent).expect("creating the controller's directory");
    }
    std::fs::write(&wasm, crate::flipt_package()).expect("writing the controller");
    std::fs::write(
        dir.join("flipt.json"),
        config_object(
            "Controller",
            "flipt",
            &format!(r#""spec":{{"type":"wasm","spec":{{"path":"{wasm_path}"}}}}"#),
        ),
    )
    .expect("writing the Controller");
}

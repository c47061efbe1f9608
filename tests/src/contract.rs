//! Contract servers of the forges' pull-request APIs (`tests/contract/server.py`): each one
//! answers the operations cup's forge clients use, checks every request against the
//! provider's published API description vendored under `tests/contract/<provider>/`, and
//! records every request. Started in the pinned `contract-venv` (jsonschema); stopped by PID
//! when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The pinned validator of the request bodies.
const JSONSCHEMA: &str = "jsonschema==4.23.0";

/// A running contract server.
pub struct ContractServer {
    child: Child,
    port: u16,
    provider: String,
}

impl ContractServer {
    /// Serves `provider`'s description (`github`, `gitea` or `gitlab`), accepting only `token`;
    /// `labels` exist in the repository (Gitea resolves them to ids); `users` are the user
    /// names that exist.
    pub fn start(provider: &str, token: &str, labels: &[&str], users: &[&str]) -> ContractServer {
        let python = crate::python::venv_python("contract-venv", &[JSONSCHEMA]);
        let dir = crate::repo_root().join("tests/contract");
        let mut child = Command::new(python)
            .arg(dir.join("server.py"))
            .args(["--provider", provider, "--token", token])
            .arg("--description")
            .arg(Self::description(provider))
            .args(["--labels", &labels.join(","), "--users", &users.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the contract server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the contract server's port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the contract server said {line:?}"));
        ContractServer {
            child,
            port,
            provider: provider.to_owned(),
        }
    }

    /// The vendored, trimmed description of `provider`.
    pub fn description(provider: &str) -> PathBuf {
        crate::repo_root().join(format!("tests/contract/{provider}/description.json"))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API base a client is given: the origin plus the description's base path.
    pub fn api_base(&self) -> String {
        match self.provider.as_str() {
            "gitea" => format!("{}/api/v1", self.origin()),
            // GitLab's description spells `/api/v4` in every path.
            "gitlab" => format!("{}/api/v4", self.origin()),
            _ => self.origin(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn control(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let response = crate::http::request(
            self.port,
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("the contract server answers");
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    /// Every API request so far: `method`, `path`, `query`, `body` (text), `auth` (whether
    /// the token header was there), `status`, `violations`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.control("GET", "/__contract/requests", "")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The pull requests it holds.
    pub fn pulls(&self) -> Vec<serde_json::Value> {
        self.control("GET", "/__contract/pulls", "")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every violation of the description so far, with the request that made it.
    pub fn violations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .flat_map(|r| {
                let what = format!("{} {}?{}", r["method"], r["path"], r["query"]);
                r["violations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |v| format!("{what}: {}", v.as_str().unwrap_or_default()))
            })
            .collect()
    }

    /// Panics with the violations, if there are any.
    pub fn assert_no_violations(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "requests the {} API description does not allow:\n{}",
            self.provider,
            violations.join("\n")
        );
    }

    /// Answers the next `count` API requests with `status` (429, 403 as an exhausted rate
    /// limit, 502), with `Retry-After: retry_after` and/or a rate-limit reset `reset_in`
    /// seconds from now (`X-RateLimit-Reset`; GitLab `RateLimit-Reset`).
    pub fn fault(&self, status: u16, count: u32, retry_after: Option<&str>, reset_in: Option<u64>) {
        let body = serde_json::json!({
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "reset_in": reset_in,
        });
        self.control("POST", "/__contract/faults", &body.to_string());
    }
}

impl Drop for ContractServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

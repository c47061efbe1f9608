//! Shared by `cupd_git_auth`, `cupd_git_ssh`, `cupd_git_limits`, `cupd_git_hostile` and
//! `cupd_git_fetch`: the original's template fixture, a bare remote seeded with it (read back with the `git` CLI),
//! and cupd started on a Git URL.

use std::path::PathBuf;

use cup_e2e::cupd::{Cupd, CupdConfig, write_template_controller};
use cup_e2e::shared_code_cache;

pub const FOO: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{"foo":"bar"},"annotations":{}},"spec":{"foo":"bar"}}"#;
pub const BAZ_PAYLOAD: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"baz","namespace":"default","labels":{"foo":"bar"},"annotations":{}},"spec":{}}"#;
pub const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";
pub const BAZ_FILE: &str = "default/test.cup.flipt.io-v1alpha1-Resource-baz.json";

pub use cup_e2e::git;
/// The config directory (template controller), a private store and git cache, and
/// `root/remote.git`: a bare repository (default branch `main`) holding resource `foo`.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    config_dir: PathBuf,
    source_dir: PathBuf,
    store_dir: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        write_template_controller(
            &config,
            r#"{"type":"object","properties":{"spec":{"type":"object"}}}"#,
        );
        for dir in ["store", "source", "root"] {
            std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
        }
        let root = tmp.path().join("root");
        git(&root, &["init", "-q", "--bare", "-b", "main", "remote.git"]);
        git(
            tmp.path(),
            &[
                "clone",
                "-q",
                root.join("remote.git").to_str().unwrap(),
                "seed",
            ],
        );
        let seed = tmp.path().join("seed");
        std::fs::create_dir_all(seed.join("default")).unwrap();
        std::fs::write(
            seed.join("default/test.cup.flipt.io-v1alpha1-Resource-foo.json"),
            FOO,
        )
        .unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "seed"]);
        git(&seed, &["push", "-q", "origin", "main"]);
        Fixture {
            config_dir: config,
            source_dir: tmp.path().join("source"),
            store_dir: tmp.path().join("store"),
            tmp,
        }
    }

    /// The directory whose `remote.git` the servers export.
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    pub fn bare(&self) -> PathBuf {
        self.root().join("remote.git")
    }

    pub fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// A file in the fixture's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// cupd on the Git source `url`, with `extra` flags and environment.
    pub fn config(&self, url: &str, extra: &[&str], env: &[(&str, &str)]) -> CupdConfig<'_> {
        let mut cfg = CupdConfig::new(&self.config_dir, &self.source_dir, &self.store_dir);
        cfg.args = [
            "-api-source",
            "git",
            "-api-git-repo",
            url,
            "--git-cache",
            self.cache().to_str().unwrap(),
            "--git-fetch-interval",
            "0s",
            "--code-cache",
            shared_code_cache().to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        cfg.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cfg
    }

    /// The single bare cache directory cupd made.
    pub fn cache_repo(&self) -> PathBuf {
        std::fs::read_dir(self.cache())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "git"))
            .expect("a cache repository")
    }
}

/// Puts resource `baz` through cupd and checks, with the `git` CLI on the server's bare
/// repository, that exactly that file arrived on the proposal branch. Returns the 202 body.
pub fn put_baz_and_read_back(cupd: &Cupd, fixture: &Fixture) -> serde_json::Value {
    let response = cupd.request(
        "PUT",
        &format!("{RESOURCES}/baz"),
        &[("Content-Type", "application/json")],
        BAZ_PAYLOAD.as_bytes(),
    );
    assert_eq!(response.status, 202, "{}\n{}", response.text(), cupd.log());
    let body = response.json();
    let branch = body["proposal"]["branch"].as_str().unwrap().to_owned();
    let commit = body["proposal"]["commit"].as_str().unwrap().to_owned();
    assert_eq!(
        branch,
        format!("cup/proposal/{}", body["id"].as_str().unwrap())
    );
    let bare = fixture.bare();
    assert_eq!(git(&bare, &["rev-parse", &branch]), commit);
    assert_eq!(
        git(&bare, &["diff", "--name-status", "main", &branch]),
        format!("A\t{BAZ_FILE}")
    );
    let written: serde_json::Value =
        serde_json::from_str(&git(&bare, &["show", &format!("{branch}:{BAZ_FILE}")])).unwrap();
    assert_eq!(written["metadata"]["name"], "baz");
    body
}

/// cupd refused to start: its log.
pub fn refused(config: &CupdConfig<'_>) -> String {
    match Cupd::try_start(config) {
        Ok(cupd) => panic!("cupd must not start:\n{}", cupd.log()),
        Err(log) => log,
    }
}

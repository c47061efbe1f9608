//! Shared by the `cli_*` tests: `cup` invocations isolated from the machine's config, the
//! original cup's template fixture (its `build/testing/template/testdata`) served by a real
//! `cupd` (the `cup_e2e::cupd` harness), and snapshots of a source tree to prove a failure
//! changed nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cup_e2e::bin;
use cup_e2e::cupd::{Cupd, CupdConfig};

/// What a `cup` run gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished command gave.
    pub fn of(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        self.ok_as("cup")
    }

    /// Asserts success of the command described by `what` and returns stdout.
    pub fn ok_as(&self, what: &str) -> &str {
        assert_eq!(
            self.code, 0,
            "{what} failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts the failure shape every error must have (exit 1, nothing on stdout, exactly
    /// one line on stderr starting with `cup: `) and returns that line.
    pub fn one_line_error(&self) -> &str {
        assert_eq!(
            self.code, 1,
            "expected exit 1:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout on error");
        let line = self
            .stderr
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("stderr ends with a newline: {:?}", self.stderr));
        assert!(
            !line.contains('\n'),
            "one line on stderr: {:?}",
            self.stderr
        );
        assert!(line.starts_with("cup: "), "{line}");
        line
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// `cup` with HOME and XDG_CONFIG_HOME pointing into `home`, so the machine's config is
/// neither read nor written, and no EDITOR or CUP_* from the environment leaks in.
pub struct Cup {
    pub home: PathBuf,
    pub env: Vec<(String, String)>,
    /// The working directory, when not the test's.
    pub dir: Option<PathBuf>,
}

impl Cup {
    pub fn new(home: &Path) -> Cup {
        Cup {
            home: home.to_owned(),
            env: Vec::new(),
            dir: None,
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Cup {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs in `dir`, as a user at a shell there would.
    pub fn in_dir(mut self, dir: &Path) -> Cup {
        self.dir = Some(dir.to_owned());
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, "")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut cmd = Command::new(bin("cup"));
        cmd.args(args)
            .env("HOME", &self.home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CUP_CONFIG")
            .env_remove("CUP_STORE")
            .env_remove("EDITOR")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("running cup");
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes()).expect("stdin");
        }
        Run::of(child.wait_with_output().expect("waiting for cup"))
    }
}

/// Every file under `dir` with its bytes: equal snapshots mean nothing changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("readable dir")
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_owned();
                out.insert(rel, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

// ---- the original cup's integration fixture ----

/// The definition of `build/testing/template/testdata/config/resources.json`.
pub const DEFINITION: &str = r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object","properties":{"spec":{"type":"object","properties":{"foo":{"type":"string"}},"additionalProperties":false}},"additionalProperties":true}}}}"#;

pub const FOO: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo","labels":{"foo":"bar"},"annotations":{}},"spec":{"foo":"bar"}}"#;
pub const BAR: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"bar","labels":{"bar":"baz"},"annotations":{}},"spec":{"foo":"baz"}}"#;
/// What the original's integration test applies on stdin.
pub const BAZ: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"name":"baz","namespace":"default","labels":{"baz":"foo"},"annotations":{}},"spec":{"foo":"baz"}}"#;

pub const ZERO_RESULT: &str =
    r#"{"id":"00000000000000000000000000","empty":false,"proposal":null}"#;

pub fn file_of(name: &str) -> String {
    format!("default/test.cup.flipt.io-v1alpha1-Resource-{name}.json")
}

/// A cupd with the template controller over a copy of the fixture's base directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cupd: Cupd,
    pub cup: Cup,
}

impl Fixture {
    pub fn start() -> Fixture {
        Fixture::start_with(|_| Vec::new(), None)
    }

    /// With extra cupd arguments (made from the fixture's directory, before cupd starts) and
    /// a readiness probe (for HTTPS).
    pub fn start_with(
        args: impl FnOnce(&Path) -> Vec<String>,
        ready_probe: Option<&dyn Fn(u16) -> bool>,
    ) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        let source = dir.path().join("source");
        std::fs::create_dir_all(&config).expect("mkdir");
        std::fs::create_dir_all(source.join("default")).expect("mkdir");
        std::fs::write(config.join("resources.json"), DEFINITION).expect("write");
        std::fs::write(
            config.join("template.json"),
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"template"},"spec":{"type":"template"}}"#,
        )
        .expect("write");
        std::fs::write(
            config.join("api-binding.json"),
            r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"template"},"spec":{"controller":"template","resources":["test.cup.flipt.io/v1alpha1/resources"]}}"#,
        )
        .expect("write");
        for (name, body) in [("foo", FOO), ("bar", BAR)] {
            std::fs::write(source.join(file_of(name)), body).expect("write");
        }
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("mkdir");
        let store = dir.path().join("store");
        let mut cupd_config = CupdConfig::new(&config, &source, &store);
        cupd_config.args = args(dir.path());
        cupd_config.ready_probe = ready_probe;
        let cupd = Cupd::start(&cupd_config);
        Fixture {
            cup: Cup::new(&home),
            dir,
            cupd,
        }
    }

    pub fn source(&self) -> PathBuf {
        self.dir.path().join("source")
    }

    /// `cup -a <cupd> -n default <args>`, as the original's integration test calls it
    /// (`-n default` only when `args` has no `-n`).
    pub fn cup(&self, args: &[&str]) -> Run {
        self.cup_stdin(args, "")
    }

    pub fn cup_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let address = self.cupd.base_url();
        let mut all = vec!["-a", &address];
        if !args.contains(&"-n") {
            all.extend(["-n", "default"]);
        }
        all.extend_from_slice(args);
        self.cup.run_stdin(&all, stdin)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

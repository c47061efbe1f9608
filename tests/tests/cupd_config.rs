//! cupd's command line: Go-style flags, CUPD_* variables and a config file (YAML or JSON,
//! nested keys joined with '-') with precedence flag > environment > file; sources and
//! listeners it does not support are refused at startup with a clear message.

use assert_cmd::Command;
use cup_e2e::cupd::{Cupd, CupdConfig, free_port, request};
use cup_e2e::http::ClosedPort;
use predicates::str::contains;

fn cupd() -> Command {
    let mut c = Command::new(cup_e2e::bin("cupd"));
    c.env_remove("RUST_LOG");
    c
}

fn template_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("def.json"), r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"ResourceDefinition","metadata":{"name":"resources.test.cup.flipt.io"},"names":{"kind":"Resource","singular":"resource","plural":"resources"},"spec":{"group":"test.cup.flipt.io","versions":{"v1alpha1":{"type":"object"}}}}"#).unwrap();
    dir
}

#[test]
fn unsupported_sources_and_tailscale_are_refused_at_startup() {
    let config = template_config();
    let args = |extra: &[&str]| {
        let mut v = vec![
            "serve".to_owned(),
            "-api-resources".into(),
            config.path().display().to_string(),
            "-api-address".into(),
            "127.0.0.1:0".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    cupd()
        .args(args(&["-api-source", "svn"]))
        .assert()
        .failure()
        .stderr(contains("unknown -api-source \"svn\""));
    cupd()
        .args(args(&["-api-source=git"]))
        .assert()
        .failure()
        .stderr(contains("needs -api-git-repo"));
    cupd()
        .args(args(&[]))
        .env("CUPD_API_SOURCE", "git")
        .assert()
        .failure()
        .stderr(contains("needs -api-git-repo"));
    cupd()
        .args(args(&["-tailscale-hostname", "cup"]))
        .assert()
        .failure()
        .stderr(contains("Tailscale"));
    cupd()
        .args(args(&["-api-local-path", "/nonexistent/dir"]))
        .assert()
        .failure()
        .stderr(contains("local source /nonexistent/dir"));
    cupd()
        .args(args(&["-scratch-dir", "/nonexistent/dir"]))
        .assert()
        .failure()
        .stderr(contains("-scratch-dir /nonexistent/dir: not a directory"));
    cupd().assert().failure().stderr(contains("Usage"));
    cupd()
        .args(["serve", "-h"])
        .assert()
        .success()
        .stdout(contains("--api-address"));
}

#[test]
fn a_bad_config_directory_stops_startup_naming_the_file() {
    let config = template_config();
    std::fs::write(
        config.path().join("bad.json"),
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"x"}}"#,
    )
    .unwrap();
    cupd()
        .args(["serve", "-api-address", "127.0.0.1:0", "-api-resources"])
        .arg(config.path())
        .assert()
        .failure()
        .stderr(contains(
            "parsing api resource \"bad.json\": unexpected APIVersion",
        ))
        .stderr(contains("pass -api-resources DIR"));
}

#[test]
fn config_file_and_environment_actually_work() {
    let config = template_config();
    let source = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let file_dir = tempfile::tempdir().unwrap();
    let file = file_dir.path().join("cupd.yml");
    // Nested keys, YAML: the listen address, sources and store all come from the file.
    let write_file = |port: u16| {
        std::fs::write(
            &file,
            format!(
                "api:\n  address: \"127.0.0.1:{port}\"\n  resources: {}\n  local:\n    path: {}\nstore: {}\nlog-level: debug\n",
                config.path().display(),
                source.path().display(),
                store.path().display()
            ),
        )
        .unwrap();
    };
    let from_file = serves_on_a_free_port(|port| {
        write_file(port);
        let mut command = std::process::Command::new(cup_e2e::bin("cupd"));
        command.args(["-config"]).arg(&file).arg("serve");
        command
    });
    assert!(
        from_file.is_ok(),
        "cupd configured only by its config file did not serve: {from_file:?}"
    );

    // The environment beats the file; a flag beats both.
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.env = vec![
        ("CUPD_CONFIG".into(), file.display().to_string()),
        ("CUPD_CONTROLLER_TIMEOUT".into(), "nonsense".into()),
    ];
    let refused = Cupd::try_start(&cfg)
        .err()
        .expect("a bad CUPD_CONTROLLER_TIMEOUT stops cupd");
    assert!(
        refused.contains("invalid duration"),
        "env values are parsed: {refused}"
    );
    // The file names a port nothing listens on and nothing else can take.
    let closed = ClosedPort::new();
    write_file(closed.port());
    let from_env = serves_on_a_free_port(|env_port| {
        let mut command = std::process::Command::new(cup_e2e::bin("cupd"));
        command
            .args(["serve", "--config"])
            .arg(&file)
            .env("CUPD_API_ADDRESS", format!("127.0.0.1:{env_port}"));
        command
    });
    assert!(
        from_env.is_ok(),
        "CUPD_API_ADDRESS did not override the file: {from_env:?}"
    );

    let json_file = file_dir.path().join("cupd.json");
    std::fs::write(&json_file, r#"{"no-such-flag": 1}"#).unwrap();
    cupd()
        .args(["serve", "-config"])
        .arg(&json_file)
        .assert()
        .failure()
        .stderr(contains("unknown key \"no-such-flag\""));
}

/// Starts the cupd that `command(port)` configures to listen on `port`, on a free port,
/// and waits until that process (not another test's server) answers `/readyz` there; then
/// stops it. The port may be taken between choosing and binding it: cupd is then started
/// again on another. `Err(log)` if it exits for another reason or is not ready in 60 s.
fn serves_on_a_free_port(command: impl Fn(u16) -> std::process::Command) -> Result<(), String> {
    for _ in 0..5 {
        let port = free_port();
        let log_dir = tempfile::tempdir().unwrap();
        let log_path = log_dir.path().join("cupd.log");
        let mut child = command(port)
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let outcome = loop {
            if log().contains("cupd listening")
                && request(port, "GET", "/readyz", &[], b"").is_some_and(|r| r.status == 200)
            {
                break Ok(());
            }
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                break Err(log());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        };
        let _ = child.kill();
        let _ = child.wait();
        match outcome {
            Err(log) if log.contains(&format!("127.0.0.1:{port}: Address already in use")) => {
                continue;
            }
            outcome => return outcome,
        }
    }
    Err("no free port".into())
}

#[test]
fn strict_digests_refuse_tags() {
    let config = template_config();
    std::fs::write(config.path().join("ctl.json"), r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"tagged"},"spec":{"type":"wasm","spec":{"image":"127.0.0.1:9/cup/flipt:latest"}}}"#).unwrap();
    let (source, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec!["--strict-digests".into()];
    let cupd = Cupd::start(&cfg);
    let tagged = &cupd.get("/status").json()["controllers"][0];
    assert_eq!(tagged["state"], "failed");
    assert!(
        tagged["error"]
            .as_str()
            .unwrap()
            .contains("--strict-digests"),
        "{tagged}"
    );
}

/// A configuration that serves nothing says so, in the log and in `/status`, instead of
/// leaving the user to meet `unknown resource type` on the first request.
#[test]
fn a_controller_or_a_config_that_serves_nothing_is_a_warning() {
    let (source, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // A module with no embedded definitions, named by no Binding.
    let config = tempfile::tempdir().unwrap();
    std::fs::copy(cup_e2e::probe_wasm(), config.path().join("probe.wasm")).unwrap();
    std::fs::write(
        config.path().join("probe-ctl.json"),
        cup_e2e::cupd::config_object(
            "Controller",
            "probe",
            r#""spec":{"type":"wasm","spec":{"path":"probe.wasm"}}"#,
        ),
    )
    .unwrap();
    let cupd = Cupd::start(&CupdConfig::new(config.path(), source.path(), store.path()));
    let status = cupd.get("/status").json();
    let probe = &status["controllers"][0];
    assert_eq!(probe["state"], "loaded", "{status}");
    let warning = probe["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("serves no resource type: its module embeds no definitions")
            && warning.contains("cup-embed"),
        "{status}"
    );
    assert!(
        cupd.log().contains("serves no resource type"),
        "{}",
        cupd.log()
    );
    drop(cupd);

    // A config directory with no Controller at all.
    let empty = tempfile::tempdir().unwrap();
    let cupd = Cupd::start(&CupdConfig::new(empty.path(), source.path(), store.path()));
    let status = cupd.get("/status").json();
    let warning = status["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("holds no Controller, so no resource type is served"),
        "{status}"
    );
    assert!(cupd.log().contains("holds no Controller"), "{}", cupd.log());
}

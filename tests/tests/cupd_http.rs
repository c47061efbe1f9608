//! cupd's HTTP side under hostile clients, through the real binary: request methods that
//! would each become a metrics series, bodies with a million schema violations, connections
//! that never finish their request head, stay idle, or send their body slowly, more
//! connections than cupd has file descriptors, and the startup warning for a listener on a
//! non-loopback address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cup_e2e::cupd::{Cupd, CupdConfig, write_template_controller};

/// `spec.items` must be an array of strings: every number in it is one violation.
const SCHEMA: &str = r#"{"type":"object","properties":{"spec":{"type":"object","properties":{"items":{"type":"array","items":{"type":"string"}}}}}}"#;
const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";

struct Fixture {
    config: tempfile::TempDir,
    source: tempfile::TempDir,
    store: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let config = tempfile::tempdir().unwrap();
    write_template_controller(config.path(), SCHEMA);
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("default")).unwrap();
    Fixture {
        config,
        source,
        store: tempfile::tempdir().unwrap(),
    }
}

fn start(f: &Fixture, args: &[&str]) -> Cupd {
    let mut config = CupdConfig::new(f.config.path(), f.source.path(), f.store.path());
    config.args = args.iter().map(|a| (*a).to_owned()).collect();
    Cupd::start(&config)
}

fn connect(cupd: &Cupd) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", cupd.port())).expect("connecting to cupd");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or `limit` passes): how long it took, and
/// whether it closed.
fn time_to_close(stream: &mut TcpStream, limit: Duration) -> (Duration, bool) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (started.elapsed(), true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (started.elapsed(), true),
        }
    }
    (started.elapsed(), false)
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_stay_small_after_many_distinct_methods() {
    let f = fixture();
    let cupd = start(&f, &[]);
    let pid = cupd.pid().unwrap();
    let rss_before = vm_rss_kib(pid);
    let padding = "M".repeat(1000);
    for i in 0..500 {
        let method = format!("X{i:04}{padding}");
        let answer = cupd.request(&method, "/healthz", &[], b"");
        assert_eq!(answer.status, 405, "{method:.8}…");
    }
    let metrics = cupd.get("/metrics");
    let rss_after = vm_rss_kib(pid);
    println!(
        "500 distinct 1 KB methods: /metrics {} bytes; cupd VmRSS {rss_before} -> {rss_after} KiB",
        metrics.body.len()
    );
    assert!(
        metrics.body.len() < 64 * 1024,
        "/metrics grew to {} bytes",
        metrics.body.len()
    );
    let text = metrics.text();
    assert!(
        text.contains(
            r#"cupd_http_requests_total{method="other",route="/healthz",code="405"} 500"#
        ),
        "{text}"
    );
    assert!(!text.contains("X0001"), "a raw method is a label value");
}

#[test]
fn schema_violations_are_capped_and_counted() {
    let f = fixture();
    let cupd = start(&f, &[]);
    let items = vec!["1"; 20_000].join(",");
    let body = format!(r#"{{"spec":{{"items":[{items}]}}}}"#);
    let path = format!("{RESOURCES}/many");
    let text = cupd.request("PUT", &path, &[], body.as_bytes());
    println!(
        "a {} byte body with 20000 violations: 400 body of {} bytes",
        body.len(),
        text.body.len()
    );
    assert_eq!(text.status, 400);
    assert!(text.body.len() < 64 * 1024, "{} bytes", text.body.len());
    let lines: Vec<String> = text.text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 101, "100 violations and the count of the rest");
    assert!(lines[0].starts_with("spec.items.0: "), "{}", lines[0]);
    assert_eq!(lines[100], "… and 19900 more");

    let json = cupd.request(
        "PUT",
        &path,
        &[("Accept", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(json.status, 400);
    assert!(json.body.len() < 64 * 1024, "{} bytes", json.body.len());
    let doc = json.json();
    assert_eq!(doc["errors"].as_array().unwrap().len(), 100);
    assert_eq!(doc["omitted"], 19_900);

    // Past 50,000 JSON values only the first violation is listed: finding them all would
    // mean building every one of them first.
    let items = vec!["1"; 200_000].join(",");
    let huge = format!(r#"{{"spec":{{"items":[{items}]}}}}"#);
    let before = cupd.status_kib("VmHWM");
    let text = cupd.request("PUT", &path, &[], huge.as_bytes());
    let after = cupd.status_kib("VmHWM");
    println!(
        "a {} byte body with 200000 violations: 400 body of {} bytes, peak RSS {before} -> {after} KiB",
        huge.len(),
        text.body.len()
    );
    assert_eq!(text.status, 400);
    let lines: Vec<String> = text.text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("spec.items.0: "), "{}", lines[0]);
    assert!(
        lines[1].contains("more than 50000 JSON values"),
        "{}",
        lines[1]
    );
    assert!(after < before + 64 * 1024, "{before} -> {after} KiB");

    // A message quoting a huge value is cut.
    let long = format!(r#"{{"spec":{{"items":"{}"}}}}"#, "x".repeat(100_000));
    let one = cupd.request("PUT", &path, &[], long.as_bytes());
    assert_eq!(one.status, 400);
    assert!(one.body.len() < 2_000, "{} bytes", one.body.len());
    assert!(
        !f.source
            .path()
            .join("default")
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
}

#[test]
fn slow_and_silent_request_heads_are_closed_after_the_header_timeout() {
    let f = fixture();
    let cupd = start(&f, &["--http-header-timeout", "1s"]);
    let mut silent = connect(&cupd);
    let mut slow = connect(&cupd);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One header line every 300 ms: never a complete head.
    let trickle = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for i in 0..40 {
                std::thread::sleep(Duration::from_millis(300));
                if slow.write_all(format!("X-{i}: y\r\n").as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    let (silent_after, silent_closed) = time_to_close(&mut silent, Duration::from_secs(10));
    let (slow_after, slow_closed) = time_to_close(&mut slow, Duration::from_secs(10));
    println!("silent connection closed after {silent_after:?}, trickling one after {slow_after:?}");
    assert!(silent_closed, "a connection that sends nothing stays open");
    assert!(slow_closed, "a head sent one line at a time stays open");
    assert!(silent_after < Duration::from_secs(5));
    let _ = trickle.join();
    assert_eq!(cupd.get("/healthz").status, 200);
    assert!(
        cupd.get("/metrics")
            .text()
            .contains(r#"cupd_http_connection_timeouts_total{timeout="header"}"#)
    );
}

#[test]
fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let f = fixture();
    let cupd = start(
        &f,
        &["--http-idle-timeout", "1s", "--http-header-timeout", "20s"],
    );
    let mut stream = connect(&cupd);
    for _ in 0..2 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"ok\n") {
            let n = stream.read(&mut buf).expect("an answer");
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        // Less than the idle timeout between requests: the connection is kept.
        std::thread::sleep(Duration::from_millis(500));
    }
    let (after, closed) = time_to_close(&mut stream, Duration::from_secs(15));
    println!("idle keep-alive connection closed after {after:?} more");
    assert!(closed, "an idle keep-alive connection stays open");
    assert!(
        after < Duration::from_secs(5),
        "closed by the idle timeout (1 s), not the header timeout (20 s): {after:?}"
    );
}

#[test]
fn a_request_body_sent_too_slowly_is_a_408() {
    let f = fixture();
    let cupd = start(&f, &["--http-body-timeout", "1s"]);
    let mut stream = connect(&cupd);
    stream
        .write_all(
            format!(
                "PUT {RESOURCES}/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"spec\":"
            )
            .as_bytes(),
        )
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    println!(
        "slow body answered after {:?}: {answer:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn new_connections_wait_while_the_connection_limit_is_reached() {
    let f = fixture();
    let cupd = start(
        &f,
        &[
            "--http-max-connections",
            "4",
            "--http-header-timeout",
            "60s",
        ],
    );
    let held: Vec<TcpStream> = (0..4).map(|_| connect(&cupd)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (tx, rx) = mpsc::channel();
    let port = cupd.port();
    std::thread::spawn(move || {
        let _ = tx.send(cup_e2e::cupd::request(port, "GET", "/healthz", &[], b""));
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "a fifth connection was served while four were open"
    );
    drop(held);
    let answer = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("served once connections were freed")
        .expect("an answer");
    assert_eq!(answer.status, 200);
}

#[test]
fn more_silent_connections_than_descriptors_do_not_take_cupd_down() {
    let f = fixture();
    let mut config = CupdConfig::new(f.config.path(), f.source.path(), f.store.path());
    config.args = vec!["--http-header-timeout".into(), "2s".into()];
    let cupd = Cupd::start_under(&config, &["prlimit", "--nofile=128:128"]);
    // 200 connections that never send a byte: more than the 128 descriptors cupd has.
    let silent: Vec<TcpStream> = (0..200).map(|_| connect(&cupd)).collect();
    let started = Instant::now();
    let health = cup_e2e::cupd::request(cupd.port(), "GET", "/healthz", &[], b"");
    println!(
        "/healthz behind 200 silent connections (128 descriptors): {:?} after {:?}",
        health.as_ref().map(|r| r.status),
        started.elapsed()
    );
    assert_eq!(health.map(|r| r.status), Some(200));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        cupd.log().contains("--http-max-connections lowered"),
        "{}",
        cupd.log()
    );
    drop(silent);
    assert_eq!(cupd.get("/readyz").status, 200);
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let f = fixture();
    let config = CupdConfig::new(f.config.path(), f.source.path(), f.store.path());
    let cupd = Cupd::start_under(&config, &["prlimit", "--nofile=64:4096"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", cupd.pid().unwrap())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    println!("{line}");
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"]
    );
    assert!(cupd.log().contains("raised the open-file limit"));
}

/// cupd on `address` (port 0), until it logs that it listens; its log so far.
fn startup_log(f: &Fixture, address: &str) -> String {
    startup_log_with(f, address, &[])
}

fn startup_log_with(f: &Fixture, address: &str, extra: &[&str]) -> String {
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("cupd.log");
    let mut child = std::process::Command::new(cup_e2e::bin("cupd"))
        .args(["serve", "-api-address", address, "-api-resources"])
        .arg(f.config.path())
        .arg("-api-local-path")
        .arg(f.source.path())
        .arg("--store")
        .arg(f.store.path())
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    while Instant::now() < deadline && !log.contains("cupd listening") {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("cupd listening"), "{log}");
    log
}

#[test]
fn a_non_loopback_listener_is_warned_about() {
    let f = fixture();
    let everywhere = startup_log(&f, "0.0.0.0:0");
    assert!(
        everywhere.contains("non-loopback address without authentication"),
        "{everywhere}"
    );
    let loopback = startup_log(&f, "127.0.0.1:0");
    assert!(!loopback.contains("non-loopback"), "{loopback}");

    // With authentication on, the warning is about tokens in clear instead.
    let files = tempfile::tempdir().unwrap();
    let tokens = files.path().join("tokens.csv");
    let policy = files.path().join("policy.json");
    std::fs::write(&tokens, "t,u,1\n").unwrap();
    std::fs::write(
        &policy,
        r#"{"rules": [{"users": ["u"], "verbs": ["get"], "paths": ["/status"]}]}"#,
    )
    .unwrap();
    let access = [
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization-policy-file",
        policy.to_str().unwrap(),
    ];
    let guarded = startup_log_with(&f, "0.0.0.0:0", &access);
    assert!(!guarded.contains("without authentication"), "{guarded}");
    assert!(
        guarded.contains("bearer tokens are accepted over plain HTTP on a non-loopback address"),
        "{guarded}"
    );
    let guarded_loopback = startup_log_with(&f, "127.0.0.1:0", &access);
    assert!(
        !guarded_loopback.contains("non-loopback"),
        "{guarded_loopback}"
    );
}

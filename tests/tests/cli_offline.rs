//! `cup` commands that need no server: contexts in the config file, shell completions,
//! and `--help` with examples everywhere.

use crate::cli_common::*;
use cup_e2e::http::ClosedPort;
use serde_json::json;

fn home() -> (tempfile::TempDir, Cup) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cup = Cup::new(dir.path());
    (dir, cup)
}

#[test]
fn without_a_config_file_the_default_context_is_used_and_nothing_is_created() {
    let (dir, cup) = home();
    let elsewhere = dir.path().join("elsewhere/config.json");
    let elsewhere_arg = elsewhere.to_string_lossy().into_owned();
    for args in [
        &["config", "context"][..],
        &["-c", &elsewhere_arg, "config", "context"],
        &["-c", &elsewhere_arg, "c", "ctx", "list"],
    ] {
        assert_eq!(
            cup.run(args).ok(),
            "NAME      ADDRESS                 NAMESPACE   AUTH   CURRENT\ndefault   http://localhost:8181   default     -      *\n",
            "{args:?}"
        );
    }
    assert!(!elsewhere.exists());
    assert!(
        !dir.path().join(".config").exists(),
        "the default config file is not created (the original did, even with -c elsewhere)"
    );
    assert_eq!(
        cup.run(&["-o", "json", "config", "context"]).json(),
        json!([{"name": "default", "address": "http://localhost:8181", "namespace": "default", "current": true}])
    );
}

#[test]
fn add_use_set_delete_contexts() {
    let (dir, cup) = home();
    let config = dir.path().join("cup.json");
    let c = config.to_string_lossy().into_owned();
    let ctx = |args: &[&str]| {
        let mut all = vec!["-c", c.as_str(), "config", "context"];
        all.extend_from_slice(args);
        cup.run(&all)
    };

    ctx(&[
        "add",
        "prod",
        "--address",
        "https://cup.example.com",
        "--namespace",
        "team",
    ])
    .ok();
    ctx(&["add", "dev", "-a", "http://127.0.0.1:9"]).ok();
    assert_eq!(
        ctx(&[]).ok(),
        "NAME      ADDRESS                   NAMESPACE   AUTH   CURRENT\n\
         default   http://localhost:8181     default     -      *\n\
         dev       http://127.0.0.1:9        default     -\n\
         prod      https://cup.example.com   team        -\n"
    );
    assert_eq!(
        ctx(&["add", "prod", "--address", "http://x"]).one_line_error(),
        "cup: context \"prod\" already exists (change it with `cup --context prod config context set key=value`)"
    );
    assert_eq!(
        ctx(&["add", "x"]).one_line_error(),
        "cup: a new context needs an address: cup config context add x --address URL"
    );

    ctx(&["use", "prod"]).ok();
    ctx(&["set", "namespace=staging"]).ok();
    cup.run(&[
        "-c",
        &c,
        "--context",
        "dev",
        "config",
        "context",
        "set",
        "address=http://127.0.0.1:10",
    ])
    .ok();
    let file = json(&std::fs::read_to_string(&config).expect("config written"));
    assert_eq!(file["current_context"], "prod");
    assert_eq!(file["contexts"]["prod"]["namespace"], "staging");
    assert_eq!(file["contexts"]["dev"]["address"], "http://127.0.0.1:10");

    assert_eq!(
        ctx(&["set", "colour=red"]).one_line_error(),
        "cup: unknown config key \"colour\" (should be one of: address, namespace, token_file, client_certificate, client_key, certificate_authority, token (remove only), exec (remove only))"
    );
    assert_eq!(
        ctx(&["set", "namespace"]).one_line_error(),
        "cup: expected an argument of the form key=value, found \"namespace\""
    );
    assert_eq!(
        ctx(&["delete", "prod"]).one_line_error(),
        "cup: context \"prod\" is the current context; switch first (`cup config context use OTHER`) or pass --force"
    );
    ctx(&["rm", "default"]).ok();
    ctx(&["delete", "prod", "--force"]).ok();
    let file = json(&std::fs::read_to_string(&config).expect("config"));
    assert_eq!(file["current_context"], "");
    assert_eq!(
        file["contexts"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["dev".to_owned()])
    );
    // No current context: resource commands say how to fix it.
    assert_eq!(
        cup.run(&["-c", &c, "get", "flags"]).one_line_error(),
        "cup: no current context (contexts: dev); pick one with `cup config context use NAME` or pass -a URL"
    );
    // Only the config file is in the directory (the write was temp file + rename).
    assert_eq!(cup_e2e::dir_listing(dir.path()), ["cup.json"]);
}

#[test]
fn the_default_file_lives_under_xdg_config_home_and_the_context_is_used() {
    let (dir, cup) = home();
    let xdg = dir.path().join("xdg");
    let cup = cup.with_env("XDG_CONFIG_HOME", &xdg.to_string_lossy());
    let closed = ClosedPort::new();
    let port = closed.port();
    cup.run(&[
        "config",
        "context",
        "add",
        "dead",
        "--address",
        &format!("http://127.0.0.1:{port}"),
        "--use",
    ])
    .ok();
    assert!(xdg.join("cup/config.json").exists());
    // The current context's address is where requests go.
    let e = cup.run(&["get", "flags"]);
    assert!(
        e.one_line_error().starts_with(&format!(
            "cup: cannot reach cupd at http://127.0.0.1:{port}: "
        )),
        "{}",
        e.stderr
    );
    // A broken file is one clear line.
    std::fs::write(xdg.join("cup/config.json"), "{\"contexts\": [}").expect("write");
    let e = cup.run(&["get", "flags"]);
    let line = e.one_line_error();
    assert!(
        line.contains("is not a valid cup config file") && line.contains("line 1 column"),
        "{line}"
    );
}

#[test]
fn completions_for_each_shell() {
    let (_dir, cup) = home();
    for (shell, marker) in [
        ("bash", "_cup()"),
        ("zsh", "#compdef cup"),
        ("fish", "complete -c cup"),
    ] {
        let out = cup.run(&["completions", shell]);
        let script = out.ok();
        assert!(script.contains(marker), "{shell}: {script:.200}");
        for word in ["definitions", "apply", "context"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    assert_eq!(
        cup.run(&["completions", "tcsh"]).code,
        2,
        "clap rejects unknown shells"
    );
}

#[test]
fn every_command_has_help_with_examples() {
    let (_dir, cup) = home();
    for cmd in [
        &[][..],
        &["definitions"],
        &["get"],
        &["apply"],
        &["edit"],
        &["delete"],
        &["config", "context"],
        &["config", "context", "list"],
        &["config", "context", "set"],
        &["config", "context", "add"],
        &["config", "context", "use"],
        &["config", "context", "delete"],
        &["auth"],
        &["auth", "can-i"],
        &["auth", "whoami"],
        &["completions"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = cup.run(&args);
        assert!(out.ok().contains("Example"), "{cmd:?} --help has examples");
    }
}

/// A canned HTTP server: answers each request with `respond(method, path)` and closes the
/// connection. For answers the real cupd never gives (204 from a local source) and for the
/// original Go server's wire format (NDJSON lists, Go-slice 400 bodies).
fn stub(respond: fn(&str, &str) -> (u16, String)) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = respond(method, path);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

fn apis() -> String {
    format!(r#"{{"test.cup.flipt.io/v1alpha1/resources":{DEFINITION}}}"#)
}

#[test]
fn no_change_204_is_a_notice_on_stderr_and_success() {
    let address = stub(|method, path| match (method, path) {
        ("GET", "/apis") => (200, apis()),
        ("PUT" | "DELETE", _) => (204, String::new()),
        _ => (500, "unexpected".into()),
    });
    let (_dir, cup) = home();
    for output in ["table", "json"] {
        let run = cup.run_stdin(&["-a", &address, "-o", output, "apply"], BAZ);
        assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
        assert_eq!(
            run.stderr,
            "resources \"baz\" in namespace \"default\": no change\n"
        );
    }
    let run = cup.run(&["-a", &address, "delete", "resources", "foo"]);
    assert_eq!(
        (run.code, run.stderr.as_str()),
        (0, "resources \"foo\" in namespace \"default\": no change\n")
    );
    // -l warn hides notices.
    let run = cup.run(&["-a", &address, "-l", "warn", "delete", "resources", "foo"]);
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
}

#[test]
fn the_original_servers_wire_format_works_too() {
    let address = stub(|method, path| match (method, path) {
        ("GET", "/apis") => (200, apis()),
        // The original answers lists as NDJSON whatever the Accept header.
        ("GET", "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources") => {
            (200, format!("{BAR}\n{FOO}\n"))
        }
        // …and schema violations as a Go slice in plain text.
        ("PUT", _) => (
            400,
            "[spec.foo: Invalid type. Expected: string, given: integer]\n".into(),
        ),
        // …and a missing resource as a 500.
        ("GET", _) => (
            500,
            "get: open default/x.json: file does not exist\n".into(),
        ),
        _ => (405, String::new()),
    });
    let (_dir, cup) = home();
    let list = cup
        .run(&["-a", &address, "-o", "json", "get", "resources"])
        .json();
    assert_eq!(list, serde_json::Value::Array(vec![json(BAR), json(FOO)]));
    let run = cup.run_stdin(&["-a", &address, "apply"], BAZ);
    assert_eq!(
        run.one_line_error(),
        "cup: resources \"baz\" was rejected by the server: [spec.foo: Invalid type. Expected: string, given: integer]"
    );
    let run = cup.run(&["-a", &address, "get", "resources", "x"]);
    let line = run.one_line_error();
    assert!(
        line.starts_with("cup: GET http://127.0.0.1:")
            && line.ends_with(
                "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/x: unexpected status 500: get: open default/x.json: file does not exist"
            ),
        "{line}"
    );
}

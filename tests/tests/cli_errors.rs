//! Bad input through the real `cup` against a real `cupd`: every failure is one clear line
//! on stderr, exit status 1, nothing on stdout, and nothing changed on the server side.

use crate::cli_common::*;
use cup_e2e::http::ClosedPort;

/// Runs a failing command and checks the source tree is untouched; returns the error line.
fn fails(f: &Fixture, args: &[&str], stdin: &str) -> String {
    let before = snapshot(&f.source());
    let line = f.cup_stdin(args, stdin).one_line_error().to_owned();
    assert_eq!(snapshot(&f.source()), before, "{args:?} changed the source");
    line
}

#[test]
fn bad_documents_are_refused_before_anything_is_sent() {
    let f = Fixture::start();
    let file = f.path("bad.json");
    let file_arg = file.to_string_lossy().into_owned();

    std::fs::write(
        &file,
        "{\n  \"apiVersion\": \"test.cup.flipt.io/v1alpha1\",\n  \"kind\": }\n",
    )
    .expect("write");
    assert_eq!(
        fails(&f, &["apply", "-f", &file_arg], ""),
        format!("cup: {file_arg}: invalid JSON: expected value at line 3 column 11")
    );
    assert_eq!(
        fails(&f, &["apply"], ""),
        "cup: standard input is empty: expected one JSON resource"
    );
    assert_eq!(
        fails(&f, &["apply"], &format!("{BAZ}\n{FOO}")),
        "cup: standard input: more than one JSON document (the next starts at line 2 column 1); apply takes one resource"
    );
    assert_eq!(
        fails(&f, &["apply"], "[]"),
        "cup: standard input: expected a JSON object (one resource), found an array"
    );
    assert_eq!(
        fails(
            &f,
            &["apply"],
            r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{}}"#
        ),
        "cup: standard input: missing metadata.name"
    );
    assert_eq!(
        fails(&f, &["apply", "-f", "/nonexistent/x.json"], ""),
        "cup: reading /nonexistent/x.json: No such file or directory (os error 2)"
    );
}

#[test]
fn wrong_kinds_list_what_the_server_has() {
    let f = Fixture::start();
    let wrong_kind = BAZ.replace("\"kind\":\"Resource\"", "\"kind\":\"Resorce\"");
    assert_eq!(
        fails(&f, &["apply"], &wrong_kind),
        "cup: unknown kind \"Resorce\" in test.cup.flipt.io/v1alpha1 (the server has: test.cup.flipt.io/v1alpha1 Resource)"
    );
    let wrong_version = BAZ.replace("/v1alpha1\"", "/v2\"");
    assert_eq!(
        fails(&f, &["apply"], &wrong_version),
        "cup: Resource has no version \"v2\" (apiVersions: test.cup.flipt.io/v1alpha1)"
    );
    for args in [
        &["get", "flags"][..],
        &["get", "flags", "x"],
        &["delete", "flags", "x"],
        &["edit", "flags", "x"],
    ] {
        assert_eq!(
            fails(&f, args, ""),
            "cup: unknown resource type \"flags\" (the server has: Resource (resources))",
            "{args:?}"
        );
    }
    assert_eq!(
        fails(&f, &["get", "test.cup.flipt.io/v9/resources"], ""),
        "cup: test.cup.flipt.io/resources has no version \"v9\" (versions: v1alpha1)"
    );
}

#[test]
fn schema_violations_name_each_field() {
    let f = Fixture::start();
    // spec.foo must be a string and spec allows no other key: two violations.
    let bad = BAZ.replace(
        r#""spec":{"foo":"baz"}"#,
        r#""spec":{"foo":1,"extra":true}"#,
    );
    let e = fails(&f, &["apply"], &bad);
    assert!(
        e.starts_with("cup: resources \"baz\" was rejected by the server: "),
        "{e}"
    );
    assert!(
        e.contains("foo") && e.contains("extra"),
        "each violation is listed: {e}"
    );
    assert!(
        e.contains("; "),
        "violations are separated on one line: {e}"
    );
}

#[test]
fn missing_resources_are_404s_worded_for_people() {
    let f = Fixture::start();
    for args in [
        &["get", "resources", "nope"][..],
        &["delete", "resources", "nope"],
    ] {
        assert_eq!(
            fails(&f, args, ""),
            "cup: resources \"nope\" not found in namespace \"default\"",
            "{args:?}"
        );
    }
    assert_eq!(
        fails(&f, &["-n", "elsewhere", "get", "resource", "foo"], ""),
        "cup: resources \"foo\" not found in namespace \"elsewhere\""
    );
}

#[test]
fn contexts_and_addresses_that_do_not_work() {
    let f = Fixture::start();
    let config = f.path("config.json").to_string_lossy().into_owned();
    // Unknown context: nothing sent, and no config file created.
    let run = f
        .cup
        .run(&["-c", &config, "--context", "nope", "get", "resources"]);
    assert_eq!(
        run.one_line_error(),
        "cup: unknown context \"nope\" (contexts: default)"
    );
    let run = f
        .cup
        .run(&["-c", &config, "config", "context", "use", "nope"]);
    assert_eq!(
        run.one_line_error(),
        "cup: unknown context \"nope\" (contexts: default)"
    );
    assert!(!f.path("config.json").exists());

    // Unreachable server: the address is in the message.
    let closed = ClosedPort::new();
    let port = closed.port();
    let run = f.cup.run(&[
        "-a",
        &format!("http://127.0.0.1:{port}"),
        "get",
        "resources",
    ]);
    let e = run.one_line_error();
    assert!(
        e.starts_with(&format!(
            "cup: cannot reach cupd at http://127.0.0.1:{port}: "
        )),
        "{e}"
    );
    assert!(e.to_lowercase().contains("connection refused"), "{e}");

    // Not a URL.
    let run = f.cup.run(&["-a", "localhost:8181", "get", "resources"]);
    assert_eq!(
        run.one_line_error(),
        "cup: invalid address \"localhost:8181\": expected a URL such as http://localhost:8181"
    );
}

#[test]
fn a_controller_that_failed_to_load_is_a_503_with_its_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config");
    let source = dir.path().join("source");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(config.join("resources.json"), DEFINITION).expect("write");
    std::fs::write(
        config.join("broken.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"broken"},"spec":{"type":"wasm","spec":{"path":"missing.wasm"}}}"#,
    )
    .expect("write");
    std::fs::write(
        config.join("binding.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Binding","metadata":{"name":"b"},"spec":{"controller":"broken","resources":["test.cup.flipt.io/v1alpha1/resources"]}}"#,
    )
    .expect("write");
    let store = dir.path().join("store");
    let cupd =
        cup_e2e::cupd::Cupd::start(&cup_e2e::cupd::CupdConfig::new(&config, &source, &store));
    let cup = Cup::new(dir.path());
    let a = cupd.base_url();
    for args in [
        &["-a", &a, "get", "resources"][..],
        &["-a", &a, "get", "resources", "x"],
        &["-a", &a, "delete", "resources", "x"],
    ] {
        let run = cup.run(args);
        let line = run.one_line_error();
        assert!(
            line.starts_with(
                "cup: resources (test.cup.flipt.io/v1alpha1) cannot be served (503): "
            ) && line.contains("broken")
                && line.contains("missing.wasm"),
            "{line}"
        );
    }
    let run = cup.run_stdin(&["-a", &a, "apply"], BAZ);
    assert!(run.one_line_error().contains("(503)"), "{}", run.stderr);
    // The definition is still listed: discovery works while the controller is down.
    assert!(
        cup.run(&["-a", &a, "definitions"])
            .ok()
            .contains("resources")
    );
    assert_eq!(snapshot(&source).len(), 0);
}

#[test]
fn a_definition_no_controller_serves_is_not_a_missing_resource() {
    // Listed by /apis (as the original lists unbound definitions) but without routes.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config");
    let source = dir.path().join("source");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(config.join("resources.json"), DEFINITION).expect("write");
    let store = dir.path().join("store");
    let cupd =
        cup_e2e::cupd::Cupd::start(&cup_e2e::cupd::CupdConfig::new(&config, &source, &store));
    let cup = Cup::new(dir.path());
    let a = cupd.base_url();
    for (args, stdin) in [
        (&["-a", &a, "get", "resources"][..], ""),
        (&["-a", &a, "get", "resources", "x"], ""),
        (&["-a", &a, "get", "resources", "x", "y"], ""),
        (&["-a", &a, "delete", "resources", "x"], ""),
        (&["-a", &a, "apply"], BAZ),
    ] {
        let run = cup.run_stdin(args, stdin);
        let line = run.one_line_error();
        assert!(
            line.starts_with("cup: the server has no route /apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources")
                && line.ends_with("(404): is test.cup.flipt.io/v1alpha1/resources bound to a controller?"),
            "{args:?}: {line}"
        );
    }
    assert_eq!(snapshot(&source).len(), 0);
}

#[test]
fn a_password_in_the_address_never_shows() {
    const SECRET: &str = "s3cret";
    let f = Fixture::start();
    let port = f.cupd.port();
    // Debug output names the address and every request: the password is `***` there.
    let with_password = format!("http://cup:{SECRET}@127.0.0.1:{port}");
    let run = f
        .cup
        .run(&["-a", &with_password, "-l", "debug", "get", "resources"]);
    run.ok();
    assert!(!run.stderr.contains(SECRET), "{}", run.stderr);
    assert!(run.stderr.contains("cup:***@127.0.0.1"), "{}", run.stderr);

    // Unreachable: the address is named without its password.
    let closed = ClosedPort::new();
    let free = closed.port();
    let run = f.cup.run(&[
        "-a",
        &format!("http://cup:{SECRET}@127.0.0.1:{free}"),
        "get",
        "resources",
    ]);
    let e = run.one_line_error();
    assert!(
        e.starts_with(&format!(
            "cup: cannot reach cupd at http://cup:***@127.0.0.1:{free}: "
        )),
        "{e}"
    );
    // A raw '/' in the password: the address does not parse and is not shown at all.
    let run = f.cup.run(&[
        "-a",
        &format!("http://cup:{SECRET}/x@127.0.0.1:{port}"),
        "get",
        "resources",
    ]);
    let e = run.one_line_error();
    assert!(e.contains("<unparsable URL>") && !e.contains(SECRET), "{e}");

    // Listings show the user and `***`.
    let config = f.path("config.json").to_string_lossy().into_owned();
    let add = [
        "-c",
        &config,
        "config",
        "context",
        "add",
        "secret",
        "--address",
    ];
    f.cup.run(&[&add[..], &[&with_password]].concat()).ok();
    let table = f.cup.run(&["-c", &config, "config", "context"]);
    assert!(!table.ok().contains(SECRET), "{}", table.stdout);
    assert!(
        table.stdout.contains("http://cup:***@127.0.0.1"),
        "{}",
        table.stdout
    );
    let json = f
        .cup
        .run(&["-c", &config, "-o", "json", "config", "context"]);
    assert!(!json.ok().contains(SECRET), "{}", json.stdout);
    // The file keeps it: requests through the context still authenticate.
    assert!(std::fs::read_to_string(&config).unwrap().contains(SECRET));
}

/// `cup` pointed at a web server that is not cupd says so, instead of quoting its page.
#[test]
fn an_address_that_is_not_a_cupd_is_named_as_such() {
    let f = Fixture::start();
    let root = tempfile::tempdir().unwrap();
    // Port 0: the server binds a port of its own and says which, so no other test can
    // race for it.
    let mut server = std::process::Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .arg("--directory")
        .arg(root.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting python3 -m http.server");
    let mut banner = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut banner,
    )
    .expect("reading http.server's banner");
    // "Serving HTTP on 127.0.0.1 port 43567 (http://127.0.0.1:43567/) ..."
    let port: u16 = banner
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in http.server's banner {banner:?}"));
    let run = f
        .cup
        .run(&["-a", &format!("http://127.0.0.1:{port}"), "get", "flags"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        run.one_line_error(),
        format!(
            "cup: http://127.0.0.1:{port} is not a cupd: GET http://127.0.0.1:{port}/apis answered 404 \
             with an HTML page titled \"Error response\" (check -a or the context's address: \
             `cup config context`)"
        )
    );
}

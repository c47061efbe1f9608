//! `cup`'s side of access control: contexts with credentials (`config context add` flags,
//! the file's content and mode, listings that never show a secret), the bearer token on
//! the wire (checked on a recording stub server, and accepted by a real cupd serving without
//! access control), the refusal to send a token over plain http to another host, and
//! `auth can-i` / `auth whoami` against a stub that answers as cupd's access control does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::cli_common::*;
use serde_json::{Value, json};

/// One request as the stub received it.
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A canned HTTP server on loopback that keeps every request it answers.
struct Stub {
    address: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Stub {
    fn start(respond: fn(&Request) -> (u16, String)) -> Stub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let kept = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&stream) else {
                    continue;
                };
                let (status, body) = respond(&request);
                kept.lock().expect("lock").push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Stub { address, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("lock").clone()
    }
}

fn read_request(stream: &std::net::TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut parts = request_line.split_whitespace();
    Some(Request {
        method: parts.next()?.to_owned(),
        path: parts.next()?.to_owned(),
        headers,
        body,
    })
}

fn apis() -> String {
    format!(r#"{{"test.cup.flipt.io/v1alpha1/resources":{DEFINITION}}}"#)
}

/// As cupd with access control: 401 without a token; the review endpoints; `get` and paths
/// allowed, every other verb denied with a reason.
fn access_controlled(request: &Request) -> (u16, String) {
    if request.headers.get("authorization").map(String::as_str) != Some("Bearer s3cret") {
        return (
            401,
            "Unauthorized: invalid or missing bearer token\n".into(),
        );
    }
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/apis") => (200, apis()),
        ("GET", "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources") => {
            (200, format!("[{FOO}]"))
        }
        ("DELETE", _) => (
            403,
            "user \"alice\" may not delete resources in namespace \"default\"\n".into(),
        ),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") => {
            let mut review: Value = serde_json::from_slice(&request.body).expect("JSON review");
            let spec = &review["spec"];
            let allowed = spec["nonResourceAttributes"].is_object()
                || spec["resourceAttributes"]["verb"] == "get";
            review["status"] = if allowed {
                json!({"allowed": true})
            } else {
                json!({"allowed": false, "reason": "no rule lets alice do that"})
            };
            (201, review.to_string())
        }
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews") => (
            201,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "status": {"userInfo": {"username": "alice", "groups": ["dev", "system:authenticated"]}}})
            .to_string(),
        ),
        _ => (404, "not found\n".into()),
    }
}

struct Home {
    dir: tempfile::TempDir,
    cup: Cup,
    config: String,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let cup = Cup::new(dir.path()).in_dir(dir.path());
        let config = dir.path().join("cup.json").to_string_lossy().into_owned();
        Home { dir, cup, config }
    }

    /// `cup -c FILE args…`, with `stdin`.
    fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut all = vec!["-c", self.config.as_str()];
        all.extend_from_slice(args);
        self.cup.run_stdin(&all, stdin)
    }

    fn file(&self) -> Value {
        json(&std::fs::read_to_string(&self.config).expect("config written"))
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).expect("write");
        self.path(name)
    }
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// An exec credential command: `sh -c` printing an ExecCredential with `token`.
fn exec_flags(token: &str) -> Vec<String> {
    let credential = format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"{token}"}}}}"#
    );
    [
        "--exec-command",
        "sh",
        "--exec-arg",
        "-c",
        "--exec-arg",
        &format!("printf '%s' '{credential}'"),
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn context_add_stores_credentials_as_absolute_paths_in_a_private_file() {
    let h = Home::new();
    for name in ["token", "alice.crt", "alice.key", "ca.pem"] {
        h.write(name, "x\n");
    }
    h.run(
        &[
            "config",
            "context",
            "add",
            "prod",
            "-a",
            "https://cup.example.com",
            "--token-file",
            "token",
            "--client-certificate",
            "alice.crt",
            "--client-key",
            "alice.key",
            "--certificate-authority",
            "./ca.pem",
        ],
        "",
    )
    .ok();
    let mut vault = vec![
        "config",
        "context",
        "add",
        "vault",
        "-a",
        "https://cup.example.com",
        "--exec-command",
        "vault",
        "--exec-arg",
        "read",
        "--exec-arg",
        "-field=token",
        "--exec-env",
        "VAULT_TOKEN=v4ult",
    ];
    h.run(&vault, "").ok();
    let file = h.file();
    assert_eq!(
        file["contexts"]["prod"],
        json!({
            "address": "https://cup.example.com",
            "namespace": "default",
            "token_file": h.path("token"),
            "client_certificate": h.path("alice.crt"),
            "client_key": h.path("alice.key"),
            "certificate_authority": h.path("ca.pem"),
        })
    );
    assert_eq!(
        file["contexts"]["vault"]["exec"],
        json!({"command": "vault", "args": ["read", "-field=token"], "env": {"VAULT_TOKEN": "v4ult"}})
    );
    assert_eq!(mode(&h.config), 0o600);

    // --token-stdin stores the token, with a warning; the file stays 0600.
    let run = h.run(
        &[
            "config",
            "context",
            "add",
            "stored",
            "-a",
            "http://127.0.0.1:1",
            "--token-stdin",
        ],
        "s3cret\n",
    );
    run.ok();
    assert!(
        run.stderr.contains("warning: the token is stored in") && run.stderr.contains("mode 0600"),
        "{}",
        run.stderr
    );
    assert_eq!(h.file()["contexts"]["stored"]["token"], "s3cret");
    assert_eq!(mode(&h.config), 0o600);

    // Listings name the kinds of credentials and never a secret.
    let table = h.run(&["config", "context"], "");
    assert_eq!(
        table.ok(),
        "NAME      ADDRESS                   NAMESPACE   AUTH                            CURRENT\n\
         default   http://localhost:8181     default     -                               *\n\
         prod      https://cup.example.com   default     token-file,client-certificate\n\
         stored    http://127.0.0.1:1        default     token\n\
         vault     https://cup.example.com   default     exec\n"
    );
    let listed = h.run(&["-o", "json", "config", "context", "list"], "");
    let listed_json = listed.json();
    assert_eq!(listed_json[2]["token"], "<redacted>");
    assert_eq!(listed_json[3]["exec"]["env"]["VAULT_TOKEN"], "<redacted>");
    assert_eq!(listed_json[1]["token_file"], h.path("token"));
    for run in [&table, &listed] {
        for secret in ["s3cret", "v4ult"] {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{secret} shown: {}{}",
                run.stdout,
                run.stderr
            );
        }
    }

    // One token source, and a certificate only with its key: refused by the parser (exit 2)
    // before the file is touched.
    let before = std::fs::read(&h.config).expect("read");
    for args in [
        &["--token-file", "token", "--token-stdin"][..],
        &["--token-file", "token", "--exec-command", "vault"],
        &["--client-certificate", "alice.crt"],
        &["--client-key", "alice.key"],
        &["--exec-arg", "x"],
    ] {
        let mut all = vec!["config", "context", "add", "x", "-a", "https://h"];
        all.extend_from_slice(args);
        let run = h.run(&all, "");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    assert_eq!(
        h.run(
            &[
                "config",
                "context",
                "add",
                "x",
                "-a",
                "https://h",
                "--token-stdin"
            ],
            "\n"
        )
        .one_line_error(),
        "cup: --token-stdin: standard input is empty: expected a token"
    );
    assert_eq!(std::fs::read(&h.config).expect("read"), before);
    vault[3] = "vault2";
    vault.push("--token-stdin");
    // Refused by the parser before stdin is read (so none is given).
    assert_eq!(h.run(&vault, "").code, 2);
    // `set` switches token sources and stores paths absolute; a token is never set there.
    h.run(
        &[
            "--context",
            "stored",
            "config",
            "context",
            "set",
            "token=",
            "token_file=token",
        ],
        "",
    )
    .ok();
    assert_eq!(
        h.file()["contexts"]["stored"],
        json!({"address": "http://127.0.0.1:1", "namespace": "default", "token_file": h.path("token")})
    );
    assert_eq!(mode(&h.config), 0o600);
    let refused = h.run(
        &[
            "--context",
            "stored",
            "config",
            "context",
            "set",
            "token=s3cret",
        ],
        "",
    );
    assert!(
        refused
            .one_line_error()
            .contains("cannot be set here, only removed")
            && !refused.stderr.contains("s3cret")
    );
    assert_eq!(
        cup_e2e::dir_listing(h.dir.path()).len(),
        5,
        "no temp file left"
    );
}

#[test]
fn tokens_from_files_and_exec_commands_reach_the_server_as_bearer_tokens() {
    let stub = Stub::start(access_controlled);
    let h = Home::new();
    let token_file = h.write("token", "s3cret\n");
    h.run(
        &[
            "config",
            "context",
            "add",
            "file",
            "-a",
            &stub.address,
            "--token-file",
            &token_file,
        ],
        "",
    )
    .ok();
    let mut exec = vec![
        "config".to_owned(),
        "context".into(),
        "add".into(),
        "exec".into(),
        "-a".into(),
        stub.address.clone(),
    ];
    exec.extend(exec_flags("s3cret"));
    h.run(&exec.iter().map(String::as_str).collect::<Vec<_>>(), "")
        .ok();
    for context in ["file", "exec"] {
        let out = h.run(
            &["--context", context, "-o", "json", "get", "resources"],
            "",
        );
        assert_eq!(out.json()[0]["metadata"]["name"], "foo", "{context}");
    }
    let requests = stub.requests();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        assert_eq!(
            r.headers.get("authorization").map(String::as_str),
            Some("Bearer s3cret"),
            "{} {}",
            r.method,
            r.path
        );
    }
    // The file is read at each command: a rotated token is used at once (and refused here).
    std::fs::write(&token_file, "rotated\n").expect("write");
    let line = h
        .run(&["--context", "file", "get", "resources"], "")
        .one_line_error()
        .to_owned();
    assert_eq!(
        line,
        format!(
            "cup: cupd at {a} refused the credentials of context \"file\" (401: Unauthorized: invalid or missing bearer token); check them, or set others: `cup --context file config context set token_file=FILE`, or `cup config context add NAME --address {a} --token-file FILE` (or --exec-command, --client-certificate and --client-key)",
            a = stub.address
        )
    );
    // A 403 prints the server's reason.
    std::fs::write(&token_file, "s3cret").expect("write");
    assert_eq!(
        h.run(&["--context", "file", "delete", "resources", "foo"], "")
            .one_line_error(),
        "cup: DELETE /apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/foo is forbidden (403): user \"alice\" may not delete resources in namespace \"default\""
    );
    // A failing exec command: its stderr reaches the user, then one line says what failed.
    h.run(
        &[
            "config",
            "context",
            "add",
            "expired",
            "-a",
            &stub.address,
            "--exec-command",
            "sh",
            "--exec-arg",
            "-c",
            "--exec-arg",
            "echo 'cred-helper: login expired, run cred-helper login' >&2; exit 3",
        ],
        "",
    )
    .ok();
    let before = stub.requests().len();
    let run = h.run(&["--context", "expired", "get", "resources"], "");
    assert_eq!((run.code, run.stdout.as_str()), (1, ""));
    assert_eq!(
        run.stderr,
        "cred-helper: login expired, run cred-helper login\n\
         cup: getting the token of context \"expired\": the exec credential command \"sh\" failed (exit status 3; its stderr is above)\n"
    );
    assert_eq!(
        stub.requests().len(),
        before,
        "nothing sent without a token"
    );
    // A context without credentials is told how to get some.
    let line = h
        .run(&["-a", &stub.address, "get", "resources"], "")
        .one_line_error()
        .to_owned();
    assert!(
        line.contains("asks for credentials (401: Unauthorized: invalid or missing bearer token) and context \"default\" has none"),
        "{line}"
    );
}

#[test]
fn a_cupd_without_access_control_accepts_requests_with_a_token() {
    let f = Fixture::start();
    let h = Home::new();
    let mut add = vec![
        "config".to_owned(),
        "context".into(),
        "add".into(),
        "local".into(),
        "-a".into(),
        f.cupd.base_url(),
        "--use".into(),
    ];
    add.extend(exec_flags("s3cret"));
    h.run(&add.iter().map(String::as_str).collect::<Vec<_>>(), "")
        .ok();
    let out = h.run(&["get", "resources"], "");
    assert!(out.ok().contains("foo"), "{}", out.stdout);
    // The review endpoints are not there: said plainly.
    for args in [
        &["auth", "whoami"][..],
        &["auth", "can-i", "get", "resources"],
    ] {
        let line = h.run(args, "").one_line_error().to_owned();
        assert!(
            line.contains("it is an older cupd, or one serving without access control"),
            "{args:?}: {line}"
        );
    }
}

#[test]
fn a_token_is_never_sent_over_plain_http_to_another_host() {
    let h = Home::new();
    let marker = h.path("ran");
    // 192.0.2.1 is TEST-NET-1: nothing answers there, and nothing must be tried.
    h.run(
        &[
            "config",
            "context",
            "add",
            "remote",
            "-a",
            "http://192.0.2.1:8181",
            "--use",
            "--exec-command",
            "touch",
            "--exec-arg",
            &marker,
        ],
        "",
    )
    .ok();
    assert_eq!(
        h.run(&["get", "flags"], "").one_line_error(),
        "cup: refusing to send the token of context \"remote\" over plain http to 192.0.2.1: use an https:// address (plain http carries a token only to a loopback address)"
    );
    assert!(
        !Path::new(&marker).exists(),
        "the exec command is not run for a refused address"
    );
}

#[test]
fn can_i_and_whoami_print_the_servers_answers() {
    let stub = Stub::start(access_controlled);
    let h = Home::new();
    h.run(
        &[
            "config",
            "context",
            "add",
            "alice",
            "-a",
            &stub.address,
            "--use",
            "--token-stdin",
        ],
        "s3cret",
    )
    .ok();
    let yes = h.run(&["auth", "can-i", "get", "Resource", "foo"], "");
    assert_eq!(
        (yes.code, yes.stdout.as_str()),
        (0, "yes\n"),
        "{}",
        yes.stderr
    );
    let no = h.run(&["auth", "can-i", "put", "resources", "-n", "team"], "");
    assert_eq!(
        (no.code, no.stdout.as_str(), no.stderr.as_str()),
        (1, "no\n", "reason: no rule lets alice do that\n")
    );
    let sent: Vec<Value> = stub
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/selfsubjectaccessreviews"))
        .map(|r| serde_json::from_slice(&r.body).expect("JSON"))
        .collect();
    assert_eq!(
        sent,
        [
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "get",
                    "group": "test.cup.flipt.io", "resource": "resources", "name": "foo"}}}),
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "team", "verb": "put",
                    "group": "test.cup.flipt.io", "resource": "resources"}}}),
        ]
    );
    let merge = h.run(&["-o", "json", "auth", "can-i", "merge", "proposals"], "");
    assert_eq!(merge.code, 1);
    let review = json(&merge.stdout);
    assert_eq!(
        review["spec"]["resourceAttributes"],
        json!({"verb": "merge", "group": "", "resource": "proposals"})
    );
    assert_eq!(review["status"]["allowed"], false);
    let metrics = h.run(&["auth", "can-i", "get", "/metrics"], "");
    assert_eq!((metrics.code, metrics.stdout.as_str()), (0, "yes\n"));
    assert_eq!(
        h.run(&["auth", "can-i", "merge", "resources"], "")
            .one_line_error(),
        "cup: unknown verb \"merge\" for resources: expected one of get, list, put, delete"
    );
    assert_eq!(
        h.run(&["auth", "whoami"], "").ok(),
        "ATTRIBUTE   VALUE\nUsername    alice\nGroups      [dev system:authenticated]\n"
    );
    assert_eq!(
        h.run(&["-o", "json", "auth", "whoami"], "").json()["status"]["userInfo"]["username"],
        "alice"
    );
}

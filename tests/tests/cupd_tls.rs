//! cupd over HTTPS, through the real binary and real TLS: certificates made here by a test
//! CA, clients trusting only it. Serving, a plain-HTTP client on the TLS port, certificate
//! rotation without a restart (and a bad rotation that keeps the old certificate), client
//! certificates (none, trusted, expired, from another CA, revoked by a CRL, revoked by a CRL
//! rewritten while cupd runs), and the flags and files refused at startup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::pki_common::{Ca, Issued};
use cup_e2e::cupd::{Cupd, CupdConfig, write_template_controller};

/// A policy letting every caller, authenticated or not, do everything.
const EVERYONE: &str = r#"{"rules": [
  {"groups": ["system:authenticated", "system:unauthenticated"], "verbs": ["*"], "resources": ["*"], "namespaces": ["*"]},
  {"groups": ["system:authenticated", "system:unauthenticated"], "verbs": ["get"], "paths": ["*"]}
]}"#;

const RESOURCE: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/foo";
const FOO: &str = r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"foo"},"spec":{}}"#;

/// Writes `text` to `path` by a rename, as a certificate manager does.
fn replace(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

struct Fixture {
    config: tempfile::TempDir,
    source: tempfile::TempDir,
    store: tempfile::TempDir,
    tls: tempfile::TempDir,
    ca: Ca,
}

impl Fixture {
    fn new() -> Fixture {
        let config = tempfile::tempdir().unwrap();
        write_template_controller(config.path(), r#"{"type":"object"}"#);
        let source = tempfile::tempdir().unwrap();
        std::fs::create_dir(source.path().join("default")).unwrap();
        std::fs::write(
            source
                .path()
                .join("default/test.cup.flipt.io-v1alpha1-Resource-foo.json"),
            FOO,
        )
        .unwrap();
        let tls = tempfile::tempdir().unwrap();
        let ca = Ca::new("cup test CA");
        let server = ca.server(1);
        std::fs::write(tls.path().join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(tls.path().join("tls.crt"), &server.pem).unwrap();
        std::fs::write(tls.path().join("tls.key"), &server.key_pem).unwrap();
        Fixture {
            config,
            source,
            store: tempfile::tempdir().unwrap(),
            tls,
            ca,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.tls.path().join(name)
    }

    /// The flags serving HTTPS with `tls.crt` and `tls.key`.
    fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".to_owned(),
            self.file("tls.crt").display().to_string(),
            "--tls-private-key-file".to_owned(),
            self.file("tls.key").display().to_string(),
        ]
    }

    /// `--authorization-policy-file` with `policy` written to `policy.json`.
    fn policy_args(&self, policy: &str) -> Vec<String> {
        std::fs::write(self.file("policy.json"), policy).unwrap();
        vec![
            "--authorization-policy-file".to_owned(),
            self.file("policy.json").display().to_string(),
        ]
    }

    /// The TLS flags with `ca.pem` as the client CA.
    fn client_ca_args(&self) -> Vec<String> {
        let mut args = self.tls_args();
        args.extend([
            "--client-ca-file".to_owned(),
            self.file("ca.pem").display().to_string(),
        ]);
        args
    }

    fn try_start(&self, args: Vec<String>) -> Result<Cupd, String> {
        let anonymous = https_client(&self.ca, None);
        let ready =
            move |port: u16| get(&anonymous, port, "/readyz").is_ok_and(|r| r.status == 200);
        let mut config = CupdConfig::new(self.config.path(), self.source.path(), self.store.path());
        config.args = args;
        config.ready_probe = Some(&ready);
        Cupd::try_start(&config)
    }

    fn start(&self, args: Vec<String>) -> Cupd {
        for _ in 0..5 {
            match self.try_start(args.clone()) {
                Ok(cupd) => return cupd,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("cupd did not become ready:\n{log}"),
            }
        }
        panic!("cupd could not find a free port");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the test runtime")
    })
}

/// A client trusting `ca` only, presenting `identity` if given; one connection per request.
fn https_client(ca: &Ca, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .retry(reqwest::retry::never())
        .timeout(Duration::from_secs(30));
    if let Some(issued) = identity {
        let pem = format!("{}{}", issued.pem, issued.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

struct Answer {
    status: u16,
    body: String,
    /// DER of the server's certificate.
    server_certificate: Vec<u8>,
}

/// `GET https://127.0.0.1:port/path`; `Err` with the client's error when no response came.
fn get(client: &reqwest::Client, port: u16, path: &str) -> Result<Answer, String> {
    send(client, "GET", port, path, &[])
}

/// One request over HTTPS with extra `headers` and an empty JSON object as the body for a
/// POST.
fn send(
    client: &reqwest::Client,
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    runtime().block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client
            .request(method.clone(), format!("https://127.0.0.1:{port}{path}"))
            .header("Connection", "close");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if method == reqwest::Method::POST {
            request = request.body("{}");
        }
        let response = request.send().await.map_err(|e| format!("{e:?}"))?;
        let server_certificate = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| format!("{e:?}"))?;
        Ok(Answer {
            status,
            body,
            server_certificate,
        })
    })
}

#[test]
fn https_serves_the_api_and_plain_http_gets_no_answer() {
    let f = Fixture::new();
    let cupd = f.start(f.tls_args());
    let client = https_client(&f.ca, None);
    let health = get(&client, cupd.port(), "/healthz").unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let foo = get(&client, cupd.port(), RESOURCE).unwrap();
    assert_eq!(foo.status, 200, "{}", foo.body);
    assert!(foo.body.contains(r#""name":"foo""#), "{}", foo.body);
    assert!(
        cupd.log().contains(&format!(
            "cupd listening on https://127.0.0.1:{}",
            cupd.port()
        )),
        "{}",
        cupd.log()
    );

    assert_eq!(
        cup_e2e::http::raw_status(cupd.port(), "GET", "/healthz"),
        None,
        "plain HTTP on the TLS port"
    );
    assert!(cup_e2e::http::request(cupd.port(), "GET", "/healthz", &[], b"").is_none());
    let metrics = get(&client, cupd.port(), "/metrics").unwrap().body;
    assert!(
        metrics.contains(r#"cupd_tls_handshake_failures_total{reason="protocol"} 2"#),
        "{metrics}"
    );
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let f = Fixture::new();
    let cupd = f.start(f.tls_args());
    let client = https_client(&f.ca, None);
    let first = get(&client, cupd.port(), "/healthz").unwrap();

    let rotated = f.ca.server(2);
    assert_ne!(first.server_certificate, rotated.der);
    replace(&f.file("tls.key"), &rotated.key_pem);
    replace(&f.file("tls.crt"), &rotated.pem);
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get(&client, cupd.port(), "/healthz").unwrap();
        if answer.server_certificate == rotated.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served:\n{}",
            cupd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Half a certificate: cupd keeps serving the last good one and says why, once.
    let half = &f.ca.server(3).pem[..300];
    replace(&f.file("tls.crt"), half);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1100));
        let answer = get(&client, cupd.port(), "/healthz").unwrap();
        assert_eq!(answer.server_certificate, rotated.der);
    }
    let log = cupd.log();
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("cannot be loaded"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(&f.file("tls.crt").display().to_string())
            && warnings[0].contains("no END line"),
        "{log}"
    );
}

#[test]
fn client_certificates_are_verified_when_a_client_ca_is_given() {
    let f = Fixture::new();
    let alice = f.ca.client("alice", 10, false);
    let expired = f.ca.client("old", 11, true);
    let revoked = f.ca.client("gone", 12, false);
    let stranger = Ca::new("another CA").client("mallory", 10, false);
    std::fs::write(f.file("crl.pem"), f.ca.crl(&[12])).unwrap();
    let mut args = f.tls_args();
    args.extend([
        "--client-ca-file".to_owned(),
        f.file("ca.pem").display().to_string(),
        "--client-crl-file".to_owned(),
        f.file("crl.pem").display().to_string(),
    ]);
    // A client CA turns authentication on: callers without a certificate are served here as
    // anonymous, by a policy that lets everyone in.
    args.extend(f.policy_args(EVERYONE));
    args.push("--anonymous".to_owned());
    let cupd = f.start(args);
    let port = cupd.port();

    let anonymous = get(&https_client(&f.ca, None), port, RESOURCE).unwrap();
    assert_eq!(anonymous.status, 200, "no certificate: served");
    let trusted = get(&https_client(&f.ca, Some(&alice)), port, RESOURCE).unwrap();
    assert_eq!(trusted.status, 200, "a trusted certificate: served");
    for (what, identity) in [
        ("expired", &expired),
        ("from another CA", &stranger),
        ("revoked", &revoked),
    ] {
        let refused = get(&https_client(&f.ca, Some(identity)), port, "/healthz");
        assert!(
            refused.is_err(),
            "a certificate {what} was accepted:\n{}",
            cupd.log()
        );
    }
    let metrics = get(&https_client(&f.ca, None), port, "/metrics")
        .unwrap()
        .body;
    assert!(
        metrics.contains(r#"cupd_tls_handshake_failures_total{reason="client_certificate"} 3"#),
        "{metrics}"
    );

    // A new list revoking alice too applies to new connections, without a restart.
    replace(&f.file("crl.pem"), &f.ca.crl(&[10, 12]));
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&https_client(&f.ca, Some(&alice)), port, "/healthz").is_ok() {
        assert!(
            Instant::now() < deadline,
            "alice is still served after her revocation:\n{}",
            cupd.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let anonymous = get(&https_client(&f.ca, None), port, "/healthz").unwrap();
    assert_eq!(anonymous.status, 200);
}

/// The caller a request is served as, asked of cupd's self review.
fn whoami(client: &reqwest::Client, port: u16, headers: &[(&str, &str)]) -> serde_json::Value {
    let answer = send(
        client,
        "POST",
        port,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        headers,
    )
    .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.body);
    let review: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    review["status"]["userInfo"].clone()
}

#[test]
fn client_certificates_name_the_caller_and_a_proxy_certificate_vouches_for_headers() {
    let f = Fixture::new();
    let alice = f.ca.member("alice", "editors", 20);
    let proxy = f.ca.client("front-proxy", 21, false);
    let bob = f.ca.client("bob", 22, false);
    let mut args = f.client_ca_args();
    args.extend(f.policy_args(
        r#"{"rules": [
          {"groups": ["editors"], "verbs": ["get", "list", "put"], "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]},
          {"users": ["carol"], "verbs": ["get"], "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]}
        ]}"#,
    ));
    args.extend(
        [
            "--requestheader-username-headers",
            "X-Remote-User",
            "--requestheader-group-headers",
            "X-Remote-Group",
            "--requestheader-allowed-names",
            "front-proxy",
        ]
        .map(str::to_owned),
    );
    let cupd = f.start(args);
    let port = cupd.port();
    let as_alice = https_client(&f.ca, Some(&alice));
    let as_proxy = https_client(&f.ca, Some(&proxy));
    let as_bob = https_client(&f.ca, Some(&bob));
    let nobody = https_client(&f.ca, None);

    assert_eq!(
        whoami(&as_alice, port, &[]),
        serde_json::json!({"username": "alice", "groups": ["editors", "system:authenticated"]})
    );
    assert_eq!(get(&as_alice, port, RESOURCE).unwrap().status, 200);
    let refused = get(&as_bob, port, RESOURCE).unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("user \"bob\" cannot get"),
        "{}",
        refused.body
    );
    let anonymous = get(&nobody, port, RESOURCE).unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);

    // The proxy's certificate makes its headers believed; anyone else's does not.
    let carol = [("X-Remote-User", "carol"), ("X-Remote-Group", "auditors")];
    assert_eq!(
        whoami(&as_proxy, port, &carol),
        serde_json::json!({"username": "carol", "groups": ["auditors", "system:authenticated"]})
    );
    let via_proxy = send(&as_proxy, "GET", port, RESOURCE, &carol).unwrap();
    assert_eq!(via_proxy.status, 200, "{}", via_proxy.body);
    assert_eq!(whoami(&as_proxy, port, &[])["username"], "front-proxy");
    assert_eq!(whoami(&as_bob, port, &carol)["username"], "bob");
    assert_eq!(
        send(&nobody, "GET", port, RESOURCE, &carol).unwrap().status,
        401,
        "headers without the proxy's certificate are ignored"
    );
}

#[test]
fn bad_tls_files_stop_cupd_at_startup_naming_the_file() {
    let f = Fixture::new();
    let other = f.ca.server(5);
    std::fs::write(f.file("other.key"), &other.key_pem).unwrap();
    std::fs::write(f.file("empty.pem"), "").unwrap();
    let files = |cert: &str, key: &str, client_ca: Option<&str>| {
        let mut args = vec![
            "--tls-cert-file".to_owned(),
            f.file(cert).display().to_string(),
            "--tls-private-key-file".to_owned(),
            f.file(key).display().to_string(),
        ];
        if let Some(ca) = client_ca {
            args.push("--client-ca-file".to_owned());
            args.push(f.file(ca).display().to_string());
        }
        args
    };
    let cases = [
        (
            files("missing.crt", "tls.key", None),
            "missing.crt",
            "cannot read it",
        ),
        (
            files("tls.crt", "empty.pem", None),
            "empty.pem",
            "no private key",
        ),
        (
            files("tls.crt", "other.key", None),
            "other.key",
            "does not match the certificate",
        ),
        (
            files("tls.crt", "tls.key", Some("empty.pem")),
            "empty.pem",
            "no certificate",
        ),
    ];
    for (args, file, problem) in cases {
        let log = match f.try_start(args) {
            Ok(_) => panic!("cupd started with a bad {file}"),
            Err(log) => log,
        };
        assert!(log.contains("exited with exit status: 1"), "{log}");
        assert!(log.contains(file) && log.contains(problem), "{log}");
    }
}

#[test]
fn client_ca_and_crl_flags_without_what_they_need_are_usage_errors() {
    let f = Fixture::new();
    let ca = f.file("ca.pem").display().to_string();
    let crl = f.file("crl.pem").display().to_string();
    let crt = f.file("tls.crt").display().to_string();
    for (args, missing) in [
        (vec!["--client-ca-file", ca.as_str()], "--tls-cert-file"),
        (
            vec!["--tls-cert-file", crt.as_str()],
            "--tls-private-key-file",
        ),
        (
            vec![
                "--tls-cert-file",
                crt.as_str(),
                "--tls-private-key-file",
                crt.as_str(),
                "--client-crl-file",
                crl.as_str(),
            ],
            "--client-ca-file",
        ),
    ] {
        let out = Command::new(cup_e2e::bin("cupd"))
            .arg("serve")
            .args(&args)
            .output()
            .expect("running cupd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(missing), "{args:?}: {stderr}");
    }
}

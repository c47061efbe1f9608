//! Access control through the real cupd on the local source: bearer tokens, the
//! authenticating proxy's headers, anonymous access, the policy (a matrix of callers ×
//! verbs × namespaces), `/apis` filtering, the self reviews, token rotation and the audit log.
//! TLS and client certificates are in `cupd_tls`; the Git source's proposals in `cupd_git`.

use std::path::PathBuf;
use std::time::Duration;

use cup_e2e::cupd::{Cupd, CupdConfig, Response, write_template_controller};

const RESOURCES: &str = "/apis/test.cup.flipt.io/v1alpha1/namespaces";

/// Tokens of the callers the policy below knows, plus one it does not.
const TOKENS: &str = "\
# token,user,uid,groups
tok-alice,alice,1,editors
tok-viewer,viewer,2
tok-ops,olga,3,\"ops,other\"
tok-root,root,4
tok-stranger,stranger,5
";

const POLICY: &str = r#"{"rules": [
  {"groups": ["editors"], "verbs": ["get", "list", "put", "delete"],
   "resources": ["test.cup.flipt.io/resources"], "namespaces": ["default"]},
  {"users": ["viewer"], "verbs": ["get", "list"], "resources": ["test.cup.flipt.io/*"], "namespaces": ["*"]},
  {"groups": ["ops"], "verbs": ["get"], "paths": ["/metrics", "/status"]},
  {"users": ["root"], "verbs": ["*"], "resources": ["*"], "namespaces": ["*"]},
  {"groups": ["system:unauthenticated"], "verbs": ["list"], "resources": ["test.cup.flipt.io/resources"], "namespaces": ["public"]}
]}"#;

struct Fixture {
    config: tempfile::TempDir,
    source: tempfile::TempDir,
    store: tempfile::TempDir,
    files: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let config = tempfile::tempdir().unwrap();
        write_template_controller(
            config.path(),
            r#"{"type":"object","properties":{"spec":{"type":"object"}}}"#,
        );
        let source = tempfile::tempdir().unwrap();
        for ns in ["default", "prod", "public"] {
            std::fs::create_dir(source.path().join(ns)).unwrap();
        }
        let files = tempfile::tempdir().unwrap();
        std::fs::write(files.path().join("tokens.csv"), TOKENS).unwrap();
        std::fs::write(files.path().join("policy.json"), POLICY).unwrap();
        Fixture {
            config,
            source,
            store: tempfile::tempdir().unwrap(),
            files,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    fn config(&self, extra: &[&str]) -> CupdConfig<'_> {
        let mut config = CupdConfig::new(self.config.path(), self.source.path(), self.store.path());
        config.args = extra.iter().map(|s| (*s).to_owned()).collect();
        config
    }

    /// cupd with the token file, the policy and the audit log.
    fn start(&self, extra: &[&str]) -> Cupd {
        let tokens = self.file("tokens.csv");
        let policy = self.file("policy.json");
        let audit = self.file("audit.log");
        let mut args = vec![
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-policy-file",
            policy.to_str().unwrap(),
            "--audit-log-path",
            audit.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        Cupd::start(&self.config(&args))
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.file("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

fn body(ns: &str, name: &str) -> String {
    format!(
        r#"{{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{{"namespace":"{ns}","name":"{name}"}},"spec":{{}}}}"#
    )
}

fn call(cupd: &Cupd, token: Option<&str>, method: &str, path: &str, payload: &str) -> Response {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    cupd.request(method, path, &headers, payload.as_bytes())
}

fn put(cupd: &Cupd, token: Option<&str>, ns: &str, name: &str) -> Response {
    call(
        cupd,
        token,
        "PUT",
        &format!("{RESOURCES}/{ns}/resources/{name}"),
        &body(ns, name),
    )
}

#[test]
fn the_policy_decides_per_caller_verb_and_namespace() {
    let f = Fixture::new();
    let cupd = f.start(&[]);
    let item = |ns: &str, name: &str| format!("{RESOURCES}/{ns}/resources/{name}");
    let list = |ns: &str| format!("{RESOURCES}/{ns}/resources");

    // Seed a resource in each namespace as root.
    for ns in ["default", "prod"] {
        assert_eq!(put(&cupd, Some("tok-root"), ns, "seed").status, 202);
    }
    let cases: &[(Option<&str>, &str, String, u16)] = &[
        // alice (editors): everything on resources in default, nothing elsewhere.
        (Some("tok-alice"), "PUT", item("default", "a"), 202),
        (Some("tok-alice"), "GET", item("default", "a"), 200),
        (Some("tok-alice"), "GET", list("default"), 200),
        (Some("tok-alice"), "DELETE", item("default", "a"), 202),
        (Some("tok-alice"), "PUT", item("prod", "a"), 403),
        (Some("tok-alice"), "GET", item("prod", "seed"), 403),
        (Some("tok-alice"), "GET", list("prod"), 403),
        (Some("tok-alice"), "GET", "/metrics".into(), 403),
        (Some("tok-alice"), "GET", "/status".into(), 403),
        // viewer: reads everywhere, writes nowhere.
        (Some("tok-viewer"), "GET", item("prod", "seed"), 200),
        (Some("tok-viewer"), "GET", list("prod"), 200),
        (Some("tok-viewer"), "GET", item("default", "missing"), 404),
        (Some("tok-viewer"), "PUT", item("default", "v"), 403),
        (Some("tok-viewer"), "DELETE", item("prod", "seed"), 403),
        // olga (ops): operations paths only.
        (Some("tok-ops"), "GET", "/metrics".into(), 200),
        (Some("tok-ops"), "GET", "/status".into(), 200),
        (Some("tok-ops"), "GET", list("default"), 403),
        // stranger: authenticated, allowed nothing.
        (Some("tok-stranger"), "GET", list("default"), 403),
        (Some("tok-stranger"), "GET", "/no/such/path".into(), 403),
        // root: every resource, but paths need their own rule.
        (Some("tok-root"), "DELETE", item("prod", "seed"), 202),
        (Some("tok-root"), "GET", "/metrics".into(), 403),
        // Probes stay open; everything else needs credentials that check out.
        (None, "GET", "/healthz".into(), 200),
        (None, "GET", "/readyz".into(), 200),
        (None, "GET", list("default"), 401),
        (None, "GET", "/apis".into(), 401),
        (None, "GET", "/metrics".into(), 401),
        (Some("tok-nobody"), "GET", list("default"), 401),
        // No anonymous access: the rule for system:unauthenticated does not apply.
        (None, "GET", list("public"), 401),
    ];
    for (token, method, path, want) in cases {
        let payload = if *method == "PUT" {
            let mut parts = path.rsplit('/');
            let name = parts.next().unwrap();
            let ns = parts.nth(1).unwrap();
            body(ns, name)
        } else {
            String::new()
        };
        let got = call(&cupd, *token, method, path, &payload);
        assert_eq!(
            got.status,
            *want,
            "{token:?} {method} {path}: {}",
            got.text()
        );
        match got.status {
            401 => {
                assert_eq!(
                    got.header("www-authenticate"),
                    Some("Bearer realm=\"cupd\"")
                );
                assert!(got.text().starts_with("Unauthorized: "), "{}", got.text());
            }
            403 => assert!(got.text().contains("forbidden"), "{}", got.text()),
            _ => {}
        }
    }
    let refused = call(
        &cupd,
        Some("tok-alice"),
        "PUT",
        &item("prod", "a"),
        &body("prod", "a"),
    );
    assert_eq!(
        refused.text().trim(),
        "resources.test.cup.flipt.io \"a\" is forbidden: user \"alice\" cannot put resource \"resources\" in API group \"test.cup.flipt.io\" in the namespace \"prod\""
    );
    assert!(
        !f.source.path().join("prod").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("-a.json")),
        "a refused write changes nothing"
    );
    let metrics = call(&cupd, Some("tok-ops"), "GET", "/metrics", "").text();
    assert!(
        metrics.contains("cupd_access_refused_total{code=\"403\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cupd_access_refused_total{code=\"401\"}"),
        "{metrics}"
    );
}

#[test]
fn discovery_shows_only_what_the_caller_may_read() {
    let f = Fixture::new();
    let cupd = f.start(&[]);
    let key = "test.cup.flipt.io/v1alpha1/resources";
    for (token, visible) in [
        ("tok-alice", true),
        ("tok-viewer", true),
        ("tok-root", true),
        ("tok-ops", false),
        ("tok-stranger", false),
    ] {
        let apis = call(&cupd, Some(token), "GET", "/apis", "");
        assert_eq!(apis.status, 200);
        assert_eq!(
            apis.json().get(key).is_some(),
            visible,
            "{token}: {}",
            apis.text()
        );
    }
    assert_eq!(
        call(&cupd, Some("tok-stranger"), "GET", "/apis", "").text(),
        "{}\n"
    );
}

#[test]
fn callers_can_ask_what_they_may_do() {
    let f = Fixture::new();
    let cupd = f.start(&[]);
    let review = |token: &str, attributes: &str| {
        let body = format!(
            r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{attributes}}}"#
        );
        let r = call(
            &cupd,
            Some(token),
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            &body,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    };
    let put_in = |ns: &str| {
        format!(
            r#"{{"resourceAttributes":{{"namespace":"{ns}","verb":"put","group":"test.cup.flipt.io","resource":"resources","name":"x"}}}}"#
        )
    };
    let yes = review("tok-alice", &put_in("default"));
    assert_eq!(yes["status"]["allowed"], true, "{yes}");
    assert_eq!(yes["kind"], "SelfSubjectAccessReview");
    let no = review("tok-alice", &put_in("prod"));
    assert_eq!(no["status"]["allowed"], false);
    assert!(
        no["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot put")
    );
    let metrics = r#"{"nonResourceAttributes":{"path":"/metrics","verb":"get"}}"#;
    assert_eq!(review("tok-ops", metrics)["status"]["allowed"], true);
    assert_eq!(review("tok-alice", metrics)["status"]["allowed"], false);

    let bad = call(
        &cupd,
        Some("tok-alice"),
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        r#"{"spec":{"resourceAttributes":{"namespace":"default","verb":"patch","group":"g","resource":"r"}}}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.text().contains("unknown verb \"patch\""),
        "{}",
        bad.text()
    );

    let who = call(
        &cupd,
        Some("tok-ops"),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
    );
    assert_eq!(who.status, 201);
    let info = &who.json()["status"]["userInfo"];
    assert_eq!(info["username"], "olga");
    assert_eq!(
        info["groups"],
        serde_json::json!(["ops", "other", "system:authenticated"])
    );
    let anonymous = call(
        &cupd,
        None,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "{}",
    );
    assert_eq!(anonymous.status, 401);
}

#[test]
fn a_rotated_token_file_takes_effect_without_a_restart() {
    let f = Fixture::new();
    let cupd = f.start(&[]);
    let list = format!("{RESOURCES}/default/resources");
    assert_eq!(call(&cupd, Some("tok-alice"), "GET", &list, "").status, 200);
    // Replaced by rename, as secret managers do; alice's token changes, the hash form is used.
    let hashed = cup_access_hash("tok-alice-2");
    let next = f.file("tokens.next");
    std::fs::write(
        &next,
        format!("{hashed},alice,1,editors\ntok-ops,olga,3,ops\n"),
    )
    .unwrap();
    std::fs::rename(&next, f.file("tokens.csv")).unwrap();
    wait_for(|| call(&cupd, Some("tok-alice-2"), "GET", &list, "").status == 200);
    assert_eq!(call(&cupd, Some("tok-alice"), "GET", &list, "").status, 401);
    assert_eq!(call(&cupd, Some("tok-root"), "GET", &list, "").status, 401);

    // A broken version keeps the last good one in use and says so in /status.
    std::fs::write(f.file("tokens.csv"), "broken line\ntok-root,root,4\n").unwrap();
    wait_for(|| {
        let status = call(&cupd, Some("tok-ops"), "GET", "/status", "");
        status.status == 200
            && status.json()["warnings"]
                .to_string()
                .contains("token file not reloaded")
    });
    let warnings =
        call(&cupd, Some("tok-ops"), "GET", "/status", "").json()["warnings"].to_string();
    assert!(warnings.contains("tokens.csv:1: "), "{warnings}");
    assert_eq!(
        call(&cupd, Some("tok-alice-2"), "GET", &list, "").status,
        200
    );
    assert_eq!(call(&cupd, Some("tok-root"), "GET", &list, "").status, 401);
}

/// `sha256:<hex>` of a token, as the token file's hashed form (computed here independently
/// of cupd's code).
fn cup_access_hash(token: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_write_has_one_audit_line_also_under_concurrency() {
    let f = Fixture::new();
    let cupd = f.start(&[]);
    let cupd = &cupd;
    std::thread::scope(|s| {
        for i in 0..40 {
            s.spawn(move || {
                let name = format!("r{i:02}");
                assert_eq!(put(cupd, Some("tok-alice"), "default", &name).status, 202);
            });
        }
        for i in 0..10 {
            s.spawn(move || {
                assert_eq!(
                    put(cupd, Some("tok-alice"), "prod", &format!("p{i}")).status,
                    403
                );
            });
        }
        for i in 0..5 {
            s.spawn(move || {
                assert_eq!(
                    put(cupd, Some("bad-token"), "default", &format!("x{i}")).status,
                    401
                );
            });
        }
    });
    assert_eq!(
        call(
            cupd,
            Some("tok-alice"),
            "DELETE",
            &format!("{RESOURCES}/default/resources/r00"),
            ""
        )
        .status,
        202
    );
    // Reads are not audited.
    assert_eq!(
        call(
            cupd,
            Some("tok-alice"),
            "GET",
            &format!("{RESOURCES}/default/resources"),
            ""
        )
        .status,
        200
    );
    let lines = f.audit_lines();
    assert_eq!(lines.len(), 56, "40 + 10 + 5 writes and a delete");
    let count =
        |pred: &dyn Fn(&serde_json::Value) -> bool| lines.iter().filter(|l| pred(l)).count();
    assert_eq!(
        count(&|l| l["status"] == 202 && l["user"] == "alice" && l["verb"] == "put"),
        40
    );
    assert_eq!(
        count(&|l| l["status"] == 403 && l["namespace"] == "prod"),
        10
    );
    assert_eq!(count(&|l| l["status"] == 401 && l["user"].is_null()), 5);
    assert_eq!(count(&|l| l["verb"] == "delete" && l["name"] == "r00"), 1);
    let first = &lines[0];
    for field in [
        "time",
        "groups",
        "group",
        "resource",
        "namespace",
        "name",
        "source",
    ] {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(first["resource"], "resources");
    assert_eq!(first["group"], "test.cup.flipt.io");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.file("audit.log"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn anonymous_access_is_only_what_the_policy_grants_it() {
    let f = Fixture::new();
    let cupd = f.start(&["--anonymous"]);
    assert_eq!(
        call(
            &cupd,
            None,
            "GET",
            &format!("{RESOURCES}/public/resources"),
            ""
        )
        .status,
        200
    );
    assert_eq!(
        call(
            &cupd,
            None,
            "GET",
            &format!("{RESOURCES}/default/resources"),
            ""
        )
        .status,
        403
    );
    assert_eq!(put(&cupd, None, "public", "x").status, 403);
    // Credentials that are wrong are refused, not served as anonymous.
    assert_eq!(
        call(
            &cupd,
            Some("nope"),
            "GET",
            &format!("{RESOURCES}/public/resources"),
            ""
        )
        .status,
        401
    );
    let who = call(
        &cupd,
        None,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "{}",
    );
    assert_eq!(
        who.json()["status"]["userInfo"]["username"],
        "system:anonymous"
    );
}

#[test]
fn proxy_headers_count_only_from_trusted_sources() {
    let f = Fixture::new();
    let list = format!("{RESOURCES}/default/resources");
    let headers = [
        ("Tailscale-User-Login", "alice@example.com"),
        ("X-Forwarded-Groups", "editors,x"),
    ];
    let trusted = f.start(&[
        "--requestheader-username-headers",
        "X-Forwarded-User,Tailscale-User-Login",
        "--requestheader-group-headers",
        "X-Forwarded-Groups",
        "--requestheader-trusted-sources",
        "127.0.0.1,::1",
    ]);
    let r = trusted.request("GET", &list, &headers, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = trusted.request(
        "PUT",
        &format!("{list}/h"),
        &headers,
        body("default", "h").as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let audit = f.audit_lines();
    assert_eq!(audit.last().unwrap()["user"], "alice@example.com");
    drop(trusted);

    let untrusted = f.start(&[
        "--requestheader-username-headers",
        "Tailscale-User-Login",
        "--requestheader-group-headers",
        "X-Forwarded-Groups",
        "--requestheader-trusted-sources",
        "10.0.0.0/8",
    ]);
    let r = untrusted.request("GET", &list, &headers, b"");
    assert_eq!(
        r.status,
        401,
        "headers from 127.0.0.1 are not believed: {}",
        r.text()
    );
    // A token still works beside the ignored headers, and names its own user.
    let mut with_token = headers.to_vec();
    with_token.push(("Authorization", "Bearer tok-viewer"));
    let r = untrusted.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &with_token,
        b"{}",
    );
    assert_eq!(r.json()["status"]["userInfo"]["username"], "viewer");
}

fn refused(f: &Fixture, args: &[&str]) -> String {
    match Cupd::try_start(&f.config(args)) {
        Ok(_) => panic!("cupd started with {args:?}"),
        Err(log) => log,
    }
}

#[test]
fn bad_access_configuration_stops_cupd_with_the_reason() {
    let f = Fixture::new();
    let path = |name: &str| f.file(name).display().to_string();
    std::fs::write(
        f.file("bad-policy.json"),
        "{\"rules\": [\n {\"users\": [\"a\"], \"verbs\": [\"patch\"], \"paths\": [\"/x\"]}]}",
    )
    .unwrap();
    std::fs::write(f.file("bad-tokens.csv"), "ok,u,1\nnot-enough-fields\n").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--token-auth-file".into(), path("tokens.csv")],
            "no --authorization-policy-file",
        ),
        (
            vec!["--authorization-policy-file".into(), path("policy.json")],
            "needs a way to identify callers",
        ),
        (
            vec![
                "--token-auth-file".into(),
                path("tokens.csv"),
                "--authorization-policy-file".into(),
                path("bad-policy.json"),
            ],
            "rule 1 unknown verb \"patch\"",
        ),
        (
            vec![
                "--token-auth-file".into(),
                path("bad-tokens.csv"),
                "--authorization-policy-file".into(),
                path("policy.json"),
            ],
            "bad-tokens.csv:2: expected token,user,uid",
        ),
        (
            vec![
                "--token-auth-file".into(),
                path("missing.csv"),
                "--authorization-policy-file".into(),
                path("policy.json"),
            ],
            "missing.csv",
        ),
        (
            vec![
                "--requestheader-username-headers".into(),
                "X-Remote-User".into(),
            ],
            "headers believed from anyone",
        ),
        (
            vec![
                "--requestheader-username-headers".into(),
                "X-Remote-User".into(),
                "--requestheader-trusted-sources".into(),
                "localhost".into(),
            ],
            "neither an IP address nor a network",
        ),
        (
            vec!["--git-record-user".into(), "committer".into()],
            "expected trailer, author or off",
        ),
    ];
    for (args, wanted) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = refused(&f, &args);
        assert!(
            log.contains(wanted),
            "{args:?}: wanted {wanted:?} in\n{log}"
        );
    }
}

#[test]
fn with_no_access_flags_everything_is_served_as_before() {
    let f = Fixture::new();
    let cupd = Cupd::start(&f.config(&[]));
    assert_eq!(put(&cupd, None, "prod", "x").status, 202);
    assert_eq!(cupd.get("/metrics").status, 200);
    let review = call(
        &cupd,
        None,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        r#"{"spec":{"resourceAttributes":{"namespace":"prod","verb":"delete","group":"test.cup.flipt.io","resource":"resources"}}}"#,
    );
    assert_eq!(review.json()["status"]["allowed"], true);
    assert!(
        review.json()["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("access control is off")
    );
}

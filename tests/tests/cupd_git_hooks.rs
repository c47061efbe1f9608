//! The forge webhooks of the real cupd on the Git source (`POST /hooks/{github,gitea,gitlab}`),
//! the remote served over HTTP by the harness: a delivery signed as each forge signs it, with
//! the forge's own example payload (tests/fixtures/webhooks, see SOURCE.md there), makes cupd
//! fetch at once (a read sees a new commit within a second while the fetch interval is an
//! hour); a replay, a bad or missing signature, an oversize or unparsable body do nothing;
//! pull-request events of proposal branches are recorded; without a secret, or on the local
//! source, the hooks do not exist.

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::cupd_git_common::{Fixture, RESOURCES, git, refused};
use cup_e2e::cupd::{Cupd, CupdConfig, write_template_controller};
use cup_e2e::githttp::GitHttp;
use cup_e2e::http::Response;

const USER: &str = "cup";
const TOKEN: &str = "hooks-token";
const SECRET: &str = "webhook-secret-under-test";

fn payload(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/webhooks")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Clone, Copy, Debug)]
enum Forge {
    GitHub,
    Gitea,
    GitLab,
}

impl Forge {
    fn path(self) -> &'static str {
        match self {
            Forge::GitHub => "/hooks/github",
            Forge::Gitea => "/hooks/gitea",
            Forge::GitLab => "/hooks/gitlab",
        }
    }

    /// The forge's event name for a push and for a pull (merge) request.
    fn push_event(self) -> &'static str {
        match self {
            Forge::GitHub | Forge::Gitea => "push",
            Forge::GitLab => "Push Hook",
        }
    }

    fn pull_request_event(self) -> &'static str {
        match self {
            Forge::GitHub | Forge::Gitea => "pull_request",
            Forge::GitLab => "Merge Request Hook",
        }
    }

    fn push_payload(self) -> Vec<u8> {
        payload(match self {
            Forge::GitHub => "github-push-payload.json",
            Forge::Gitea => "gitea-push.json",
            Forge::GitLab => "gitlab-push.json",
        })
    }

    fn pull_request_payload(self) -> Vec<u8> {
        payload(match self {
            Forge::GitHub => "github-pull_request-closed.payload.json",
            Forge::Gitea => "gitea-pull_request.json",
            Forge::GitLab => "gitlab-merge_request.json",
        })
    }

    /// The headers of a delivery of `event` with id `id`, signed as the forge signs it.
    fn headers(self, event: &str, id: &str, secret: &str, body: &[u8]) -> Vec<(String, String)> {
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        let mut add = |k: &str, v: String| headers.push((k.to_owned(), v));
        match self {
            Forge::GitHub => {
                add("X-GitHub-Event", event.into());
                add("X-GitHub-Delivery", id.into());
                add(
                    "X-Hub-Signature-256",
                    format!("sha256={}", hex_hmac(secret, body)),
                );
            }
            Forge::Gitea => {
                add("X-Gitea-Event", event.into());
                add("X-Gitea-Delivery", id.into());
                add("X-Gitea-Signature", hex_hmac(secret, body));
            }
            Forge::GitLab => {
                add("X-Gitlab-Event", event.into());
                add("Idempotency-Key", id.into());
                add("X-Gitlab-Token", secret.into());
            }
        }
        headers
    }
}

const FORGES: [Forge; 3] = [Forge::GitHub, Forge::Gitea, Forge::GitLab];

fn post(cupd: &Cupd, path: &str, headers: &[(String, String)], body: &[u8]) -> Response {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    cupd.request("POST", path, &headers, body)
}

/// A signed delivery.
fn deliver(cupd: &Cupd, forge: Forge, event: &str, id: &str, body: &[u8]) -> Response {
    post(
        cupd,
        forge.path(),
        &forge.headers(event, id, SECRET, body),
        body,
    )
}

/// Fetches cupd made from the harness's server (advertisements of `git-upload-pack`).
fn upload_packs(server: &GitHttp) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.status == 200 && r.query.contains("service=git-upload-pack"))
        .count()
}

/// Waits (up to 5 s) for the fetch count to pass `before`.
fn wait_for_fetch(server: &GitHttp, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while upload_packs(server) <= before {
        assert!(Instant::now() < deadline, "no fetch within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A resource `name` committed on `main` of the fixture's remote (through its seed clone).
fn push_resource(fixture: &Fixture, name: &str) {
    let seed = fixture.tmp.path().join("seed");
    let body = crate::cupd_git_common::FOO.replace("\"foo\"", &format!("\"{name}\""));
    std::fs::write(
        seed.join(format!(
            "default/test.cup.flipt.io-v1alpha1-Resource-{name}.json"
        )),
        body,
    )
    .unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", &format!("add {name}")]);
    git(&seed, &["push", "-q", "origin", "main"]);
}

/// cupd on the fixture's remote over HTTP, fetching every hour, with the webhook secret.
fn start(fixture: &Fixture, server: &GitHttp) -> Cupd {
    let secret = fixture.path("webhook-secret");
    std::fs::write(&secret, format!("  {SECRET}\n")).unwrap();
    let url = server.url_with(USER, TOKEN, "remote.git");
    let secret = secret.to_str().unwrap().to_owned();
    Cupd::start(&fixture.config(
        &url,
        &[
            "--git-fetch-interval",
            "1h",
            "--api-git-webhook-secret-file",
            &secret,
        ],
        &[],
    ))
}

#[test]
fn a_signed_push_delivery_makes_reads_see_the_new_commit_within_a_second() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let cupd = start(&fixture, &server);
    for (n, forge) in FORGES.into_iter().enumerate() {
        let name = format!("pushed{n}");
        let item = format!("{RESOURCES}/{name}");
        push_resource(&fixture, &name);
        // Without a hook the read does not see it: the next fetch is an hour away.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            cupd.get(&item).status,
            404,
            "{forge:?}: seen without a hook"
        );

        let before = upload_packs(&server);
        let body = forge.push_payload();
        let id = format!("push-{n}-{:?}", forge);
        let sent = Instant::now();
        let r = deliver(&cupd, forge, forge.push_event(), &id, &body);
        assert_eq!(r.status, 202, "{forge:?}: {}\n{}", r.text(), cupd.log());
        loop {
            if cupd.get(&item).status == 200 {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "{forge:?}: the new commit is not read within a second of the hook\n{}",
                cupd.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        eprintln!(
            "{forge:?}: new commit read {:?} after the hook",
            sent.elapsed()
        );
        wait_for_fetch(&server, before);

        // The same delivery again, or its body under another id: handled already, no fetch.
        let settled = upload_packs(&server);
        let again = deliver(&cupd, forge, forge.push_event(), &id, &body);
        assert_eq!(again.status, 200, "{forge:?}: {}", again.text());
        assert!(again.text().contains("already handled"), "{}", again.text());
        let renamed = deliver(&cupd, forge, forge.push_event(), &format!("{id}-b"), &body);
        assert_eq!(renamed.status, 200, "{forge:?}: {}", renamed.text());
        assert!(
            renamed.text().contains("already handled"),
            "{}",
            renamed.text()
        );
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            upload_packs(&server),
            settled,
            "{forge:?}: a replay fetched"
        );
    }
    // A burst of distinct deliveries at once: fetches are coalesced, never one per delivery.
    const BURST: usize = 20;
    let settled = upload_packs(&server);
    let example: serde_json::Value = serde_json::from_slice(&Forge::GitHub.push_payload()).unwrap();
    let barrier = std::sync::Barrier::new(BURST);
    std::thread::scope(|s| {
        for i in 0..BURST {
            let (cupd, barrier, mut body) = (&cupd, &barrier, example.clone());
            s.spawn(move || {
                body["after"] = format!("{i:040x}").into();
                let body = serde_json::to_vec(&body).unwrap();
                barrier.wait();
                let r = deliver(cupd, Forge::GitHub, "push", &format!("burst-{i}"), &body);
                assert_eq!(r.status, 202, "{}", r.text());
            });
        }
    });
    wait_for_fetch(&server, settled);
    std::thread::sleep(Duration::from_millis(1000));
    let fetches = upload_packs(&server) - settled;
    eprintln!("{BURST} deliveries at once: {fetches} fetches");
    assert!(
        fetches < BURST / 2,
        "{fetches} fetches for {BURST} deliveries"
    );

    let metrics = cupd.get("/metrics").text();
    for forge in ["github", "gitea", "gitlab"] {
        let accepted = if forge == "github" { 1 + BURST } else { 1 };
        for (outcome, n) in [("accepted", accepted), ("replayed", 2)] {
            let line = format!(
                "cupd_webhook_deliveries_total{{forge=\"{forge}\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(metrics.contains(&line), "{line}\n{metrics}");
        }
        assert!(
            metrics.contains(&format!("route=\"/hooks/{forge}\"")),
            "{metrics}"
        );
    }
    assert!(!cupd.log().contains(SECRET), "the secret was logged");
}

#[test]
fn bad_deliveries_are_refused_and_fetch_nothing() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let cupd = start(&fixture, &server);
    std::thread::sleep(Duration::from_millis(300));
    let before = upload_packs(&server);
    for forge in FORGES {
        let body = forge.push_payload();
        let event = forge.push_event();
        let status = |headers: &[(String, String)], body: &[u8]| {
            let r = post(&cupd, forge.path(), headers, body);
            (r.status, r.text())
        };
        // A wrong secret; a signature over another body; no signature at all.
        let wrong = forge.headers(event, "bad-1", "not-the-secret", &body);
        let (code, text) = status(&wrong, &body);
        assert_eq!(code, 401, "{forge:?} wrong secret: {text}");
        let other = forge.headers(event, "bad-2", SECRET, b"{\"ref\":\"refs/heads/x\"}");
        let (code, text) = status(&other, &body);
        // GitLab's token covers no body: the same token opens any body.
        match forge {
            Forge::GitLab => assert_eq!(code, 202, "{text}"),
            _ => assert_eq!(code, 401, "{forge:?} signature of another body: {text}"),
        }
        let unsigned: Vec<(String, String)> = forge
            .headers(event, "bad-3", SECRET, &body)
            .into_iter()
            .filter(|(k, _)| !k.contains("Signature") && k != "X-Gitlab-Token")
            .collect();
        let (code, text) = status(&unsigned, &body);
        assert_eq!(code, 401, "{forge:?} unsigned: {text}");
        assert!(text.starts_with("no "), "{text}");
        // Signed, but with no delivery id: nothing can tell a replay of it.
        let anonymous: Vec<(String, String)> = forge
            .headers(event, "bad-4", SECRET, &body)
            .into_iter()
            .filter(|(k, _)| !k.contains("Delivery") && k != "Idempotency-Key")
            .collect();
        let (code, text) = status(&anonymous, &body);
        assert_eq!(code, 400, "{forge:?} no delivery id: {text}");
        // Signed, not a payload of the event.
        let junk = b"payload=%7B%7D";
        let (code, text) = status(&forge.headers(event, "bad-5", SECRET, junk), junk);
        assert_eq!(code, 400, "{forge:?} unparsable: {text}");
        // Signed, over the body cap.
        let mut huge = b"{\"ref\":\"refs/heads/main\",\"pad\":\"".to_vec();
        huge.resize(1024 * 1024 + 1, b'a');
        let (code, text) = status(&forge.headers(event, "bad-6", SECRET, &huge), &huge);
        assert_eq!(code, 413, "{forge:?} oversize: {text}");
    }
    std::thread::sleep(Duration::from_millis(800));
    // Only GitLab's "another body" delivery (accepted: its token is right) fetched.
    let fetched = upload_packs(&server) - before;
    assert!(fetched <= 1, "{fetched} fetches after refused deliveries");
    let log = cupd.log();
    assert!(log.contains("webhook delivery refused"), "{log}");
    assert!(!log.contains(SECRET), "the secret was logged");
}

#[test]
fn pull_request_events_of_proposal_branches_are_recorded() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let cupd = start(&fixture, &server);
    let cases = [
        (Forge::GitHub, "01JHOOKGITHUB0000000000000", "closed"),
        (Forge::Gitea, "01JHOOKGITEA00000000000000", "merged"),
        (Forge::GitLab, "01JHOOKGITLAB0000000000000", "open"),
    ];
    for (forge, id, state) in cases {
        let example = forge.pull_request_payload();
        // The example as published: its head is no proposal branch, so nothing is
        // recorded, but the fetch is asked for.
        let plain = format!("pr-plain-{forge:?}");
        let r = deliver(&cupd, forge, forge.pull_request_event(), &plain, &example);
        assert_eq!(r.status, 202, "{forge:?}: {}", r.text());
        assert!(
            r.text().contains("not a proposal's pull request"),
            "{forge:?}: {}",
            r.text()
        );
        // The same example with a proposal branch as its head.
        let branch = format!("cup/proposal/{id}");
        let mut value: serde_json::Value = serde_json::from_slice(&example).unwrap();
        match forge {
            Forge::GitLab => value["object_attributes"]["source_branch"] = branch.clone().into(),
            _ => value["pull_request"]["head"]["ref"] = branch.clone().into(),
        }
        let body = serde_json::to_vec(&value).unwrap();
        let delivery = format!("pr-{id}");
        let r = deliver(&cupd, forge, forge.pull_request_event(), &delivery, &body);
        assert_eq!(r.status, 202, "{forge:?}: {}", r.text());
        let number = match forge {
            Forge::GitHub => 2,
            Forge::Gitea => 12,
            Forge::GitLab => 1,
        };
        assert_eq!(
            r.text().trim(),
            format!("accepted: pull request {number} of {branch} is {state}; fetching"),
            "{forge:?}"
        );
    }
    let log = cupd.log();
    assert_eq!(
        log.matches("recorded=true").count(),
        3,
        "three pull requests recorded:\n{log}"
    );
}

#[test]
fn the_hooks_pass_access_control_by_signature_and_are_audited() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let tokens = fixture.path("tokens.csv");
    std::fs::write(&tokens, "tok-root,root,1\n").unwrap();
    let policy = fixture.path("policy.json");
    std::fs::write(
        &policy,
        r#"{"rules": [{"users": ["root"], "verbs": ["*"], "resources": ["*"], "namespaces": ["*"]}]}"#,
    )
    .unwrap();
    let audit = fixture.path("audit.log");
    let secret = fixture.path("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let url = server.url_with(USER, TOKEN, "remote.git");
    let cupd = Cupd::start(&fixture.config(
        &url,
        &[
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-policy-file",
            policy.to_str().unwrap(),
            "--audit-log-path",
            audit.to_str().unwrap(),
            "--cors-allowed-origins",
            "https://ui.example",
            "--api-git-webhook-secret-file",
            secret.to_str().unwrap(),
        ],
        &[],
    ));
    // No bearer token: the signature is the credential.
    let body = Forge::GitHub.push_payload();
    let r = deliver(&cupd, Forge::GitHub, "push", "guarded-1", &body);
    assert_eq!(r.status, 202, "{}\n{}", r.text(), cupd.log());
    let wrong = Forge::GitHub.headers("push", "guarded-2", "nope", &body);
    let r = post(&cupd, "/hooks/github", &wrong, &body);
    assert_eq!(r.status, 401, "{}", r.text());
    // The API itself still wants a token.
    assert_eq!(cupd.get(RESOURCES).status, 401);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["resource"] == "hooks")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[0]["verb"], &lines[0]["name"], &lines[0]["status"]),
        (&"webhook".into(), &"github".into(), &202.into())
    );
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(
        lines[1]["reason"], "X-Hub-Signature-256 does not match",
        "{lines:?}"
    );
}

#[test]
fn the_hooks_do_not_exist_without_a_secret_or_on_the_local_source() {
    let fixture = Fixture::new();
    let url = fixture.bare().to_str().unwrap().to_owned();
    {
        let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
        let body = Forge::GitHub.push_payload();
        for forge in FORGES {
            let r = deliver(&cupd, forge, forge.push_event(), "no-secret", &body);
            assert_eq!(r.status, 404, "{forge:?}: {}", r.text());
        }
    }
    // A secret file that is missing or empty stops cupd at startup, naming the flag.
    let empty = fixture.path("empty-secret");
    std::fs::write(&empty, " \n").unwrap();
    for (file, why) in [
        (empty.to_str().unwrap(), "empty"),
        ("/nonexistent/secret", "No such file"),
    ] {
        let log = refused(&fixture.config(&url, &["--api-git-webhook-secret-file", file], &[]));
        assert!(log.contains("--api-git-webhook-secret-file"), "{log}");
        assert!(log.contains(why), "{log}");
    }

    // The local source: no hooks, even with a secret (which is then ignored).
    let secret = fixture.path("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (config, source, store) = (
        tmp.path().join("config"),
        tmp.path().join("source"),
        tmp.path().join("store"),
    );
    for dir in [&config, &source, &store] {
        std::fs::create_dir_all(dir).unwrap();
    }
    write_template_controller(
        &config,
        r#"{"type":"object","properties":{"spec":{"type":"object"}}}"#,
    );
    let mut local = CupdConfig::new(&config, &source, &store);
    local.args = vec![
        "--api-git-webhook-secret-file".into(),
        secret.to_str().unwrap().into(),
    ];
    let cupd = Cupd::start(&local);
    let body = Forge::GitHub.push_payload();
    let r = deliver(&cupd, Forge::GitHub, "push", "local", &body);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        cupd.log()
            .contains("--api-git-webhook-secret-file is ignored"),
        "{}",
        cupd.log()
    );
}

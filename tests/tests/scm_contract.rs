//! The forge clients (`cup-scm`) against contract servers that check every request against
//! the providers' published API descriptions (`tests/contract/`): opening with labels and
//! reviewers, finding, merging; rate limits and server errors retried as the forge says;
//! budgets; the token never in an error.

use std::time::{Duration, Instant};

use cup_e2e::contract::ContractServer;
use cup_git::{NewProposal, PullRequestState, PullRequests};
use cup_scm::{Forge, HttpLimits, ScmOptions, Token};

const TOKEN: &str = "s3cret-t0ken-do-not-log";
const BRANCH: &str = "cup/proposal/01JABCDEFGHJKMNPQRSTVWXYZ0";
const MESSAGE: &str = "Put Resource default/baz\n\nWritten through cupd.\n";

fn client(
    server: &ContractServer,
    forge: Forge,
    limits: HttpLimits,
) -> std::sync::Arc<dyn PullRequests> {
    let options = ScmOptions {
        forge,
        api_url: Some(server.api_base()),
        token: Token::new(TOKEN),
        labels: vec!["cup".into()],
        reviewers: vec!["alice".into()],
        limits,
    };
    cup_scm::open(&options, "https://forge.invalid/team/app.git").unwrap()
}

fn proposal<'a>(branch: &'a str, base: Option<&'a str>) -> NewProposal<'a> {
    NewProposal {
        id: branch.trim_start_matches("cup/proposal/"),
        branch,
        base,
        commit: "0123456789abcdef0123456789abcdef01234567",
        message: MESSAGE,
        files: &[],
        remote: "https://forge.invalid/team/app.git",
    }
}

fn fast() -> HttpLimits {
    HttpLimits {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..HttpLimits::default()
    }
}

fn forge(name: &str) -> Forge {
    Forge::from_name(name).unwrap()
}

/// Open (with labels and reviewers), find, open again (the same one), merge, find merged.
fn lifecycle(provider: &str, web_path: &str) {
    let server = ContractServer::start(provider, TOKEN, &["bug", "cup"], &["alice"]);
    let scm = client(&server, forge(provider), fast());
    assert_eq!(scm.name(), provider);

    let opened = scm
        .proposed(&proposal(BRANCH, Some("main")))
        .unwrap()
        .unwrap();
    assert_eq!(opened.number, 1);
    assert_eq!(opened.state, PullRequestState::Open);
    assert_eq!(opened.head, BRANCH);
    assert_eq!(
        opened.url,
        format!("{}/team/app/{web_path}/1", server.origin())
    );

    let pulls = server.pulls();
    assert_eq!(pulls.len(), 1);
    let pull = &pulls[0];
    assert_eq!(pull["head"], BRANCH);
    assert_eq!(pull["base"], "main");
    assert_eq!(pull["title"], "Put Resource default/baz");
    assert_eq!(pull["body"], MESSAGE);
    assert_eq!(pull["labels"], serde_json::json!(["cup"]));
    assert_eq!(pull["reviewers"].as_array().unwrap().len(), 1, "{pull}");

    assert_eq!(scm.find(BRANCH).unwrap(), Some(opened.clone()));
    assert_eq!(scm.find("cup/proposal/none").unwrap(), None);

    // A create retried after its first attempt went through finds the open one.
    let again = scm
        .proposed(&proposal(BRANCH, Some("main")))
        .unwrap()
        .unwrap();
    assert_eq!(again.number, 1);
    assert_eq!(server.pulls().len(), 1);

    // No base (a write on a tag or a commit): the default branch.
    let other = "cup/proposal/01JABCDEFGHJKMNPQRSTVWXYZ1";
    let second = scm.proposed(&proposal(other, None)).unwrap().unwrap();
    assert_eq!(second.number, 2);
    assert_eq!(server.pulls()[1]["base"], "main");

    let merged = scm.merge(&opened).unwrap();
    assert_eq!(
        merged.commit.as_deref(),
        Some("0000000000000000000000000000000000000001")
    );
    let found = scm.find(BRANCH).unwrap().unwrap();
    assert_eq!(found.state, PullRequestState::Merged);
    let err = scm.merge(&opened).unwrap_err().to_string();
    assert!(err.contains("405"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");

    for request in server.requests() {
        assert_eq!(request["auth"], true, "{request}");
    }
    server.assert_no_violations();
}

#[test]
fn github_opens_finds_and_merges() {
    lifecycle("github", "pull");
}

#[test]
fn gitea_opens_finds_and_merges() {
    lifecycle("gitea", "pulls");
}

#[test]
fn gitlab_opens_finds_and_merges() {
    lifecycle("gitlab", "-/merge_requests");
}

#[test]
fn a_wrong_token_is_a_clear_error_without_the_token() {
    for (provider, message) in [
        ("github", "Bad credentials"),
        ("gitea", "Bad credentials"),
        ("gitlab", "401 Unauthorized"),
    ] {
        let server = ContractServer::start(provider, "the-right-one", &[], &[]);
        let scm = client(&server, forge(provider), fast());
        let err = scm
            .proposed(&proposal(BRANCH, Some("main")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("401") && err.contains(message), "{err}");
        assert!(
            !err.contains(TOKEN) && !err.contains("the-right-one"),
            "{err}"
        );
        assert!(!format!("{scm:?}").contains(TOKEN));
        server.assert_no_violations();
    }
}

#[test]
fn retry_after_is_honoured() {
    let server = ContractServer::start("github", TOKEN, &[], &[]);
    let scm = client(&server, Forge::GitHub, fast());
    server.fault(429, 1, Some("2"), None);
    let started = Instant::now();
    assert!(scm.find(BRANCH).unwrap().is_none());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    let statuses: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [429, 200]);
    server.assert_no_violations();
}

/// GitLab answers a rate limit with 429, `Retry-After` and `RateLimit-Reset` (no `X-`).
#[test]
fn gitlab_rate_limits_are_waited_out() {
    let server = ContractServer::start("gitlab", TOKEN, &[], &[]);
    let scm = client(&server, Forge::GitLab, fast());
    server.fault(429, 1, Some("2"), Some(30));
    let started = Instant::now();
    assert!(scm.find(BRANCH).unwrap().is_none());
    let waited = started.elapsed();
    // `Retry-After` first.
    assert!(waited >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");

    // Only `RateLimit-Reset`: in 2 s, in whole epoch seconds, so between 1 and 2 s from now.
    server.fault(429, 1, None, Some(2));
    let started = Instant::now();
    assert!(scm.find(BRANCH).unwrap().is_none());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    let statuses: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 200, 429, 200]);
    server.assert_no_violations();
}

#[test]
fn an_exhausted_rate_limit_waits_for_its_reset() {
    for provider in ["github", "gitea"] {
        let server = ContractServer::start(provider, TOKEN, &[], &[]);
        let scm = client(&server, forge(provider), fast());
        // Reset in 2 s, in whole epoch seconds: between 1 and 2 s from now.
        server.fault(403, 1, None, Some(2));
        let started = Instant::now();
        assert!(scm.find(BRANCH).unwrap().is_none());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "{provider}: {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "{provider}: {waited:?}");
        assert_eq!(server.requests().len(), 2);
        server.assert_no_violations();
    }
}

#[test]
fn server_errors_are_retried_with_backoff() {
    for provider in ["github", "gitea", "gitlab"] {
        let server = ContractServer::start(provider, TOKEN, &["cup"], &["alice"]);
        let scm = client(&server, forge(provider), fast());
        server.fault(502, 2, None, None);
        let opened = scm
            .proposed(&proposal(BRANCH, Some("main")))
            .unwrap()
            .unwrap();
        assert_eq!(opened.number, 1);
        let statuses: Vec<_> = server
            .requests()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(&statuses[..2], [502, 502], "{provider}: {statuses:?}");
        server.assert_no_violations();
    }
}

#[test]
fn budgets_end_retries_with_a_clear_error() {
    let server = ContractServer::start("github", TOKEN, &[], &[]);
    // A forge asking for a wait longer than the budget: no sleep, an error at once.
    let scm = client(
        &server,
        Forge::GitHub,
        HttpLimits {
            budget: Duration::from_secs(5),
            ..fast()
        },
    );
    server.fault(429, 1, Some("60"), None);
    let started = Instant::now();
    let err = scm.find(BRANCH).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("429") && err.contains("API rate limit exceeded") && err.contains("budget"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");

    // Server errors past the attempts.
    let scm = client(
        &server,
        Forge::GitHub,
        HttpLimits {
            max_attempts: 3,
            ..fast()
        },
    );
    server.fault(502, 5, None, None);
    let err = scm.find(BRANCH).unwrap_err().to_string();
    assert!(
        err.contains("gave up after 3 attempt(s)") && err.contains("502"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
    server.assert_no_violations();
}

#[test]
fn nothing_listening_is_a_transport_error_after_retries() {
    let closed = cup_e2e::http::ClosedPort::new();
    let options = ScmOptions {
        forge: Forge::Gitea,
        api_url: Some(format!("http://127.0.0.1:{}/api/v1", closed.port())),
        token: Token::new(TOKEN),
        labels: vec![],
        reviewers: vec![],
        limits: HttpLimits {
            max_attempts: 2,
            ..fast()
        },
    };
    let scm = cup_scm::open(&options, "https://forge.invalid/team/app.git").unwrap();
    let err = scm.find(BRANCH).unwrap_err().to_string();
    assert!(
        err.contains("could not connect") && err.contains("2 attempt"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
}

/// The contract servers refuse what the descriptions refuse: requests sent by the test
/// itself, each breaking the description in one way, are answered 400 and recorded.
#[test]
fn requests_the_description_refuses_are_recorded() {
    let server = ContractServer::start("github", TOKEN, &[], &[]);
    let auth = format!("Bearer {TOKEN}");
    let json = ("Content-Type", "application/json");
    let bad: [(&str, &str, &str, &str); 5] = [
        // `head` and `base` are required.
        (
            "POST",
            "/repos/team/app/pulls",
            r#"{"title":"t"}"#,
            "'head' is a required property",
        ),
        // `merge_method` is an enum.
        (
            "PUT",
            "/repos/team/app/pulls/1/merge",
            r#"{"merge_method":"octopus"}"#,
            "octopus",
        ),
        // An undeclared query parameter.
        (
            "GET",
            "/repos/team/app/pulls?branch=x",
            "",
            "'branch' is not declared",
        ),
        // A path parameter of the wrong type.
        (
            "PUT",
            "/repos/team/app/pulls/one/merge",
            "",
            "is not an integer",
        ),
        // No such operation.
        ("DELETE", "/repos/team/app/pulls", "", "is not an operation"),
    ];
    for (method, path, body, why) in bad {
        let response = cup_e2e::http::request(
            server.port(),
            method,
            path,
            &[("Authorization", auth.as_str()), json],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(response.status, 400, "{method} {path}: {}", response.text());
        assert!(
            response.text().contains(why),
            "{method} {path}: {}",
            response.text()
        );
    }
    let violations = server.violations();
    assert_eq!(violations.len(), 5, "{violations:#?}");

    let server = ContractServer::start("gitea", TOKEN, &[], &[]);
    let auth = format!("token {TOKEN}");
    // Gitea's merge option names `do`, in lower case; a body sent as text is refused too.
    for (body, ctype, why) in [
        (
            r#"{"Do":"merge"}"#,
            "application/json",
            "'do' is a required property",
        ),
        (
            r#"{"do":"merge"}"#,
            "text/plain",
            "body sent as 'text/plain'",
        ),
    ] {
        let response = cup_e2e::http::request(
            server.port(),
            "POST",
            "/api/v1/repos/team/app/pulls/1/merge",
            &[("Authorization", auth.as_str()), ("Content-Type", ctype)],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(response.status, 400, "{}", response.text());
        assert!(response.text().contains(why), "{}", response.text());
    }
    assert_eq!(server.violations().len(), 2);

    let server = ContractServer::start("gitlab", TOKEN, &[], &["alice"]);
    let auth = ("PRIVATE-TOKEN", TOKEN);
    let project = "/api/v4/projects/team%2Fapp";
    let bad: [(&str, String, &str, &str); 6] = [
        // `labels` is an array of names in the description, not one string.
        (
            "POST",
            format!("{project}/merge_requests"),
            r#"{"source_branch":"b","target_branch":"main","title":"t","labels":"cup"}"#,
            "'cup' is not of type 'array'",
        ),
        // `title` is required.
        (
            "POST",
            format!("{project}/merge_requests"),
            r#"{"source_branch":"b","target_branch":"main"}"#,
            "'title' is a required property",
        ),
        // The merge takes a body, if only an empty one.
        (
            "PUT",
            format!("{project}/merge_requests/1/merge"),
            "",
            "requires a body",
        ),
        // `state` is an enum (`opened`, not `open`).
        (
            "GET",
            format!("{project}/merge_requests?state=open"),
            "",
            "'open' is not one of",
        ),
        // The instance-wide user search is not in the description.
        (
            "GET",
            "/api/v4/users?username=alice".to_owned(),
            "",
            "no operation of the description matches",
        ),
        // An iid of the wrong type.
        (
            "PUT",
            format!("{project}/merge_requests/one/merge"),
            "{}",
            "is not an integer",
        ),
    ];
    for (method, path, body, why) in &bad {
        let response = cup_e2e::http::request(
            server.port(),
            method,
            path,
            &[auth, ("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(response.status, 400, "{method} {path}: {}", response.text());
        assert!(
            response.text().contains(why),
            "{method} {path}: {}",
            response.text()
        );
    }
    assert_eq!(server.violations().len(), bad.len());
}

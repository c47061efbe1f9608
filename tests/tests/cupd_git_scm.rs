//! cupd on the Git source with `-api-git-scm github|gitea|gitlab`: every write pushes a proposal
//! branch to a real Git HTTP server and opens a pull request on a contract server that checks
//! each request against the forge's published API description. The 202 body names the pull
//! request's web page; cupd's debug log never holds the token.

use cup_e2e::contract::ContractServer;
use cup_e2e::cupd::Cupd;
use cup_e2e::githttp::GitHttp;

use crate::cupd_git_common::{Fixture, put_baz_and_read_back, refused};

const TOKEN: &str = "scm-t0ken-never-in-logs";
const GIT_PASSWORD: &str = "git-pa55word";

/// The fixture's bare repository, also exported as `team/app.git` (the forge's owner and
/// repository come from the remote's path).
fn exported(fixture: &Fixture) -> GitHttp {
    let team = fixture.root().join("team");
    std::fs::create_dir_all(&team).unwrap();
    std::os::unix::fs::symlink(fixture.bare(), team.join("app.git")).unwrap();
    GitHttp::start(&fixture.root(), "git", GIT_PASSWORD)
}

fn token_file(fixture: &Fixture) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = fixture.path("scm-token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn opens_a_pull_request(provider: &str, web_path: &str, token_from_env: bool) {
    let fixture = Fixture::new();
    let http = exported(&fixture);
    let server = ContractServer::start(provider, TOKEN, &["cup"], &["alice"]);
    let url = http.url_with("git", GIT_PASSWORD, "team/app.git");
    let token_file = token_file(&fixture);
    let api_base = server.api_base();
    let mut flags = vec![
        "--api-git-scm",
        provider,
        "--api-git-scm-url",
        api_base.as_str(),
        "--api-git-scm-labels",
        "cup",
        "--api-git-scm-reviewers",
        "alice",
    ];
    let mut env = vec![("RUST_LOG", "debug")];
    if token_from_env {
        env.push(("CUPD_API_GIT_SCM_TOKEN", TOKEN));
    } else {
        flags.extend(["--api-git-scm-token-file", token_file.as_str()]);
    }
    let cupd = Cupd::start(&fixture.config(&url, &flags, &env));

    let body = put_baz_and_read_back(&cupd, &fixture);
    let proposal = &body["proposal"];
    assert_eq!(body["empty"], false, "{body}");
    assert_eq!(proposal["source"], provider, "{body}");
    assert_eq!(
        proposal["url"],
        format!("{}/team/app/{web_path}/1", server.origin()),
        "{body}\n{}",
        cupd.log()
    );

    let pulls = server.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(pulls[0]["head"], proposal["branch"]);
    assert_eq!(pulls[0]["base"], "main");
    assert!(!pulls[0]["title"].as_str().unwrap().is_empty());
    assert!(!pulls[0]["title"].as_str().unwrap().contains('\n'));
    let message = fixture_message(&fixture, proposal["branch"].as_str().unwrap());
    assert_eq!(pulls[0]["body"].as_str().unwrap().trim(), message.trim());
    assert_eq!(pulls[0]["labels"], serde_json::json!(["cup"]));
    server.assert_no_violations();

    let log = cupd.log();
    assert!(
        log.contains("forge API call"),
        "debug logging is on:\n{log}"
    );
    assert!(!log.contains(TOKEN), "the token is in cupd's log:\n{log}");
    assert!(
        !log.contains(GIT_PASSWORD),
        "the git password is in cupd's log"
    );
}

fn fixture_message(fixture: &Fixture, branch: &str) -> String {
    crate::cupd_git_common::git(&fixture.bare(), &["log", "-1", "--format=%B", branch])
}

#[test]
fn cupd_opens_gitea_pull_requests() {
    opens_a_pull_request("gitea", "pulls", false);
}

#[test]
fn cupd_opens_github_pull_requests() {
    opens_a_pull_request("github", "pull", true);
}

#[test]
fn cupd_opens_gitlab_merge_requests() {
    opens_a_pull_request("gitlab", "-/merge_requests", false);
}

/// cupd on `fixture` (pushed over `http`) opening pull requests on the Gitea contract server
/// `server`, its token in a file, with `extra` flags and `env`.
fn gitea_cupd(
    fixture: &Fixture,
    http: &GitHttp,
    server: &ContractServer,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Cupd {
    let url = http.url_with("git", GIT_PASSWORD, "team/app.git");
    let token_file = token_file(fixture);
    let api_base = server.api_base();
    let mut flags = vec![
        "--api-git-scm",
        "gitea",
        "--api-git-scm-url",
        &api_base,
        "--api-git-scm-token-file",
        &token_file,
    ];
    flags.extend_from_slice(extra);
    Cupd::start(&fixture.config(&url, &flags, env))
}

/// A forge that refuses the token: the proposal branch is pushed all the same and the 202
/// has no URL; the error is logged without the token.
#[test]
fn a_refused_pull_request_leaves_the_branch() {
    let fixture = Fixture::new();
    let http = exported(&fixture);
    let server = ContractServer::start("gitea", "another-token", &[], &[]);
    let cupd = gitea_cupd(&fixture, &http, &server, &[], &[("RUST_LOG", "debug")]);
    let body = put_baz_and_read_back(&cupd, &fixture);
    assert!(body["proposal"]["url"].is_null(), "{body}");
    let log = cupd.log();
    assert!(log.contains("401"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
    server.assert_no_violations();
}

#[test]
fn scm_flags_are_checked_at_startup() {
    let fixture = Fixture::new();
    let http = exported(&fixture);
    let url = http.url_with("git", GIT_PASSWORD, "team/app.git");
    let log = refused(&fixture.config(&url, &["--api-git-scm", "bitbucket"], &[]));
    assert!(log.contains("unknown SCM"), "{log}");
    let log = refused(&fixture.config(
        &url,
        &[
            "--api-git-scm",
            "github",
            "--api-git-scm-token-file",
            "/nonexistent/token",
        ],
        &[],
    ));
    assert!(log.contains("--api-git-scm-token-file"), "{log}");
    let log = refused(&fixture.config(
        &url,
        &[
            "--api-git-scm",
            "gitlab",
            "--api-git-scm-url",
            "https://u:pw@gl.example/api/v4",
        ],
        &[],
    ));
    assert!(
        log.contains("holds credentials") && !log.contains("pw@"),
        "{log}"
    );
    // A remote with no owner/repository path names nothing on a forge.
    let flat = http.url_with("git", GIT_PASSWORD, "remote.git");
    let log = refused(&fixture.config(&flat, &["--api-git-scm", "gitea"], &[]));
    assert!(log.contains("names no repository on a forge"), "{log}");
    assert!(!log.contains(GIT_PASSWORD), "{log}");
}

/// Fifty concurrent writers with pull requests on: fifty branches, fifty pull requests, each
/// named in its own 202 and opened for its own branch, every request within the description.
#[test]
fn fifty_concurrent_writers_get_fifty_pull_requests() {
    use crate::cupd_git_common::{BAZ_PAYLOAD, RESOURCES};
    let fixture = Fixture::new();
    let http = exported(&fixture);
    let server = ContractServer::start("gitea", TOKEN, &["cup"], &[]);
    let cupd = gitea_cupd(
        &fixture,
        &http,
        &server,
        &["--api-git-scm-labels", "cup"],
        &[],
    );
    let cupd = &cupd;
    let answers: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("r{i:02}");
                    let body = BAZ_PAYLOAD.replace("\"baz\"", &format!("\"{name}\""));
                    let response = cupd.put(&format!("{RESOURCES}/{name}"), &body);
                    assert_eq!(response.status, 202, "{}", response.text());
                    response.json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let pulls = server.pulls();
    assert_eq!(pulls.len(), 50);
    let mut urls: Vec<&str> = answers
        .iter()
        .map(|a| {
            a["proposal"]["url"]
                .as_str()
                .expect("every 202 names its pull request")
        })
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 50);
    for answer in &answers {
        let branch = answer["proposal"]["branch"].as_str().unwrap();
        let number = answer["proposal"]["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        let pull = &pulls[number - 1];
        assert_eq!(pull["head"], branch, "{answer}");
        assert_eq!(pull["labels"], serde_json::json!(["cup"]));
        let commit = crate::cupd_git_common::git(&fixture.bare(), &["rev-parse", branch]);
        assert_eq!(answer["proposal"]["commit"], commit);
    }
    server.assert_no_violations();
}

//! Credentials for HTTP(S) Git remotes through the real cupd, against a real smart-HTTP
//! server (`git http-backend` behind Basic auth, `cup_e2e::githttp`) on 127.0.0.1. Plain
//! http on loopback: cupd's credential logic (URL userinfo, then the credentials file,
//! a refusal reported with where the credentials came from) is the same for https; only
//! TLS is not exercised. Also `-api-git-scm`: a forge needs a forge's remote, `none` adds no
//! `url`.

use crate::cupd_git_common::{FOO, Fixture, RESOURCES, put_baz_and_read_back, refused};
use cup_e2e::cupd::Cupd;
use cup_e2e::githttp::GitHttp;

const USER: &str = "cup";
const TOKEN: &str = "s3cret-t0ken";

/// Nothing cupd logged or left in its cache's config holds the token.
fn assert_no_secret(fixture: &Fixture, log: &str) {
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
    let cache = fixture.cache();
    if cache.exists() {
        let config = std::fs::read_to_string(fixture.cache_repo().join("config")).unwrap();
        assert!(!config.contains(TOKEN), "the token is in the cache config");
    }
}

#[test]
fn credentials_from_the_url_read_and_write() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let cupd = Cupd::start(&fixture.config(&server.url_with(USER, TOKEN, "remote.git"), &[], &[]));
    assert_eq!(
        cupd.get(&format!("{RESOURCES}/foo")).text(),
        format!("{FOO}\n")
    );
    let body = put_baz_and_read_back(&cupd, &fixture);
    // `-api-git-scm` defaults to none: branches only, no pull request URL.
    assert!(body["proposal"].get("url").is_none(), "{body}");
    let requests = server.requests();
    // The server really asked: the first request of each operation was refused.
    assert!(requests.iter().any(|r| r.status == 401), "{requests:?}");
    // The push went through the harness to git-receive-pack, its body chunked (libgit2
    // streams pushes that way), so the harness's chunked decoding fed http-backend.
    assert!(
        requests.iter().any(|r| r.method == "POST"
            && r.path.ends_with("/git-receive-pack")
            && r.chunked
            && r.status == 200),
        "{requests:?}"
    );
    assert_no_secret(&fixture, &cupd.log());
}

#[test]
fn credentials_from_a_file_then_a_rotated_token_is_a_clear_error() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let file = fixture.path("git-credentials");
    // Line 1 is another host; line 2 this server; line 3 a longer path elsewhere.
    std::fs::write(
        &file,
        format!(
            "https://other:nope@git.example\n{origin_user}\nhttp://x:y@127.0.0.1:1/remote.git\n",
            origin_user = server
                .origin()
                .replacen("://", &format!("://{USER}:{TOKEN}@"), 1)
        ),
    )
    .unwrap();
    let cupd = Cupd::start(&fixture.config(
        &server.url("remote.git"),
        &["--api-git-credentials", file.to_str().unwrap()],
        &[],
    ));
    put_baz_and_read_back(&cupd, &fixture);

    // The server rotates the token: a fetch now fails, saying why and which line was used.
    server.set_credentials(USER, "rotated");
    let response = cupd.get("/proposals");
    assert_eq!(response.status, 500, "{}", response.text());
    let text = response.text();
    assert!(
        text.contains("authentication refused by the server (HTTP 401)")
            && text.contains(&format!("{} line 2", file.display())),
        "{text}"
    );
    // The server stays up and serves reads from its cache.
    assert_eq!(cupd.get("/readyz").status, 200);
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
    server.set_credentials(USER, TOKEN);
    assert_eq!(cupd.get("/proposals").status, 200);
    assert_no_secret(&fixture, &cupd.log());
}

#[test]
fn the_env_variable_names_the_credentials_file() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let file = fixture.path("creds");
    std::fs::write(
        &file,
        format!("http://{USER}:{TOKEN}@127.0.0.1:{}\n", port(&server)),
    )
    .unwrap();
    let cupd = Cupd::start(&fixture.config(
        &server.url("remote.git"),
        &[],
        &[("CUPD_API_GIT_CREDENTIALS", file.to_str().unwrap())],
    ));
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
}

fn port(server: &GitHttp) -> String {
    server.origin().rsplit(':').next().unwrap().to_owned()
}

#[test]
fn wrong_credentials_refuse_startup_naming_their_origin() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);

    let log =
        refused(&fixture.config(&server.url_with(USER, "wrong-pass", "remote.git"), &[], &[]));
    assert!(
        log.contains(
            "authentication refused by the server (HTTP 401) for the credentials from the URL"
        ),
        "{log}"
    );
    assert!(!log.contains("wrong-pass"), "{log}");

    let file = fixture.path("creds");
    std::fs::write(
        &file,
        format!("\n{}\n", server.url_with(USER, "wrong-pass", "")),
    )
    .unwrap();
    let log = refused(&fixture.config(
        &server.url("remote.git"),
        &["--api-git-credentials", file.to_str().unwrap()],
        &[],
    ));
    assert!(
        log.contains(&format!("credentials from {} line 2", file.display())),
        "{log}"
    );
    assert!(!log.contains("wrong-pass"), "{log}");
    // The URL's userinfo wins over the file.
    let cupd = Cupd::start(&fixture.config(
        &server.url_with(USER, TOKEN, "remote.git"),
        &["--api-git-credentials", file.to_str().unwrap()],
        &[],
    ));
    assert_eq!(cupd.get("/readyz").status, 200);
}

#[test]
fn no_credentials_is_a_clear_error() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let log = refused(&fixture.config(&server.url("remote.git"), &[], &[]));
    assert!(
        log.contains("requires authentication (HTTP 401) and no credentials are configured"),
        "{log}"
    );
    // A file without a matching line says so.
    let file = fixture.path("creds");
    std::fs::write(&file, "https://u:p@git.example\n").unwrap();
    let log = refused(&fixture.config(
        &server.url("remote.git"),
        &["--api-git-credentials", file.to_str().unwrap()],
        &[],
    ));
    assert!(
        log.contains("no line for this scheme and host in") && log.contains("creds"),
        "{log}"
    );
}

#[test]
fn bad_credentials_files_refuse_startup() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let file = fixture.path("creds");
    std::fs::write(&file, "https://u:fine@h\nhttps://tok3n-only@h\n").unwrap();
    let log = refused(&fixture.config(
        &server.url("remote.git"),
        &["--api-git-credentials", file.to_str().unwrap()],
        &[],
    ));
    assert!(
        log.contains(&format!("{} line 2: no password", file.display())),
        "{log}"
    );
    assert!(!log.contains("tok3n") && !log.contains("fine"), "{log}");

    let missing = fixture.path("missing-creds");
    let log = refused(&fixture.config(
        &server.url("remote.git"),
        &["--api-git-credentials", missing.to_str().unwrap()],
        &[],
    ));
    assert!(
        log.contains(&format!(
            "reading git credentials file {}",
            missing.display()
        )),
        "{log}"
    );
}

#[test]
fn forges_need_a_forge_remote_and_none_is_branches_only() {
    let fixture = Fixture::new();
    // A path remote names no repository on a forge (cupd_git_scm.rs opens pull requests).
    for scm in ["github", "gitea", "gitlab"] {
        let log = refused(&fixture.config(
            fixture.bare().to_str().unwrap(),
            &["-api-git-scm", scm],
            &[],
        ));
        assert!(
            log.contains(&format!("-api-git-scm {scm}"))
                && log.contains("names no repository on a forge"),
            "{log}"
        );
    }
    let log = refused(&fixture.config(
        fixture.bare().to_str().unwrap(),
        &["-api-git-scm", "bitbucket"],
        &[],
    ));
    assert!(log.contains("unknown SCM"), "{log}");
    let cupd = Cupd::start(&fixture.config(
        fixture.bare().to_str().unwrap(),
        &["-api-git-scm", "none"],
        &[],
    ));
    let body = put_baz_and_read_back(&cupd, &fixture);
    assert!(body["proposal"].get("url").is_none(), "{body}");
}

#[test]
fn the_harness_serves_the_git_cli_only_with_credentials() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let ls_remote = |url: &str| {
        std::process::Command::new("git")
            .args(["ls-remote", url])
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .output()
            .expect("git runs")
    };
    let out = ls_remote(&server.url_with(USER, TOKEN, "remote.git"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("refs/heads/main"));
    let out = ls_remote(&server.url_with(USER, "wrong", "remote.git"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Authentication failed"));
}

#[test]
fn a_password_that_does_not_parse_never_shows_in_the_startup_error() {
    let fixture = Fixture::new();
    // A raw '/' in the password: where the userinfo ends cannot be told, so no part of
    // the URL is shown. Likewise a password in an scp-like address.
    for url in [
        format!("http://{USER}:{TOKEN}/x@127.0.0.1:1/remote.git"),
        format!("{USER}:{TOKEN}@127.0.0.1:remote.git"),
    ] {
        let log = refused(&fixture.config(&url, &[], &[]));
        assert!(
            log.contains("does not parse") || log.contains("scp-like"),
            "{log}"
        );
        assert!(log.contains("not shown"), "{log}");
        assert!(!log.contains(TOKEN), "the token leaked:\n{log}");
    }
    // `--help` names the variable, not its value.
    let help = std::process::Command::new(cup_e2e::bin("cupd"))
        .args(["serve", "--help"])
        .env(
            "CUPD_API_GIT_REPO",
            format!("http://{USER}:{TOKEN}@h/r.git"),
        )
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("CUPD_API_GIT_REPO"), "{help}");
    assert!(
        !help.contains(TOKEN),
        "the token leaked into --help:\n{help}"
    );
}

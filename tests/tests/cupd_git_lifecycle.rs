//! The life of a proposal on the real cupd over a real Git remote: listed and shown, merged,
//! and its branch deleted after the retention (`--git-proposal-retention`), also when it
//! was merged outside cupd; a branch that moved on is kept; the remote's and the cache's
//! refs stay bounded under writes and merges.

use std::time::{Duration, Instant};

use crate::cupd_git_common::{BAZ_PAYLOAD, Fixture, RESOURCES, git};
use cup_e2e::cupd::Cupd;
use cup_e2e::githttp::GitHttp;

const USER: &str = "cup";
const TOKEN: &str = "lifecycle-token";

/// Puts resource `name` (a new file) through cupd; returns the proposal's id and branch.
fn propose(cupd: &Cupd, name: &str) -> (String, String) {
    let body = BAZ_PAYLOAD.replace("\"baz\"", &format!("\"{name}\""));
    let response = cupd.request(
        "PUT",
        &format!("{RESOURCES}/{name}"),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(response.status, 202, "{}\n{}", response.text(), cupd.log());
    let body = response.json();
    let id = body["id"].as_str().unwrap().to_owned();
    (id.clone(), format!("cup/proposal/{id}"))
}

/// The remote's proposal branches.
fn remote_proposals(fixture: &Fixture) -> Vec<String> {
    refs(&fixture.bare(), "refs/heads/cup/proposal")
}

fn refs(repo: &std::path::Path, prefix: &str) -> Vec<String> {
    git(repo, &["for-each-ref", "--format=%(refname)", prefix])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn merge(cupd: &Cupd, id: &str) -> serde_json::Value {
    let response = cupd.request("POST", &format!("/proposals/{id}/merge"), &[], b"");
    assert_eq!(response.status, 200, "{}\n{}", response.text(), cupd.log());
    response.json()
}

/// Waits up to 20 s for `done`.
fn eventually(what: &str, cupd: &Cupd, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: not within 20 s\n{}",
            cupd.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_merge_deletes_its_branch_unless_a_retention_keeps_it() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let url = server.url_with(USER, TOKEN, "remote.git");
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    let (id, branch) = propose(&cupd, "one");

    // Listed and shown without a pull request: proposals are branches only.
    let listed = cupd.get("/proposals").json();
    let item = &listed["items"][0];
    assert_eq!(item["id"], id.as_str(), "{listed}");
    assert!(item.get("pull_request").is_none(), "{listed}");
    let shown = cupd.get(&format!("/proposals/{id}")).json();
    assert!(shown.get("pull_request").is_none(), "{shown}");

    // Retention 0 (the default): gone from the remote and the cache when the merge answers.
    let merged = merge(&cupd, &id);
    assert!(merged.get("pull_request").is_none(), "{merged}");
    assert_eq!(
        git(&fixture.bare(), &["rev-parse", "main"]),
        merged["commit"].as_str().unwrap()
    );
    assert!(remote_proposals(&fixture).is_empty(), "{}", cupd.log());
    assert!(
        refs(&fixture.cache_repo(), "refs/remotes/origin/cup").is_empty(),
        "the cache's remote-tracking ref is pruned too"
    );
    drop(cupd);

    // Retention 1h: merged, no longer listed, and still on the remote.
    let kept = Fixture::new();
    let url = kept.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&kept.config(&url, &["--git-proposal-retention", "1h"], &[]));
    let (id, branch_kept) = propose(&cupd, "two");
    merge(&cupd, &id);
    assert_eq!(
        remote_proposals(&kept),
        vec![format!("refs/heads/{branch_kept}")]
    );
    let listed = cupd.get("/proposals").json();
    assert_eq!(listed["items"], serde_json::json!([]), "{listed}");
    assert_ne!(branch, branch_kept);
}

#[test]
fn a_branch_merged_outside_cupd_goes_after_the_next_fetch_and_one_moved_on_stays() {
    let fixture = Fixture::new();
    let server = GitHttp::start(&fixture.root(), USER, TOKEN);
    let url = server.url_with(USER, TOKEN, "remote.git");
    let cupd = Cupd::start(&fixture.config(&url, &["--git-fetch-interval", "300ms"], &[]));
    let (_, merged) = propose(&cupd, "outside");
    let (_, moved) = propose(&cupd, "moved");

    // With `git`: `merged` lands on main; `moved` lands too, then gets new work on top.
    let seed = fixture.path("seed");
    git(&seed, &["fetch", "-q", "origin"]);
    git(&seed, &["checkout", "-q", "main"]);
    git(&seed, &["reset", "-q", "--hard", "origin/main"]);
    for branch in [&merged, &moved] {
        git(
            &seed,
            &["merge", "-q", "--no-edit", &format!("origin/{branch}")],
        );
    }
    git(
        &seed,
        &["checkout", "-q", "-b", "more", &format!("origin/{moved}")],
    );
    std::fs::write(seed.join("more.txt"), "more").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "more"]);
    let more = git(&seed, &["rev-parse", "HEAD"]);
    git(
        &seed,
        &[
            "push",
            "-q",
            "origin",
            "main",
            &format!("HEAD:refs/heads/{moved}"),
        ],
    );

    eventually("the merged branch deleted", &cupd, || {
        !remote_proposals(&fixture).contains(&format!("refs/heads/{merged}"))
    });
    // Several fetches later the moved one is still there, at its new commit.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        git(
            &fixture.bare(),
            &["rev-parse", &format!("refs/heads/{moved}")]
        ),
        more
    );
    let listed = cupd.get("/proposals").json();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["branch"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![moved.as_str()], "{listed}");
}

#[test]
fn refs_stay_bounded_under_writes_and_merges() {
    const ROUNDS: usize = 200;
    let fixture = Fixture::new();
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    for n in 0..ROUNDS {
        let (id, _) = propose(&cupd, &format!("r{n}"));
        merge(&cupd, &id);
    }
    assert!(remote_proposals(&fixture).is_empty(), "{}", cupd.log());
    assert_eq!(
        refs(&fixture.bare(), "refs/heads"),
        vec!["refs/heads/main".to_owned()]
    );
    let cache = refs(&fixture.cache_repo(), "refs/");
    assert!(cache.len() <= 2, "{cache:?}");
    let files = git(&fixture.bare(), &["ls-tree", "-r", "--name-only", "main"]);
    assert_eq!(files.lines().count(), ROUNDS + 1);
}

/// With `-api-git-scm gitea` (a contract server checking every request against Gitea's API
/// description): listed with their pull requests, merged through the forge, and the merged
/// one's branch deleted.
#[test]
fn with_a_forge_pull_requests_are_listed_merged_there_and_their_branches_deleted() {
    use cup_e2e::contract::ContractServer;
    const SCM_TOKEN: &str = "lifecycle-scm-token";
    let fixture = Fixture::new();
    let team = fixture.root().join("team");
    std::fs::create_dir_all(&team).unwrap();
    std::os::unix::fs::symlink(fixture.bare(), team.join("app.git")).unwrap();
    let http = GitHttp::start(&fixture.root(), USER, TOKEN);
    let forge = ContractServer::start("gitea", SCM_TOKEN, &[], &[]);
    let token_file = fixture.path("scm-token");
    std::fs::write(&token_file, SCM_TOKEN).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = http.url_with(USER, TOKEN, "team/app.git");
    let api_base = forge.api_base();
    let cupd = Cupd::start(&fixture.config(
        &url,
        &[
            "--api-git-scm",
            "gitea",
            "--api-git-scm-url",
            &api_base,
            "--api-git-scm-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    ));
    let (one, one_branch) = propose(&cupd, "one");
    let (two, _) = propose(&cupd, "two");

    let listed = cupd.get("/proposals").json();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{listed}");
    for item in items {
        let pr = &item["pull_request"];
        assert_eq!(pr["state"], "open", "{listed}");
        let number = pr["number"].as_u64().unwrap();
        assert!(
            pr["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/pulls/{number}")),
            "{listed}"
        );
    }
    let shown = cupd.get(&format!("/proposals/{two}")).json();
    assert_eq!(shown["pull_request"]["state"], "open", "{shown}");

    let merged = merge(&cupd, &one);
    assert_eq!(merged["fast_forward"], false, "{merged}");
    assert_eq!(merged["pull_request"]["state"], "merged", "{merged}");
    let merges: Vec<serde_json::Value> = forge
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap_or("").ends_with("/merge"))
        .collect();
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0]["status"], 200, "{merges:?}");
    forge.assert_no_violations();
    // The book says merged: with retention 0 the branch is gone when the merge answers.
    assert!(
        !remote_proposals(&fixture).contains(&format!("refs/heads/{one_branch}")),
        "{}",
        cupd.log()
    );
    assert_eq!(remote_proposals(&fixture).len(), 1);
    // Merged already: its proposal is gone.
    let again = cupd.request("POST", &format!("/proposals/{one}/merge"), &[], b"");
    assert_eq!(again.status, 404, "{}", again.text());
}

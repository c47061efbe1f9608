//! A remote whose history holds a malformed tree, through the real cupd: a directory with a
//! blob and a tree of the same name (`git mktree` makes such trees; `git fsck` refuses them)
//! cannot be written out into a snapshot, so that revision cannot be read. The answer is a
//! 500 (the revision exists, and the client asked for nothing wrong: the repository's content
//! is what cupd cannot serve) naming the bad entry by its path in the repository and the
//! commit, never a path of the host: not the git cache, not the temp dirs it lives in.

use crate::cupd_git_common::{Fixture, RESOURCES, git};
use cup_e2e::cupd::Cupd;
use cup_e2e::git_with_input;

/// Makes branch `bad` on the fixture's remote: `main` plus, in `default/`, a blob `x` and a
/// tree `x` side by side. Returns its commit.
fn push_malformed_tree(fixture: &Fixture) -> String {
    let bare = fixture.bare();
    let run = |args: &[&str], input: &str| git_with_input(&bare, args, input.as_bytes());
    let blob = run(&["hash-object", "-w", "--stdin"], "y\n")
        .trim()
        .to_owned();
    let sub = run(&["mktree"], &format!("100644 blob {blob}\ty\n"))
        .trim()
        .to_owned();
    let foo_blob = git(
        &bare,
        &[
            "rev-parse",
            "main:default/test.cup.flipt.io-v1alpha1-Resource-foo.json",
        ],
    );
    let default = run(
        &["mktree"],
        &format!(
            "100644 blob {foo_blob}\ttest.cup.flipt.io-v1alpha1-Resource-foo.json\n\
             100644 blob {blob}\tx\n040000 tree {sub}\tx\n"
        ),
    )
    .trim()
    .to_owned();
    let root = run(&["mktree"], &format!("040000 tree {default}\tdefault\n"))
        .trim()
        .to_owned();
    let listed = git(&bare, &["ls-tree", &default]);
    assert_eq!(listed.matches("\tx").count(), 2, "{listed}");
    let commit = git(
        &bare,
        &["commit-tree", &root, "-p", "main", "-m", "malformed"],
    );
    git(&bare, &["update-ref", "refs/heads/bad", &commit]);
    commit
}

#[test]
fn a_malformed_tree_answers_500_naming_the_entry_not_the_host_paths() {
    let fixture = Fixture::new();
    let commit = push_malformed_tree(&fixture);
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));

    // Twice: the second answer comes from what the first remembered, and says the same.
    for (revision, attempt) in [(commit.as_str(), 1), ("bad", 2), (commit.as_str(), 3)] {
        let r = cupd.get(&format!("{RESOURCES}/foo?revision={revision}"));
        let text = r.text();
        eprintln!(
            "attempt {attempt} (revision {revision}): {} {text}",
            r.status
        );
        assert_eq!(r.status, 500, "{text}");
        assert!(
            text.contains("\\\"default/x\\\"") || text.contains("\"default/x\""),
            "names the entry: {text}"
        );
        assert!(text.contains(&commit), "names the commit: {text}");
        for host in [
            fixture.cache_repo(),
            fixture.cache(),
            fixture.path("store"),
            fixture.tmp.path().to_owned(),
            std::env::temp_dir(),
        ] {
            let host = host.to_str().unwrap().to_owned();
            assert!(!text.contains(&host), "{host} shown: {text}");
        }
    }
    // The host path is in the log, for the operator.
    assert!(cupd.log().contains("cup-snapshots"), "{}", cupd.log());

    // The rest of the repository is served as before.
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"], serde_json::json!({"foo": "bar"}));
    assert_eq!(cupd.get("/healthz").status, 200);
}

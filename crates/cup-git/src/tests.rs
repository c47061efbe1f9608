use super::*;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare remote whose default branch is `master`, with one commit.
fn remote() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "master", "remote.git"],
    );
    let work = tmp.path().join("seed");
    git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), "seed"]);
    std::fs::create_dir_all(work.join("d")).unwrap();
    std::fs::write(work.join("d/a.txt"), "a\n").unwrap();
    std::fs::write(work.join("run.sh"), "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "seed"]);
    git(&work, &["push", "-q", "origin", "master"]);
    (tmp, bare)
}

#[test]
fn author_and_urls() {
    assert_eq!(
        "Jo Doe <jo@x>".parse::<Author>().unwrap(),
        Author {
            name: "Jo Doe".into(),
            email: "jo@x".into()
        }
    );
    assert!("nobody".parse::<Author>().is_err());
    assert!("<a@b>".parse::<Author>().is_err());
    assert_eq!(
        redact("https://u:p%40ss@h.example/o/r.git"),
        "https://h.example/o/r.git"
    );
    assert_eq!(
        userinfo("https://u:p%40ss@h/o").unwrap(),
        ("u".into(), "p@ss".into())
    );
    assert_eq!(userinfo("/tmp/x"), None);
    assert_eq!(redact("/tmp/x"), "/tmp/x");
    for bad in ["", "a..b", "x^", "x~1", "@{1}", "-x", "a b"] {
        assert!(check_revision(bad).is_err(), "{bad}");
    }
    check_revision("feature/x").unwrap();
}

#[test]
fn read_propose_list_show_merge() {
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    let repo = GitRepo::open(bare.to_str().unwrap(), &cache, Author::default()).unwrap();
    assert_eq!(repo.default_branch().as_deref(), Some("master"));
    let view = repo.view(None).unwrap();
    assert_eq!(
        std::fs::read_to_string(view.join("d/a.txt")).unwrap(),
        "a\n"
    );
    assert!(is_executable(
        &std::fs::metadata(view.join("run.sh")).unwrap()
    ));

    // No change: no proposal.
    let ((), none) = repo.propose(None, "noop", |_| ((), true)).unwrap();
    assert!(none.is_none());
    // A refused change: nothing happens even though files changed.
    let ((), none) = repo
        .propose(None, "x", |d| {
            (std::fs::write(d.join("x"), "x").unwrap(), false)
        })
        .unwrap();
    assert!(none.is_none());

    let ((), p) = repo
        .propose(None, "feat: b", |d| {
            std::fs::write(d.join("d/b.txt"), "b\n").unwrap();
            std::fs::remove_file(d.join("d/a.txt")).unwrap();
            ((), true)
        })
        .unwrap();
    let p = p.unwrap();
    assert_eq!(
        git(&bare, &["rev-parse", &format!("refs/heads/{}", p.branch)]),
        p.commit
    );
    assert_eq!(
        git(&bare, &["show", "-s", "--format=%an <%ae>|%s", &p.commit]),
        "cup <cup@localhost>|feat: b"
    );
    assert_eq!(
        git(&bare, &["ls-tree", "-r", "--name-only", &p.commit]),
        "d/b.txt\nrun.sh"
    );
    assert_eq!(
        git(&bare, &["ls-tree", &p.commit, "run.sh"])
            .split(' ')
            .next(),
        Some("100755")
    );
    assert!(std::fs::read_dir(repo.work_dir()).unwrap().next().is_none());
    let local: Vec<String> = git(
        &repo.dir,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads",
            "refs/cup",
        ],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    assert!(local.is_empty(), "{local:?}");

    let open = repo.proposals(None).unwrap();
    assert_eq!(open.len(), 1);
    let detail = repo.proposal(&p.id, None).unwrap();
    let files: Vec<(String, &str)> = detail
        .files
        .iter()
        .map(|f| (f.path.clone(), f.status))
        .collect();
    assert_eq!(
        files,
        [
            ("d/a.txt".to_owned(), "deleted"),
            ("d/b.txt".to_owned(), "added")
        ]
    );
    assert!(matches!(
        repo.proposal("nope", None),
        Err(GitError::ProposalNotFound(_))
    ));

    let merged = repo.merge(&p.id, None, MergeStrategy::default()).unwrap();
    assert!(merged.fast_forward);
    assert_eq!(git(&bare, &["rev-parse", "master"]), p.commit);
    assert!(repo.proposals(None).unwrap().is_empty());
    assert!(matches!(
        repo.merge(&p.id, None, MergeStrategy::default()),
        Err(GitError::MergeConflict { .. })
    ));
    let view = repo.view(None).unwrap();
    assert!(view.join("d/b.txt").exists() && !view.join("d/a.txt").exists());

    // Two proposals off the same base: the second lands with a merge commit.
    let ((), p1) = repo
        .propose(None, "one", |d| {
            std::fs::write(d.join("one"), "1").unwrap();
            ((), true)
        })
        .unwrap();
    let ((), p2) = repo
        .propose(None, "two", |d| {
            std::fs::write(d.join("two"), "2").unwrap();
            ((), true)
        })
        .unwrap();
    repo.merge(&p1.unwrap().id, None, MergeStrategy::default())
        .unwrap();
    let m = repo
        .merge(&p2.unwrap().id, None, MergeStrategy::default())
        .unwrap();
    assert!(!m.fast_forward);
    assert_eq!(
        git(&bare, &["ls-tree", "--name-only", "master"]),
        "d\none\nrun.sh\ntwo"
    );

    assert!(matches!(
        repo.view(Some("nope")),
        Err(GitError::RevisionNotFound { .. })
    ));
    assert!(matches!(
        repo.view(Some("a..b")),
        Err(GitError::InvalidRevision { .. })
    ));
}

#[test]
fn unreachable_remote_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = GitRepo::open(
        tmp.path().join("missing.git").to_str().unwrap(),
        tmp.path(),
        Author::default(),
    )
    .unwrap_err();
    assert!(matches!(err, GitError::Fetch { .. }), "{err}");
}

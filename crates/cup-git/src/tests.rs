use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};
use ulid::Ulid;

use crate::cache::{REMOTE_RECORD, lock};
use crate::revision::check_revision;
use crate::tree::is_executable;

mod ended;
mod retention;
mod snapshot;

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
    let secret = credentials::from_url("https://u:p%40ss@h/o").unwrap();
    assert_eq!(
        (secret.username, secret.password),
        ("u".into(), "p@ss".into())
    );
    assert!(credentials::from_url("/tmp/x").is_none());
    assert_eq!(redact("/tmp/x"), "/tmp/x");
    assert_eq!(redact("https://ghp_token@h/o"), "https://h/o");
    assert_eq!(redact("ssh://git@h:22/o"), "ssh://git@h:22/o");
    assert_eq!(redact("ssh://git:pw@h/o"), "ssh://h/o");
    assert_eq!(redact("git@h:o/r.git"), "git@h:o/r.git");
    for bad in ["", "a..b", "x^", "x~1", "@{1}", "-x", "a b"] {
        assert!(check_revision(bad).is_err(), "{bad}");
    }
    check_revision("feature/x").unwrap();
}

/// Passwords in these URLs: none may show in what [`redact`] or an error prints.
const SECRETS: [&str; 6] = ["hunter", "p@ss", "p:w", "pa%2Fss", "pa/ss", "s3cret"];

#[test]
fn tricky_urls_are_parsed_not_split_and_never_shown_when_unparsable() {
    let cases = [
        // A raw '/' in the password: where the userinfo ends cannot be told.
        ("https://user:hunter/2@h.example/o/r.git", UNPARSABLE),
        ("https://user:p@ss@h.example/o", "https://h.example/o"),
        ("https://user:p:w@h.example/o", "https://h.example/o"),
        ("https://user:pa%2Fss@h.example/o", "https://h.example/o"),
        ("https://u:s3cret@[::1]:8443/o", "https://[::1]:8443/o"),
        ("https://u:s3cret@H.Example:443/o", "https://h.example/o"),
        ("ssh://git@[fe80::1]:2222/o", "ssh://git@[fe80::1]:2222/o"),
        ("ssh://git:s3cret@[::1]/o", "ssh://[::1]/o"),
        ("git@h.example:o/r.git", "git@h.example:o/r.git"),
        ("h.example:o/r.git", "h.example:o/r.git"),
        ("git@[::1]:o/r.git", "git@[::1]:o/r.git"),
        ("user:s3cret@h.example:o/r.git", UNPARSABLE),
        ("user:hunter/2@h.example/o", UNPARSABLE),
        ("https://u:s3cret@h.example:99999/o", UNPARSABLE),
        ("https://u:s3cret@/o", UNPARSABLE),
        ("http://u:s3cret@[::1/o", UNPARSABLE),
        ("/tmp/x", "/tmp/x"),
        ("file:///tmp/x", "file:///tmp/x"),
    ];
    for (url, shown) in cases {
        assert_eq!(redact(url), shown, "{url}");
        for secret in SECRETS {
            assert!(!redact(url).contains(secret), "{url}");
        }
    }
    let secret = |url: &str| credentials::from_url(url).map(|s| (s.username, s.password));
    let pair = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
    assert_eq!(secret("https://user:p@ss@h/o"), pair("user", "p@ss"));
    assert_eq!(secret("https://user:p:w@h/o"), pair("user", "p:w"));
    assert_eq!(secret("https://user:pa%2Fss@h/o"), pair("user", "pa/ss"));
    assert_eq!(secret("https://u:s3cret@[::1]:8443/o"), pair("u", "s3cret"));
    assert_eq!(secret("https://user:hunter/2@h/o"), None);
    assert_eq!(secret("git@h:o"), None);
    assert_eq!(
        ssh::known_hosts_name("ssh://u@[::1]/r").as_deref(),
        Some("::1")
    );
    assert_eq!(ssh::known_hosts_name("git@[::1]:r").as_deref(), Some("::1"));
    assert_eq!(
        ssh::known_hosts_name("git@Host.Example:r").as_deref(),
        Some("host.example")
    );
    assert!(ssh::is_ssh_url("git@[::1]:r"));
    assert!(!ssh::is_ssh_url("user:s3cret@h.example:o"));
}

#[test]
fn an_unparsable_url_is_refused_at_open_without_showing_it() {
    let tmp = tempfile::tempdir().unwrap();
    for url in [
        "https://user:hunter/2@127.0.0.1:1/o/r.git",
        "user:s3cret@127.0.0.1:o/r.git",
    ] {
        let err = GitRepo::open(url, tmp.path(), Author::default(), RemoteOptions::default())
            .unwrap_err();
        assert!(matches!(err, GitError::Url(_)), "{err}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("not shown"), "{text}");
        for secret in SECRETS {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "no cache is made for it"
    );
}

/// The cache in `cache` of the remote `bare`.
fn open_repo(bare: &Path, cache: &Path, options: RemoteOptions) -> GitRepo {
    GitRepo::open(bare.to_str().unwrap(), cache, Author::default(), options).unwrap()
}

/// A repository on `bare` with `limits`.
fn open_limited(bare: &Path, cache: &Path, limits: WriteLimits) -> GitRepo {
    let options = RemoteOptions {
        write_limits: limits,
        ..RemoteOptions::default()
    };
    open_repo(bare, cache, options)
}

/// The limit a write went over, after checking nothing reached the remote.
fn refused(repo: &GitRepo, bare: &Path, change: impl FnOnce(&Path) + Send) -> WriteLimitExceeded {
    let err = repo
        .propose(None, "over", |d| (change(d), true))
        .unwrap_err();
    assert_eq!(
        git(bare, &["for-each-ref", "refs/heads/cup"]),
        "",
        "nothing pushed"
    );
    assert!(std::fs::read_dir(repo.work_dir()).unwrap().next().is_none());
    match err {
        GitError::WriteLimit(e) => e,
        other => panic!("expected a tree limit, got {other}"),
    }
}

#[test]
fn a_write_over_its_write_limits_is_refused_before_reading_and_pushes_nothing() {
    let (tmp, bare) = remote();
    let limits = WriteLimits {
        max_file_bytes: 1000,
        max_total_bytes: 2500,
        max_entries: 20,
        max_depth: 3,
    };
    let repo = open_limited(&bare, &tmp.path().join("cache"), limits);

    // A sparse file of 1 TiB: refused from its metadata, never read.
    let started = std::time::Instant::now();
    let e = refused(&repo, &bare, |d| {
        let f = std::fs::File::create(d.join("d/sparse")).unwrap();
        f.set_len(1 << 40).unwrap();
    });
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        (e.limit, e.path.as_str(), e.found, e.max),
        (WriteLimit::FileBytes, "d/sparse", 1 << 40, 1000)
    );
    let text = e.to_string();
    assert!(
        text.contains("d/sparse") && text.contains("1000 bytes per file"),
        "{text}"
    );

    let e = refused(&repo, &bare, |d| {
        for i in 0..3 {
            std::fs::write(d.join(format!("f{i}")), [b'x'; 900]).unwrap();
        }
    });
    assert_eq!(
        (e.limit, e.found, e.max),
        (WriteLimit::TotalBytes, 2700, 2500)
    );

    let e = refused(&repo, &bare, |d| {
        for i in 0..20 {
            std::fs::write(d.join(format!("e{i}")), "e").unwrap();
        }
    });
    assert_eq!((e.limit, e.max), (WriteLimit::Entries, 20));

    let e = refused(&repo, &bare, |d| {
        std::fs::create_dir_all(d.join("a/b/c/d")).unwrap();
        std::fs::write(d.join("a/b/c/d/f"), "deep").unwrap();
    });
    assert_eq!(
        (e.limit, e.path.as_str(), e.found, e.max),
        (WriteLimit::Depth, "a/b/c/d", 4, 3)
    );

    // Within every limit: 3 levels, unchanged files free, 2500 new bytes exactly.
    let ((), p) = repo
        .propose(None, "fits", |d| {
            std::fs::create_dir_all(d.join("a/b/c")).unwrap();
            std::fs::write(d.join("a/b/c/f"), [b'y'; 1000]).unwrap();
            std::fs::write(d.join("g"), [b'z'; 1000]).unwrap();
            std::fs::write(d.join("d/a.txt"), [b'w'; 500]).unwrap();
            ((), true)
        })
        .unwrap();
    assert!(p.is_some());
}

#[test]
// std has no binding for mkfifo.
#[allow(unsafe_code)]
fn links_and_special_files_in_a_write_are_left_out_never_followed() {
    let (tmp, bare) = remote();
    let outside = tmp.path().join("outside-secret");
    std::fs::write(&outside, "secret").unwrap();
    let limits = WriteLimits {
        max_file_bytes: 100,
        ..WriteLimits::default()
    };
    let repo = open_limited(&bare, &tmp.path().join("cache"), limits);
    let big = tmp.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let ((), p) = repo
        .propose(None, "links", |d| {
            std::os::unix::fs::symlink(&outside, d.join("to-secret")).unwrap();
            // A link to a file over the limit is no file of the write: left out, not refused.
            std::os::unix::fs::symlink(&big, d.join("to-big")).unwrap();
            std::os::unix::fs::symlink(tmp.path(), d.join("to-dir")).unwrap();
            let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
            // SAFETY: `fifo` is a NUL-terminated path that outlives the call.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            std::fs::write(d.join("kept"), "k").unwrap();
            ((), true)
        })
        .unwrap();
    let commit = p.unwrap().commit;
    assert_eq!(
        git(&bare, &["ls-tree", "-r", "--name-only", &commit]),
        "d/a.txt\nkept\nrun.sh"
    );
}

#[test]
fn read_propose_list_show_merge() {
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
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
        RemoteOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, GitError::Fetch { .. }), "{err}");
}

/// What a [`RecordingScm`] was told: branch, base, message, files.
type Told = (String, Option<String>, String, Vec<ChangedFile>);

/// Records what it is told and answers with a URL, or fails.
#[derive(Debug, Default)]
struct RecordingScm {
    fail: bool,
    seen: Mutex<Vec<Told>>,
}

impl PullRequests for RecordingScm {
    fn name(&self) -> &str {
        "recording"
    }

    fn proposed(&self, p: &NewProposal<'_>) -> Result<Option<PullRequest>, ScmError> {
        lock(&self.seen).push((
            p.branch.to_owned(),
            p.base.map(str::to_owned),
            p.message.to_owned(),
            p.files.to_vec(),
        ));
        if self.fail {
            return Err(ScmError {
                scm: "recording".into(),
                reason: "forge down".into(),
            });
        }
        Ok(Some(PullRequest {
            number: 7,
            url: format!("https://forge.example/pr/{}", p.id),
            state: PullRequestState::Open,
            head: p.branch.to_owned(),
        }))
    }
}

fn open_with(bare: &Path, cache: &Path, scm: Arc<RecordingScm>) -> GitRepo {
    let options = RemoteOptions {
        pull_requests: scm,
        ..RemoteOptions::default()
    };
    open_repo(bare, cache, options)
}

#[test]
fn the_pull_request_interface_is_told_about_each_proposal() {
    let (tmp, bare) = remote();
    let scm = Arc::new(RecordingScm::default());
    let repo = open_with(&bare, &tmp.path().join("cache"), scm.clone());
    let (_, proposal) = repo
        .propose(None, "add b", |d| {
            std::fs::write(d.join("d/b.txt"), "b\n").unwrap();
            ((), true)
        })
        .unwrap();
    let proposal = proposal.unwrap();
    assert_eq!(
        proposal.pull_request.as_ref().map(|pr| pr.url.as_str()),
        Some(format!("https://forge.example/pr/{}", proposal.id).as_str())
    );
    let seen = lock(&scm.seen).clone();
    assert_eq!(seen.len(), 1);
    let (branch, base, message, files) = &seen[0];
    assert_eq!(branch, &proposal.branch);
    assert_eq!(base.as_deref(), Some("master"));
    assert_eq!(message, "add b");
    assert_eq!(
        files,
        &[ChangedFile {
            path: "d/b.txt".into(),
            status: "added"
        }]
    );
    // Nothing changed: no proposal, nobody told.
    let (_, none) = repo.propose(None, "noop", |_| ((), true)).unwrap();
    assert!(none.is_none());
    assert_eq!(lock(&scm.seen).len(), 1);
}

#[test]
fn a_failing_pull_request_interface_keeps_the_pushed_branch() {
    let (tmp, bare) = remote();
    let scm = Arc::new(RecordingScm {
        fail: true,
        ..RecordingScm::default()
    });
    let repo = open_with(&bare, &tmp.path().join("cache"), scm);
    let (_, proposal) = repo
        .propose(Some("master"), "add c", |d| {
            std::fs::write(d.join("c"), "c").unwrap();
            ((), true)
        })
        .unwrap();
    let proposal = proposal.unwrap();
    assert_eq!(proposal.pull_request, None);
    assert_eq!(
        git(&bare, &["rev-parse", &proposal.branch]),
        proposal.commit
    );
    let json = serde_json::to_string(&proposal).unwrap_or_default();
    assert!(!json.contains("url"), "{json}");
}

#[test]
fn a_cache_is_used_by_one_repo_at_a_time() {
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    let url = bare.to_str().unwrap();
    let open = || GitRepo::open(url, &cache, Author::default(), RemoteOptions::default());
    let first = open().unwrap();
    // A checkout the first holder might be writing in: the second open must not sweep it.
    let checkout = first.work_dir().join("cup-proposal-live");
    std::fs::create_dir_all(&checkout).unwrap();
    let second = open().unwrap_err();
    assert!(matches!(second, GitError::CacheInUse { .. }), "{second}");
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    assert!(checkout.is_dir(), "the live holder's checkout was swept");
    drop(first);
    let reopened = reopen(open).unwrap();
    assert!(!checkout.exists(), "a dead holder's checkout is swept");
    drop(reopened);
}

#[test]
fn queued_writes_share_one_push_and_a_refused_branch_fails_only_its_write() {
    let (tmp, bare) = remote();
    // The remote refuses any branch whose commit message says so; and counts the pushes
    // (one post-receive run per push, whatever the number of refs).
    let hooks = bare.join("hooks");
    std::fs::write(
        hooks.join("update"),
        "#!/bin/sh\ngit log -1 --format=%s \"$3\" | grep -q refuse-me && { echo refused >&2; exit 1; }\nexit 0\n",
    )
    .unwrap();
    std::fs::write(
        hooks.join("post-receive"),
        format!(
            "#!/bin/sh\necho push >> {}\n",
            tmp.path().join("pushes.log").display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        for hook in ["update", "post-receive"] {
            std::fs::set_permissions(hooks.join(hook), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
    }
    // Over git:// (libgit2's local transport for paths runs no hooks).
    let daemon = GitDaemon::serve(tmp.path());
    let repo = GitRepo::open(
        &format!("git://127.0.0.1:{}/remote.git", daemon.port),
        &tmp.path().join("cache"),
        Author::default(),
        RemoteOptions::default(),
    )
    .unwrap();
    let base = git(&bare, &["rev-parse", "master"]);
    let write = |message: &'static str, file: &'static str, keep: bool| ProposedWrite {
        revision: None,
        message,
        author: None,
        change: Box::new(move |dir: &Path| {
            std::fs::write(dir.join(file), message).unwrap();
            keep
        }),
    };
    let answers = repo.propose_all(vec![
        write("first", "one.txt", true),
        write("nothing kept", "two.txt", false),
        write("refuse-me", "three.txt", true),
        ProposedWrite {
            revision: Some("no-such-branch"),
            message: "bad base",
            author: None,
            change: Box::new(|_| true),
        },
        write("last", "four.txt", true),
    ]);
    assert_eq!(answers.len(), 5);
    let pushed: Vec<&Proposal> = [&answers[0], &answers[4]]
        .iter()
        .map(|a| a.as_ref().unwrap().as_ref().unwrap())
        .collect();
    assert!(matches!(answers[1], Ok(None)));
    match &answers[2] {
        Err(GitError::Rejected { refname, .. }) => {
            assert!(refname.starts_with("refs/heads/cup/proposal/"), "{refname}")
        }
        other => panic!("expected the refused branch's own error, got {other:?}"),
    }
    assert!(
        matches!(answers[3], Err(GitError::RevisionNotFound { .. })),
        "{:?}",
        answers[3]
    );
    // One push carried both accepted branches; each has exactly its own change.
    let pushes = std::fs::read_to_string(tmp.path().join("pushes.log")).unwrap();
    assert_eq!(pushes.lines().count(), 1, "{pushes}");
    for (proposal, file, text) in [
        (pushed[0], "one.txt", "first"),
        (pushed[1], "four.txt", "last"),
    ] {
        let branch = format!("refs/heads/{}", proposal.branch);
        assert_eq!(git(&bare, &["rev-parse", &branch]), proposal.commit);
        assert_eq!(git(&bare, &["rev-parse", &format!("{branch}^")]), base);
        assert_eq!(git(&bare, &["diff", "--name-only", &base, &branch]), file);
        assert_eq!(git(&bare, &["show", &format!("{branch}:{file}")]), text);
    }
    let branches = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/heads/cup"],
    );
    assert_eq!(branches.lines().count(), 2, "{branches}");
    // The cache tracks the two pushed branches and keeps no temporary push refs.
    assert_eq!(repo.proposals(None).unwrap().len(), 2);
    let cache = Repository::open_bare(repo.cache_dir()).unwrap();
    assert!(
        cache
            .references_glob("refs/cup/*")
            .unwrap()
            .next()
            .is_none()
    );
}

/// `git-daemon` serving `base` on 127.0.0.1 with push enabled; killed on drop. (The e2e
/// tests have their own; this crate's tests cannot use theirs.)
struct GitDaemon {
    child: std::process::Child,
    port: u16,
}

impl GitDaemon {
    fn serve(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let exec_path = git(Path::new("."), &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git-daemon starts");
        let daemon = GitDaemon { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git-daemon did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        daemon
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A commit the remote dropped (pushed, then force-pushed away) stays in the cache's object
/// database, but is neither read nor used as a write base; short ids are refused.
#[test]
fn a_commit_no_branch_or_tag_reaches_is_neither_read_nor_written_on() {
    let (tmp, bare) = remote();
    let seed = tmp.path().join("seed");
    let kept = git(&seed, &["rev-parse", "HEAD"]);
    std::fs::write(seed.join("secret.txt"), "hunter2\n").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "oops"]);
    git(&seed, &["push", "-q", "origin", "master"]);
    let dropped = git(&seed, &["rev-parse", "HEAD"]);
    let cache = tmp.path().join("cache");
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
    // While master holds it, it is an ordinary commit.
    let view = repo.view(Some(&dropped[..7])).unwrap();
    assert!(view.join("secret.txt").is_file());
    let kept_view = repo.view(Some(&kept)).unwrap();
    git(&seed, &["reset", "-q", "--hard", &kept]);
    git(&seed, &["push", "-q", "-f", "origin", "master"]);
    repo.fetch().unwrap();
    // Its snapshot goes with the fetch that sees it dropped, once no reader holds it; a
    // reachable one stays.
    assert!(view.join("secret.txt").is_file(), "a held snapshot stays");
    let gone = view.path().to_owned();
    drop(view);
    repo.fetch().unwrap();
    assert!(!gone.exists(), "snapshot of the dropped commit removed");
    assert!(kept_view.join("d/a.txt").is_file());
    let left: Vec<_> = std::fs::read_dir(repo.snapshot_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from(&kept)], "nothing else left");
    assert!(
        repo.repo()
            .unwrap()
            .find_commit(dropped.parse().unwrap())
            .is_ok(),
        "the cache still holds the dropped commit"
    );

    for id in [&dropped[..], &dropped[..7], &dropped[..12]] {
        let err = repo.view(Some(id)).unwrap_err();
        assert!(
            matches!(err, GitError::RevisionNotFound { .. }),
            "{id}: {err}"
        );
        assert!(!err.to_string().contains(&dropped[id.len()..]) || id.len() == 40);
    }
    let err = repo
        .propose(Some(&dropped), "on a dropped commit", |d| {
            (std::fs::write(d.join("x"), "x").unwrap(), true)
        })
        .unwrap_err();
    assert!(matches!(err, GitError::RevisionNotFound { .. }), "{err}");
    assert_eq!(
        git(&bare, &["for-each-ref", "refs/heads/cup"]),
        "",
        "nothing pushed"
    );
    assert_eq!(
        git(&bare, &["branch", "--contains", &dropped]),
        "",
        "no branch of the remote holds the dropped commit"
    );

    // Four to six hex digits are refused, even for a reachable commit.
    for short in [&kept[..4], &kept[..6]] {
        let err = repo.view(Some(short)).unwrap_err();
        assert!(
            matches!(err, GitError::InvalidRevision { .. }),
            "{short}: {err}"
        );
    }
    // Seven or more, or all forty, still name a reachable commit, for reads and writes.
    for id in [&kept[..7], &kept[..]] {
        let view = repo.view(Some(id)).unwrap();
        assert!(!view.join("secret.txt").exists());
    }
    let ((), p) = repo
        .propose(Some(&kept[..7]), "on a commit", |d| {
            (std::fs::write(d.join("x"), "x").unwrap(), true)
        })
        .unwrap();
    let p = p.unwrap();
    assert_eq!(
        git(&bare, &["rev-parse", &format!("{}^", p.commit)]),
        kept,
        "based on the commit named"
    );
    // A proposal's own commit is reachable from its branch.
    repo.fetch().unwrap();
    repo.view(Some(&p.commit)).unwrap();
}

/// Every directory and file under `dir` with its mode (`dir` itself first).
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![(
        dir.to_owned(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(modes_under(&path));
        } else {
            out.push((
                path,
                entry.metadata().unwrap().permissions().mode() & 0o7777,
            ));
        }
    }
    out
}

#[test]
// std has no binding for umask.
#[allow(unsafe_code)]
fn the_cache_and_its_snapshots_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // The usual umask, which left the cache 0755 and snapshot files 0644. Process-wide, but
    // the other tests make no assumption about it.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    // A root an earlier cupd made open to others is tightened at open.
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
    let view = repo.view(None).unwrap();
    assert_eq!(
        std::fs::read_to_string(view.join("d/a.txt")).unwrap(),
        "a\n"
    );
    let mut checked = Vec::new();
    for dir in [cache.clone(), repo.cache_dir().to_owned(), repo.work_dir()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        checked.push((dir, mode));
    }
    checked.extend(modes_under(&repo.cache_dir().join("cup-snapshots")));
    let open: Vec<String> = checked
        .iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(path, mode)| format!("{} {mode:o}", path.display()))
        .collect();
    assert!(open.is_empty(), "open to other users:\n{}", open.join("\n"));
    let mode = |p: &str| {
        std::fs::metadata(view.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("d"), mode("d/a.txt"), mode("run.sh")),
        (0o700, 0o600, 0o700)
    );

    // A write's checkout is owner-only too (and the executable bit still goes back).
    let ((), p) = repo
        .propose(None, "modes", |d| {
            let seen = [d, &d.join("d"), &d.join("d/a.txt")]
                .map(|p| std::fs::metadata(p).unwrap().permissions().mode() & 0o777);
            assert_eq!(seen, [0o700, 0o700, 0o600]);
            std::fs::write(d.join("new"), "n").unwrap();
            ((), true)
        })
        .unwrap();
    let p = p.unwrap();
    assert_eq!(
        git(&bare, &["ls-tree", &p.commit, "run.sh"])
            .split(' ')
            .next(),
        Some("100755")
    );
}

/// `git` with `input` on its stdin; its trimmed stdout.
fn git_input(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_tree_with_two_entries_of_one_name_is_refused_naming_the_entry_not_the_cache() {
    let (tmp, bare) = remote();
    // `d/` holds a blob `dup` and a tree `dup`: `git mktree` makes it, `git fsck` refuses it.
    let blob = git_input(&bare, &["hash-object", "-w", "--stdin"], "y\n");
    let sub = git_input(&bare, &["mktree"], &format!("100644 blob {blob}\ty\n"));
    let d = git_input(
        &bare,
        &["mktree"],
        &format!("100644 blob {blob}\tdup\n040000 tree {sub}\tdup\n"),
    );
    let root = git_input(&bare, &["mktree"], &format!("040000 tree {d}\td\n"));
    let commit = git(&bare, &["commit-tree", &root, "-p", "master", "-m", "bad"]);
    git(&bare, &["update-ref", "refs/heads/bad", &commit]);
    let cache = tmp.path().join("cache");
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
    for _ in 0..2 {
        let error = repo.view(Some("bad")).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, GitError::BadTree { entry, commit: c, .. }
                if entry == "d/dup" && *c == commit),
            "{text}"
        );
        assert!(!text.contains(cache.to_str().unwrap()), "{text}");
    }
    assert!(lock(&repo.bad_trees).contains_key(&Oid::from_str(&commit).unwrap()));
    // Nothing half-made is left, and the good revisions still read.
    let snapshots = repo.cache_dir().join("cup-snapshots");
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
    assert!(repo.view(None).unwrap().join("d/a.txt").is_file());
    // A write based on it is refused the same way, before its controller runs.
    let error = repo
        .propose(Some("bad"), "x", |_| unreachable!("no checkout to change"))
        .map(|_: ((), _)| ())
        .unwrap_err();
    assert!(matches!(error, GitError::BadTree { .. }), "{error}");

    // A name longer than the host allows (255 bytes on Linux) is the same kind of failure.
    let long = "n".repeat(300);
    let root = git_input(&bare, &["mktree"], &format!("100644 blob {blob}\t{long}\n"));
    let commit = git(&bare, &["commit-tree", &root, "-p", "master", "-m", "long"]);
    git(&bare, &["update-ref", "refs/heads/long", &commit]);
    repo.fetch().unwrap();
    let error = repo.view(Some("long")).unwrap_err();
    assert!(
        matches!(&error, GitError::BadTree { entry, reason, .. }
            if *entry == long && reason.contains("too long")),
        "{error}"
    );
    assert!(!error.to_string().contains(cache.to_str().unwrap()));
}

/// A tag the remote points at a blob or a tree (legal in Git, useless for revisions) is left
/// out of the cache: it must not break fetching, nor reading and writing the branches.
#[test]
fn tags_that_name_no_commit_do_not_break_fetching() {
    let (tmp, bare) = remote();
    let seed = tmp.path().join("seed");
    let cache = tmp.path().join("cache");
    let url = format!("file://{}", bare.display());
    let open = || GitRepo::open(&url, &cache, Author::default(), RemoteOptions::default());
    let repo = open().unwrap();
    // Tags pushed after the cache was made, then fetched.
    let blob = git(&seed, &["hash-object", "-w", "run.sh"]);
    let tree = git(&seed, &["rev-parse", "HEAD^{tree}"]);
    git(&seed, &["tag", "v1", "HEAD"]);
    git(&seed, &["tag", "blob-tag", &blob]);
    git(&seed, &["tag", "-a", "-m", "annotated", "tree-tag", &tree]);
    git(&seed, &["push", "-q", "origin", "--tags"]);
    repo.fetch()
        .expect("a tag on a blob or a tree does not break fetching");
    repo.fetch().expect("nor the next fetch");
    drop(repo);
    let repo = reopen(open).expect("nor a restart");
    assert!(repo.view(None).unwrap().join("run.sh").is_file());
    assert!(repo.view(Some("v1")).unwrap().join("run.sh").is_file());
    for bad in ["blob-tag", "tree-tag"] {
        assert!(repo.view(Some(bad)).is_err(), "{bad} names no commit");
    }
    let ((), proposal) = repo
        .propose(None, "after bad tags", |d| {
            std::fs::write(d.join("new"), "n").unwrap();
            ((), true)
        })
        .unwrap();
    assert!(proposal.is_some());
}

/// The names of the cache's refs under `prefix`.
fn cache_refs(repo: &GitRepo, prefix: &str) -> Vec<String> {
    git(
        repo.cache_dir(),
        &["for-each-ref", "--format=%(refname)", prefix],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Over a path or `file://` remote, libgit2 hides every ref of the cache from the pack it
/// asks for, and fails the whole fetch ("object is not a committish") on one that names a
/// blob or a tree; it only does so when there is something new to download. Such tags are
/// dropped from the cache after each fetch, so the next new commit still arrives.
#[test]
fn tags_that_name_no_commit_are_not_kept_and_new_commits_still_arrive() {
    let (tmp, bare) = remote();
    let seed = tmp.path().join("seed");
    let cache = tmp.path().join("cache");
    for url in [
        bare.to_str().unwrap().to_owned(),
        format!("file://{}", bare.display()),
    ] {
        let _ = std::fs::remove_dir_all(&cache);
        let repo =
            GitRepo::open(&url, &cache, Author::default(), RemoteOptions::default()).unwrap();
        let blob = git(&seed, &["hash-object", "-w", "run.sh"]);
        let tree = git(&seed, &["rev-parse", "HEAD^{tree}"]);
        git(&seed, &["tag", "-f", "v1", "HEAD"]);
        git(&seed, &["tag", "-f", "blob-tag", &blob]);
        git(
            &seed,
            &["tag", "-f", "-a", "-m", "annotated", "tree-tag", &tree],
        );
        git(&seed, &["push", "-q", "-f", "origin", "--tags"]);
        repo.fetch().unwrap();
        assert_eq!(cache_refs(&repo, "refs/tags"), ["refs/tags/v1"], "{url}");
        // Something new to download: the fetch that broke on the bad tags.
        std::fs::write(seed.join("new.txt"), &url).unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", "after the bad tags"]);
        git(&seed, &["push", "-q", "origin", "master"]);
        repo.fetch()
            .unwrap_or_else(|e| panic!("{url}: fetching a new commit after bad tags: {e}"));
        let view = repo.view(None).unwrap();
        assert_eq!(std::fs::read_to_string(view.join("new.txt")).unwrap(), url);
        assert_eq!(cache_refs(&repo, "refs/tags"), ["refs/tags/v1"], "{url}");
        for bad in ["blob-tag", "tree-tag"] {
            assert!(
                matches!(repo.view(Some(bad)), Err(GitError::RevisionNotFound { .. })),
                "{bad} names no commit"
            );
        }
    }
}

/// A cache an earlier version left holding refs that name no commit: the fetch that fails
/// on them drops them and is tried once more.
#[test]
fn refs_that_name_no_commit_in_an_old_cache_are_dropped_and_the_fetch_retried() {
    let (tmp, bare) = remote();
    let seed = tmp.path().join("seed");
    let cache = tmp.path().join("cache");
    let url = format!("file://{}", bare.display());
    let repo = GitRepo::open(&url, &cache, Author::default(), RemoteOptions::default()).unwrap();
    let tree = git(&seed, &["rev-parse", "HEAD^{tree}"]);
    let blob = git(&seed, &["hash-object", "-w", "run.sh"]);
    git(
        repo.cache_dir(),
        &["update-ref", "refs/tags/left-behind", &tree],
    );
    git(
        repo.cache_dir(),
        &["update-ref", "refs/remotes/origin/not-a-branch", &blob],
    );
    std::fs::write(seed.join("new.txt"), "new\n").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "new"]);
    git(&seed, &["push", "-q", "origin", "master"]);
    repo.fetch().expect("the fetch recovers");
    assert!(repo.view(None).unwrap().join("new.txt").is_file());
    assert!(cache_refs(&repo, "refs/tags/left-behind").is_empty());
    assert!(cache_refs(&repo, "refs/remotes/origin/not-a-branch").is_empty());
    assert!(repo.fetch_status().error.is_none());
}

/// Opens a cache just closed in this process. The cache lock is an flock, which a child
/// that another test is starting at that moment shares until its exec closes the inherited
/// descriptor; cupd restarts as a new process and never meets this.
fn reopen(open: impl Fn() -> Result<GitRepo, GitError>) -> Result<GitRepo, GitError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Err(GitError::CacheInUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// A restart with the remote gone serves the last fetched state, default branch included,
/// and says why and since when; a cache with nothing fetched is still an error.
#[test]
fn a_restart_with_an_unreachable_remote_serves_the_cache() {
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    let url = bare.to_str().unwrap().to_owned();
    let open = || GitRepo::open(&url, &cache, Author::default(), RemoteOptions::default());
    let repo = open().unwrap();
    let fetched = repo.fetch_status();
    assert!(fetched.last_success.is_some() && fetched.error.is_none());
    let record = std::fs::metadata(repo.cache_dir().join(REMOTE_RECORD)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(record.permissions().mode() & 0o777, 0o600);
    }
    drop(repo);
    let moved = tmp.path().join("moved.git");
    std::fs::rename(&bare, &moved).unwrap();
    let repo = reopen(open).expect("a usable cache survives an unreachable remote");
    assert_eq!(repo.default_branch().as_deref(), Some("master"));
    assert!(repo.view(None).unwrap().join("d/a.txt").is_file());
    let status = repo.fetch_status();
    let secs = |t: Option<std::time::SystemTime>| {
        t.unwrap()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(secs(status.last_success), secs(fetched.last_success));
    let error = status
        .error
        .expect("the failed fetch is reported")
        .to_string();
    assert!(error.contains("fetching from"), "{error}");
    assert!(status.error_at.is_some());
    // The remote is back: the next fetch clears the error.
    std::fs::rename(&moved, &bare).unwrap();
    repo.fetch().unwrap();
    assert!(repo.fetch_status().error.is_none());
    drop(repo);

    // Nothing fetched ever: no cache to serve.
    let empty = tmp.path().join("empty-cache");
    let err = GitRepo::open(
        tmp.path().join("missing.git").to_str().unwrap(),
        &empty,
        Author::default(),
        RemoteOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, GitError::Fetch { .. }), "{err}");
}

/// One listing decides "merged" for every proposal branch with one walk: merged, unmerged,
/// and tips that are ancestors of other tips, on a history with a merge commit.
#[test]
fn listing_tells_merged_from_open_proposals_and_pages_by_id() {
    let (tmp, bare) = remote();
    let seed = tmp.path().join("seed");
    let commit = |msg: &str| {
        std::fs::write(seed.join("f"), msg).unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-q", "-m", msg]);
        git(&seed, &["rev-parse", "HEAD"])
    };
    let base0 = git(&seed, &["rev-parse", "HEAD"]);
    let merged_old = commit("merged-old");
    let base1 = commit("base1");
    // An open branch off an old base, and one off that (its tip descends from the first).
    git(&seed, &["checkout", "-q", "-b", "side", &base0]);
    let open_a = commit("open-a");
    let open_b = commit("open-b");
    git(&seed, &["checkout", "-q", "master"]);
    // `side` goes to the remote for its objects, and later as a base.
    git(&seed, &["push", "-q", "origin", "master", "side"]);
    let ids: Vec<String> = (0..6).map(|_| Ulid::new().to_string()).collect();
    let tips = [
        (&ids[0], &merged_old), // merged: an ancestor of master
        (&ids[1], &open_a),     // open
        (&ids[2], &base1),      // merged: master itself
        (&ids[3], &open_b),     // open
        (&ids[4], &base0),      // merged: the root
        (&ids[5], &open_a),     // open, same commit as another
    ];
    for (id, tip) in tips {
        git(
            &bare,
            &[
                "update-ref",
                &format!("refs/heads/{PROPOSAL_PREFIX}{id}"),
                tip,
            ],
        );
    }
    let cache = tmp.path().join("cache");
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
    let all = repo.proposals(None).unwrap();
    let listed: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    let mut open: Vec<&str> = vec![&ids[1], &ids[3], &ids[5]];
    open.sort();
    assert_eq!(listed, open);
    assert!(all.iter().all(|p| p.message.starts_with("open-")));
    // Pages of two, each starting after the last id of the one before.
    let ticket = repo.fetch_ticket();
    let page = |after: Option<&str>| {
        repo.proposals_since(
            ticket,
            &ProposalQuery {
                revision: None,
                after,
                limit: 2,
            },
        )
        .unwrap()
    };
    let first = page(None);
    assert_eq!(first.items.len(), 2);
    assert!(first.more);
    let second = page(Some(&first.items[1].id));
    assert_eq!(second.items.len(), 1);
    assert!(!second.more);
    assert_eq!(second.items[0].id, open[2]);
    // Against `side`, what it holds is merged and the rest open.
    let on_side: Vec<String> = repo
        .proposals(Some("side"))
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut open_on_side = vec![ids[0].clone(), ids[2].clone()];
    open_on_side.sort();
    assert_eq!(on_side, open_on_side);
}

/// A call that asks for a fetch reuses one that started after it asked, and a fetch that
/// started before it asked is never enough.
#[test]
fn fetches_are_shared_only_by_callers_that_asked_before_they_started() {
    let (tmp, bare) = remote();
    let cache = tmp.path().join("cache");
    let repo = open_repo(&bare, &cache, RemoteOptions::default());
    let asked = repo.fetch_ticket();
    repo.fetch_since(asked).unwrap();
    // Changed on the remote after that fetch: a caller who asked before it does not see it…
    let seed = tmp.path().join("seed");
    std::fs::write(seed.join("late"), "l").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "late"]);
    git(&seed, &["push", "-q", "origin", "master"]);
    repo.fetch_since(asked).unwrap();
    assert!(!repo.view(None).unwrap().join("late").exists());
    // …one who asks now does.
    repo.fetch_since(repo.fetch_ticket()).unwrap();
    assert!(repo.view(None).unwrap().join("late").exists());
}

/// The crate's messages speak of no server: no flag, no query parameter, no program name.
/// Whoever reports them adds its own way out.
#[test]
fn messages_name_no_flag_of_the_server() {
    let auth = |problem| GitError::Auth {
        operation: "fetching from",
        url: "https://h/r".into(),
        problem: Box::new(problem),
    };
    let errors = [
        GitError::CacheInUse {
            path: "/c/r.git".into(),
            lock: "/c/r.git/cup.lock".into(),
        },
        GitError::NoDefaultBranch {
            url: "file:///r".into(),
            why: "the remote has no HEAD".into(),
        },
        auth(AuthProblem::NoCredentials { file: None }),
        auth(AuthProblem::HostKey(HostKeyError::NoFile {
            host: "h".into(),
        })),
    ];
    for error in errors {
        let text = error.to_string();
        assert!(
            !text.contains("--") && !text.contains('?') && !text.contains("cupd"),
            "{text}"
        );
    }
}

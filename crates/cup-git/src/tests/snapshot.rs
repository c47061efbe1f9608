//! Writing commits' trees out (snapshots for reads, checkouts for writes) against hostile
//! trees: entries a controller cannot see, trees over the snapshot limits, and many readers
//! of one new commit at once.

use super::*;

/// `git mktree` fed `lines` (bytes: names need not be UTF-8); the new tree's id.
fn mktree(repo: &Path, lines: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .arg("mktree")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().unwrap().write_all(lines).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git mktree");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes branch `branch` on `bare`: one commit on `master` with tree `root`.
fn branch_with_tree(bare: &Path, branch: &str, root: &str) -> String {
    let commit = git(bare, &["commit-tree", root, "-p", "master", "-m", branch]);
    git(
        bare,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    );
    commit
}

/// `(name bytes, mode, id)` of every entry of `treeish` in `bare`, recursively.
fn listing(bare: &Path, treeish: &str) -> Vec<(Vec<u8>, String, String)> {
    let out = Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["ls-tree", "-r", "-z", "--full-tree", treeish])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut entries: Vec<_> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let tab = e.iter().position(|b| *b == b'\t').unwrap();
            let meta = String::from_utf8(e[..tab].to_vec()).unwrap();
            let mut parts = meta.split(' ');
            let mode = parts.next().unwrap().to_owned();
            let id = parts.nth(1).unwrap().to_owned();
            (e[tab + 1..].to_vec(), mode, id)
        })
        .collect();
    entries.sort();
    entries
}

/// A tree the controller only partly sees: a name that is not UTF-8, a repository nested in
/// `lib/.git`, a link and a submodule. A write that changes something else keeps all of
/// them, byte for byte, in its proposal; the directory whose visible file the write deleted
/// stays as long as its `.git` does.
#[test]
fn a_write_keeps_every_entry_its_controller_could_not_see() {
    let (_tmp, bare) = remote();
    let blob = git_input(&bare, &["hash-object", "-w", "--stdin"], "kept\n");
    let target = git_input(&bare, &["hash-object", "-w", "--stdin"], "d/a.txt");
    let head = git(&bare, &["rev-parse", "master"]);
    let dot_git = mktree(&bare, format!("100644 blob {blob}\tHEAD\n").as_bytes());
    let lib = mktree(
        &bare,
        format!("040000 tree {dot_git}\t.git\n100644 blob {blob}\tvisible.txt\n").as_bytes(),
    );
    let mut root = format!(
        "040000 tree {lib}\tlib\n120000 blob {target}\tlink\n160000 commit {head}\tmodule\n\
         100644 blob {blob}\ta.yml\n"
    )
    .into_bytes();
    root.extend_from_slice(format!("100644 blob {blob}\tcaf").as_bytes());
    root.extend_from_slice(b"\xe9.txt\n");
    let root = mktree(&bare, &root);
    branch_with_tree(&bare, "partial", &root);

    let tmp = tempfile::tempdir().unwrap();
    let repo = open_repo(&bare, tmp.path(), RemoteOptions::default());
    let snapshot = repo.view(Some("partial")).unwrap();
    let mut seen: Vec<_> = walk(&snapshot);
    seen.sort();
    assert_eq!(
        seen,
        ["a.yml", "lib", "lib/visible.txt"],
        "what a controller sees"
    );

    let ((), proposal) = repo
        .propose(Some("partial"), "unrelated", |dir| {
            std::fs::write(dir.join("new.txt"), "new\n").unwrap();
            std::fs::remove_file(dir.join("lib/visible.txt")).unwrap();
            ((), true)
        })
        .unwrap();
    let proposal = proposal.expect("a proposal");
    let before = listing(&bare, "partial");
    let after = listing(&bare, &proposal.commit);
    let mut expected: Vec<_> = before
        .into_iter()
        .filter(|(name, ..)| name.as_slice() != b"lib/visible.txt")
        .collect();
    let new = git_input(&bare, &["hash-object", "--stdin"], "new\n");
    expected.push((b"new.txt".to_vec(), "100644".into(), new));
    expected.sort();
    let show = |l: &[(Vec<u8>, String, String)]| {
        l.iter()
            .map(|(n, m, _)| format!("{m} {}", String::from_utf8_lossy(n)))
            .collect::<Vec<_>>()
    };
    assert_eq!(show(&after), show(&expected));
    assert_eq!(after, expected, "kept byte for byte");
}

/// Paths under `dir`, relative, `/`-separated.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            out.extend(
                walk(&entry.path())
                    .into_iter()
                    .map(|p| format!("{name}/{p}")),
            );
        }
        out.push(name);
    }
    out
}

/// Each snapshot limit refuses a revision over it, naming the entry where it was passed;
/// the failure is remembered, nothing half-made stays, and a write on that revision is
/// refused before its controller runs. Other revisions read as before.
#[test]
fn a_revision_over_its_snapshot_limits_is_refused_naming_the_entry() {
    let (_tmp, bare) = remote();
    let blob = |content: &str| git_input(&bare, &["hash-object", "-w", "--stdin"], content);
    let small = blob(&"s".repeat(600));
    let large = blob(&"l".repeat(2000));
    let tiny = blob("t");
    let files_of = |blob: &str, n: usize| {
        (0..n)
            .map(|i| format!("100644 blob {blob}\tf{i}\n"))
            .collect::<String>()
    };
    let files = |n: usize| files_of(&tiny, n);
    let big_file = mktree(&bare, format!("100644 blob {large}\tbig.bin\n").as_bytes());
    let three = mktree(&bare, files_of(&small, 3).as_bytes());
    let many = mktree(&bare, files(2).as_bytes());
    let many = mktree(
        &bare,
        format!("040000 tree {many}\ta\n040000 tree {many}\tb\n").as_bytes(),
    );
    let mut deep = mktree(&bare, files(1).as_bytes());
    for _ in 0..3 {
        deep = mktree(&bare, format!("040000 tree {deep}\tn\n").as_bytes());
    }
    let branches = [
        ("file", big_file, WriteLimit::FileBytes, "big.bin", 2000),
        ("total", three, WriteLimit::TotalBytes, "f1", 1200),
        ("entries", many, WriteLimit::Entries, "b", 4),
        ("depth", deep, WriteLimit::Depth, "n/n/n", 3),
    ];
    let mut commits = Vec::new();
    for (branch, tree, ..) in &branches {
        commits.push(branch_with_tree(&bare, branch, tree));
    }
    let limits = SnapshotLimits {
        max_file_bytes: 1000,
        max_total_bytes: 1000,
        max_entries: 3,
        max_depth: 2,
    };
    let tmp = tempfile::tempdir().unwrap();
    let options = RemoteOptions {
        snapshot_limits: limits,
        ..RemoteOptions::default()
    };
    let repo = open_repo(&bare, tmp.path(), options);
    for ((branch, _, limit, entry, found), commit) in branches.iter().zip(&commits) {
        for _ in 0..2 {
            let error = repo.view(Some(branch)).unwrap_err();
            let GitError::SnapshotLimit(over) = &error else {
                panic!("{branch}: {error}");
            };
            assert_eq!(
                (over.limit, over.entry.as_str(), over.found, &over.commit),
                (*limit, *entry, *found, commit),
                "{branch}: {error}"
            );
            assert!(error.to_string().contains(commit.as_str()), "{error}");
        }
        assert!(lock(&repo.bad_trees).contains_key(&Oid::from_str(commit).unwrap()));
        let error = repo
            .propose(Some(branch), "x", |_| unreachable!("no checkout to change"))
            .map(|_: ((), _)| ())
            .unwrap_err();
        assert!(matches!(error, GitError::SnapshotLimit(_)), "{error}");
    }
    let snapshots = repo.cache_dir().join("cup-snapshots");
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
    assert!(repo.view(None).unwrap().join("d/a.txt").is_file());
}

/// Eight readers of a commit nobody read yet wait for one snapshot instead of each writing
/// the whole tree out: at no moment is more than one half-made snapshot on disk.
#[test]
fn concurrent_reads_of_a_new_commit_make_one_snapshot() {
    let (_tmp, bare) = remote();
    let blob = git_input(&bare, &["hash-object", "-w", "--stdin"], "x\n");
    let dir = (0..500)
        .map(|i| format!("100644 blob {blob}\tf{i}\n"))
        .collect::<String>();
    let dir = mktree(&bare, dir.as_bytes());
    let root = (0..8)
        .map(|i| format!("040000 tree {dir}\td{i}\n"))
        .collect::<String>();
    let root = mktree(&bare, root.as_bytes());
    branch_with_tree(&bare, "wide", &root);
    let tmp = tempfile::tempdir().unwrap();
    let repo = open_repo(&bare, tmp.path(), RemoteOptions::default());
    let snapshots = repo.cache_dir().join("cup-snapshots");
    let done = std::sync::atomic::AtomicBool::new(false);
    let most = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let half_made = std::fs::read_dir(&snapshots)
                    .unwrap()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
                    .count();
                most = most.max(half_made);
            }
            most
        });
        let readers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| repo.view(Some("wide")).unwrap()))
            .collect();
        let made: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(made.windows(2).all(|w| w[0].path() == w[1].path()));
        assert_eq!(walk(&made[0]).len(), 8 * 501);
        watcher.join().unwrap()
    });
    assert!(
        most <= 1,
        "{most} snapshots of one commit were being made at once"
    );
}

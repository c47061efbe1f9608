//! How cupd writes a revision's tree out of the Git cache, against a hostile remote, through
//! the real cupd:
//! - a file of 200 MB (a few hundred KB on the remote: zeros compress well) is refused from
//!   its object header, never loaded, however many readers ask at once;
//! - a revision with more entries than `--git-snapshot-max-entries` is refused naming it;
//! - a write keeps the entries a controller cannot see (a name that is not UTF-8, a nested
//!   `.git`): its proposal adds the one file and deletes nothing;
//! - snapshots pruned to `--git-snapshots` while readers of many revisions read on and new
//!   commits arrive: no read ever meets a vanished snapshot;
//! - the cache packed by `git gc` while cupd serves, and said in /status when there is no
//!   git program.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cupd_git_common::{BAZ_PAYLOAD, FOO, Fixture, RESOURCES, git, put_baz_and_read_back};
use cup_e2e::cupd::Cupd;
use cup_e2e::git_with_input;

/// Makes `branch` on the fixture's remote: `main` with `extra` (mktree lines) added at the
/// root. Returns its commit.
fn branch_adding(fixture: &Fixture, branch: &str, extra: &[u8]) -> String {
    let bare = fixture.bare();
    let default = git(&bare, &["rev-parse", "main:default"]);
    let mut root = format!("040000 tree {default}\tdefault\n").into_bytes();
    root.extend_from_slice(extra);
    let root = git_with_input(&bare, &["mktree"], &root);
    let commit = git(&bare, &["commit-tree", &root, "-p", "main", "-m", branch]);
    git(
        &bare,
        &["update-ref", &format!("refs/heads/{branch}"), &commit],
    );
    commit
}

#[test]
fn a_huge_file_is_refused_from_its_header_by_every_concurrent_reader() {
    let fixture = Fixture::new();
    let bare = fixture.bare();
    // 200 MB of zeros, written as a loose object straight into the remote.
    let zeros = fixture.path("zeros.bin");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let blob = git(&bare, &["hash-object", "-w", zeros.to_str().unwrap()]);
    std::fs::remove_file(&zeros).unwrap();
    let commit = branch_adding(
        &fixture,
        "big",
        format!("100644 blob {blob}\tzeros.bin\n").as_bytes(),
    );
    let url = bare.to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    let before = cupd.peak_rss_mib();

    let started = std::time::Instant::now();
    let answers: Vec<_> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| cupd.get(&format!("{RESOURCES}/foo?revision=big"))))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let after = cupd.peak_rss_mib();
    eprintln!(
        "8 reads of a 200 MB file: {:?}; cupd peak RSS {before} MiB before, {after} MiB after",
        started.elapsed()
    );
    for r in answers {
        let text = r.text();
        assert_eq!(r.status, 500, "{text}");
        for part in [
            "zeros.bin",
            "209715200 bytes",
            "--git-snapshot-max-file-size",
            commit.as_str(),
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
    assert!(after < before + 32, "{before} -> {after} MiB");
    // Nothing of it on disk, and the default branch still reads.
    let snapshots = fixture.cache_repo().join("cup-snapshots");
    let on_disk: Vec<_> = std::fs::read_dir(&snapshots).unwrap().flatten().collect();
    assert!(on_disk.len() <= 1, "{on_disk:?}");
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_revision_over_the_entry_limit_is_refused_naming_the_flag() {
    let fixture = Fixture::new();
    let bare = fixture.bare();
    let blob = git_with_input(&bare, &["hash-object", "-w", "--stdin"], b"x\n");
    let many: String = (0..20)
        .map(|i| format!("100644 blob {blob}\tf{i}\n"))
        .collect();
    let many = git_with_input(&bare, &["mktree"], many.as_bytes());
    branch_adding(
        &fixture,
        "wide",
        format!("040000 tree {many}\tmany\n").as_bytes(),
    );
    let url = bare.to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &["--git-snapshot-max-entries", "10"], &[]));
    let r = cupd.get(&format!("{RESOURCES}/foo?revision=wide"));
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(
        text.contains("more than 10 files and directories")
            && text.contains("--git-snapshot-max-entries"),
        "{text}"
    );
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
}

#[test]
fn a_write_deletes_nothing_its_controller_could_not_see() {
    let fixture = Fixture::new();
    let bare = fixture.bare();
    let blob = git_with_input(&bare, &["hash-object", "-w", "--stdin"], b"kept\n");
    let head = git_with_input(
        &bare,
        &["mktree"],
        format!("100644 blob {blob}\tHEAD\n").as_bytes(),
    );
    let lib = git_with_input(
        &bare,
        &["mktree"],
        format!("040000 tree {head}\t.git\n100644 blob {blob}\tREADME\n").as_bytes(),
    );
    let mut extra = format!("040000 tree {lib}\tlib\n100644 blob {blob}\tcaf").into_bytes();
    extra.extend_from_slice(b"\xe9.txt\n");
    let commit = branch_adding(&fixture, "partial", &extra);
    git(&bare, &["update-ref", "refs/heads/main", &commit]);
    let url = bare.to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    // The proposal differs from main by the one new file: nothing deleted.
    put_baz_and_read_back(&cupd, &fixture);
}

/// Commits `foo` with `spec.n = n` in the clone `seed` and pushes it to `main`; its id.
fn push_foo(seed: &std::path::Path, n: usize) -> String {
    let mut resource: serde_json::Value = serde_json::from_str(FOO).unwrap();
    resource["spec"] = serde_json::json!({ "n": n });
    std::fs::write(
        seed.join("default/test.cup.flipt.io-v1alpha1-Resource-foo.json"),
        resource.to_string(),
    )
    .unwrap();
    git(seed, &["commit", "-q", "-am", &format!("n={n}")]);
    git(seed, &["push", "-q", "origin", "main"]);
    git(seed, &["rev-parse", "HEAD"])
}

/// The snapshot directories (named by their commit) in the cache now.
fn snapshot_dirs(fixture: &Fixture) -> usize {
    std::fs::read_dir(fixture.cache_repo().join("cup-snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 40)
        .count()
}

/// Loose objects in the cache now.
fn loose_objects(fixture: &Fixture) -> usize {
    std::fs::read_dir(fixture.cache_repo().join("objects"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 2)
        // A directory git empties meanwhile counts as empty.
        .map(|e| std::fs::read_dir(e.path()).map_or(0, Iterator::count))
        .sum()
}

const READERS: usize = 8;
const KEPT: usize = 2;

#[test]
fn snapshots_are_pruned_under_concurrent_reads_and_no_read_fails() {
    let fixture = Fixture::new();
    let seed = fixture.path("seed");
    let commits: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new((0..12).map(|n| push_foo(&seed, n)).collect()));
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(
        &url,
        &[
            "--git-snapshots",
            &KEPT.to_string(),
            "--git-fetch-interval",
            "100ms",
            "--git-gc-interval",
            "200ms",
        ],
        &[],
    ));
    // git gc packs as soon as two packs are there: it runs while the readers read.
    git(&fixture.cache_repo(), &["config", "gc.autoPackLimit", "1"]);
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let most = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                most = most.max(snapshot_dirs(&fixture));
                std::thread::sleep(Duration::from_millis(2));
            }
            most
        });
        let pusher = s.spawn(|| {
            for n in 12..60 {
                let commit = push_foo(&seed, n);
                // Read once cupd has fetched it: until then it is rightly not found.
                let deadline = Instant::now() + Duration::from_secs(30);
                while cupd.get(&format!("{RESOURCES}/foo")).json()["spec"]["n"] != n {
                    assert!(Instant::now() < deadline, "commit {n} not fetched");
                    std::thread::sleep(Duration::from_millis(20));
                }
                commits.lock().unwrap().push(commit);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let readers: Vec<_> = (0..READERS)
            .map(|reader| {
                let (commits, stop, reads, cupd) = (&commits, &stop, &reads, &cupd);
                s.spawn(move || {
                    let mut turn = reader;
                    while !stop.load(Ordering::Relaxed) {
                        // Each reader on its own revision at any one time.
                        let (n, commit) = {
                            let commits = commits.lock().unwrap();
                            let n = (turn * 7 + reader) % commits.len();
                            (n, commits[n].clone())
                        };
                        turn += 1;
                        let r = cupd.get(&format!("{RESOURCES}/foo?revision={commit}"));
                        assert_eq!(r.status, 200, "n={n} {commit}: {}", r.text());
                        assert_eq!(r.json()["spec"]["n"], n, "{commit}");
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        pusher.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        watcher.join().unwrap()
    });
    let reads = reads.into_inner();
    eprintln!("{reads} reads; at most {most} snapshot directories at once");
    assert!(reads >= 200, "{reads} reads");
    // The bound, plus at most one leased by each reader.
    assert!(
        most <= KEPT + READERS,
        "{most} snapshot directories at once"
    );
    // Readers gone: the next snapshot made brings the count back to the bound.
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = cupd.get(&format!(
        "{RESOURCES}/foo?revision={}",
        commits.lock().unwrap()[3]
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        snapshot_dirs(&fixture) <= KEPT,
        "{}",
        snapshot_dirs(&fixture)
    );
    let status = cupd.get("/status").json();
    let snapshots = &status["source"]["snapshots"];
    assert!(
        snapshots["count"].as_u64().unwrap() <= KEPT as u64,
        "{status}"
    );
    assert_eq!(snapshots["leased"], 0, "{status}");
    assert!(
        !cupd.log().contains("cannot remove a snapshot"),
        "{}",
        cupd.log()
    );
}

#[test]
fn the_cache_is_garbage_collected_and_reads_and_writes_go_on() {
    let fixture = Fixture::new();
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &["--git-gc-interval", "300ms"], &[]));
    let put = |name: &str| {
        let body = BAZ_PAYLOAD.replace("\"baz\"", &format!("\"{name}\""));
        cupd.request(
            "PUT",
            &format!("{RESOURCES}/{name}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    };
    for i in 0..10 {
        let r = put(&format!("w{i}"));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // A commit from elsewhere, fetched by the next write: a second pack.
    push_foo(&fixture.path("seed"), 1);
    assert_eq!(put("w10").status, 202);
    // A listing fetches every branch: the proposals' objects are reachable in the cache
    // from then on (as they are after any periodic fetch), so git packs them.
    assert_eq!(cupd.get("/proposals").status, 200);
    let before = loose_objects(&fixture);
    assert!(before >= 30, "{before} loose objects after 11 writes");
    // git's own threshold, as an operator sets it in the cache's config.
    git(&fixture.cache_repo(), &["config", "gc.autoPackLimit", "1"]);
    // Runs before this one found nothing to do: wait for the objects on disk to drop.
    let deadline = Instant::now() + Duration::from_secs(30);
    while loose_objects(&fixture) >= before {
        assert!(
            Instant::now() < deadline,
            "no gc in time: {}",
            cupd.get("/status").text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = loose_objects(&fixture);
    std::thread::sleep(Duration::from_millis(50));
    let gc = cupd.get("/status").json()["source"]["gc"].clone();
    eprintln!("loose objects {before} -> {after}; gc {gc}");
    assert_eq!(gc["outcome"], "ok", "{gc}");
    assert!(gc["packs"].as_u64().is_some_and(|p| p >= 1), "{gc}");
    assert!(gc["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{gc}");
    assert!(
        gc["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{gc}"
    );
    assert!(
        cupd.log().contains("git cache packed"),
        "a run that packed is logged"
    );
    // Reads and writes on the packed cache.
    let r = cupd.get(&format!("{RESOURCES}/foo"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["spec"]["n"], 1);
    let r = put("after");
    assert_eq!(r.status, 202, "{}", r.text());
    let commit = r.json()["proposal"]["commit"].as_str().unwrap().to_owned();
    let r = cupd.get(&format!("{RESOURCES}/after?revision={commit}"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn without_a_git_program_gc_is_said_once_and_reads_go_on() {
    let fixture = Fixture::new();
    let url = fixture.bare().to_str().unwrap().to_owned();
    let empty = fixture.path("no-programs");
    std::fs::create_dir_all(&empty).unwrap();
    let cupd = Cupd::start(&fixture.config(
        &url,
        &["--git-gc-interval", "100ms"],
        &[("PATH", empty.to_str().unwrap())],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let gc = loop {
        let gc = cupd.get("/status").json()["source"]["gc"].clone();
        if !gc.is_null() {
            break gc;
        }
        assert!(Instant::now() < deadline, "no gc reported");
        std::thread::sleep(Duration::from_millis(50));
    };
    let outcome = gc["outcome"].as_str().unwrap();
    assert!(outcome.contains("not found"), "{gc}");
    std::thread::sleep(Duration::from_millis(500));
    let log = cupd.log();
    assert_eq!(
        log.matches("garbage-collecting the git cache failed")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(cupd.get(&format!("{RESOURCES}/foo")).status, 200);
}

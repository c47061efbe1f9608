//! Bounded disk: snapshots pruned least recently used first within their count and size
//! bounds, never one a reader holds, those of an earlier run adopted at open; and the cache
//! packed by `git gc`.

use super::*;

/// Pushes branches `b1..=bn` to `bare`, each one commit on `master` adding a file of
/// `size` bytes; returns their commit ids.
fn branches(bare: &Path, n: usize, size: usize) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("w");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    (1..=n)
        .map(|i| {
            git(
                &work,
                &["checkout", "-q", "-B", &format!("b{i}"), "origin/master"],
            );
            std::fs::write(work.join(format!("f{i}")), "x".repeat(size)).unwrap();
            git(&work, &["add", "-A"]);
            git(&work, &["commit", "-q", "-m", &format!("b{i}")]);
            git(&work, &["push", "-q", "origin", &format!("b{i}")]);
            git(&work, &["rev-parse", "HEAD"])
        })
        .collect()
}

fn retained(bare: &Path, cache: &Path, max_snapshots: usize, max_bytes: u64) -> GitRepo {
    let options = RemoteOptions {
        snapshot_retention: SnapshotRetention {
            max_snapshots,
            max_bytes,
        },
        ..RemoteOptions::default()
    };
    open_repo(bare, cache, options)
}

/// The commits whose snapshots are on disk, sorted; fails on any other directory but the
/// half-made and half-removed ones.
fn on_disk(repo: &GitRepo) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(repo.cache_dir().join("cup-snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".tmp-"))
        .collect();
    found.sort();
    found
}

fn sorted(commits: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = commits.iter().map(|c| (*c).clone()).collect();
    v.sort();
    v
}

#[test]
fn the_least_recently_used_snapshots_go_beyond_the_count() {
    let (tmp, bare) = remote();
    let c = branches(&bare, 4, 10);
    let repo = retained(&bare, &tmp.path().join("cache"), 2, u64::MAX);
    drop(repo.view(Some("b1")).unwrap());
    drop(repo.view(Some("b2")).unwrap());
    // b1 used again: b2 is now the least recently used.
    drop(repo.view(Some("b1")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[0], &c[1]]));
    drop(repo.view(Some("b3")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[0], &c[2]]));
    drop(repo.view(Some("b4")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[2], &c[3]]));
    let usage = repo.snapshot_usage();
    assert_eq!((usage.snapshots, usage.leased), (2, 0));
    // A removed snapshot is made again when read again.
    let again = repo.view(Some("b1")).unwrap();
    assert_eq!(
        std::fs::read_to_string(again.join("f1")).unwrap(),
        "x".repeat(10)
    );
    assert_eq!(again.commit().to_string(), c[0]);
}

#[test]
fn the_least_recently_used_snapshots_go_beyond_the_size() {
    let (tmp, bare) = remote();
    let c = branches(&bare, 3, 1000);
    // One snapshot: 1000 bytes of f<i>, 2 of d/a.txt, 10 of run.sh.
    let repo = retained(&bare, &tmp.path().join("cache"), 100, 2100);
    drop(repo.view(Some("b1")).unwrap());
    let usage = repo.snapshot_usage();
    assert_eq!((usage.snapshots, usage.bytes, usage.files), (1, 1012, 3));
    drop(repo.view(Some("b2")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[0], &c[1]]));
    drop(repo.view(Some("b3")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[1], &c[2]]));
    assert_eq!(repo.snapshot_usage().bytes, 2024);
    // One snapshot over the size bound alone is still made and served.
    let small = retained(&bare, &tmp.path().join("small"), 100, 10);
    let view = small.view(Some("b1")).unwrap();
    assert!(view.join("f1").is_file());
    drop(view);
    drop(small.view(Some("b2")).unwrap());
    assert_eq!(on_disk(&small), vec![c[1].clone()]);
}

#[test]
fn a_leased_snapshot_survives_pruning_and_goes_once_given_back() {
    let (tmp, bare) = remote();
    let c = branches(&bare, 4, 10);
    let repo = retained(&bare, &tmp.path().join("cache"), 1, u64::MAX);
    let held = repo.view(Some("b1")).unwrap();
    let clone = held.clone();
    drop(held);
    drop(repo.view(Some("b2")).unwrap());
    drop(repo.view(Some("b3")).unwrap());
    // b2 went (unleased, least recently used); b1 stays while its clone lives.
    assert_eq!(on_disk(&repo), sorted(&[&c[0], &c[2]]));
    assert_eq!(
        std::fs::read_to_string(clone.join("f1")).unwrap(),
        "x".repeat(10)
    );
    assert_eq!(repo.snapshot_usage().leased, 1);
    // The same commit read again shares the held snapshot.
    let same = repo.view(Some(&c[0])).unwrap();
    assert_eq!(same.path(), clone.path());
    drop((same, clone));
    drop(repo.view(Some("b4")).unwrap());
    assert_eq!(on_disk(&repo), vec![c[3].clone()]);
}

#[test]
fn a_leased_snapshot_of_a_commit_no_longer_reachable_goes_after_it_is_given_back() {
    let (tmp, bare) = remote();
    let c = branches(&bare, 2, 10);
    let repo = retained(&bare, &tmp.path().join("cache"), 32, u64::MAX);
    let held = repo.view(Some("b1")).unwrap();
    drop(repo.view(Some("b2")).unwrap());
    git(&bare, &["branch", "-D", "b1", "b2"]);
    repo.fetch().unwrap();
    // b2 is gone; b1 stays while read, and is no longer served.
    assert_eq!(on_disk(&repo), vec![c[0].clone()]);
    assert!(held.join("f1").is_file());
    assert!(repo.view(Some(&c[0])).is_err());
    drop(held);
    // No ref moved since, yet the next fetch looks again.
    repo.fetch().unwrap();
    assert_eq!(on_disk(&repo), Vec::<String>::new());
}

/// Sets the time of change of directory `dir`.
fn set_modified(dir: &Path, secs: u64) {
    let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::File::open(dir).unwrap().set_modified(at).unwrap();
}

#[test]
fn snapshots_of_an_earlier_run_are_adopted_oldest_first() {
    let (tmp, bare) = remote();
    let c = branches(&bare, 4, 100);
    let cache = tmp.path().join("cache");
    let dir = {
        let repo = retained(&bare, &cache, 32, u64::MAX);
        for b in ["b1", "b2", "b3"] {
            drop(repo.view(Some(b)).unwrap());
        }
        repo.cache_dir().join("cup-snapshots")
    };
    // Last used, by their times: b2, then b3, then b1.
    set_modified(&dir.join(&c[1]), 1_000);
    set_modified(&dir.join(&c[2]), 2_000);
    set_modified(&dir.join(&c[0]), 3_000);
    // Reopened with room for two: the oldest, b2, goes at open.
    let repo = retained(&bare, &cache, 2, u64::MAX);
    assert_eq!(on_disk(&repo), sorted(&[&c[0], &c[2]]));
    let usage = repo.snapshot_usage();
    assert_eq!((usage.snapshots, usage.bytes, usage.files), (2, 2 * 112, 6));
    // An adopted snapshot is leased and served as it is.
    let b3 = repo.view(Some("b3")).unwrap();
    assert_eq!(b3.path(), dir.join(&c[2]));
    drop(b3);
    drop(repo.view(Some("b4")).unwrap());
    assert_eq!(on_disk(&repo), sorted(&[&c[2], &c[3]]));
}

#[test]
fn garbage_collection_packs_the_loose_objects_of_writes() {
    let (tmp, bare) = remote();
    let repo = open_repo(&bare, &tmp.path().join("cache"), RemoteOptions::default());
    for i in 0..5 {
        let ((), p) = repo
            .propose(None, &format!("w{i}"), |d| {
                (
                    std::fs::write(d.join(format!("w{i}")), i.to_string()).unwrap(),
                    true,
                )
            })
            .unwrap();
        assert!(p.is_some());
    }
    // A commit from elsewhere, fetched: a second pack.
    branches(&bare, 1, 10);
    repo.fetch().unwrap();
    let before = repo.object_counts();
    assert!(before.loose >= 15 && before.packs == 2, "{before:?}");
    // Git's threshold as an operator would set it in the cache's config.
    git(repo.cache_dir(), &["config", "gc.autoPackLimit", "1"]);
    let collected = repo.collect_garbage(Path::new("git")).unwrap();
    assert_eq!(collected.before, before);
    assert!(collected.after.loose < before.loose, "{collected:?}");
    assert_eq!(collected.after.packs, 1, "{collected:?}");
    // Reads and writes still work on the packed cache.
    assert!(repo.view(None).unwrap().join("d/a.txt").is_file());
    let ((), p) = repo
        .propose(None, "after", |d| {
            (std::fs::write(d.join("after"), "a").unwrap(), true)
        })
        .unwrap();
    assert!(p.is_some());
    // No git program: a typed error, and nothing changed.
    let missing = repo
        .collect_garbage(Path::new("/nonexistent/git"))
        .unwrap_err();
    assert!(
        matches!(missing, GitError::GcProgramMissing { .. }),
        "{missing}"
    );
}

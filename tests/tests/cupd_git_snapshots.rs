//! How cupd writes a revision's tree out of the Git cache, against a hostile remote, through
//! the real cupd:
//! - a file of 200 MB (a few hundred KB on the remote: zeros compress well) is refused from
//!   its object header, never loaded, however many readers ask at once;
//! - a revision with more entries than `--git-snapshot-max-entries` is refused naming it;
//! - a write keeps the entries a controller cannot see (a name that is not UTF-8, a nested
//!   `.git`): its proposal adds the one file and deletes nothing.

use crate::cupd_git_common::{Fixture, RESOURCES, git, put_baz_and_read_back};
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

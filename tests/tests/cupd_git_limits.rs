//! What a controller's write may put in a Git proposal, through the real cupd: the `probe`
//! guest's `Sparse` Kind leaves a 2 GiB sparse file in its checkout (`set_len`, free for
//! the guest) and `Nest` 100 nested directories. Both PUTs are refused with a 500 naming
//! the path and the limit, cupd never reads the file (its peak RSS stays small) and
//! nothing reaches the remote.

use crate::cupd_git_common::{Fixture, git};
use cup_e2e::cupd::{Cupd, probe_put as put, write_probe_controller};

/// The probe bound to `Sparse` and `Nest` in the fixture's config directory.
fn add_probe(fixture: &Fixture) {
    write_probe_controller(&fixture.path("config"), &["Sparse", "Nest"]);
}

fn proposal_branches(fixture: &Fixture) -> String {
    git(
        &fixture.bare(),
        &["for-each-ref", "--format=%(refname)", "refs/heads/cup"],
    )
}

#[test]
fn a_sparse_file_or_deep_nesting_in_a_write_is_refused_and_pushes_nothing() {
    let fixture = Fixture::new();
    add_probe(&fixture);
    let url = fixture.bare().to_str().unwrap().to_owned();
    let cupd = Cupd::start(&fixture.config(&url, &[], &[]));
    let before = cupd.peak_rss_mib();

    let started = std::time::Instant::now();
    let r = put(&cupd, "Sparse", "big");
    let after = cupd.peak_rss_mib();
    eprintln!(
        "sparse write: {} in {:?}; cupd peak RSS {before} MiB before, {after} MiB after",
        r.status,
        started.elapsed()
    );
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(
        text.contains("sparse.bin")
            && text.contains("2147483648 bytes")
            && text.contains("--write-max-file-size"),
        "{text}"
    );
    assert!(after < before + 64, "{before} -> {after} MiB");

    let r = put(&cupd, "Nest", "100");
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(
        text.contains("--write-max-depth") && text.contains("65 levels") && text.contains("n/n/n"),
        "{text}"
    );

    assert_eq!(proposal_branches(&fixture), "", "nothing pushed");
    // Within the limits the same Kinds write: a small file, ten levels.
    let r = put(&cupd, "Nest", "10");
    assert_eq!(r.status, 202, "{}", r.text());
    let r = put(&cupd, "Sparse", "1000");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(proposal_branches(&fixture).lines().count(), 2);
    assert_eq!(cupd.get("/healthz").status, 200, "the server stays up");
}

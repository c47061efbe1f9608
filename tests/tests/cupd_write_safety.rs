//! What a wasm write may do to the local source, through the real cupd and real guests:
//! nothing outside the source through a link (the example controller, driven by `cup`), no
//! file bigger than the limits (a 2 GiB sparse file), no tree deeper than the limits (and
//! a refused write leaves the source taking writes), and one slow read cannot stall every
//! other read behind a waiting write.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cup_e2e::cupd::{
    Cupd, CupdConfig, copy_tree, probe_put, write_probe_controller, write_template_controller,
};
use cup_e2e::{bin, repo_root};
use cup_e2e::{flipt_package, shared_code_cache};

/// The probe, bound to the Kinds this file uses, and the template controller.
fn probe_config(dir: &Path) {
    write_probe_controller(dir, &["Sparse", "Nest", "Slow"]);
    write_template_controller(dir, r#"{"type":"object"}"#);
}

fn probe_url(kind: &str, name: &str) -> String {
    format!(
        "/apis/example.com/v1/namespaces/default/{}s/{name}",
        kind.to_lowercase()
    )
}

/// Every path under `dir` with its contents (`/` for a directory, `-> target` for a link).
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{rel}/{name}");
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, format!("-> {}", target.display())));
            } else if meta.is_dir() {
                out.push((rel.clone(), "/".into()));
                walk(&path, &rel, out);
            } else {
                out.push((rel, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out
}

/// The review's finding, as found: `cup -n production apply -f flag.json` with the example
/// controller, where the `production` namespace directory is a link to a directory outside
/// the source. It used to delete every other file of the link's target.
#[test]
fn a_namespace_that_is_a_link_out_of_the_source_is_never_written_through() {
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir(config.path().join("ctl")).unwrap();
    std::fs::write(config.path().join("ctl/flipt.wasm"), flipt_package()).unwrap();
    std::fs::write(
        config.path().join("flipt.json"),
        r#"{"apiVersion":"cup.flipt.io/v1alpha1","kind":"Controller","metadata":{"name":"flipt"},"spec":{"type":"wasm","spec":{"path":"ctl/flipt.wasm"}}}"#,
    )
    .unwrap();
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    // The shared directory the link leads to: an OWNERS file and an existing flag.
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("OWNERS"), "alice\nbob\n").unwrap();
    std::fs::rename(
        source.path().join("production/features.yml"),
        shared.path().join("features.yml"),
    )
    .unwrap();
    std::fs::remove_dir(source.path().join("production")).unwrap();
    std::os::unix::fs::symlink(shared.path(), source.path().join("production")).unwrap();
    let (shared_before, source_before) = (snapshot(shared.path()), snapshot(source.path()));

    let store = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
    ];
    let cupd = Cupd::start(&cfg);
    let flag = config.path().join("flag.json");
    std::fs::write(
        &flag,
        r#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"namespace":"production","name":"checkout-v2"},"spec":{"name":"Checkout v2","type":"BOOLEAN_FLAG_TYPE","enabled":true}}"#,
    )
    .unwrap();
    let out = Command::new(bin("cup"))
        .args(["-a", &cupd.base_url(), "-n", "production", "apply", "-f"])
        .arg(&flag)
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the apply must fail: {stderr}");
    assert!(
        stderr.contains("409") || stderr.contains("Conflict") || stderr.contains("conflict"),
        "{stderr}"
    );
    assert!(
        stderr.contains("production is a symbolic link"),
        "the error names the path: {stderr}"
    );
    assert_eq!(
        snapshot(shared.path()),
        shared_before,
        "the link's target is untouched"
    );
    assert_eq!(
        snapshot(source.path()),
        source_before,
        "the source is untouched"
    );
    // The same write in a namespace that is a real directory goes through.
    let flag_default = config.path().join("flag-default.json");
    std::fs::write(
        &flag_default,
        std::fs::read_to_string(&flag)
            .unwrap()
            .replace("production", "default"),
    )
    .unwrap();
    let out = Command::new(bin("cup"))
        .args(["-a", &cupd.base_url(), "apply", "-f"])
        .arg(&flag_default)
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let features = std::fs::read_to_string(source.path().join("features.yml")).unwrap();
    assert!(features.contains("checkout-v2"), "{features}");
    assert_eq!(snapshot(shared.path()), shared_before);
}

fn start_probe(source: &Path, extra: &[&str]) -> (Cupd, tempfile::TempDir, tempfile::TempDir) {
    let (config, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    probe_config(config.path());
    let mut cfg = CupdConfig::new(config.path(), source, store.path());
    cfg.args = extra.iter().map(|a| a.to_string()).collect();
    (Cupd::start(&cfg), config, store)
}

/// A 2 GiB sparse file costs the guest nothing; carried over, it used to cost cupd 2 GiB of
/// memory and the source 2 GiB of disk, on every PUT.
#[test]
fn a_sparse_file_is_refused_without_being_read_and_the_source_keeps_working() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("keep.yml"), "keep").unwrap();
    let (cupd, _config, _store) = start_probe(source.path(), &[]);
    let before_rss = cupd.peak_rss_mib();
    let before = snapshot(source.path());

    let r = probe_put(&cupd, "Sparse", "big");
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(
        text.contains("sparse.bin") && text.contains("--write-max-file-size"),
        "{text}"
    );
    let after_rss = cupd.peak_rss_mib();
    eprintln!("cupd peak RSS: {before_rss} MiB before the sparse write, {after_rss} MiB after");
    assert!(
        after_rss < before_rss + 64,
        "{before_rss} -> {after_rss} MiB"
    );
    assert_eq!(
        snapshot(source.path()),
        before,
        "nothing written, nothing left behind"
    );

    // A lower limit is the operator's: a small file within it goes through.
    let r = probe_put(&cupd, "Sparse", "1000");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        std::fs::metadata(source.path().join("sparse.bin"))
            .unwrap()
            .len(),
        1000
    );
}

/// A guest nesting directories without bound used to have them all carried over (past
/// PATH_MAX: a 500 with 2,026 directories left in the source, and every later wasm write
/// failing while it prepared its scratch copy).
#[test]
fn deep_nesting_is_refused_whole_and_never_wedges_the_source() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("keep.yml"), "keep").unwrap();
    let (cupd, _config, _store) = start_probe(source.path(), &[]);
    let before = snapshot(source.path());

    // 1,500 levels: deep enough to be absurd, short enough (3,000 bytes) for the guest to
    // make them all.
    let r = probe_put(&cupd, "Nest", "1500");
    let text = r.text();
    assert_eq!(r.status, 500, "{text}");
    assert!(text.contains("--write-max-depth"), "{text}");
    assert_eq!(snapshot(source.path()), before, "no directory stays behind");

    // The source keeps taking writes, within the limit and after it was lowered.
    let r = probe_put(&cupd, "Nest", "10");
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        source
            .path()
            .join("n/n/n/n/n/n/n/n/n/n/bottom.txt")
            .is_file()
    );
    drop(cupd);
    let (cupd, _config, _store) = start_probe(source.path(), &["--write-max-depth", "5"]);
    let r = probe_put(&cupd, "Nest", "6");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("--write-max-depth"), "{}", r.text());
}

/// A slow read used to hold the view lock for its whole run; a write queued behind it then
/// held every later read back too, for as long as the slow read took.
#[test]
fn a_slow_read_holds_writes_and_other_reads_off_only_briefly() {
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("default")).unwrap();
    std::fs::write(
        source.path().join("default/test.cup.flipt.io-v1alpha1-Resource-one.json"),
        r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"one"},"spec":{}}"#,
    )
    .unwrap();
    let (cupd, _config, _store) = start_probe(source.path(), &["--max-read-hold", "500ms"]);
    let cupd = std::sync::Arc::new(cupd);
    let template = "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources";

    // A read that takes 4 s and sees no write is answered.
    let started = Instant::now();
    let r = cupd.get(&probe_url("Slow", "1500"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let slow = {
        let cupd = cupd.clone();
        std::thread::spawn(move || cupd.get(&probe_url("Slow", "4000")))
    };
    std::thread::sleep(Duration::from_millis(300));
    let write = {
        let cupd = cupd.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = cupd.put(
                &format!("{template}/two"),
                r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"two"},"spec":{}}"#,
            );
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let r = cupd.get(&format!("{template}/one"));
    let read_took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let (w, write_took) = write.join().unwrap();
    assert!(w.status < 300, "{} {}", w.status, w.text());
    eprintln!("behind a 4 s read: a write took {write_took:?}, a read {read_took:?}");
    assert!(write_took < Duration::from_secs(2), "{write_took:?}");
    assert!(read_took < Duration::from_secs(2), "{read_took:?}");
    // The slow read met the write: it is not answered with what it read.
    let r = slow.join().unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("--max-read-hold"), "{}", r.text());
}

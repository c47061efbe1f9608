//! cupd's startup sweep: what a killed cupd left behind (scratch copies of the source in its
//! scratch directory, `.cup-*.tmp` files of an interrupted apply in the source) is removed when the
//! next cupd starts, and the scratch copy of a live process is left alone.
//!
//! The leftovers are real twice over: cupd is SIGKILLed while clients write through the
//! example controller (whatever that leaves is counted), and leftovers are also laid down
//! the way cupd makes them (a `cupd-scratch-<pid>-*` copy of the source whose process is dead,
//! temp files beside files being replaced), so the sweep always has something to remove.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree, scratch_copies, write_flipt_controller};
use cup_e2e::repo_root;
use cup_e2e::shared_code_cache;

const FLAGS: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags";
const KILL_ROUNDS: usize = 3;

fn flag_body(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{{"namespace":"default","name":"{name}"}},"spec":{{"type":"BOOLEAN_FLAG_TYPE","enabled":true}}}}"#
    )
}

/// `.cup-*.tmp` files anywhere under `dir`, relative paths.
fn temp_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().expect("file type").is_dir() {
                stack.push(path);
            } else if name.starts_with(".cup-") && name.ends_with(".tmp") {
                let rel = path.strip_prefix(dir).expect("under dir");
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The PID of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawning true");
    let pid = child.id();
    child.wait().expect("reaping true");
    pid
}

/// Four writers putting new flags until cupd is gone; returns when they have all stopped.
fn write_until_killed(cupd: Cupd, round: usize, kill_after: Duration) {
    let port = cupd.port();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                for sent in 0.. {
                    let name = format!("s{round}-{w}-{sent}");
                    let response = cup_e2e::cupd::request(
                        port,
                        "PUT",
                        &format!("{FLAGS}/{name}"),
                        &[("Content-Type", "application/json")],
                        flag_body(&name).as_bytes(),
                    );
                    if response.is_none() {
                        return;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(kill_after);
    drop(cupd); // SIGKILL, then reaped
    for w in writers {
        w.join().expect("writer thread");
    }
}

#[test]
fn startup_sweeps_a_killed_cupds_leftovers_and_spares_a_live_scratch() {
    let config = tempfile::tempdir().expect("temp dir");
    write_flipt_controller(config.path(), "flipt.wasm");
    let source = tempfile::tempdir().expect("temp dir");
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().expect("temp dir");
    // cupd's TMPDIR and scratch directory, private to the test, so every scratch copy in it
    // is accounted for.
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
        // Here, whatever the host's default place for scratch copies would be.
        "--scratch-dir".into(),
        tmp.path().display().to_string(),
    ];
    cfg.env = vec![("TMPDIR".into(), tmp.path().display().to_string())];

    // Real crashes mid-write.
    for round in 0..KILL_ROUNDS {
        let cupd = Cupd::start(&cfg);
        let kill_after = Duration::from_millis(150 + 200 * round as u64);
        write_until_killed(cupd, round, kill_after);
    }
    let from_kills = (scratch_copies(tmp.path()), temp_files(source.path()));

    // Leftovers as cupd makes them: the scratch copy of a dead process (its lock died with
    // it), and temp files beside files being replaced, in the source and a subdirectory.
    let dead = tmp
        .path()
        .join(format!("cupd-scratch-{}-dead01", dead_pid()));
    copy_tree(source.path(), &dead);
    // A live process's scratch copy: this test's own, locked as cupd locks its own.
    let live = tmp
        .path()
        .join(format!("cupd-scratch-{}-live01", std::process::id()));
    copy_tree(source.path(), &live);
    let live_lock = File::open(&live).expect("open the live scratch");
    live_lock.lock().expect("lock the live scratch");
    let live_before = (
        cup_e2e::dir_listing(&live),
        std::fs::read(live.join("features.yml")).expect("features.yml"),
    );
    std::fs::write(source.path().join(".cup-a1b2c3.tmp"), "half a features.yml").expect("write");
    std::fs::create_dir_all(source.path().join("sub")).expect("mkdir");
    std::fs::write(source.path().join("sub/.cup-d4e5f6.tmp"), "half").expect("write");
    let features = std::fs::read(source.path().join("features.yml")).expect("features.yml");
    eprintln!(
        "left by {KILL_ROUNDS} kills: scratch copies {:?}, temp files {:?}; laid down: 1 dead scratch, 2 temp files, 1 live scratch",
        from_kills.0, from_kills.1
    );

    let cupd = Cupd::start(&cfg);
    let live_name = live
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert_eq!(
        scratch_copies(tmp.path()),
        vec![live_name],
        "only the live scratch copy is left; log:\n{}",
        cupd.log()
    );
    assert_eq!(
        (
            cup_e2e::dir_listing(&live),
            std::fs::read(live.join("features.yml")).expect("features.yml"),
        ),
        live_before,
        "the live scratch copy is untouched"
    );
    assert_eq!(temp_files(source.path()), Vec::<String>::new());
    assert_eq!(
        std::fs::read(source.path().join("features.yml")).expect("features.yml"),
        features,
        "the sweep does not touch the data"
    );
    let log = cupd.log();
    assert!(
        log.contains("removed the scratch copy of a previous cupd") && log.contains("dead01"),
        "the sweep logs what it removed:\n{log}"
    );
    assert!(log.contains(".cup-a1b2c3.tmp"), "{log}");

    // The swept source still serves and takes writes, and this cupd's own scratch copies are
    // gone once its writes are done.
    let r = cupd.put(
        &format!("{FLAGS}/after-the-sweep"),
        &flag_body("after-the-sweep"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(cupd.get(&format!("{FLAGS}/after-the-sweep")).status, 200);
    drop(live_lock);
}

//! cupd SIGKILLed at random points while clients write: four clients put flags through the
//! real example controller (wasm, every put rewrites the one shared `features.yml` through
//! a scratch copy and a temp file + rename), cupd is killed after a random delay, restarted
//! on the same source, and so on. After every kill the source must still be readable by the
//! controller, every write that was acknowledged (202) must be there, the flags the source
//! started with must be there, and the next run must accept writes. Leftovers are counted
//! and reported, not asserted (each restart sweeps the previous run's; `cupd_sweep` tests
//! that): `.cup-*.tmp` files in the source and `cupd-scratch-*` copies in cupd's scratch directory.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cup_e2e::cupd::{Cupd, CupdConfig, copy_tree, write_flipt_controller};
use cup_e2e::repo_root;
use cup_e2e::shared_code_cache;

const ROUNDS: usize = 6;
const WRITERS: usize = 4;
const FLAGS: &str = "/apis/flipt.io/v1alpha1/namespaces/default/flags";

/// A tiny deterministic generator: the seed is printed, so a failing run can be replayed
/// by setting `CUP_FAULT_SEED`.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn flag_body(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{{"namespace":"default","name":"{name}"}},"spec":{{"type":"BOOLEAN_FLAG_TYPE","enabled":true}}}}"#
    )
}

/// Names of the flags the controller lists (the list must succeed: features.yml parses).
fn listed(cupd: &Cupd) -> Vec<String> {
    let r = cupd.get(FLAGS);
    assert_eq!(r.status, 200, "list after a kill: {}", r.text());
    r.text()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a listed flag is JSON");
            v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    cup_e2e::dir_listing(dir)
        .into_iter()
        .filter(|n| n.starts_with(".cup-"))
        .collect()
}

#[test]
fn sigkill_during_wasm_writes_loses_no_acknowledged_write() {
    let seed = std::env::var("CUP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("CUP_FAULT_SEED={seed}");
    let mut rng = Lcg(seed);

    let config = tempfile::tempdir().unwrap();
    write_flipt_controller(config.path(), "flipt.wasm");
    let source = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("examples/flipt/repo"), source.path());
    let store = tempfile::tempdir().unwrap();
    // cupd's own temp and scratch directory (scratch copies of the source live there during
    // a wasm write): kept inside the test so leftovers are counted, and removed with it.
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CupdConfig::new(config.path(), source.path(), store.path());
    cfg.args = vec![
        "--code-cache".into(),
        shared_code_cache().display().to_string(),
        // Here, whatever the host's default place for scratch copies would be.
        "--scratch-dir".into(),
        tmp.path().display().to_string(),
    ];
    cfg.env = vec![("TMPDIR".into(), tmp.path().display().to_string())];

    let original = listed(&Cupd::start(&cfg));
    assert!(!original.is_empty());
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut attempted = 0;
    for round in 0..ROUNDS {
        let cupd = Cupd::start(&cfg);
        let port = cupd.port();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let acknowledged = Arc::clone(&acknowledged);
                std::thread::spawn(move || {
                    let mut sent = 0;
                    // Until the server is gone (no response): each put is a new flag.
                    loop {
                        let name = format!("k{round}-{w}-{sent}");
                        sent += 1;
                        let Some(r) = cup_e2e::cupd::request(
                            port,
                            "PUT",
                            &format!("{FLAGS}/{name}"),
                            &[("Content-Type", "application/json")],
                            flag_body(&name).as_bytes(),
                        ) else {
                            return sent;
                        };
                        assert_eq!(r.status, 202, "{name}: {}", r.text());
                        acknowledged.lock().unwrap().push(name);
                    }
                })
            })
            .collect();
        // Kill at a random point: anywhere from the first writes to well into the stream.
        std::thread::sleep(Duration::from_millis(50 + rng.next(700)));
        let killed_at = Instant::now();
        drop(cupd); // SIGKILL, then reaped
        for w in writers {
            attempted += w.join().expect("writer thread");
        }
        eprintln!(
            "round {round}: killed; writers stopped within {:?}",
            killed_at.elapsed()
        );

        let cupd = Cupd::start(&cfg);
        let names = listed(&cupd);
        for name in original.iter().chain(acknowledged.lock().unwrap().iter()) {
            assert!(
                names.contains(name),
                "round {round}: {name} was acknowledged (or original) but is gone; listed: {names:?}"
            );
        }
    }

    let cupd = Cupd::start(&cfg);
    let r = cupd.put(
        &format!("{FLAGS}/after-the-kills"),
        &flag_body("after-the-kills"),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let names = listed(&cupd);
    assert!(names.contains(&"after-the-kills".to_owned()));
    let acked = acknowledged.lock().unwrap().len();
    let stray = leftovers(source.path());
    let scratch = cup_e2e::dir_listing(tmp.path()).len();
    eprintln!(
        "{ROUNDS} kills, {attempted} puts attempted, {acked} acknowledged and all present, {} flags listed at the end, leftover temp files in the source: {stray:?}, scratch copies left in the scratch directory: {scratch}",
        names.len()
    );
    assert!(acked > 0, "some writes were acknowledged before the kills");
}

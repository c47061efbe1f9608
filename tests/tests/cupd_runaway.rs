//! Controllers that misbehave at run time (loop forever, allocate without bound, flood
//! stdout) are stopped by the runtime's limits: each request gets a 500 naming the limit,
//! the controller stays loaded for the next request, and other routes keep serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cup_e2e::cupd::{Cupd, CupdConfig, config_object, scratch_copies, write_template_controller};

/// Real WASI command modules, each misbehaving in one way.
fn guests() -> [(&'static str, String); 3] {
    [
        ("spin", r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#.to_owned()),
        (
            "grow",
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (loop (drop (memory.grow (i32.const 16))) (br 0))))"#
                .to_owned(),
        ),
        (
            "flood",
            // One iovec at 0 (buf 16, len 65536), written to stdout forever.
            r#"(module
                 (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
                 (memory (export "memory") 2)
                 (data (i32.const 0) "\10\00\00\00\00\00\01\00")
                 (func (export "_start")
                   (loop (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"#
                .to_owned(),
        ),
    ]
}

#[test]
fn runaway_controllers_are_stopped_per_request() {
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    for (name, wat) in guests() {
        std::fs::write(
            c.join(format!("{name}.wasm")),
            wat::parse_str(&wat).unwrap(),
        )
        .unwrap();
        std::fs::write(
            c.join(format!("{name}-def.json")),
            config_object(
                "ResourceDefinition",
                &format!("{name}s.example.com"),
                &format!(r#""names":{{"kind":"Thing","singular":"{name}","plural":"{name}s"}},"spec":{{"group":"example.com","versions":{{"v1":{{"type":"object"}}}}}}"#),
            ),
        )
        .unwrap();
        std::fs::write(
            c.join(format!("{name}-ctl.json")),
            config_object(
                "Controller",
                name,
                &format!(r#""spec":{{"type":"wasm","spec":{{"path":"{name}.wasm"}}}}"#),
            ),
        )
        .unwrap();
        std::fs::write(
            c.join(format!("{name}-bind.json")),
            config_object(
                "Binding",
                name,
                &format!(
                    r#""spec":{{"controller":"{name}","resources":["example.com/v1/{name}s"]}}"#
                ),
            ),
        )
        .unwrap();
    }
    write_template_controller(c, r#"{"type":"object"}"#);
    let (source, store) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (scratch, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = CupdConfig::new(c, source.path(), store.path());
    cfg.args = [
        "--controller-timeout",
        "300ms",
        "--controller-memory",
        "32MiB",
        "--scratch-dir",
        &scratch.path().display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    cfg.env = vec![("TMPDIR".into(), tmp.path().display().to_string())];
    let cupd = Cupd::start(&cfg);

    let expectations = [
        ("spin", "deadline"),
        ("grow", "memory limit"),
        ("flood", "stdout"),
    ];
    for round in 0..2 {
        for (name, needle) in expectations {
            let started = Instant::now();
            let r = cupd.get(&format!(
                "/apis/example.com/v1/namespaces/default/{name}s/x"
            ));
            assert_eq!(r.status, 500, "{name} (round {round}): {}", r.text());
            assert!(r.text().contains(needle), "{name}: {}", r.text());
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{name} was stopped promptly"
            );
        }
    }
    let ok = cupd.put(
        "/apis/test.cup.flipt.io/v1alpha1/namespaces/default/resources/ok",
        r#"{"apiVersion":"test.cup.flipt.io/v1alpha1","kind":"Resource","metadata":{"namespace":"default","name":"ok"},"spec":{}}"#,
    );
    assert_eq!(ok.status, 202, "{}", ok.text());
    // A write by a runaway controller changes nothing (it ran on a scratch copy).
    let before: Vec<_> = std::fs::read_dir(source.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    // While it spins, its scratch copy is in --scratch-dir (not in TMPDIR).
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (watching, dir) = (watching.clone(), scratch.path().to_owned());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while watching.load(Ordering::Relaxed) {
                seen.extend(scratch_copies(&dir));
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    };
    let r = cupd.put(
        "/apis/example.com/v1/namespaces/default/spins/x",
        r#"{"metadata":{"name":"x"}}"#,
    );
    watching.store(false, Ordering::Relaxed);
    assert_eq!(r.status, 500);
    let seen = watcher.join().unwrap();
    assert!(
        !seen.is_empty(),
        "no scratch copy appeared in --scratch-dir during the put"
    );
    assert_eq!(scratch_copies(tmp.path()), Vec::<String>::new());
    let removed = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        scratch_copies(scratch.path()).is_empty()
    });
    assert!(removed, "the scratch copy is removed after the response");
    let after: Vec<_> = std::fs::read_dir(source.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after);
    let status = cupd.get("/status").json();
    for c in status["controllers"].as_array().unwrap() {
        assert_eq!(c["state"], "loaded", "{c}");
    }
}

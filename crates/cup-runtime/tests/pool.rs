//! The pooling allocator: reused slots start clean, a full pool or no pool at all still
//! serves every request.

mod common;

use std::time::{Duration, Instant};

use cup_runtime::{Access, Allocation, Limits, LoadedController, Runtime};

use common::invocation;

/// A guest that checks it got a clean memory, dirties it (inside and beyond the part the pool
/// keeps resident), and exits with its counter: 6 on a clean start, 90+ when it saw a
/// previous request's state.
const DIRTY_GUEST: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\05")
  (func (export "_start")
    (if (i32.ne (memory.size) (i32.const 1)) (then (call $exit (i32.const 90))))
    (drop (memory.grow (i32.const 63)))
    (if (i32.ne (i32.load8_u (i32.const 0x100000)) (i32.const 0)) (then (call $exit (i32.const 91))))
    (if (i32.ne (i32.load8_u (i32.const 0x3fffff)) (i32.const 0)) (then (call $exit (i32.const 92))))
    (i32.store8 (i32.const 0x100000) (i32.const 7))
    (i32.store8 (i32.const 0x3fffff) (i32.const 7))
    (i32.store8 (i32.const 0) (i32.add (i32.load8_u (i32.const 0)) (i32.const 1)))
    (call $exit (i32.load8_u (i32.const 0)))))"#;

fn exit_code(c: &LoadedController, args: &[&str], root: &std::path::Path) -> i32 {
    c.invoke(invocation(args, b"", root, Access::ReadOnly))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .exit_code
}

#[test]
fn reused_slots_start_clean() {
    let root = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let wasm = wat::parse_str(DIRTY_GUEST).expect("wat");
    let c = runtime.load(&wasm, None).expect("load");
    assert_eq!(c.load_info().allocation, Allocation::Pooled);
    for _ in 0..20 {
        assert_eq!(
            exit_code(&c, &[], root.path()),
            6,
            "state leaked between requests"
        );
    }
    let stats = runtime.pool_stats().expect("a pool");
    assert_eq!((stats.capacity, stats.in_use, stats.fallbacks), (16, 0, 0));
}

#[test]
fn a_full_pool_runs_the_request_on_fresh_memory() {
    let root = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(Limits {
        pooled_instances: 1,
        ..Limits::default()
    })
    .expect("runtime");
    let c = runtime
        .load(common::probe_wasm(), None)
        .expect("load the probe");
    assert_eq!(c.load_info().allocation, Allocation::Pooled);

    let sleeper = {
        let (c, root) = (c.clone(), root.path().to_owned());
        std::thread::spawn(move || {
            c.invoke(invocation(&["sleep", "1000"], b"", &root, Access::ReadOnly))
        })
    };
    // Wait for the sleeper to hold the only slot (bounded, so a bug cannot hang the test).
    let waiting = Instant::now();
    while runtime.pool_stats().expect("a pool").in_use == 0 {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "the sleeper never took the slot"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(exit_code(&c, &["exit", "0"], root.path()), 0);
    assert_eq!(runtime.pool_stats().expect("a pool").fallbacks, 1);

    let slept = sleeper.join().expect("sleeper thread").expect("sleep");
    assert_eq!(String::from_utf8_lossy(&slept.stdout), "slept\n");
    // The slot is free again: the next request is pooled.
    assert_eq!(exit_code(&c, &["exit", "0"], root.path()), 0);
    let stats = runtime.pool_stats().expect("a pool");
    assert_eq!((stats.in_use, stats.fallbacks), (0, 1));
}

#[test]
fn without_a_pool_everything_runs_on_fresh_memory() {
    let root = tempfile::tempdir().expect("temp dir");
    let off = Runtime::new(Limits {
        pooled_instances: 0,
        ..Limits::default()
    })
    .expect("runtime");
    // A pool this large cannot be reserved (16 slots of 64 TiB is more address space than
    // x86-64 has): the runtime starts without one instead of failing.
    let unreservable = Runtime::new(Limits {
        memory_bytes: 1 << 46,
        ..Limits::default()
    })
    .expect("runtime");
    let wasm = wat::parse_str(DIRTY_GUEST).expect("wat");
    for runtime in [off, unreservable] {
        let why = runtime.pool_stats().expect_err("no pool").to_owned();
        let c = runtime.load(&wasm, None).expect("load");
        assert!(
            matches!(&c.load_info().allocation, Allocation::OnDemand(reason) if reason.contains(&why)),
            "{:?} vs {why}",
            c.load_info().allocation
        );
        for _ in 0..3 {
            assert_eq!(exit_code(&c, &[], root.path()), 6);
        }
    }
}

#[test]
fn a_module_too_big_for_a_slot_runs_on_fresh_memory() {
    let root = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    // 70,000 globals make an instance (vmctx) larger than a pool slot's 1 MiB.
    let globals = "(global (mut i64) (i64.const 0))".repeat(70_000);
    let wasm = wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) {globals} (func (export "_start")))"#
    ))
    .expect("wat");
    let c = runtime.load(&wasm, None).expect("load");
    assert!(
        matches!(&c.load_info().allocation, Allocation::OnDemand(reason) if reason.contains("pool")),
        "{:?}",
        c.load_info().allocation
    );
    assert_eq!(exit_code(&c, &[], root.path()), 0);
    assert_eq!(runtime.pool_stats().expect("a pool").fallbacks, 0);
}

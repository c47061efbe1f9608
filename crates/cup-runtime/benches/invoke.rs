//! Per-invocation cost: `cargo bench -p cup-runtime --bench invoke`.
//!
//! Measures what a request costs on a loaded controller (fresh WASI context, store and
//! instance, `_start`, teardown) with the real probe guest, under criterion (`-- --output-format
//! bencher` for one line each), plus load times with a cold and a warm code cache; then the
//! same request with the instance pool and without it (`pooled_instances = 0`), alternating,
//! on one thread and on two threads at once (where an `munmap` per request means TLB
//! shootdowns), timed by hand because criterion runs one function at a time. Last, the same
//! read by a component (`tests/guests/component-probe`: fresh instance, typed `get` call, the
//! returned record rendered as JSON) against the command, alternating. Prints medians; no
//! assertions (speed is measured, not asserted).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use criterion::Criterion;

use cup_runtime::{Access, CodeCache, Limits, LoadedController, Runtime};

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.1), at(0.5), at(0.9))
}

fn measure(label: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let (p10, p50, p90) = percentiles(samples);
    println!("{label:<44} median {p50:>10.1?}   p10 {p10:>10.1?}   p90 {p90:>10.1?}   (n={n})");
}

fn main() {
    let wasm = common::probe_wasm();
    let scratch = tempfile::tempdir().expect("temp dir");
    let cache = CodeCache::new(scratch.path().join("code")).expect("cache");
    let root = scratch.path().join("root");
    std::fs::create_dir_all(root.join("default")).expect("mkdir");
    std::fs::write(
        root.join("default/flag.json"),
        br#"{"apiVersion":"flipt.io/v1alpha1","kind":"Flag","metadata":{"name":"demo"}}"#,
    )
    .expect("write");

    println!("probe.wasm: {} bytes", wasm.len());
    let t = Instant::now();
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let controller = runtime.load(wasm, Some(&cache)).expect("load");
    println!(
        "{:<44} {:>10.1?}   ({:?})",
        "Runtime::new + load, cold cache",
        t.elapsed(),
        controller.load_info().cache
    );
    let t = Instant::now();
    let warm = Runtime::new(Limits::default())
        .expect("runtime")
        .load(wasm, Some(&cache))
        .expect("load");
    println!(
        "{:<44} {:>10.1?}   ({:?})",
        "Runtime::new + load, warm cache",
        t.elapsed(),
        warm.load_info().cache
    );

    let invoke = |args: &[&str]| {
        let out = controller
            .invoke(common::invocation(args, b"", &root, Access::ReadOnly))
            .expect("invoke");
        assert_eq!(out.exit_code, 0);
    };
    // Instance creation and a request's whole cycle, under criterion (statistics, and a
    // comparison with the previous run of this bench on the same machine).
    let mut criterion = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = criterion.benchmark_group("instance");
    group.bench_function("invoke `exit 0` (instantiate + run + drop)", |b| {
        b.iter(|| invoke(&["exit", "0"]))
    });
    group.bench_function("invoke `echo Flag default demo`", |b| {
        b.iter(|| invoke(&["echo", "Flag", "default", "demo"]))
    });
    group.bench_function("invoke `read /default/flag.json`", |b| {
        b.iter(|| invoke(&["read", "/default/flag.json"]))
    });
    group.finish();

    let pooled = controller.clone();
    let on_demand = Runtime::new(Limits {
        pooled_instances: 0,
        ..Limits::default()
    })
    .expect("runtime")
    .load(wasm, Some(&cache))
    .expect("load");
    println!("pool: {:?}", pooled.pool_stats());
    for round in 1..=3 {
        for (name, c) in [("pooled", &pooled), ("on demand", &on_demand)] {
            let read = || read_flag(c, &root);
            measure(&format!("r{round} {name}: `read`, 1 thread"), 2000, read);
            measure(
                &format!("r{round} {name}: 2 threads x 20 `read`"),
                300,
                || {
                    std::thread::scope(|s| {
                        let other = s.spawn(|| (0..20).for_each(|_| read_flag(c, &root)));
                        (0..20).for_each(|_| read_flag(c, &root));
                        other.join().expect("second thread");
                    })
                },
            );
        }
    }
    println!("pool after: {:?}", pooled.pool_stats());

    // The same request to a component: the component probe's `get` reads
    // /<namespace>/<name>.json and returns it as the spec of a resource record.
    let component_wasm = common::component_probe_wasm();
    println!("component_probe.wasm: {} bytes", component_wasm.len());
    let t = Instant::now();
    let component = Runtime::new(Limits::default())
        .expect("runtime")
        .load(component_wasm, Some(&cache))
        .expect("load the component");
    println!(
        "{:<44} {:>10.1?}   ({:?})",
        "component: Runtime::new + load, cold cache",
        t.elapsed(),
        component.load_info().cache
    );
    let get = || {
        let out = component
            .invoke(common::invocation(
                &["get", "Flag", "default", "flag"],
                b"",
                &root,
                Access::ReadOnly,
            ))
            .expect("invoke");
        assert_eq!(out.exit_code, 0);
    };
    for round in 1..=3 {
        measure(&format!("r{round} command (pooled): `read`"), 2000, || {
            read_flag(&pooled, &root)
        });
        measure(
            &format!("r{round} command (on demand): `read`"),
            2000,
            || read_flag(&on_demand, &root),
        );
        measure(&format!("r{round} component: `get`"), 2000, get);
    }
}

fn read_flag(c: &LoadedController, root: &std::path::Path) {
    let out = c
        .invoke(common::invocation(
            &["read", "/default/flag.json"],
            b"",
            root,
            Access::ReadOnly,
        ))
        .expect("invoke");
    assert_eq!(out.exit_code, 0);
}

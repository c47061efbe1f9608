//! `guest-timer MODULE.wasm SOURCE_DIR PUT_BODY.json N` → JSON on stdout.
//!
//! For get, list and put of the example controller, N runs each (after N/10 warm-up):
//! * `invoke`: cup-runtime's `LoadedController::invoke`, what cupd does per request minus
//!   HTTP (fresh WASI context, store, instance, `_start`, teardown);
//! * `start`: the guest's own work: the `_start` call alone, on the same wasmtime 48 engine
//!   configuration as cupd's (epoch interruption, the pooling allocator with the same slot
//!   settings, so linear memory is a reused slot as in cupd, not fresh pages that fault in)
//!   and WASI p1 host, instantiation outside the timer;
//! * `instantiate`: the fresh context + store + instance before it.
//!
//! put runs on a private copy of the tree (cupd's put runs on a scratch copy too), made in
//! `GUEST_TIMER_SCRATCH` when set (bench/serve.sh passes the directory cupd's log names for
//! its scratch copies, so the guest's `fsync` costs what it costs in cupd), else in `$TMPDIR`.
//!
//! For profiling: `GUEST_TIMER_VERBS=get,list` times only those verbs;
//! `RUST_LOG=wasmtime_wasi=trace` logs every WASI call the guest makes to stderr (with N=1:
//! what the guest asks of the host); `GUEST_TIMER_PERFMAP=1` writes /tmp/perf-PID.map so
//! `perf record` names the guest's frames (build the module unstripped to get its names).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cup_runtime::{Access, Invocation, Limits, Runtime};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
    ProfilingStrategy, Store, WasmBacktraceDetails,
};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// One timed operation: verb, argv, source tree, stdin, access to the tree.
type Case<'a> = (&'a str, Vec<&'a str>, &'a Path, &'a [u8], Access);

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    format!(
        r#"{{"median_ms":{:.4},"p10_ms":{:.4},"p90_ms":{:.4},"n":{}}}"#,
        q(0.5),
        q(0.1),
        q(0.9),
        v.len()
    )
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// cup-runtime's pool settings (crates/cup-runtime/src/pool.rs) for the default limits, with
/// one slot: cupd runs a request in a reused slot whose dirtied pages are reset in place, so
/// timing `_start` on fresh on-demand memory would count page faults cupd does not pay.
fn pooling_like_cupd() -> PoolingAllocationConfig {
    const WASM_PAGE: usize = 64 << 10;
    let limits = Limits::default();
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(1)
        .total_memories(1)
        .total_tables(1)
        .max_memories_per_module(1)
        .max_tables_per_module(1)
        .total_component_instances(0)
        .max_memory_size(limits.memory_bytes.div_ceil(WASM_PAGE) * WASM_PAGE)
        .table_elements(limits.table_elements)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let [_, module, source, put_body, n] = &a[..] else {
        bail!("usage: guest-timer MODULE.wasm SOURCE_DIR PUT_BODY.json N");
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let wasm = std::fs::read(module).context("reading the module")?;
    let put_body = std::fs::read(put_body)?;
    let n: usize = n.parse()?;
    let scratch = match std::env::var_os("GUEST_TIMER_SCRATCH").filter(|d| !d.is_empty()) {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let writable = scratch.path().join("tree");
    copy_tree(Path::new(source), &writable)?;

    // cupd's runtime, as cupd configures it (default limits).
    let runtime = Runtime::new(Limits::default())?;
    let controller = runtime.load(&wasm, None)?;

    // The same engine settings and WASI host, driven by hand to split the phases.
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_backtrace_details(WasmBacktraceDetails::Disable);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_like_cupd()));
    if std::env::var_os("GUEST_TIMER_PERFMAP").is_some() {
        config.profiler(ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |t| t)?;
    let pre = linker.instantiate_pre(&Module::new(&engine, &wasm)?)?;

    let verbs: [Case; 3] = [
        (
            "get",
            vec!["wasi", "get", "Flag", "default", "new-login"],
            Path::new(source),
            b"",
            Access::ReadOnly,
        ),
        (
            "list",
            vec!["wasi", "list", "Flag", "default"],
            Path::new(source),
            b"",
            Access::ReadOnly,
        ),
        (
            "put",
            vec!["wasi", "put", "Flag", "default", "bench"],
            &writable,
            &put_body,
            Access::ReadWrite,
        ),
    ];
    let mut out = Vec::new();
    // Profiling one verb alone is easier: GUEST_TIMER_VERBS=get,list (default: all three).
    let only = std::env::var("GUEST_TIMER_VERBS").ok();
    let wanted = |verb: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|v| v == verb))
    };
    for (verb, args, root, stdin, access) in verbs {
        if !wanted(verb) {
            continue;
        }
        let invoke = || -> Result<Duration> {
            let t = Instant::now();
            let o = controller.invoke(Invocation {
                args: args.iter().map(|s| s.to_string()).collect(),
                stdin: stdin.to_vec(),
                root: root.to_owned(),
                access,
            })?;
            let d = t.elapsed();
            if o.exit_code != 0 {
                bail!(
                    "{verb}: exit {}: {}",
                    o.exit_code,
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            Ok(d)
        };
        let raw = || -> Result<(Duration, Duration)> {
            let t = Instant::now();
            let stdout = MemoryOutputPipe::new(1 << 20);
            let perms = if access == Access::ReadOnly {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            let mut b = WasiCtxBuilder::new();
            b.allow_blocking_current_thread(true)
                .args(&args)
                .stdin(MemoryInputPipe::new(stdin.to_vec()))
                .stdout(stdout.clone())
                .stderr(MemoryOutputPipe::new(64 << 10));
            b.preopened_dir(root, "/", perms)?;
            let mut store = Store::new(&engine, b.build_p1());
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = pre.instantiate(&mut store)?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            let t1 = Instant::now();
            let r = start.call(&mut store, ());
            let run = t1.elapsed();
            match r {
                Ok(()) => {}
                Err(e) => match e.downcast_ref::<I32Exit>() {
                    Some(I32Exit(0)) => {}
                    _ => bail!("{verb}: {e:#}"),
                },
            }
            Ok((t1 - t, run))
        };
        for _ in 0..n / 10 {
            invoke()?;
            raw()?;
        }
        let (mut inv, mut inst, mut run) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            // Alternate the two paths so both see the same machine.
            inv.push(invoke()?);
            let (i, r) = raw()?;
            inst.push(i);
            run.push(r);
        }
        out.push(format!(
            r#""{verb}":{{"invoke":{},"instantiate":{},"start":{}}}"#,
            stats(inv),
            stats(inst),
            stats(run)
        ));
    }
    println!("{{{}}}", out.join(","));
    Ok(())
}

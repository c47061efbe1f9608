//! cup-runtime against a real wasm32-wasip1 guest: `tests/guests/probe`, built by these tests
//! with the real toolchain, compiled by real wasmtime.
//!
//! Compiling the probe with a debug build of wasmtime takes about a second, so it is compiled
//! once per test process: the first load writes it to a shared code cache and every runtime
//! with other limits loads it from there (which exercises the cache on the way).

mod common;

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cup_runtime::{
    Access, CacheStatus, CodeCache, InvokeError, Limits, LoadError, LoadedController, Outcome,
    Runtime,
};

use common::{invocation, probe_wasm};

/// A code cache shared by every runtime in this process.
fn shared_cache() -> &'static CodeCache {
    static CACHE: OnceLock<(tempfile::TempDir, CodeCache)> = OnceLock::new();
    let (_, cache) = CACHE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = CodeCache::new(dir.path().join("code")).expect("code cache");
        (dir, cache)
    });
    cache
}

/// The probe on a runtime with default limits.
fn probe() -> &'static LoadedController {
    static PROBE: OnceLock<LoadedController> = OnceLock::new();
    PROBE.get_or_init(|| {
        let runtime = Runtime::new(Limits::default()).expect("runtime");
        runtime
            .load(probe_wasm(), Some(shared_cache()))
            .expect("loading the probe")
    })
}

/// The probe on a runtime of its own with other limits, from the shared cache.
fn probe_with(limits: Limits) -> LoadedController {
    // Make sure the one compile has happened and is cached before loading elsewhere.
    probe();
    let runtime = Runtime::new(limits).expect("runtime");
    let controller = runtime
        .load(probe_wasm(), Some(shared_cache()))
        .expect("loading the probe");
    assert_eq!(controller.load_info().cache, CacheStatus::Hit);
    controller
}

fn run(c: &LoadedController, args: &[&str], root: &Path, access: Access) -> Outcome {
    c.invoke(invocation(args, b"", root, access))
        .unwrap_or_else(|e| panic!("probe {args:?} failed: {e}"))
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8 output")
}

fn empty_root() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Names and contents of every file under `dir`, for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .expect("under dir")
                .to_string_lossy()
                .into_owned();
            if entry.file_type().expect("file type").is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn args_stdin_and_stdout_round_trip() {
    let root = empty_root();
    let out = probe()
        .invoke(invocation(
            &["echo", "Flag", "default", "naïve \"quoted\""],
            b"{\"spec\":{}}\nline two",
            root.path(),
            Access::ReadOnly,
        ))
        .expect("echo");
    assert_eq!(out.exit_code, 0);
    assert_eq!(
        text(&out.stdout),
        "{\"args\":[\"wasi\",\"echo\",\"Flag\",\"default\",\"naïve \\\"quoted\\\"\"],\
         \"stdin\":\"{\\\"spec\\\":{}}\\nline two\"}\n"
    );
    assert!(out.stderr.is_empty());
    assert!(!out.stderr_truncated);
    assert!(out.elapsed > Duration::ZERO);
}

#[test]
fn exit_codes() {
    let root = empty_root();
    for code in [0, 2, 7] {
        let out = run(
            probe(),
            &["exit", &code.to_string()],
            root.path(),
            Access::ReadOnly,
        );
        assert_eq!(out.exit_code, code);
    }
    // WASI preview 1 allows exit codes below 126 only; wasmtime-wasi traps on the others.
    let err = probe()
        .invoke(invocation(
            &["exit", "200"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect_err("exit 200");
    assert!(matches!(err, InvokeError::Trap { .. }), "{err:?}");
}

#[test]
fn no_environment() {
    let root = empty_root();
    let out = run(probe(), &["env"], root.path(), Access::ReadOnly);
    assert_eq!(text(&out.stdout), "count 0\n");
}

#[test]
fn reads_files_under_the_mount() {
    let root = empty_root();
    fs::create_dir_all(root.path().join("default")).expect("mkdir");
    fs::write(root.path().join("default/flag.json"), "{\"a\":1}").expect("write");
    for path in [
        "/default/flag.json",
        "default/flag.json",
        "./default/../default/flag.json",
    ] {
        let out = run(probe(), &["read", path], root.path(), Access::ReadOnly);
        assert_eq!(out.exit_code, 0, "{path}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "{\"a\":1}", "{path}");
    }
    let out = run(
        probe(),
        &["read", "/default/missing.json"],
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(out.exit_code, 2);
    let out = run(probe(), &["ls", "/"], root.path(), Access::ReadOnly);
    assert_eq!(text(&out.stdout), "default\n");
}

fn mutation_fixture() -> tempfile::TempDir {
    let root = empty_root();
    fs::write(root.path().join("existing.txt"), "original").expect("write");
    fs::create_dir(root.path().join("sub")).expect("mkdir");
    root
}

#[test]
fn read_only_mount_rejects_every_write() {
    let root = mutation_fixture();
    let before = snapshot(root.path());

    let out = run(
        probe(),
        &["write", "/new.txt", "data"],
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        text(&out.stdout).starts_with("write error "),
        "{}",
        text(&out.stdout)
    );
    let out = run(
        probe(),
        &["write", "/existing.txt", "data"],
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        text(&out.stdout).starts_with("write error "),
        "{}",
        text(&out.stdout)
    );

    let out = run(probe(), &["mutate", "/"], root.path(), Access::ReadOnly);
    let lines: Vec<&str> = text(&out.stdout).lines().collect();
    assert_eq!(lines.len(), 11, "{lines:?}");
    for line in &lines {
        assert!(
            line.contains(" error "),
            "a mutation succeeded on a read-only mount: {line}"
        );
    }
    assert_eq!(snapshot(root.path()), before, "the host directory changed");
}

#[test]
fn read_write_mount_writes_the_host_directory() {
    let root = mutation_fixture();
    let out = run(
        probe(),
        &["write", "/new.txt", "data"],
        root.path(),
        Access::ReadWrite,
    );
    assert_eq!(text(&out.stdout), "write ok\n");
    assert_eq!(
        fs::read_to_string(root.path().join("new.txt")).expect("new.txt"),
        "data"
    );

    // The same mutations as the read-only test do work here (so that test is not vacuous).
    let out = run(probe(), &["mutate", "/"], root.path(), Access::ReadWrite);
    let stdout = text(&out.stdout);
    for op in [
        "create",
        "truncate",
        "append",
        "set-times",
        "mkdir",
        "hard-link",
        "rename",
    ] {
        assert!(stdout.contains(&format!("{op} ok\n")), "{op}: {stdout}");
    }
    assert!(root.path().join("newdir").is_dir());
    assert!(root.path().join("moved.txt").is_file());
}

#[test]
fn paths_cannot_escape_the_mount() {
    let outer = empty_root();
    let root = outer.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    fs::write(outer.path().join("secret.txt"), "SECRET").expect("write");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("../secret.txt", root.join("relative-link")).expect("symlink");
        std::os::unix::fs::symlink(outer.path().join("secret.txt"), root.join("absolute-link"))
            .expect("symlink");
    }
    let mut attempts = vec![
        "/../secret.txt",
        "../secret.txt",
        "/./../secret.txt",
        "/../root/../secret.txt",
    ];
    if cfg!(unix) {
        attempts.extend(["/relative-link", "/absolute-link"]);
    }
    for path in attempts {
        let out = run(probe(), &["read", path], &root, Access::ReadOnly);
        assert_ne!(out.exit_code, 0, "{path} was readable");
        assert!(
            !text(&out.stdout).contains("SECRET"),
            "{path} leaked the secret"
        );
    }
    let out = run(
        probe(),
        &["write", "/../escaped.txt", "x"],
        &root,
        Access::ReadWrite,
    );
    assert!(
        text(&out.stdout).starts_with("write error "),
        "{}",
        text(&out.stdout)
    );
    assert!(!outer.path().join("escaped.txt").exists());
    let out = run(probe(), &["ls", "/.."], &root, Access::ReadOnly);
    assert!(
        !text(&out.stdout).contains("secret.txt"),
        "{}",
        text(&out.stdout)
    );
}

fn short_deadline() -> &'static LoadedController {
    static C: OnceLock<LoadedController> = OnceLock::new();
    C.get_or_init(|| {
        probe_with(Limits {
            deadline: Duration::from_millis(200),
            ..Limits::default()
        })
    })
}

#[test]
fn spinning_guest_times_out_and_the_controller_recovers() {
    let root = empty_root();
    let started = Instant::now();
    let err = short_deadline()
        .invoke(invocation(&["spin"], b"", root.path(), Access::ReadOnly))
        .expect_err("spin must not finish");
    let took = started.elapsed();
    assert!(
        matches!(err, InvokeError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "stopped early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "stopped late: {took:?}");

    let out = run(short_deadline(), &["echo"], root.path(), Access::ReadOnly);
    assert_eq!(out.exit_code, 0);
}

#[test]
fn sleeping_guest_times_out_too() {
    let root = empty_root();
    let started = Instant::now();
    let err = short_deadline()
        .invoke(invocation(
            &["sleep", "600000"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect_err("a ten-minute sleep must not finish");
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // A sleep within the deadline is just a sleep.
    let out = run(
        short_deadline(),
        &["sleep", "20"],
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(text(&out.stdout), "slept\n");
    assert!(out.elapsed >= Duration::from_millis(20));
}

#[test]
fn memory_limit_stops_the_guest_not_the_host() {
    let limit = 32 << 20;
    let c = probe_with(Limits {
        memory_bytes: limit,
        ..Limits::default()
    });
    let root = empty_root();
    let err = c
        .invoke(invocation(&["grow"], b"", root.path(), Access::ReadOnly))
        .expect_err("grow must be stopped");
    assert!(
        matches!(err, InvokeError::MemoryLimit { limit: l, .. } if l == limit),
        "{err:?}"
    );
    // Same controller, next request: a fresh instance with fresh memory.
    let out = run(&c, &["echo"], root.path(), Access::ReadOnly);
    assert_eq!(out.exit_code, 0);
}

#[test]
fn stdout_over_the_cap_is_an_error_not_a_truncation() {
    let limit: usize = 1 << 20;
    let c = probe_with(Limits {
        stdout_bytes: limit,
        ..Limits::default()
    });
    let root = empty_root();
    let out = run(
        &c,
        &["flood", &limit.to_string()],
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), limit);

    let err = c
        .invoke(invocation(
            &["flood", &(limit + 1).to_string()],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect_err("one byte over");
    assert!(
        matches!(err, InvokeError::OutputTooLarge { limit: l, .. } if l == limit),
        "{err:?}"
    );
}

#[test]
fn stderr_is_truncated_quietly() {
    let root = empty_root();
    let out = run(probe(), &["spew", "200000"], root.path(), Access::ReadOnly);
    assert_eq!(out.exit_code, 0, "the guest must not notice");
    assert_eq!(text(&out.stdout), "done\n");
    assert_eq!(out.stderr.len(), Limits::default().stderr_bytes);
    assert!(out.stderr_truncated);
}

#[test]
fn traps_are_reported_with_stderr() {
    let root = empty_root();
    let err = probe()
        .invoke(invocation(&["trap"], b"", root.path(), Access::ReadOnly))
        .expect_err("trap");
    match &err {
        InvokeError::Trap { message, .. } => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(message.contains("backtrace"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    let err = probe()
        .invoke(invocation(&["panic"], b"", root.path(), Access::ReadOnly))
        .expect_err("panic");
    assert!(matches!(err, InvokeError::Trap { .. }), "{err:?}");
    assert!(
        text(err.stderr()).contains("probe was asked to panic"),
        "{}",
        text(err.stderr())
    );
}

#[test]
fn unbounded_recursion_traps() {
    let root = empty_root();
    let err = probe()
        .invoke(invocation(&["recurse"], b"", root.path(), Access::ReadOnly))
        .expect_err("recurse");
    assert!(matches!(err, InvokeError::Trap { .. }), "{err:?}");
}

#[test]
fn request_errors_before_the_guest_runs() {
    let root = empty_root();
    let err = probe()
        .invoke(invocation(
            &["echo"],
            b"",
            &root.path().join("missing"),
            Access::ReadOnly,
        ))
        .expect_err("missing root");
    assert!(matches!(err, InvokeError::Mount { .. }), "{err:?}");

    let err = probe()
        .invoke(invocation(
            &["echo", "a\0b"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect_err("NUL in argv");
    assert!(
        matches!(err, InvokeError::BadArgument { index: 2 }),
        "{err:?}"
    );
}

#[test]
fn concurrent_invocations_are_independent() {
    let root = empty_root();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let c = probe().clone();
            let root = root.path().to_path_buf();
            std::thread::spawn(move || {
                let stdin = format!("request {i}");
                let out = c
                    .invoke(invocation(
                        &["echo"],
                        stdin.as_bytes(),
                        &root,
                        Access::ReadOnly,
                    ))
                    .expect("echo");
                assert!(text(&out.stdout).contains(&stdin));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[test]
fn code_cache_hits_and_replaces_corrupt_files() {
    let outer = tempfile::tempdir().expect("temp dir");
    let cache = CodeCache::new(outer.path().join("code")).expect("cache");
    let root = empty_root();

    let first = Runtime::new(Limits::default()).expect("runtime");
    let a = first.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(a.load_info().cache, CacheStatus::Miss);
    assert_eq!(a.load_info().cache_error, None);
    let file = cache.path_for(a.digest(), first.engine_fingerprint());
    assert!(file.is_file(), "{} was not written", file.display());
    let expected = run(&a, &["echo", "x"], root.path(), Access::ReadOnly);

    // The same bytes again on the same runtime: shared, not even read from disk.
    let again = first.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(again.load_info().cache, CacheStatus::Shared);

    // A new runtime (a restart) loads from disk and behaves the same.
    let second = Runtime::new(Limits::default()).expect("runtime");
    assert_eq!(second.engine_fingerprint(), first.engine_fingerprint());
    let b = second.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(b.load_info().cache, CacheStatus::Hit);
    let got = run(&b, &["echo", "x"], root.path(), Access::ReadOnly);
    assert_eq!(
        (got.exit_code, &got.stdout, &got.stderr),
        (expected.exit_code, &expected.stdout, &expected.stderr)
    );

    // A corrupt file, even one overwritten in place while `b` is loaded from it, only costs
    // a recompile: cache files are read into memory, never mapped.
    fs::write(&file, b"definitely not machine code").expect("corrupt");
    let third = Runtime::new(Limits::default()).expect("runtime");
    let c = third.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(c.load_info().cache, CacheStatus::Replaced);
    assert!(c.load_info().cache_error.is_some());
    assert_eq!(
        run(&c, &["echo", "x"], root.path(), Access::ReadOnly).stdout,
        expected.stdout
    );
    let fourth = Runtime::new(Limits::default()).expect("runtime");
    let d = fourth.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(d.load_info().cache, CacheStatus::Hit);

    // No temp files left behind.
    let names: Vec<_> = fs::read_dir(cache.dir())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn another_modules_cache_file_under_this_name_is_never_loaded() {
    let outer = tempfile::tempdir().expect("temp dir");
    let cache = CodeCache::new(outer.path().join("code")).expect("cache");
    let root = empty_root();
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    // A command that exits 7 whatever it is asked: what the plant would make the probe do.
    let other = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (memory (export "memory") 1)
             (func (export "_start") (call $exit (i32.const 7))))"#,
    )
    .expect("valid wat");
    let planted = runtime.load(&other, Some(&cache)).expect("load");
    let probe = runtime.load(probe_wasm(), Some(&cache)).expect("load");
    let target = cache.path_for(probe.digest(), runtime.engine_fingerprint());
    fs::copy(
        cache.path_for(planted.digest(), runtime.engine_fingerprint()),
        &target,
    )
    .expect("plant");

    let restarted = Runtime::new(Limits::default()).expect("runtime");
    let loaded = restarted.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(loaded.load_info().cache, CacheStatus::Replaced);
    let why = loaded.load_info().cache_error.clone().unwrap_or_default();
    assert!(why.contains("tag does not match"), "{why}");
    let out = run(&loaded, &["echo", "x"], root.path(), Access::ReadOnly);
    assert_eq!(out.exit_code, 0, "the probe ran, not the planted code");
    let again = Runtime::new(Limits::default()).expect("runtime");
    let hit = again.load(probe_wasm(), Some(&cache)).expect("load");
    assert_eq!(hit.load_info().cache, CacheStatus::Hit);
}

fn load_wat(wat: &str) -> Result<LoadedController, LoadError> {
    let wasm = wat::parse_str(wat).expect("valid wat");
    Runtime::new(Limits::default())
        .expect("runtime")
        .load(&wasm, None)
}

fn refusal(result: Result<LoadedController, LoadError>) -> String {
    match result {
        Err(LoadError::NotACommand { reason }) => reason,
        Err(other) => panic!("expected NotACommand, got {other:?}"),
        Ok(_) => panic!("expected NotACommand, got a controller"),
    }
}

#[test]
fn non_commands_are_refused_at_load() {
    let reason = refusal(load_wat(r#"(module (memory (export "memory") 1))"#));
    assert!(reason.contains("`_start`"), "{reason}");

    let reason = refusal(load_wat(
        r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#,
    ));
    assert!(reason.contains("reactor"), "{reason}");

    let reason = refusal(load_wat(r#"(module (func (export "_start")))"#));
    assert!(reason.contains("memory"), "{reason}");

    let reason = refusal(load_wat(
        r#"(module
             (import "env" "host_call" (func))
             (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_start")))"#,
    ));
    assert!(reason.contains("env::host_call"), "{reason}");

    let reason = refusal(load_wat(
        r#"(module
             (import "wasi_snapshot_preview1" "no_such_function" (func))
             (memory (export "memory") 1)
             (func (export "_start")))"#,
    ));
    assert!(reason.contains("no_such_function"), "{reason}");

    // An empty component is a component, judged as one (tests/component.rs has the rest).
    match load_wat(r#"(component)"#) {
        Err(LoadError::NotAController { reason }) => {
            assert!(reason.contains("exports nothing"), "{reason}")
        }
        other => panic!("expected NotAController, got {other:?}"),
    }

    let err = Runtime::new(Limits::default())
        .expect("runtime")
        .load(b"not wasm at all", None)
        .expect_err("garbage");
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");

    // The smallest command is accepted and runs.
    let c = load_wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
        .expect("minimal command");
    let root = empty_root();
    assert_eq!(run(&c, &[], root.path(), Access::ReadOnly).exit_code, 0);
}

#[test]
fn types_are_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Runtime>();
    assert_send_sync::<LoadedController>();
    assert_send_sync::<CodeCache>();
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<InvokeError>();
    assert_error::<LoadError>();
}

/// `poll_oneoff` is the runtime's own (deadline-aware); its paths, from hand-written guests.
#[test]
fn poll_oneoff_sleeps_clocks_and_reports_fds_ready() {
    // Subscriptions at 0 (48 bytes each), events at 256 (32 bytes each), count at 512.
    // Exit code: the errno if not 0, else nevents * 10 + (userdata of the first event).
    let guest = |subscriptions: &str, n: u32| {
        format!(
            r#"(module
                 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start") (local $errno i32)
                   {subscriptions}
                   (local.set $errno
                     (call $poll (i32.const 0) (i32.const 256) (i32.const {n}) (i32.const 512)))
                   (if (local.get $errno) (then (call $exit (local.get $errno))))
                   (call $exit
                     (i32.add
                       (i32.mul (i32.load (i32.const 512)) (i32.const 10))
                       (i32.wrap_i64 (i64.load (i32.const 256)))))))"#
        )
    };
    let clock = |at: u32, userdata: u32, millis: u64| {
        format!(
            "(i64.store (i32.const {at}) (i64.const {userdata}))
             (i32.store8 (i32.const {}) (i32.const 0))
             (i32.store (i32.const {}) (i32.const 1))
             (i64.store (i32.const {}) (i64.const {}))",
            at + 8,
            at + 16,
            at + 24,
            millis * 1_000_000
        )
    };
    let stdin_read = |at: u32, userdata: u32| {
        format!(
            "(i64.store (i32.const {at}) (i64.const {userdata}))
             (i32.store8 (i32.const {}) (i32.const 1))
             (i32.store (i32.const {}) (i32.const 0))",
            at + 8,
            at + 16
        )
    };
    let root = empty_root();
    let run_guest = |wat: String| {
        let c = load_wat(&wat).expect("guest loads");
        let started = Instant::now();
        let out = c
            .invoke(invocation(&[], b"input", root.path(), Access::ReadOnly))
            .expect("guest runs");
        (out.exit_code, started.elapsed())
    };

    // Two clocks: the host sleeps the shorter one and reports only it.
    let (code, took) = run_guest(guest(
        &format!("{} {}", clock(0, 3, 30), clock(48, 4, 3_600_000)),
        2,
    ));
    assert_eq!(code, 13);
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // A clock of an hour next to stdin, which is always ready: returns at once with stdin.
    let (code, took) = run_guest(guest(
        &format!("{} {}", clock(0, 5, 3_600_000), stdin_read(48, 6)),
        2,
    ));
    assert_eq!(code, 16);
    assert!(took < Duration::from_secs(5), "{took:?}");

    // No subscriptions: EINVAL (28), as in wasmtime-wasi.
    let (code, _) = run_guest(guest("", 0));
    assert_eq!(code, 28);
}

#[test]
fn limits_apply_during_instantiation_too() {
    let root = empty_root();
    // Declares 64 MiB of initial memory against a 32 MiB limit.
    let wasm =
        wat::parse_str(r#"(module (memory (export "memory") 1024) (func (export "_start")))"#)
            .expect("wat");
    let runtime = Runtime::new(Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    })
    .expect("runtime");
    let c = runtime.load(&wasm, None).expect("load");
    let err = c
        .invoke(invocation(&[], b"", root.path(), Access::ReadOnly))
        .expect_err("too much initial memory");
    assert!(matches!(err, InvokeError::MemoryLimit { .. }), "{err:?}");

    // A start function that never returns is stopped by the deadline.
    let wasm = wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func $forever (loop $l (br $l)))
             (start $forever)
             (func (export "_start")))"#,
    )
    .expect("wat");
    let runtime = Runtime::new(Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    })
    .expect("runtime");
    let c = runtime.load(&wasm, None).expect("load");
    let err = c
        .invoke(invocation(&[], b"", root.path(), Access::ReadOnly))
        .expect_err("endless start function");
    assert!(matches!(err, InvokeError::Timeout { .. }), "{err:?}");
}

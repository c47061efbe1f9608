//! Component controllers against a real wasm32-wasip2 guest: `tests/guests/component-probe`,
//! built by these tests with the real toolchain and wit-bindgen, run by real wasmtime. The
//! resource name picks what the probe does (see its source).

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cup_runtime::{
    Access, CacheStatus, CodeCache, ControllerError, ControllerKind, InvokeError, Limits,
    LoadError, LoadedController, Outcome, Runtime,
};

use common::{component_probe_wasm, invocation};

fn limits() -> Limits {
    Limits {
        deadline: Duration::from_secs(2),
        memory_bytes: 64 << 20,
        ..Limits::default()
    }
}

fn probe() -> &'static LoadedController {
    static PROBE: OnceLock<LoadedController> = OnceLock::new();
    PROBE.get_or_init(|| {
        let runtime = Runtime::new(limits()).expect("runtime");
        runtime
            .load(component_probe_wasm(), None)
            .expect("loading the component probe")
    })
}

fn call(args: &[&str], stdin: &str, root: &Path, access: Access) -> Result<Outcome, InvokeError> {
    probe().invoke(invocation(args, stdin.as_bytes(), root, access))
}

fn ok(args: &[&str], stdin: &str, root: &Path, access: Access) -> Outcome {
    call(args, stdin, root, access).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn loads_as_a_component_speaking_the_controller_interface() {
    let info = probe().load_info();
    assert_eq!(info.kind, ControllerKind::Component);
    assert_eq!(
        info.allocation,
        cup_runtime::Allocation::Pooled,
        "it fits the component pool"
    );
    assert_eq!(probe().kind(), ControllerKind::Component);
    assert_eq!(
        cup_runtime::CONTROLLER_INTERFACE,
        "cup:controller/controller@0.1.0"
    );
}

#[test]
fn put_get_list_delete_round_trip_through_files() {
    let root = tempfile::tempdir().expect("tempdir");
    let body = r#"{"apiVersion":"test.cup.dev/v1","kind":"Thing","metadata":{"namespace":"default","name":"a","labels":{"x":"1"},"annotations":null},"spec":{"n":1,"s":"é"}}"#;
    let put = ok(
        &["put", "Thing", "default", "a"],
        body,
        root.path(),
        Access::ReadWrite,
    );
    assert_eq!((put.exit_code, put.error, put.stdout.len()), (0, None, 0));
    assert_eq!(
        std::fs::read_to_string(root.path().join("default/a.json")).expect("file"),
        r#"{"n":1,"s":"é"}"#,
        "the spec reaches the component as the client's JSON text"
    );

    let got = ok(
        &["get", "Thing", "default", "a"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(got.exit_code, 0);
    assert_eq!(
        String::from_utf8(got.stdout.clone()).expect("utf-8"),
        "{\"apiVersion\":\"test.cup.dev/v1\",\"kind\":\"Thing\",\"metadata\":{\"namespace\":\"default\",\"name\":\"a\",\"labels\":{\"probe\":\"yes\"},\"annotations\":null},\"spec\":{\"n\":1,\"s\":\"é\"}}\n",
        "rendered exactly as a preview 1 command prints a resource"
    );

    let body_b = body.replace("\"name\":\"a\"", "\"name\":\"b\"");
    ok(
        &["put", "Thing", "default", "b"],
        &body_b,
        root.path(),
        Access::ReadWrite,
    );
    let list = ok(
        &["list", "Thing", "default"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    let names: Vec<String> = String::from_utf8(list.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            json(l.as_bytes())["metadata"]["name"]
                .as_str()
                .expect("name")
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["a", "b"]);

    let empty = ok(
        &["list", "Thing", "other"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!((empty.exit_code, empty.stdout.len()), (0, 0));

    ok(
        &["delete", "Thing", "default", "a"],
        "",
        root.path(),
        Access::ReadWrite,
    );
    assert!(!root.path().join("default/a.json").exists());
    let gone = ok(
        &["delete", "Thing", "default", "a"],
        "",
        root.path(),
        Access::ReadWrite,
    );
    assert_eq!(gone.exit_code, 2);
    assert!(matches!(gone.error, Some(ControllerError::NotFound(ref m)) if m.contains("no file")));
}

#[test]
fn typed_errors_keep_their_meaning_and_logs_are_kept_apart() {
    let root = tempfile::tempdir().expect("tempdir");
    let missing = ok(
        &["get", "Thing", "default", "nope"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(missing.exit_code, 2);
    assert!(matches!(missing.error, Some(ControllerError::NotFound(_))));

    let invalid = ok(
        &["get", "Thing", "default", "invalid"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(invalid.exit_code, 1);
    assert_eq!(
        invalid.error,
        Some(ControllerError::Invalid(
            "the probe refuses this one".into()
        ))
    );

    let failed = ok(
        &["get", "Thing", "default", "failed"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(failed.exit_code, 1);
    assert_eq!(
        failed.error.as_ref().map(ControllerError::message),
        Some("the probe failed on purpose")
    );
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr),
        "a log line before failing\n"
    );
}

#[test]
fn answers_that_break_the_contract_are_the_controllers_failure() {
    let root = tempfile::tempdir().expect("tempdir");
    let bad = ok(
        &["get", "Thing", "default", "bad-spec"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!((bad.exit_code, bad.stdout.len()), (1, 0));
    assert!(
        matches!(&bad.error, Some(ControllerError::Failed(m)) if m.contains("spec that is not one JSON value")),
        "{:?}",
        bad.error
    );
    let dup = ok(
        &["get", "Thing", "default", "dup-label"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        matches!(&dup.error, Some(ControllerError::Failed(m)) if m.contains("label key \"a\" twice")),
        "{:?}",
        dup.error
    );
}

#[test]
fn reads_cannot_write_and_failed_writes_report_failure() {
    let root = tempfile::tempdir().expect("tempdir");
    let body = r#"{"apiVersion":"test.cup.dev/v1","kind":"Thing","metadata":{"namespace":"default","name":"a"},"spec":{}}"#;
    // A put run with read-only access (as get and list are) cannot create anything.
    let refused = ok(
        &["put", "Thing", "default", "a"],
        body,
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(refused.exit_code, 1);
    assert!(
        matches!(&refused.error, Some(ControllerError::Failed(m)) if m.starts_with("mkdir")),
        "{:?}",
        refused.error
    );
    assert_eq!(std::fs::read_dir(root.path()).expect("dir").count(), 0);

    let body = body.replace("\"name\":\"a\"", "\"name\":\"write-then-fail\"");
    let failed = ok(
        &["put", "Thing", "default", "write-then-fail"],
        &body,
        root.path(),
        Access::ReadWrite,
    );
    assert_eq!(
        failed.exit_code, 1,
        "the host discards the copy on a non-zero code"
    );

    let mismatch = ok(
        &["put", "Thing", "default", "other"],
        &body,
        root.path(),
        Access::ReadWrite,
    );
    assert!(matches!(mismatch.error, Some(ControllerError::Invalid(_))));
    let not_json = call(
        &["put", "Thing", "default", "a"],
        "{",
        root.path(),
        Access::ReadWrite,
    );
    assert!(matches!(not_json, Err(InvokeError::BadRequest(ref m)) if m.contains("not JSON")));
    let bad_verb = call(
        &["patch", "Thing", "default", "a"],
        "",
        root.path(),
        Access::ReadWrite,
    );
    assert!(matches!(bad_verb, Err(InvokeError::BadRequest(ref m)) if m.contains("patch")));
}

#[test]
fn the_sandbox_holds_no_network_no_escape_no_environment() {
    let root = tempfile::tempdir().expect("tempdir");
    let socket = ok(
        &["get", "Thing", "default", "socket"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        matches!(&socket.error, Some(ControllerError::NotFound(m)) if m.starts_with("socket refused")),
        "{:?}",
        socket.error
    );
    let escape = ok(
        &["get", "Thing", "default", "escape"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        matches!(&escape.error, Some(ControllerError::NotFound(m)) if m.starts_with("escape refused")),
        "{:?}",
        escape.error
    );
    let env = ok(
        &["get", "Thing", "default", "env"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(
        json(&env.stdout)["spec"],
        serde_json::json!({"vars": 0, "args": 0})
    );
}

#[test]
fn limits_stop_spinning_sleeping_and_hoarding_guests() {
    let root = tempfile::tempdir().expect("tempdir");
    for name in ["spin", "sleep"] {
        let started = Instant::now();
        let result = call(
            &["get", "Thing", "default", name],
            "",
            root.path(),
            Access::ReadOnly,
        );
        assert!(
            matches!(result, Err(InvokeError::Timeout { .. })),
            "{name}: {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{name} stopped at the 2 s deadline, not {:?}",
            started.elapsed()
        );
    }
    let grow = call(
        &["get", "Thing", "default", "grow"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert!(
        matches!(grow, Err(InvokeError::MemoryLimit { limit, .. }) if limit == 64 << 20),
        "{grow:?}"
    );
    let trap = call(
        &["get", "Thing", "default", "trap"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    match trap {
        Err(InvokeError::Trap { stderr, .. }) => assert_eq!(stderr, b"about to trap\n"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // 1 MiB of logs: the first 64 KiB are kept, the call still succeeds.
    let log = ok(
        &["get", "Thing", "default", "log"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(
        (log.exit_code, log.stderr.len(), log.stderr_truncated),
        (0, 64 << 10, true)
    );
    // The controller is still fine after all of that.
    let again = ok(
        &["get", "Thing", "default", "nope"],
        "",
        root.path(),
        Access::ReadOnly,
    );
    assert_eq!(again.exit_code, 2);
}

#[test]
fn an_answer_larger_than_the_output_limit_is_refused_not_copied() {
    // The bytes a component's answer carries are capped like a command's stdout: wasmtime
    // stops lifting at the cap, so a guest cannot make the host allocate more (not even by
    // pointing many records at the same bytes).
    let runtime = Runtime::new(Limits {
        stdout_bytes: 6 << 10,
        ..limits()
    })
    .expect("runtime");
    let component = runtime
        .load(component_probe_wasm(), None)
        .expect("component");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("big")).expect("mkdir");
    let kib = format!("\"{}\"", "x".repeat(1022));
    for i in 0..16 {
        std::fs::write(root.path().join(format!("big/r{i:02}.json")), &kib).expect("write");
    }
    std::fs::write(
        root.path().join("big/huge.json"),
        format!("\"{}\"", "y".repeat(16 << 10)),
    )
    .expect("write");
    let run =
        |args: &[&str]| component.invoke(invocation(args, b"", root.path(), Access::ReadOnly));
    for args in [
        &["list", "Thing", "big"][..],
        &["get", "Thing", "big", "huge"][..],
    ] {
        match run(args) {
            Err(InvokeError::OutputTooLarge { limit, .. }) => assert_eq!(limit, 6 << 10),
            other => panic!("{args:?}: expected OutputTooLarge, got {other:?}"),
        }
    }
    // Under the cap, the same controller answers.
    let one = run(&["get", "Thing", "big", "r00"]).expect("one record");
    assert_eq!(one.exit_code, 0);
}

/// Bytes the host allocated on this thread: the component's answer is lifted on the thread
/// that invokes it, so this measures what an answer made the host copy.
// A global allocator can only be written with `unsafe`; this one forwards to the system's.
#[allow(unsafe_code)]
mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(layout.size())));
            // SAFETY: the caller's contract is passed on as it is.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(new_size)));
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub fn on_this_thread() -> usize {
        ALLOCATED.with(Cell::get)
    }
}

#[global_allocator]
static ALLOCATOR: allocations::Counting = allocations::Counting;

#[test]
fn records_aliasing_the_same_bytes_cannot_make_the_host_copy_them_all() {
    // 100 records whose specs all point at one 1 MiB buffer: lifting them whole would copy
    // 100 MiB (under wasmtime's own default budget of 128 MiB). The runtime's budget is the
    // output limit, here 1 MiB, so the host stops after about that much.
    let runtime = Runtime::new(Limits {
        stdout_bytes: 1 << 20,
        ..limits()
    })
    .expect("runtime");
    let component = runtime
        .load(component_probe_wasm(), None)
        .expect("component");
    let root = tempfile::tempdir().expect("tempdir");
    // Warm up (first-call allocations of the runtime are not the answer's).
    let _ = component.invoke(invocation(
        &["get", "Thing", "default", "x"],
        b"",
        root.path(),
        Access::ReadOnly,
    ));
    let before = allocations::on_this_thread();
    let result = component.invoke(invocation(
        &["list", "Thing", "alias"],
        b"",
        root.path(),
        Access::ReadOnly,
    ));
    let copied = allocations::on_this_thread() - before;
    assert!(
        matches!(result, Err(InvokeError::OutputTooLarge { limit, .. }) if limit == 1 << 20),
        "{result:?}"
    );
    assert!(
        copied < 16 << 20,
        "the host allocated {copied} bytes for an answer capped at 1 MiB"
    );
}

#[test]
fn compiled_once_then_served_from_the_code_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CodeCache::new(dir.path().join("code")).expect("cache");
    let first = Runtime::new(limits()).expect("runtime");
    let a = first
        .load(component_probe_wasm(), Some(&cache))
        .expect("load");
    assert_eq!(a.load_info().cache, CacheStatus::Miss);
    let second = Runtime::new(limits()).expect("runtime");
    let b = second
        .load(component_probe_wasm(), Some(&cache))
        .expect("load");
    assert_eq!(b.load_info().cache, CacheStatus::Hit);
    assert_eq!(b.kind(), ControllerKind::Component);
    let root = tempfile::tempdir().expect("tempdir");
    let out = b
        .invoke(invocation(
            &["get", "Thing", "default", "nope"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect("invoke");
    assert_eq!(out.exit_code, 2);
}

#[test]
fn components_that_are_not_controllers_are_refused_naming_what_they_export() {
    let runtime = Runtime::new(limits()).expect("runtime");
    let refuse = |wat: &str| match runtime.load(&wat::parse_str(wat).expect("wat"), None) {
        Err(LoadError::NotAController { reason }) => reason,
        Err(other) => panic!("expected NotAController, got {other:?}"),
        Ok(_) => panic!("expected NotAController, got a controller"),
    };
    let empty = refuse("(component)");
    assert!(empty.contains("exports nothing"), "{empty}");

    let other_version = refuse(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $exp (export "get" (func $f)))
            (export "cup:controller/controller@0.2.0" (instance $exp)))"#,
    );
    assert!(
        other_version.contains("cup:controller/controller@0.2.0")
            && other_version.contains("speaks cup:controller/controller@0.1.0"),
        "{other_version}"
    );

    let wrong_shape = refuse(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $exp (export "get" (func $f)))
            (export "cup:controller/controller@0.1.0" (instance $exp)))"#,
    );
    assert!(wrong_shape.contains("do not match"), "{wrong_shape}");

    let foreign_import = refuse(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $exp (export "get" (func $f)))
            (export "cup:controller/controller@0.1.0" (instance $exp)))"#,
    );
    assert!(
        foreign_import.contains("wasi:http/outgoing-handler"),
        "{foreign_import}"
    );
}

#[test]
fn without_a_pool_components_run_on_fresh_memory() {
    let runtime = Runtime::new(Limits {
        pooled_instances: 0,
        ..limits()
    })
    .expect("runtime");
    let component = runtime
        .load(component_probe_wasm(), None)
        .expect("component");
    assert!(
        matches!(&component.load_info().allocation, cup_runtime::Allocation::OnDemand(why) if why.contains("no pool")),
        "{:?}",
        component.load_info().allocation
    );
    let root = tempfile::tempdir().expect("tempdir");
    let out = component
        .invoke(invocation(
            &["get", "Thing", "default", "x"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect("component");
    assert_eq!(out.exit_code, 2);
}

#[test]
fn more_concurrent_calls_than_pool_slots_all_finish() {
    // One slot: the other calls find it taken and run on freshly mapped memory.
    let runtime = Runtime::new(Limits {
        pooled_instances: 1,
        ..limits()
    })
    .expect("runtime");
    let component = runtime
        .load(component_probe_wasm(), None)
        .expect("component");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("default")).expect("mkdir");
    std::fs::write(root.path().join("default/x.json"), "{\"n\":1}").expect("write");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    let out = component
                        .invoke(invocation(
                            &["get", "Thing", "default", "x"],
                            b"",
                            root.path(),
                            Access::ReadOnly,
                        ))
                        .expect("component");
                    assert_eq!(out.exit_code, 0);
                    assert_eq!(json(&out.stdout)["spec"], serde_json::json!({"n": 1}));
                }
            });
        }
    });
}

#[test]
fn a_command_and_a_component_run_side_by_side_on_one_runtime() {
    let runtime = Runtime::new(limits()).expect("runtime");
    let command = runtime.load(common::probe_wasm(), None).expect("command");
    let component = runtime
        .load(component_probe_wasm(), None)
        .expect("component");
    assert_eq!(command.kind(), ControllerKind::Command);
    assert_eq!(component.kind(), ControllerKind::Component);
    let root = tempfile::tempdir().expect("tempdir");
    let a = command
        .invoke(invocation(
            &["echo", "hi"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect("command");
    assert_eq!((a.exit_code, a.error), (0, None));
    let b = component
        .invoke(invocation(
            &["get", "Thing", "default", "x"],
            b"",
            root.path(),
            Access::ReadOnly,
        ))
        .expect("component");
    assert_eq!(b.exit_code, 2);
}

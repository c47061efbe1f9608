//! `invoke_async`: a guest runs on the task that polls it, so what matters is that it never
//! holds that thread for long (busy guests yield at every epoch tick, sleeping guests wait on a
//! timer) and that dropping the future (a client that went away) ends the guest cleanly.
//! Each test runs on a single-threaded tokio runtime, where a guest that did not yield would
//! stop every other task.

mod common;

use std::time::{Duration, Instant};

use cup_runtime::{Access, InvokeError, Limits, LoadedController, Runtime};

use common::{invocation, probe_wasm};

fn probe(deadline: Duration) -> LoadedController {
    let runtime = Runtime::new(Limits {
        deadline,
        ..Limits::default()
    })
    .expect("runtime");
    runtime.load(probe_wasm(), None).expect("loading the probe")
}

fn single_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// Five 20 ms sleeps on the same thread as the guest; returns when they were done.
async fn ticker(started: Instant) -> Duration {
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[test]
fn a_spinning_guest_lets_other_tasks_of_its_thread_run() {
    let root = tempfile::tempdir().expect("temp dir");
    let controller = probe(Duration::from_millis(800));
    let started = Instant::now();
    let (guest, ticked) = single_thread().block_on(async {
        tokio::join!(
            controller.invoke_async(invocation(&["spin"], b"", root.path(), Access::ReadOnly)),
            ticker(started)
        )
    });
    assert!(
        matches!(guest, Err(InvokeError::Timeout { .. })),
        "{guest:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    // Without yields the ticker could only run after the guest's 800 ms.
    assert!(
        ticked < Duration::from_millis(500),
        "the other task waited for the guest: {ticked:?}"
    );
}

#[test]
fn a_sleeping_guest_does_not_hold_its_thread() {
    let root = tempfile::tempdir().expect("temp dir");
    let controller = probe(Duration::from_secs(10));
    let started = Instant::now();
    let (guest, ticked) = single_thread().block_on(async {
        tokio::join!(
            controller.invoke_async(invocation(
                &["sleep", "600"],
                b"",
                root.path(),
                Access::ReadOnly
            )),
            ticker(started)
        )
    });
    let outcome = guest.expect("the sleep finishes");
    assert_eq!(
        (outcome.exit_code, outcome.stdout.as_slice()),
        (0, &b"slept\n"[..])
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(
        ticked < Duration::from_millis(450),
        "the other task waited for the guest's sleep: {ticked:?}"
    );
}

#[test]
fn dropping_a_running_invocation_ends_the_guest_and_frees_its_slot() {
    let root = tempfile::tempdir().expect("temp dir");
    let controller = probe(Duration::from_secs(10));
    let rt = single_thread();
    for args in [&["spin"][..], &["sleep", "5000"][..]] {
        let started = Instant::now();
        let gave_up = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(100),
                controller.invoke_async(invocation(args, b"", root.path(), Access::ReadOnly)),
            )
            .await
        });
        assert!(gave_up.is_err(), "{args:?} finished: {gave_up:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{args:?}: dropping took {:?}",
            started.elapsed()
        );
        let stats = controller
            .pool_stats()
            .unwrap_or_else(|e| panic!("no pool: {e}"));
        assert_eq!(stats.in_use, 0, "{args:?}: the slot was not given back");
    }
    let outcome = rt
        .block_on(controller.invoke_async(invocation(
            &["echo", "again"],
            b"",
            root.path(),
            Access::ReadOnly,
        )))
        .expect("the controller still serves");
    assert_eq!(outcome.exit_code, 0);
}

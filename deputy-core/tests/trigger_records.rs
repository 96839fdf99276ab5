//! Every trigger, force and abandon is in the report, in order, even when the request that
//! ends the shutdown races the coordinator's own thread building the report.
//!
//! The race: a request changes the machine (which wakes `run` on its thread) and records
//! itself. If the record were taken after the change, in a second critical section, `run`
//! could copy the records into the report between the two. To make that window wide enough
//! to hit every time, the requesting thread reads a slow clock: every read of it on that
//! thread takes a few milliseconds, while `run`'s thread reads it at full speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use deputy_core::runtime::{Runtime, Sleep};
use deputy_core::{ShutdownCoordinator, TriggerKind};

/// Real time on threads, slow to read on one thread once `slow` is set.
#[derive(Debug, Clone)]
struct SlowOnOneThread {
    thread: ThreadId,
    slow: Arc<AtomicBool>,
}

impl Runtime for SlowOnOneThread {
    fn now(&self) -> Instant {
        if std::thread::current().id() == self.thread && self.slow.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            let _ = tx.send(());
        });
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Triggers, then (from this thread, with its clock slow) abandons while `run` waits in the
/// drain delay on another thread; returns the kinds the report recorded.
fn abandon_while_run_waits() -> Vec<TriggerKind> {
    let slow = Arc::new(AtomicBool::new(false));
    let runtime = SlowOnOneThread {
        thread: std::thread::current().id(),
        slow: slow.clone(),
    };
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(120))
        .drain_delay(Duration::from_secs(60))
        .build(runtime)
        .unwrap();
    let shutdown = coordinator.handle();
    assert!(shutdown.trigger("deploy"));
    let run = std::thread::spawn(move || futures::executor::block_on(coordinator.run()));
    // Let `run` reach its wait in the drain delay (it would see the abandon at once anyway).
    std::thread::sleep(Duration::from_millis(20));
    slow.store(true, Ordering::SeqCst);
    assert!(shutdown.abandon("third signal"));
    slow.store(false, Ordering::SeqCst);
    let report = run.join().unwrap();
    report.triggers.iter().map(|t| t.kind).collect()
}

#[test]
fn an_abandon_that_ends_the_shutdown_is_in_the_report() {
    for round in 0..10 {
        assert_eq!(
            abandon_while_run_waits(),
            [TriggerKind::Trigger, TriggerKind::Abandon],
            "round {round}: the report missed a record"
        );
    }
}

//! A force that lands after the driver decided to wait but before its wait began is still
//! seen at once: the wait watches for the machine leaving the state the driver decided on,
//! not the state it finds when the wait is first polled.
//!
//! The window is a few instructions wide in real life (a signal handler's force on another
//! thread, under load). Here it is hit every time: a runtime whose timer, when the driver asks
//! it for the drain delay's sleep (which happens inside that window), forces the shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deputy_core::runtime::{Runtime, Sleep};
use deputy_core::{ManualClock, Shutdown, ShutdownCoordinator, State};
use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

/// Virtual time; the second sleep asked for (the drain delay's: the first is the grace
/// budget's) forces the shutdown before it is handed out.
#[derive(Debug, Clone)]
struct ForcesOnTheDelay {
    clock: ManualClock,
    sleeps: Arc<AtomicUsize>,
    shutdown: Arc<OnceLock<Shutdown>>,
}

impl Runtime for ForcesOnTheDelay {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        if self.sleeps.fetch_add(1, Ordering::SeqCst) == 1 {
            self.shutdown.get().unwrap().force("second signal");
        }
        self.clock.sleep_until(deadline)
    }
}

#[test]
fn a_force_just_before_the_drain_delay_wait_skips_the_delay() {
    let runtime = ForcesOnTheDelay {
        clock: ManualClock::new(),
        sleeps: Arc::new(AtomicUsize::new(0)),
        shutdown: Arc::new(OnceLock::new()),
    };
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(60))
        .drain_delay(Duration::from_secs(30))
        .build(runtime.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    runtime.shutdown.set(shutdown.clone()).unwrap();
    shutdown.trigger("first signal");
    let mut pool = LocalPool::new();
    let run = pool
        .spawner()
        .spawn_local_with_handle(coordinator.run())
        .unwrap();
    // No time passes: the force must end the wait by itself, not the 30 s delay.
    pool.run_until_stalled();
    assert_eq!(
        shutdown.state(),
        State::Done,
        "the driver still waits out the drain delay"
    );
    assert_eq!(pool.run_until(run).exit_code, 0);
}

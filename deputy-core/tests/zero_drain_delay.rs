//! A drain delay of zero asks the runtime for no timer: a runtime rounds a sleep up to its
//! tick (tokio's is a millisecond), and that would be paid on every shutdown's way from
//! signal to exit (`deputy run --drain-delay 0s`, a worker without traffic).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deputy_core::runtime::{Runtime, Sleep};
use deputy_core::{ManualClock, ShutdownCoordinator, State};

/// Virtual time that records every deadline asked for.
#[derive(Debug, Clone)]
struct Recording {
    clock: ManualClock,
    deadlines: Arc<Mutex<Vec<Instant>>>,
}

impl Runtime for Recording {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        self.deadlines.lock().unwrap().push(deadline);
        self.clock.sleep_until(deadline)
    }
}

#[test]
fn a_zero_drain_delay_asks_for_no_timer() {
    let runtime = Recording {
        clock: ManualClock::new(),
        deadlines: Arc::default(),
    };
    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(30))
        .drain_delay(Duration::ZERO)
        .build(runtime.clone())
        .unwrap();
    let shutdown = coordinator.handle();
    let triggered_at = runtime.now();
    shutdown.trigger("deploy");
    let report = futures::executor::block_on(coordinator.run());
    assert_eq!(shutdown.state(), State::Done);
    assert_eq!(report.exit_code, 0);
    let deadlines = runtime.deadlines.lock().unwrap();
    assert!(
        !deadlines.contains(&triggered_at),
        "a timer for the zero delay: {deadlines:?} (triggered at {triggered_at:?})"
    );
}

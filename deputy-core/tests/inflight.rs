//! In-flight tracking: guards, tracked futures, waiting for zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use deputy_core::InFlight;
use futures::FutureExt;

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn drained_waits_for_the_last_guard_and_wakes_once() {
    let in_flight = InFlight::new();
    let a = in_flight.guard();
    let b = in_flight.guard();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut drained = Box::pin(in_flight.drained());
    assert!(
        drained
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    drop(a);
    assert_eq!(counter.0.load(Ordering::SeqCst), 0, "woken before zero");
    drop(b);
    assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        drained.as_mut().poll(&mut Context::from_waker(&waker)),
        Poll::Ready(())
    );
}

#[test]
fn guards_outlive_every_handle() {
    let in_flight = InFlight::new();
    let guard = in_flight.guard();
    let clone = in_flight.clone();
    drop(in_flight);
    assert_eq!(clone.count(), 1);
    drop(clone);
    drop(guard);
}

#[test]
fn guards_taken_after_a_wait_began_still_count() {
    // A late request arriving while the drain waits keeps it open until it ends.
    let in_flight = InFlight::new();
    let first = in_flight.guard();
    let mut drained = Box::pin(in_flight.drained());
    assert!(drained.as_mut().now_or_never().is_none());
    let late = in_flight.guard();
    drop(first);
    assert!(drained.as_mut().now_or_never().is_none());
    drop(late);
    assert!(drained.now_or_never().is_some());
}

#[test]
fn track_counts_until_completion_or_drop() {
    let in_flight = InFlight::new();
    let pending = in_flight.track(futures::future::pending::<()>());
    let ready = in_flight.track(async { 7 });
    assert_eq!(in_flight.count(), 2);
    assert_eq!(ready.now_or_never(), Some(7));
    assert_eq!(in_flight.count(), 1);
    drop(pending);
    assert_eq!(in_flight.count(), 0);
}

#[test]
fn many_threads_taking_and_dropping_leave_zero() {
    let in_flight = InFlight::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let in_flight = in_flight.clone();
            std::thread::spawn(move || {
                for _ in 0..if cfg!(miri) { 100 } else { 50_000 } {
                    let g = in_flight.guard();
                    let h = in_flight.guard();
                    drop(g);
                    drop(h);
                }
            })
        })
        .collect();
    let waiter = {
        let in_flight = in_flight.clone();
        std::thread::spawn(move || {
            for _ in 0..if cfg!(miri) { 10 } else { 1000 } {
                in_flight.wait_drained_blocking();
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    waiter.join().unwrap();
    assert_eq!(in_flight.count(), 0);
}

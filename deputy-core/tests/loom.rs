//! Loom models of the concurrency primitives. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p deputy-core --test loom --release`.

#![cfg(loom)]

use deputy_core::{CancellationToken, InFlight};
use std::future::Future;

use loom::future::block_on;
use loom::thread;

#[test]
fn cancel_racing_a_waiter_registration_always_wakes_it() {
    loom::model(|| {
        let token = CancellationToken::new();
        let canceller = {
            let token = token.clone();
            thread::spawn(move || {
                token.cancel();
            })
        };
        block_on(token.cancelled());
        canceller.join().unwrap();
    });
}

#[test]
fn cancel_racing_a_waiter_dropping_wakes_the_other_waiter_and_loses_no_slot() {
    loom::model(|| {
        let token = CancellationToken::new();
        // A waiter that registers, then leaves (a select! that took another branch).
        let mut leaving = Box::pin(token.cancelled());
        let waker = futures::task::noop_waker();
        let polled = leaving
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending());
        let canceller = {
            let token = token.clone();
            thread::spawn(move || {
                token.cancel();
            })
        };
        let leaver = thread::spawn(move || drop(leaving));
        block_on(token.cancelled());
        canceller.join().unwrap();
        leaver.join().unwrap();
    });
}

#[test]
fn cancel_racing_a_child_waiter_always_wakes_it() {
    loom::model(|| {
        let token = CancellationToken::new();
        let child = token.child();
        let canceller = {
            let token = token.clone();
            thread::spawn(move || {
                token.cancel();
            })
        };
        block_on(child.cancelled());
        canceller.join().unwrap();
    });
}

#[test]
fn cancel_racing_the_future_of_a_dropped_child_token_always_wakes_it() {
    // `root.child().cancelled()`: the child token is a temporary, so the future alone keeps
    // its place in the tree while the root is cancelled from another thread.
    loom::model(|| {
        let root = CancellationToken::new();
        let waiting = root.child().cancelled();
        let canceller = {
            let root = root.clone();
            thread::spawn(move || {
                root.cancel();
            })
        };
        block_on(waiting);
        canceller.join().unwrap();
    });
}

#[test]
fn cancel_racing_child_creation_leaves_no_live_child() {
    loom::model(|| {
        let token = CancellationToken::new();
        let maker = {
            let token = token.clone();
            thread::spawn(move || token.child())
        };
        token.cancel();
        let child = maker.join().unwrap();
        assert!(child.is_cancelled());
    });
}

#[test]
fn cancel_racing_a_child_drop_is_safe() {
    loom::model(|| {
        let token = CancellationToken::new();
        let child = token.child();
        let dropper = thread::spawn(move || drop(child));
        token.cancel();
        dropper.join().unwrap();
        assert!(token.child().is_cancelled());
    });
}

#[test]
fn a_child_and_its_parent_dropping_at_once_free_both() {
    // The child's link owns the parent's: whichever drop comes last releases the parent, on
    // its own thread (the drop walks up iteratively). Loom checks nothing leaks or is freed
    // twice.
    loom::model(|| {
        let root = CancellationToken::new();
        let parent = root.child();
        let child = parent.child();
        let dropper = thread::spawn(move || drop(child));
        drop(parent);
        dropper.join().unwrap();
        root.cancel();
        assert!(root.child().is_cancelled());
    });
}

#[test]
fn last_guard_dropping_while_a_waiter_registers_wakes_it() {
    loom::model(|| {
        let in_flight = InFlight::new();
        let guard = in_flight.guard();
        let worker = thread::spawn(move || drop(guard));
        block_on(in_flight.drained());
        worker.join().unwrap();
        assert_eq!(in_flight.count(), 0);
    });
}

#[test]
fn two_guards_dropping_at_once_wake_the_waiter_once_both_are_gone() {
    loom::model(|| {
        let in_flight = InFlight::new();
        let a = in_flight.guard();
        let b = in_flight.guard();
        let ta = thread::spawn(move || drop(a));
        let tb = thread::spawn(move || drop(b));
        block_on(in_flight.drained());
        assert_eq!(in_flight.count(), 0);
        ta.join().unwrap();
        tb.join().unwrap();
    });
}

#[test]
fn last_guard_and_last_handle_dropping_at_once_free_the_counter_once() {
    loom::model(|| {
        let in_flight = InFlight::new();
        let guard = in_flight.guard();
        let waiter = in_flight.drained();
        let worker = thread::spawn(move || drop(guard));
        drop(in_flight);
        drop(waiter);
        worker.join().unwrap();
    });
}

#[test]
fn a_guard_taken_while_the_last_one_drops_keeps_the_count() {
    loom::model(|| {
        let in_flight = InFlight::new();
        let first = in_flight.guard();
        let taker = {
            let in_flight = in_flight.clone();
            thread::spawn(move || in_flight.guard())
        };
        drop(first);
        let second = taker.join().unwrap();
        assert_eq!(in_flight.count(), 1);
        drop(second);
        block_on(in_flight.drained());
    });
}

#[test]
fn last_guard_and_last_handle_dropping_at_once_with_a_registered_waiter() {
    use std::future::Future;
    use std::task::Context;
    loom::model(|| {
        let in_flight = InFlight::new();
        let guard = in_flight.guard();
        let mut waiter = Box::pin(in_flight.drained());
        let waker = futures::task::noop_waker();
        let _ = waiter.as_mut().poll(&mut Context::from_waker(&waker));
        let worker = thread::spawn(move || drop(guard));
        drop(in_flight);
        drop(waiter);
        worker.join().unwrap();
    });
}

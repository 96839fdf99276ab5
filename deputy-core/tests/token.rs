//! Cancellation tokens: hierarchy, wake counts, blocking waits, drop guards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use deputy_core::CancellationToken;
use futures::FutureExt;

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker::default());
    (counter.clone(), Waker::from(counter))
}

#[test]
fn cancelling_a_parent_cancels_the_subtree_but_never_upward() {
    let root = CancellationToken::new();
    let a = root.child();
    let a1 = a.child();
    let b = root.child();
    a.cancel();
    assert!(a.is_cancelled() && a1.is_cancelled());
    assert!(!root.is_cancelled() && !b.is_cancelled());
    root.cancel();
    assert!(b.is_cancelled());
}

#[test]
fn clones_share_one_token() {
    let token = CancellationToken::new();
    let clone = token.clone();
    assert!(clone.cancel());
    assert!(token.is_cancelled());
    assert!(!token.cancel());
}

#[test]
fn each_waiter_is_woken_exactly_once() {
    let token = CancellationToken::new();
    let child = token.child();
    let mut waiters = Vec::new();
    for t in [&token, &token, &child] {
        let (count, waker) = counting();
        let mut future = Box::pin(t.cancelled());
        assert!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // Polling again with the same waker must not register a second wake.
        assert!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        waiters.push((count, waker, future));
    }
    assert!(
        waiters
            .iter()
            .all(|(c, _, _)| c.0.load(Ordering::SeqCst) == 0)
    );
    token.cancel();
    token.cancel();
    child.cancel();
    for (count, waker, mut future) in waiters {
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            future.as_mut().poll(&mut Context::from_waker(&waker)),
            Poll::Ready(())
        );
    }
}

#[test]
fn a_dropped_waiter_is_not_woken_and_does_not_block_others() {
    let token = CancellationToken::new();
    let (dropped_count, dropped_waker) = counting();
    let mut dropped = Box::pin(token.cancelled());
    let _ = dropped
        .as_mut()
        .poll(&mut Context::from_waker(&dropped_waker));
    drop(dropped);
    let (count, waker) = counting();
    let mut kept = Box::pin(token.cancelled());
    let _ = kept.as_mut().poll(&mut Context::from_waker(&waker));
    token.cancel();
    assert_eq!(dropped_count.0.load(Ordering::SeqCst), 0);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn cancelled_resolves_at_once_when_already_cancelled() {
    let token = CancellationToken::new();
    token.cancel();
    assert_eq!(token.cancelled().now_or_never(), Some(()));
    assert_eq!(token.child().cancelled().now_or_never(), Some(()));
}

#[test]
fn blocking_wait_returns_when_another_thread_cancels() {
    let token = CancellationToken::new();
    let child = token.child();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let child = child.clone();
            std::thread::spawn(move || child.wait_blocking())
        })
        .collect();
    token.cancel();
    for waiter in waiters {
        waiter.join().unwrap();
    }
}

#[test]
fn drop_guard_cancels_unless_disarmed() {
    let token = CancellationToken::new();
    let disarmed = token.clone().drop_guard().disarm();
    assert!(!disarmed.is_cancelled());
    drop(token.clone().drop_guard());
    assert!(token.is_cancelled());
}

/// 100 001 tokens under `root`, each the child of the one before.
fn deep_chain(root: &CancellationToken) -> Vec<CancellationToken> {
    let mut chain = vec![root.child()];
    for _ in 0..100_000 {
        let next = chain.last().unwrap().child();
        chain.push(next);
    }
    chain
}

#[test]
fn a_deep_chain_cancels_without_overflowing_the_stack() {
    let root = CancellationToken::new();
    let chain = deep_chain(&root);
    root.cancel();
    assert!(chain.last().unwrap().is_cancelled());
    let mut chain = chain;
    while chain.pop().is_some() {}
}

#[test]
fn a_deep_chain_dropped_from_the_root_down_does_not_overflow_the_stack() {
    // Each token keeps its parent's place in the tree while it lives, so here the leaf's
    // drop is the one that releases all 100 000 ancestors at once.
    let root = CancellationToken::new();
    let chain = deep_chain(&root);
    drop(root);
    for token in chain {
        drop(token);
    }
}

#[test]
fn concurrent_child_creation_and_cancel_leave_no_live_child() {
    for _ in 0..200 {
        let root = CancellationToken::new();
        let maker = {
            let root = root.clone();
            std::thread::spawn(move || (0..50).map(|_| root.child()).collect::<Vec<_>>())
        };
        root.cancel();
        let children = maker.join().unwrap();
        assert!(children.iter().all(CancellationToken::is_cancelled));
    }
}

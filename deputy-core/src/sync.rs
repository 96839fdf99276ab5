//! The synchronisation primitives deputy-core is built on, swapped for loom's under `--cfg loom`
//! so the loom models in `tests/loom.rs` explore every interleaving of the real code.
//!
//! `Arc` is loom's too, so that loom sees the happens-before edges a last drop creates.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
};

/// A mutex whose `lock` cannot fail: every critical section in this crate leaves its data
/// consistent before it can panic, so a poisoned lock is recovered instead of propagated.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: std::sync::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = std::sync::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(loom))]
            inner: std::sync::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The shard (of `shards`) this thread uses: threads are numbered in the order they first
/// ask, so two threads share a shard only once there are more than `shards` of them. Under
/// loom, the first shard, so that the models' threads race on it.
#[inline]
pub(crate) fn shard_of_this_thread(shards: usize) -> usize {
    #[cfg(loom)]
    {
        let _ = shards;
        0
    }
    #[cfg(not(loom))]
    {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::thread_local! {
            // `usize::MAX` until the thread first asks (a constant start costs no check of
            // whether it was made, on every call).
            static NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        // A thread being torn down has no number any more: any shard will do.
        let number = NUMBER
            .try_with(|number| {
                if number.get() == usize::MAX {
                    number.set(NEXT.fetch_add(1, Ordering::Relaxed));
                }
                number.get()
            })
            .unwrap_or(0);
        number % shards
    }
}

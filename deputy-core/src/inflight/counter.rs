//! The algorithm behind [`InFlight`](super::InFlight): a hand-counted shared block in which
//! one 64-bit word holds both the number of live guards and the number of other handles, so
//! that taking or dropping a guard is a single atomic read-modify-write, with no lock and no
//! allocation, and a guard still owns the block (it can be moved into any task).
//!
//! An `Arc` would need a second read-modify-write per guard (one for the reference count, one
//! for the in-flight count), as tokio-util's `TaskTracker` tokens do.
//!
//! # Invariants
//!
//! 1. `state` = `guards << 32 | WAITING? | handles`. Each [`GuardRef`] owns one `GUARD` unit,
//!    each [`HandleRef`] one `HANDLE` unit; a unit is released exactly once, by its owner's
//!    drop. `WAITING` is set (and never cleared) once anyone has waited for zero.
//! 2. Whoever moves the counts to zero frees the block, and nobody touches it afterwards: while
//!    a unit is held, the counts are not zero.
//! 3. A guard that may be the last one while `WAITING` is set does not release its `GUARD`
//!    unit plainly: it converts it into a `HANDLE` unit in one read-modify-write, notifies the
//!    waiters, then releases the handle unit. So the block outlives the notification (by
//!    invariant 2) even if every other owner drops meanwhile.
//! 4. Waiters set `WAITING`, register a listener, then re-read the guard count. A last guard
//!    that saw `WAITING` unset decremented before the flag was set (both are read-modify-writes
//!    of `state`, so they are ordered), so the waiter's re-read sees zero; one that saw it set
//!    notifies after its decrement. Either way no wake-up is lost, and while nobody waits the
//!    last guard costs no more than any other.
//! 5. Counts never exceed their maximum; reaching it aborts, as `Arc` does, since wrapping
//!    around would free the block under live owners.

// deputy-core's only unsafe code is here: the block's manual ownership. Each block is reviewed against the invariants above, checked by the loom
// models (tests/loom.rs) and by miri.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use event_listener::{Event, EventListener};

use crate::sync::{AtomicU64, Ordering, fence};

const HANDLE: u64 = 1;
const WAITING: u64 = 1 << 31;
const HANDLE_MASK: u64 = WAITING - 1;
const GUARD: u64 = 1 << 32;
const MAX_HANDLES: u64 = HANDLE_MASK - 1;
const MAX_GUARDS: u64 = (1 << 32) - 2;

struct Block {
    state: AtomicU64,
    zero: Event,
}

#[inline]
fn guards(state: u64) -> u64 {
    state >> 32
}

#[inline]
fn handles(state: u64) -> u64 {
    state & HANDLE_MASK
}

#[inline]
fn waiting(state: u64) -> bool {
    state & WAITING != 0
}

/// An owned `HANDLE` unit.
pub(crate) struct HandleRef {
    block: NonNull<Block>,
}

/// An owned `GUARD` unit.
pub(crate) struct GuardRef {
    block: NonNull<Block>,
}

// SAFETY: `Block` holds only an atomic and an `Event`, both `Send + Sync`; the pointer is a
// shared, reference-counted pointer to it (like `Arc<Block>`), so moving or sharing the unit
// across threads is as safe as moving or sharing an `Arc`.
unsafe impl Send for HandleRef {}
// SAFETY: see above.
unsafe impl Sync for HandleRef {}
// SAFETY: see above.
unsafe impl Send for GuardRef {}
// SAFETY: see above.
unsafe impl Sync for GuardRef {}

impl HandleRef {
    pub(crate) fn new() -> Self {
        let block = Box::new(Block {
            state: AtomicU64::new(HANDLE),
            zero: Event::new(),
        });
        // `Event` allocates its waiter list on first use; do it now, so that no guard drop
        // (which may notify) ever allocates.
        block.zero.notify(0);
        Self {
            block: NonNull::from(Box::leak(block)),
        }
    }

    #[inline]
    fn block(&self) -> &Block {
        // SAFETY: we own a unit, so by invariant 2 the block is alive.
        unsafe { self.block.as_ref() }
    }

    /// Live guard units right now.
    #[inline]
    pub(crate) fn guards(&self) -> u64 {
        // Acquire: pairs with the Release of guard drops, so work done under a guard that is
        // seen as finished happens-before the caller.
        guards(self.block().state.load(Ordering::Acquire))
    }

    /// Takes a `GUARD` unit: one `fetch_add`.
    #[inline]
    pub(crate) fn guard(&self) -> GuardRef {
        // Relaxed: like `Arc::clone`, a new unit from an existing one needs no ordering; the
        // drop side carries it.
        let prev = self.block().state.fetch_add(GUARD, Ordering::Relaxed);
        if guards(prev) >= MAX_GUARDS {
            overflow();
        }
        GuardRef { block: self.block }
    }

    /// Registers a waiter for zero. Callers re-read [`guards`](Self::guards) afterwards
    /// (invariant 4).
    pub(crate) fn listen(&self) -> EventListener {
        let block = self.block();
        // SeqCst is not needed: this is a read-modify-write of `state`, so it is ordered with
        // every guard's decrement (invariant 4); Relaxed suffices for that, and the re-read
        // that follows is Acquire.
        block.state.fetch_or(WAITING, Ordering::Relaxed);
        block.zero.listen()
    }
}

impl Clone for HandleRef {
    fn clone(&self) -> Self {
        // Relaxed: see `guard`.
        let prev = self.block().state.fetch_add(HANDLE, Ordering::Relaxed);
        if handles(prev) >= MAX_HANDLES {
            overflow();
        }
        Self { block: self.block }
    }
}

impl Drop for HandleRef {
    fn drop(&mut self) {
        // SAFETY: we own a unit (invariant 1) and give it up here, once.
        unsafe { release(self.block, HANDLE) }
    }
}

impl GuardRef {
    #[inline]
    fn state(&self) -> &AtomicU64 {
        // SAFETY: we own a unit, so by invariant 2 the block is alive.
        unsafe { &self.block.as_ref().state }
    }

    #[cold]
    #[inline(never)]
    fn drop_maybe_last(&mut self) {
        // Invariant 3: turn our guard unit into a handle unit, so the block stays alive.
        // AcqRel: Release publishes the guarded work to waiters; Acquire orders the reads of
        // the notification below after it.
        let prev = self
            .state()
            .fetch_add(HANDLE.wrapping_sub(GUARD), Ordering::AcqRel);
        if guards(prev) == 1 {
            // SAFETY: we own a handle unit now.
            unsafe { self.block.as_ref() }.zero.notify(usize::MAX);
        }
        // SAFETY: we own the handle unit made above and give it up here, once.
        unsafe { release(self.block, HANDLE) }
    }
}

impl Drop for GuardRef {
    #[inline]
    fn drop(&mut self) {
        // One read-modify-write on the common path: a compare-exchange that succeeds unless
        // another thread changed the count in between.
        let state = self.state();
        // Relaxed: only a guess for the compare-exchange, which does the ordering.
        let mut current = state.load(Ordering::Relaxed);
        loop {
            if guards(current) <= 1 && waiting(current) {
                // By invariant 3 the last guard must not release plainly while someone waits.
                return self.drop_maybe_last();
            }
            if current == GUARD {
                // The last owner of all (by invariant 2 nobody else can reach the block).
                // SAFETY: we own our unit and give it up here, once.
                return unsafe { release(self.block, GUARD) };
            }
            // Release: publishes the guarded work (pairs with Acquire in `guards`). Other
            // owners remain, so the block stays alive whatever happens after (invariant 2);
            // and if this was the last guard, nobody was waiting (invariant 4).
            match state.compare_exchange_weak(
                current,
                current - GUARD,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Gives up one `unit` and frees the block if it was the last owner.
///
/// # Safety
///
/// The caller owns one `unit` of the block and does not use the pointer afterwards.
unsafe fn release(block: NonNull<Block>, unit: u64) {
    // SAFETY: the caller owns a unit, so the block is alive until the subtraction below.
    let prev = unsafe { block.as_ref() }
        .state
        .fetch_sub(unit, Ordering::Release);
    if prev & !WAITING != unit {
        return;
    }
    // Acquire: every other owner's last use of the block happens-before it is freed (the
    // same fence `Arc` uses).
    fence(Ordering::Acquire);
    // SAFETY: the counts are zero, so by invariant 2 we are the only one left who can reach the
    // block; it was made by `Box::leak` in `HandleRef::new`.
    drop(unsafe { Box::from_raw(block.as_ptr()) });
}

#[cold]
fn overflow() -> ! {
    // Invariant 5: wrapping would free the block under live owners.
    std::process::abort()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_guards_and_handles_apart() {
        let handle = HandleRef::new();
        let other = handle.clone();
        let a = handle.guard();
        let b = other.guard();
        assert_eq!(handle.guards(), 2);
        drop(a);
        assert_eq!(other.guards(), 1);
        drop(handle);
        drop(other);
        // The guard alone keeps the block alive; miri reports a use after free if not.
        drop(b);
    }

    #[test]
    fn a_waiter_makes_the_last_guard_notify_and_still_free() {
        let handle = HandleRef::new();
        let guard = handle.guard();
        let listener = handle.listen();
        assert!(waiting(handle.block().state.load(Ordering::Relaxed)));
        drop(handle);
        drop(guard); // converts, notifies, frees: miri checks each step
        drop(listener);
    }

    #[test]
    fn last_guard_frees_the_block_when_handles_are_gone() {
        let handle = HandleRef::new();
        let guard = handle.guard();
        drop(handle);
        drop(guard); // miri reports a leak if the block is not freed here
    }
}

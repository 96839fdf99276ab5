//! Allocation behaviour, measured with a counting global allocator: guards never allocate,
//! and dropped child tokens are forgotten (memory stays flat).
//!
//! The allocator counts per thread, so the test harness's own threads do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use deputy_core::{CancellationToken, InFlight};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters are thread-local cells, which do not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() - layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

#[test]
fn taking_and_dropping_a_guard_does_not_allocate() {
    let in_flight = InFlight::new();
    let before = allocations();
    for _ in 0..10_000 {
        let guard = in_flight.guard();
        let other = in_flight.guard();
        drop(guard);
        drop(other);
    }
    assert_eq!(allocations() - before, 0);
}

#[test]
fn guard_counting_works_while_measured() {
    // The allocation test above would pass trivially if guards did nothing; check they count.
    let in_flight = InFlight::new();
    let guard = in_flight.guard();
    assert_eq!(in_flight.count(), 1);
    drop(guard);
    assert_eq!(in_flight.count(), 0);
}

#[test]
fn a_million_dropped_children_keep_memory_flat() {
    let root = CancellationToken::new();
    // Warm up: let the parent's child list reach its steady size.
    drop(root.child());
    let before = live_bytes();
    for _ in 0..1_000_000 {
        let child = root.child();
        drop(child.child());
    }
    let after = live_bytes();
    assert_eq!(after - before, 0, "memory grew by {} bytes", after - before);
    // And cancellation still reaches children made after all that.
    let late = root.child();
    root.cancel();
    assert!(late.is_cancelled());
}

#[test]
fn kept_children_do_use_memory() {
    // The flat-memory test is meaningful: keeping children does grow memory.
    let root = CancellationToken::new();
    let before = live_bytes();
    let kept: Vec<_> = (0..1000).map(|_| root.child()).collect();
    assert!(live_bytes() - before > 1000 * 32);
    drop(kept);
}

//! The algorithm behind [`CancellationToken`](super::CancellationToken): a tree in which each
//! token has a `Core` (its flag, waiters and children) and a `Link` (its place in its
//! parent's children list). Handles share the `Link`; parents hold their children's `Core`s.
//!
//! # Invariants
//!
//! 1. `cancelled` only ever goes from `false` to `true`, and exactly one `cancel` call performs
//!    that swap for a core; only that call notifies the core's waiters, so each waiter is
//!    woken at most once.
//! 2. `children.closed` is set, under the children lock, by the cancelling call after it has
//!    set `cancelled`; once set it is never cleared and no child is registered again.
//! 3. A child is registered, under the same lock, only while `closed` is false. So a child
//!    created concurrently with its parent's cancellation is either registered before the
//!    cancelling call takes the lock (and is cancelled by it) or created after (and sees
//!    `closed`, so it is born cancelled). No child of a cancelled core is ever left live.
//! 4. A child's `Link` owns its parent's `Link`, so a parent stays registered in the tree
//!    while any descendant lives, even after the parent's own handles are gone. A
//!    [`Cancelled`](super::Cancelled) future owns its token's `Link` like a handle does, so
//!    every cancel above it reaches it while it waits.
//! 5. When a token's last handle drops, its `Link` removes its core from the parent's list.
//!    So the list holds only live children and dropped children cost nothing, however many
//!    are created.
//! 6. No lock is held while a core's waiters are notified or while another core is locked:
//!    cancellation collects a core's children under its lock, releases it, then descends.
//! 7. A [`Cancelled`](super::Cancelled) future's waker sits in `children.wakers`, added and
//!    removed under the children lock only while `closed` is false. The cancelling call
//!    takes the whole list when it sets `closed`, and wakes its wakers after releasing the
//!    lock. So a waker registered before that is woken, none is registered after it, and a
//!    future's key always refers to the list it was put in.

use std::task::Waker;

use slab::Slab;

use crate::sync::{Arc, AtomicBool, Mutex, Ordering};

#[derive(Debug)]
pub(crate) struct Core {
    cancelled: AtomicBool,
    /// The waiters (invariant 7): one slot per pending `Cancelled` future (`wait_blocking`
    /// polls one too, with a waker that unparks its thread).
    children: Mutex<Children>,
}

#[derive(Debug, Default)]
struct Children {
    live: Slab<Arc<Core>>,
    /// The waiters (invariant 7), under the same lock: cancelling takes both at once.
    wakers: Wakers,
    closed: bool,
}

/// A token's place in the tree, shared by its handles.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) core: Arc<Core>,
    /// The parent's link and this core's key in the parent's `children` slab.
    parent: Option<(Arc<Link>, usize)>,
}

impl Core {
    fn new(cancelled: bool) -> Arc<Core> {
        Arc::new(Core {
            cancelled: AtomicBool::new(cancelled),
            children: Mutex::new(Children {
                live: Slab::new(),
                wakers: Wakers::default(),
                closed: cancelled,
            }),
        })
    }

    /// One atomic load.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `mark_cancelled`, so whatever the canceller
        // wrote before cancelling is visible to a caller that sees `true`.
        self.cancelled.load(Ordering::Acquire)
    }

    /// Registers (or refreshes) the waker in slot `key` (invariant 7); false if the core is
    /// cancelled, and then there is no slot.
    pub(crate) fn register(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        let mut children = self.children.lock();
        if children.closed {
            *key = None;
            return false;
        }
        let wakers = &mut children.wakers;
        match key.and_then(|k| wakers.get_mut(k)) {
            Some(registered) => registered.clone_from(waker),
            None => *key = Some(wakers.insert(waker.clone())),
        }
        true
    }

    /// Removes slot `key` (a future dropped before the cancellation); a no-op once the
    /// cancelling call has taken the slab (invariant 7).
    pub(crate) fn deregister(&self, key: usize) {
        let mut children = self.children.lock();
        if !children.closed {
            children.wakers.remove(key);
        }
    }

    /// Cancels this core and its subtree; returns whether this call did it.
    pub(crate) fn cancel(&self) -> bool {
        if !self.mark_cancelled() {
            return false;
        }
        // Iterative, so a deep tree cannot overflow the stack.
        let mut pending = self.close_children();
        while let Some(core) = pending.pop() {
            if core.mark_cancelled() {
                pending.extend(core.close_children());
            }
        }
        true
    }

    /// Sets the flag and wakes the waiters; true only for the one call that set it.
    fn mark_cancelled(&self) -> bool {
        // AcqRel: Release publishes the canceller's writes to `is_cancelled` readers; Acquire
        // orders this swap before the children lock taken next (invariant 2).
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return false;
        }
        true
    }

    /// Closes the children list (invariant 2), wakes the waiters with the lock released
    /// (invariants 6 and 7), and returns the live children. By invariant 1 this runs once
    /// per core, so every waiter is woken at most once.
    fn close_children(&self) -> Vec<Arc<Core>> {
        let mut children = self.children.lock();
        children.closed = true;
        let live = std::mem::take(&mut children.live);
        let mut wakers = std::mem::take(&mut children.wakers);
        drop(children);
        wakers.wake_all();
        if wakers.slots.capacity() > Wakers::FREE_LATER {
            // Freeing a large list unmaps its pages: leave that to the core's drop, off the
            // cancelling path (nothing registers in a closed core again).
            self.children.lock().wakers = wakers;
        }
        live.into_iter().map(|(_, core)| core).collect()
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn live_children(&self) -> usize {
        self.children.lock().live.len()
    }
}

/// The wakers of a core's pending futures: a slot each, reused through a free list. Plain
/// `Option<Waker>`s (16 bytes, where a slab entry takes 24), so waking 100,000 of them reads
/// a third less memory.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Wakers {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = Some(waker);
                key
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Waker> {
        self.slots.get_mut(key).and_then(Option::as_mut)
    }

    fn remove(&mut self, key: usize) {
        if self.slots.get_mut(key).and_then(Option::take).is_some() {
            self.free.push(key);
        }
    }

    /// Beyond this many slots, the list's memory is kept until the core drops.
    const FREE_LATER: usize = 4096;

    /// Wakes them all, in one pass over the slots, leaving the list empty.
    fn wake_all(&mut self) {
        for waker in self.slots.drain(..).flatten() {
            waker.wake();
        }
        self.free.clear();
    }
}

impl Link {
    pub(crate) fn new_root() -> Arc<Link> {
        Arc::new(Link {
            core: Core::new(false),
            parent: None,
        })
    }

    pub(crate) fn child(parent: &Arc<Link>) -> Arc<Link> {
        let mut children = parent.core.children.lock();
        if children.closed {
            // By invariant 3 the parent is cancelled and will never look at this list again:
            // the child is born cancelled and needs no place in it.
            return Arc::new(Link {
                core: Core::new(true),
                parent: None,
            });
        }
        let core = Core::new(false);
        let key = children.live.insert(core.clone());
        drop(children);
        Arc::new(Link {
            core,
            parent: Some((parent.clone(), key)),
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Iterative, so a deep chain cannot overflow the stack: by invariant 4 the last
        // handle of a leaf may release every ancestor at once, and a plain drop of the parent
        // `Arc` would recurse once per level.
        let mut next = self.parent.take();
        while let Some((parent, key)) = next {
            // Invariant 5. The slot is gone already if the parent was cancelled (it took the
            // whole list); a key is not reused before this removal, so `key` is still ours.
            parent.core.children.lock().live.try_remove(key);
            next = match Arc::try_unwrap(parent) {
                // That was the parent's last owner: unlink it here, one level up, and let
                // it drop with no parent left to recurse into.
                Ok(mut parent) => parent.parent.take(),
                // Someone else holds it: their drop does the rest.
                Err(_) => None,
            };
        }
    }
}

//! The algorithm behind [`CancellationToken`](super::CancellationToken): a tree of nodes in
//! which a parent knows its live children weakly and a child owns its parent.
//!
//! # Invariants
//!
//! 1. `cancelled` only ever goes from `false` to `true`, and exactly one `cancel` call performs
//!    that swap for a node; only that call notifies the node's waiters, so each waiter is
//!    woken at most once.
//! 2. `children.closed` is set, under the children lock, by the cancelling call after it has
//!    set `cancelled`; once set it is never cleared and no child is registered again.
//! 3. A child is registered, under the same lock, only while `closed` is false. So a child
//!    created concurrently with its parent's cancellation is either registered before the
//!    cancelling call takes the lock (and is cancelled by it) or created after (and sees
//!    `closed`, so it is born cancelled). No child of a cancelled node is ever left live.
//! 4. A parent holds its children as `Weak`; a child removes its own slot when its last handle
//!    drops. So the children list holds only live children and dropped children cost nothing,
//!    however many are created.
//! 5. No lock is held while a node's waiters are notified or while another node is locked:
//!    cancellation collects a node's children under its lock, releases it, then descends.

use std::sync::{Arc, Weak};

use event_listener::{Event, EventListener};
use slab::Slab;

use crate::sync::{AtomicBool, Mutex, Ordering};

#[derive(Debug)]
pub(crate) struct Node {
    cancelled: AtomicBool,
    event: Event,
    /// The parent and this node's key in the parent's `children` slab.
    parent: Option<(Arc<Node>, usize)>,
    children: Mutex<Children>,
}

#[derive(Debug, Default)]
struct Children {
    live: Slab<Weak<Node>>,
    closed: bool,
}

impl Node {
    pub(crate) fn new_root() -> Arc<Node> {
        Arc::new(Node::detached(false))
    }

    fn detached(cancelled: bool) -> Node {
        Node {
            cancelled: AtomicBool::new(cancelled),
            event: Event::new(),
            parent: None,
            children: Mutex::new(Children {
                live: Slab::new(),
                closed: cancelled,
            }),
        }
    }

    /// One atomic load.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        // Acquire: pairs with the AcqRel swap in `cancel`, so whatever the canceller wrote
        // before cancelling is visible to a caller that sees `true`.
        self.cancelled.load(Ordering::Acquire)
    }

    /// A listener for this node's cancellation. Callers re-check `is_cancelled` after
    /// creating it (invariant 1 notifies only listeners that exist at that moment).
    pub(crate) fn listen(&self) -> EventListener {
        self.event.listen()
    }

    pub(crate) fn child(parent: &Arc<Node>) -> Arc<Node> {
        let mut children = parent.children.lock();
        if children.closed {
            // By invariant 3 the parent is cancelled and will never look at this list again:
            // the child is born cancelled and needs no slot.
            return Arc::new(Node::detached(true));
        }
        let entry = children.live.vacant_entry();
        let key = entry.key();
        Arc::new_cyclic(|weak| {
            entry.insert(weak.clone());
            Node {
                cancelled: AtomicBool::new(false),
                event: Event::new(),
                parent: Some((parent.clone(), key)),
                children: Mutex::new(Children::default()),
            }
        })
    }

    /// Cancels this node and its subtree; returns whether this call did it.
    pub(crate) fn cancel(self: &Arc<Node>) -> bool {
        if !self.mark_cancelled() {
            return false;
        }
        // Iterative, so a deep tree cannot overflow the stack.
        let mut pending = self.close_children();
        while let Some(node) = pending.pop() {
            if node.mark_cancelled() {
                pending.extend(node.close_children());
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
        // By invariant 1 this runs once per node, so every listener is woken at most once.
        self.event.notify(usize::MAX);
        true
    }

    /// Closes the children list (invariant 2) and returns the live children, lock released.
    fn close_children(&self) -> Vec<Arc<Node>> {
        let mut children = self.children.lock();
        children.closed = true;
        let live = std::mem::take(&mut children.live);
        drop(children);
        live.into_iter()
            .filter_map(|(_, weak)| weak.upgrade())
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn live_children(&self) -> usize {
        self.children.lock().live.len()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((parent, key)) = &self.parent {
            // Invariant 4. The slot is gone already if the parent was cancelled (it took the
            // whole list); keys are not reused before this removal, so `key` is still ours.
            parent.children.lock().live.try_remove(*key);
        }
    }
}

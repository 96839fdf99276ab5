//! Named work in flight: which requests or jobs hold the drain open, and since when.
//!
//! Only named guards ([`Shutdown::guard_named`](crate::Shutdown::guard_named)) are recorded:
//! an atomic id, a lock (one of 16, by id) and a map entry each way, on top of the counter's
//! atomic operation. An unnamed
//! guard never touches this (its name slot is `None`: a branch on drop, no atomic).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Work in flight of one name: how many, and the age of the oldest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Straggler {
    /// The guards' name: `GET /export` (deputy-tokio's `DrainLayer`), a job's kind, a call
    /// site.
    pub name: String,
    /// How many of that name are in flight.
    pub count: usize,
    /// How long the oldest of them has been in flight.
    pub age: Duration,
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count > 1 {
            write!(
                f,
                "{} ×{} ({:.1}s)",
                self.name,
                self.count,
                self.age.as_secs_f64()
            )
        } else {
            write!(f, "{} ({:.1}s)", self.name, self.age.as_secs_f64())
        }
    }
}

/// How many locks the registry spreads its entries over: consecutive guards (concurrent
/// requests) take different ones.
const SHARDS: usize = 16;

type Entries = HashMap<u64, (Cow<'static, str>, Instant)>;

/// The named guards alive, by id, in shards by id.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    shards: [Mutex<Entries>; SHARDS],
}

/// A named guard's entry; removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Registry {
    pub(crate) fn register(
        self: &Arc<Self>,
        name: Cow<'static, str>,
        since: Instant,
    ) -> Registration {
        // Relaxed: only uniqueness matters.
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock(id).insert(id, (name, since));
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// The oldest named work in flight at `now`, by name, oldest first, at most `limit`
    /// names.
    pub(crate) fn oldest(&self, now: Instant, limit: usize) -> Vec<Straggler> {
        let mut by_name: HashMap<String, (usize, Instant)> = HashMap::new();
        for shard in 0..SHARDS as u64 {
            for (name, since) in self.lock(shard).values() {
                let entry = by_name.entry(name.to_string()).or_insert((0, *since));
                entry.0 += 1;
                entry.1 = entry.1.min(*since);
            }
        }
        let mut oldest: Vec<Straggler> = by_name
            .into_iter()
            .map(|(name, (count, since))| Straggler {
                name,
                count,
                age: now.saturating_duration_since(since),
            })
            .collect();
        oldest.sort_by(|a, b| b.age.cmp(&a.age).then_with(|| a.name.cmp(&b.name)));
        oldest.truncate(limit);
        oldest
    }

    /// The shard of entry `id`.
    fn lock(&self, id: u64) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding it leaves the map consistent (one insert or remove).
        self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock(self.id).remove(&self.id);
    }
}

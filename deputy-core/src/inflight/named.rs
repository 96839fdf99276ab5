//! Named work in flight: which requests, jobs and long-lived connections hold the drain
//! open, and since when.
//!
//! # Layout
//!
//! Every named guard of the process has a slot in one pool of shards, one shard per thread
//! that takes named guards (a thread's shard goes to the next thread when it ends), each
//! shard a list of pages that double in size and live as long as the process. So a slot never moves and never goes away, and a guard holds a plain
//! `&'static` reference to it: no reference count to bump, no lock, no unsafe code. A slot
//! says which coordinator's [`Registry`] it belongs to; a registry reads its own by
//! scanning the pool, which only `status()`, the report and metrics do.
//!
//! Taking a named guard is plain stores: claiming a free slot of the thread's own shard, and
//! its name, its time and its registry: the name's bytes are copied as they are, never
//! formatted, and joined into a `String` only where they are read. Dropping it is one
//! store. The time is the registry's clock, which the coordinator's task keeps to within
//! [`TICK`] while it runs, from the first named guard on, so that no guard reads the system
//! clock (BENCHMARKS.md: a read of it costs five unnamed guards); a coordinator without
//! named guards keeps no clock and never wakes for it.
//!
//! # Invariants
//!
//! 1. A slot's `state` is `generation << 2 | FREE, WRITING or LIVE`. Only the thread that owns
//!    a shard claims its slots (`FREE` to `WRITING`, the generation bumped, a store), but in
//!    the shared shard of threads being torn down, where a compare-exchange claims; only its
//!    claimer writes a slot's fields and then publishes it `LIVE` (a release store); only the
//!    guard that owns it frees it (`FREE`, same generation, a release store). So each slot
//!    has one writer at a time.
//! 2. A reader copies a slot's fields between two reads of `state` (acquire, then an acquire
//!    fence and a relaxed read); the copy counts only if both read the same `LIVE` value. A
//!    claimer fences (release) between its claim and its writes, so a reader that saw any
//!    of them sees the claim in its re-read; and a slot freed and claimed again has another
//!    generation. So a torn copy is never used (the loom models below).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use event_listener::Event;

use crate::runtime::Runtime;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

/// Work in flight of one name: how many, and the age of the oldest.
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let _export = shutdown.guard_request("GET", "/export");
/// let _other = shutdown.guard_request("GET", "/export");
/// let straggler = &shutdown.status().stragglers[0];
/// assert_eq!((straggler.name.as_str(), straggler.count), ("GET /export", 2));
/// assert_eq!(straggler.to_string(), "GET /export ×2 (0.0s)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Straggler {
    /// The guards' name: `GET /export` (deputy-tokio's `DrainLayer`), a job's kind, a call
    /// site, `connection` (or the name given to a long-lived connection).
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

/// How often the coordinator's task stores the time in its registry's clock while it runs:
/// a named guard's age is at most this much too old.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Bytes of a name kept; a longer name is cut (at a character's boundary) and read with `…`
/// at its end.
pub(crate) const NAME_BYTES: usize = 56;
const NAME_WORDS: usize = NAME_BYTES / 8;

/// Slots in a shard's first page; page `k` has `FIRST_SLOTS << k`.
const FIRST_SLOTS: usize = 8;
/// Pages a shard can have: room for 8 × (2^24 − 1) named guards at once in each.
const PAGES: usize = 24;

const FREE: u64 = 0;
const WRITING: u64 = 1;
const LIVE: u64 = 2;
const STATUS: u64 = 0b11;
const GENERATION: u64 = 0b100;

/// One named guard's place in the pool (invariant 1). Aligned so that slots of two shards
/// (two threads) share no cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Slot {
    state: AtomicU64,
    /// The [`Registry`] it belongs to.
    registry: AtomicU64,
    /// When it was taken: nanoseconds since its registry's `base`.
    since: AtomicU64,
    /// The name's length in bytes, and whether it was cut.
    len: AtomicU64,
    name: [AtomicU64; NAME_WORDS],
}

/// A shard: its pages, made when first needed, and where to look for a free slot first.
/// Aligned so that one thread's hint and the next shard's pages share no cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    pages: [OnceLock<Box<[Slot]>>; PAGES],
    /// The flat index of the slot freed last (or claimed last, plus one).
    hint: AtomicUsize,
}

/// Every shard made, for readers. A shard is made when a thread takes its first named guard
/// and no shard is free, and lives as long as the process.
static SHARDS: std::sync::Mutex<Vec<&'static Shard>> = std::sync::Mutex::new(Vec::new());
/// The shards of threads that ended, for the next threads.
static GIVEN_BACK: std::sync::Mutex<Vec<&'static Shard>> = std::sync::Mutex::new(Vec::new());
/// The shard of threads being torn down (their own given back): claimed with a
/// compare-exchange, since several may use it at once.
static SHARED: OnceLock<&'static Shard> = OnceLock::new();

std::thread_local! {
    /// This thread's own shard, once it has one (a constant start: reading it costs no check
    /// of whether it was made).
    static MINE: std::cell::Cell<Option<&'static Shard>> = const { std::cell::Cell::new(None) };
    /// Gives this thread's shard back when the thread ends.
    static OWNER: Owner = const { Owner(std::cell::Cell::new(None)) };
}

struct Owner(std::cell::Cell<Option<&'static Shard>>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(shard) = self.0.take() {
            let _ = MINE.try_with(|mine| mine.set(None));
            lock(&GIVEN_BACK).push(shard);
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A push or a pop cannot leave the list half changed.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn new_shard() -> &'static Shard {
    let shard: &'static Shard = Box::leak(Box::new(Shard {
        pages: std::array::from_fn(|_| OnceLock::new()),
        hint: AtomicUsize::new(0),
    }));
    lock(&SHARDS).push(shard);
    shard
}

/// This thread's shard, and whether it is its own (claimed without a compare-exchange:
/// invariant 1).
#[inline(always)]
fn my_shard() -> (&'static Shard, bool) {
    match MINE.try_with(std::cell::Cell::get) {
        Ok(Some(shard)) => (shard, true),
        _ => adopt_shard(),
    }
}

/// A shard for this thread: a free one or a new one, given back when the thread ends; the
/// shared one for a thread being torn down.
#[cold]
fn adopt_shard() -> (&'static Shard, bool) {
    let shared = || (*SHARED.get_or_init(new_shard), false);
    if MINE.try_with(|_| ()).is_err() {
        return shared();
    }
    let shard = lock(&GIVEN_BACK).pop().unwrap_or_else(new_shard);
    match OWNER.try_with(|owner| owner.0.set(Some(shard))) {
        Ok(()) => {
            MINE.with(|mine| mine.set(Some(shard)));
            (shard, true)
        }
        Err(_) => {
            lock(&GIVEN_BACK).push(shard);
            shared()
        }
    }
}

/// Every shard made so far.
fn shards() -> Vec<&'static Shard> {
    lock(&SHARDS).clone()
}

/// The page and the index in it of the flat index `i` (pages of 8, 16, 32, ...).
#[inline]
fn locate(i: usize) -> (usize, usize) {
    let page = (usize::BITS - (i / FIRST_SLOTS + 1).leading_zeros() - 1) as usize;
    (page, i - FIRST_SLOTS * ((1 << page) - 1))
}

impl Shard {
    #[inline]
    fn slot(&self, i: usize) -> Option<&Slot> {
        let (page, index) = locate(i);
        self.pages.get(page)?.get()?.get(index)
    }

    /// Claims a free slot: first the hint's, then the first free one, adding a page when all
    /// are taken. Its state, `WRITING`, is returned with it.
    #[inline(always)]
    fn claim(&'static self, own: bool) -> (&'static Slot, usize, u64) {
        let hint = self.hint.load(Ordering::Relaxed);
        if let Some(slot) = self.slot(hint) {
            if let Some(state) = slot.try_claim(own) {
                self.hint.store(hint + 1, Ordering::Relaxed);
                return (slot, hint, state);
            }
        }
        self.claim_slow(own)
    }

    #[cold]
    fn claim_slow(&'static self, own: bool) -> (&'static Slot, usize, u64) {
        let mut flat = 0;
        for (k, page) in self.pages.iter().enumerate() {
            let page =
                page.get_or_init(|| (0..FIRST_SLOTS << k).map(|_| Slot::default()).collect());
            for slot in page.iter() {
                if let Some(state) = slot.try_claim(own) {
                    self.hint.store(flat + 1, Ordering::Relaxed);
                    return (slot, flat, state);
                }
                flat += 1;
            }
        }
        panic!("more than {} named guards in flight at once", flat);
    }

    /// Every slot made so far.
    fn each_slot(&self) -> impl Iterator<Item = &Slot> {
        self.pages
            .iter()
            .map_while(OnceLock::get)
            .flat_map(|page| page.iter())
    }
}

impl Slot {
    /// Invariant 1: `FREE` to `WRITING`, with the next generation.
    #[inline(always)]
    fn try_claim(&self, own: bool) -> Option<u64> {
        // Acquire: the free happens-before our writes.
        let current = self.state.load(Ordering::Acquire);
        if current & STATUS != FREE {
            return None;
        }
        let writing = current + GENERATION + WRITING;
        if own {
            // Invariant 1: only this thread claims in its own shard, and nobody else
            // writes a free slot: a plain store.
            self.state.store(writing, Ordering::Relaxed);
        } else {
            self.state
                .compare_exchange(current, writing, Ordering::Acquire, Ordering::Relaxed)
                .ok()?;
        }
        // Invariant 2: a reader that sees any of the writes that follow, and then fences,
        // sees `WRITING` (or later) in its re-read (free on x86: a compiler barrier).
        fence(Ordering::Release);
        Some(writing)
    }

    #[inline(always)]
    fn write(&self, state: u64, registry: u64, since: u64, name: Name<'_>) {
        // Relaxed: published by the release store of `LIVE` (invariant 2).
        self.registry.store(registry, Ordering::Relaxed);
        self.since.store(since, Ordering::Relaxed);
        let (first, first_len) = name.fit(name.first, NAME_WORDS);
        let first_words = first.len().div_ceil(8);
        let (second, second_len) = name.fit(name.second, NAME_WORDS - first_words);
        copy_words(first, &self.name[..first_words]);
        copy_words(second, &self.name[first_words..]);
        let sep = u64::from(name.separator);
        self.len
            .store(first_len | second_len << 16 | sep << 32, Ordering::Relaxed);
        self.state.store(state - WRITING + LIVE, Ordering::Release);
    }

    /// A copy of the slot if it is live and `registry`'s (invariant 2).
    fn read(&self, registry: u64) -> Option<(String, u64)> {
        let before = self.state.load(Ordering::Acquire);
        if before & STATUS != LIVE || self.registry.load(Ordering::Relaxed) != registry {
            return None;
        }
        let since = self.since.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        let mut bytes = [0u8; NAME_BYTES];
        for (word, out) in self.name.iter().zip(bytes.chunks_exact_mut(8)) {
            out.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        fence(Ordering::Acquire);
        if self.state.load(Ordering::Relaxed) != before {
            return None;
        }
        Some((read_name(&bytes, len), since))
    }
}

/// Copies `part` into `words`, eight bytes a word (the last one padded with zeros), straight
/// from the string: no buffer in between, which would cost a stall where its bytes are
/// read back as words.
#[inline(always)]
fn copy_words(part: &[u8], words: &[AtomicU64]) {
    let mut chunks = part.chunks_exact(8);
    let mut words = words.iter();
    for (chunk, word) in chunks.by_ref().zip(words.by_ref()) {
        let bytes: [u8; 8] = chunk.try_into().unwrap_or_default();
        word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    }
    let tail = chunks.remainder();
    if let (false, Some(word)) = (tail.is_empty(), words.next()) {
        let mut value = 0u64;
        for (i, byte) in tail.iter().enumerate() {
            value |= u64::from(*byte) << (8 * i);
        }
        word.store(value, Ordering::Relaxed);
    }
}

/// The name a slot's bytes and lengths spell (`len`: the first part's length and whether it
/// was cut, the second's, the separator), cut parts ending in `…`.
fn read_name(bytes: &[u8; NAME_BYTES], len: u64) -> String {
    let part = |at: usize, len: u64| {
        let n = (len & LEN) as usize;
        let mut text = String::from_utf8_lossy(&bytes[at..(at + n).min(NAME_BYTES)]).into_owned();
        if len & CUT != 0 {
            text.push('…');
        }
        text
    };
    let (first, second, sep) = (len & 0xffff, len >> 16 & 0xffff, (len >> 32) as u8);
    let mut name = part(0, first);
    if sep != 0 {
        name.push(char::from(sep));
        let at = ((first & LEN) as usize).div_ceil(8) * 8;
        name.push_str(&part(at, second));
    }
    name
}

/// A name as a guard gives it: one part, or two and the separator between them (`GET`,
/// `' '`, `/export`), each copied into its slot as it is; up to [`NAME_BYTES`] in all.
#[derive(Clone, Copy)]
pub(crate) struct Name<'a> {
    first: &'a str,
    separator: u8,
    second: &'a str,
}

/// A part's length, in its 16 bits of a slot's `len`.
const LEN: u64 = 0x7fff;
/// Set in a part's 16 bits when it was cut.
const CUT: u64 = 0x8000;

impl<'a> Name<'a> {
    #[inline]
    pub(crate) fn new(name: &'a str) -> Self {
        Self {
            first: name,
            separator: 0,
            second: "",
        }
    }

    /// `first`, `separator` (ASCII), `second`.
    #[inline]
    pub(crate) fn joined(first: &'a str, separator: u8, second: &'a str) -> Self {
        Self {
            first,
            separator,
            second,
        }
    }

    /// As much of `part` as `words` hold, cut at a character's boundary, and its length
    /// with [`CUT`] if it was cut.
    #[inline(always)]
    fn fit(self, part: &'a str, words: usize) -> (&'a [u8], u64) {
        if part.len() <= words * 8 {
            return (part.as_bytes(), part.len() as u64);
        }
        let mut take = words * 8;
        while !part.is_char_boundary(take) {
            take -= 1;
        }
        (&part.as_bytes()[..take], take as u64 | CUT)
    }
}

/// One coordinator's named work: its id in the pool, and its clock.
#[derive(Debug)]
pub(crate) struct Registry {
    id: u64,
    /// The instant the clock counts from.
    base: Instant,
    /// Nanoseconds from `base`, stored by [`keep_time`](Self::keep_time) every [`TICK`].
    clock: AtomicU64,
    /// Whether `clock` is being kept (otherwise guards read the runtime's clock).
    ticking: AtomicBool,
    /// Set by the first named guard: the clock is kept only for a coordinator that has them
    /// (one that has none, `deputy run`'s, does not wake ten times a second for nothing).
    wanted: AtomicBool,
    /// Wakes [`keep_time`](Self::keep_time) when `wanted` is set.
    start: Event,
}

/// A named guard's slot; freed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: &'static Slot,
    /// The slot's `WRITING` state, as claimed: `LIVE` and `FREE` are made from it.
    state: u64,
    shard: &'static Shard,
    flat: usize,
}

impl Registry {
    pub(crate) fn new(runtime: &dyn Runtime) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            base: runtime.now(),
            clock: AtomicU64::new(0),
            ticking: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            start: Event::new(),
        }
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Records `name` as in flight from now.
    #[inline(always)]
    pub(crate) fn register(&self, name: Name<'_>, runtime: &dyn Runtime) -> Registration {
        // Acquire: pairs with the store of `ticking` after the first time was stored.
        let since = if self.ticking.load(Ordering::Acquire) {
            // Relaxed: a time, at most a tick old; nothing else depends on it.
            self.clock.load(Ordering::Relaxed)
        } else {
            self.want_time();
            self.nanos(runtime.now())
        };
        let (shard, own) = my_shard();
        let (slot, flat, state) = shard.claim(own);
        slot.write(state, self.id, since, name);
        Registration {
            slot,
            state,
            shard,
            flat,
        }
    }

    /// The first named guards (until the clock is kept): asks for the clock, once.
    #[cold]
    fn want_time(&self) {
        // Relaxed load: a guess; the swap decides who notifies. Release: pairs with the
        // Acquire in `keep_time`.
        if !self.wanted.load(Ordering::Relaxed) && !self.wanted.swap(true, Ordering::Release) {
            self.start.notify(usize::MAX);
        }
    }

    /// Keeps this registry's clock, once a named guard wants it (before that it sleeps,
    /// costing nothing), so that named guards need not read the system's: never resolves;
    /// dropping it stops the keeping.
    pub(crate) async fn keep_time(&self, runtime: &dyn Runtime) -> std::convert::Infallible {
        // Acquire: pairs with `want_time`. The listener is made before the re-check, so a
        // notification in between is not lost.
        while !self.wanted.load(Ordering::Acquire) {
            let listener = self.start.listen();
            if self.wanted.load(Ordering::Acquire) {
                break;
            }
            listener.await;
        }
        struct Ticking<'a>(&'a AtomicBool);
        impl Drop for Ticking<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let mut now = runtime.now();
        self.clock.store(self.nanos(now), Ordering::Relaxed);
        self.ticking.store(true, Ordering::Release);
        let _ticking = Ticking(&self.ticking);
        loop {
            runtime.sleep_until(now + TICK).await;
            now = runtime.now();
            self.clock.store(self.nanos(now), Ordering::Relaxed);
        }
    }

    /// The oldest named work in flight at `now`, by name, oldest first, at most `limit`
    /// names.
    pub(crate) fn oldest(&self, now: Instant, limit: usize) -> Vec<Straggler> {
        let now = self.nanos(now);
        let mut by_name: HashMap<String, (usize, u64)> = HashMap::new();
        for slot in shards().into_iter().flat_map(Shard::each_slot) {
            if let Some((name, since)) = slot.read(self.id) {
                let entry = by_name.entry(name).or_insert((0, since));
                entry.0 += 1;
                entry.1 = entry.1.min(since);
            }
        }
        let mut oldest: Vec<Straggler> = by_name
            .into_iter()
            .map(|(name, (count, since))| Straggler {
                name,
                count,
                age: Duration::from_nanos(now.saturating_sub(since)),
            })
            .collect();
        oldest.sort_by(|a, b| b.age.cmp(&a.age).then_with(|| a.name.cmp(&b.name)));
        oldest.truncate(limit);
        oldest
    }
}

impl Drop for Registration {
    #[inline]
    fn drop(&mut self) {
        // Invariant 1: same generation, `FREE`. Release: our writes happen-before the next
        // claim, and a reader's re-read sees the slot changed.
        self.slot
            .state
            .store(self.state - WRITING + FREE, Ordering::Release);
        // Relaxed: only where the next claim in this shard looks first.
        if self.shard.hint.load(Ordering::Relaxed) != self.flat {
            self.shard.hint.store(self.flat, Ordering::Relaxed);
        }
    }
}

/// Loom models of a slot: run with `RUSTFLAGS="--cfg loom" cargo test -p deputy-core --lib
/// --release loom_models`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    fn take(slot: &Slot, name: &str, since: u64) -> u64 {
        let state = slot.try_claim(false).expect("the slot is free");
        slot.write(state, 1, since, Name::new(name));
        state
    }

    /// By invariants 1 and 2: a reader racing the slot's free and its next claim sees the
    /// first name, the second, or nothing; never half of each.
    #[test]
    fn a_read_racing_a_reuse_never_mixes_two_names() {
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let first = take(&slot, "AAAAAAAAAAAAAAAA", 1);
            let reader = {
                let slot = slot.clone();
                thread::spawn(move || slot.read(1))
            };
            slot.state.store(first - WRITING + FREE, Ordering::Release);
            take(&slot, "BBBBBBBBBBBBBBBB", 2);
            match reader.join().unwrap() {
                None => {}
                Some((name, 1)) => assert_eq!(name, "AAAAAAAAAAAAAAAA"),
                Some((name, 2)) => assert_eq!(name, "BBBBBBBBBBBBBBBB"),
                other => panic!("a torn read: {other:?}"),
            }
        });
    }

    /// By invariant 1: two threads claiming one free slot of the shared shard: one gets it.
    #[test]
    fn two_claims_of_one_slot_give_it_to_one() {
        loom::model(|| {
            let slot = Arc::new(Slot::default());
            let other = {
                let slot = slot.clone();
                thread::spawn(move || slot.try_claim(false).is_some())
            };
            let mine = slot.try_claim(false).is_some();
            assert!(mine ^ other.join().unwrap());
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::runtime::Runtime;

    fn slot_with(name: Name<'_>) -> String {
        let slot = Slot::default();
        let state = slot.try_claim(false).unwrap();
        slot.write(state, 7, 0, name);
        slot.read(7).unwrap().0
    }

    #[test]
    fn names_are_read_back_as_given() {
        assert_eq!(slot_with(Name::new("resize")), "resize");
        assert_eq!(
            slot_with(Name::joined("GET", b' ', "/export")),
            "GET /export"
        );
        assert_eq!(
            slot_with(Name::joined("src/a.rs", b':', "42")),
            "src/a.rs:42"
        );
        assert_eq!(slot_with(Name::new("")), "");
        assert_eq!(slot_with(Name::joined("", b' ', "/")), " /");
    }

    #[test]
    fn long_names_are_cut_at_a_character_and_say_so() {
        let long = "é".repeat(40); // 80 bytes
        let read = slot_with(Name::new(&long));
        assert_eq!(read, format!("{}…", "é".repeat(28)));
        let path = format!("/{}", "x".repeat(100));
        let read = slot_with(Name::joined("DELETE", b' ', &path));
        // "DELETE" takes one word; the path the other six.
        assert_eq!(read, format!("DELETE {}…", &path[..48]));
        let read = slot_with(Name::joined(&"y".repeat(60), b' ', "/z"));
        assert_eq!(read, format!("{}… …", "y".repeat(56)));
    }

    #[test]
    fn a_slot_of_another_registry_or_freed_is_not_read() {
        let slot = Slot::default();
        let state = slot.try_claim(false).unwrap();
        slot.write(state, 7, 0, Name::new("x"));
        assert!(slot.read(8).is_none());
        slot.state.store(state - WRITING + FREE, Ordering::Release);
        assert!(slot.read(7).is_none());
        assert!(
            slot.try_claim(false).is_some(),
            "a freed slot is claimed again"
        );
    }

    /// A thread's shard goes to the next thread when it ends: threads that come and go
    /// (a blocking pool's) do not make a shard each.
    #[test]
    fn shards_of_threads_that_ended_are_used_again() {
        let registry = std::sync::Arc::new(Registry::new(&crate::ManualClock::new()));
        let before = shards().len();
        for _ in 0..50 {
            let registry = registry.clone();
            std::thread::spawn(move || {
                let runtime = crate::ManualClock::new();
                drop(registry.register(Name::new("job"), &runtime));
            })
            .join()
            .unwrap();
        }
        // Other tests' threads run meanwhile and may make a few.
        let made = shards().len() - before;
        assert!(
            made < 10,
            "{made} shards made for 50 threads one after another"
        );
    }

    /// A named guard taken while its thread is torn down (from another thread-local's
    /// destructor, once the thread's shard is given back) is recorded too, in the shared
    /// shard.
    #[test]
    fn a_guard_taken_while_its_thread_ends_is_recorded() {
        struct Late(std::sync::Arc<Registry>, std::sync::mpsc::Sender<usize>);
        impl Drop for Late {
            fn drop(&mut self) {
                let runtime = crate::ManualClock::new();
                let guard = self.0.register(Name::new("late"), &runtime);
                let seen = self.0.oldest(runtime.now(), 5).len();
                drop(guard);
                let _ = self.1.send(seen);
            }
        }
        std::thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let registry = std::sync::Arc::new(Registry::new(&crate::ManualClock::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let in_thread = registry.clone();
        std::thread::spawn(move || {
            let runtime = crate::ManualClock::new();
            // `LATE` first, then the shard: thread-locals are torn down in the reverse order,
            // so the shard is given back before `LATE`'s destructor takes its guard.
            let early = in_thread.clone();
            LATE.with(|late| *late.borrow_mut() = Some(Late(in_thread, tx)));
            drop(early.register(Name::new("early"), &runtime));
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
    }

    #[test]
    fn flat_indexes_map_to_pages_of_doubling_size() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(7), (0, 7));
        assert_eq!(locate(8), (1, 0));
        assert_eq!(locate(23), (1, 15));
        assert_eq!(locate(24), (2, 0));
    }
}

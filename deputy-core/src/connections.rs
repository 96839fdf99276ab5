//! Long-lived connections (WebSockets, server-sent events, streaming calls, a game's session):
//! registered, told to move to another backend (spread over the disconnect window, so that
//! their reconnections reach the other pods at a steady rate), and told to close at once
//! when the drain timeout ends.
//!
//! # Layout
//!
//! The registry lives in the in-flight counter's block (`inflight::counter`). Each slot is
//! four bits of an atomic word (15 slots a word): `OPEN`, `MOVE`, `CLOSE`, and `WAKER` (a
//! waker is stored in the slot's cell). The word's top bits say whether it holds a guard
//! unit of the block (`HELD`), whether it gives it back as soon as it empties (`UNSTUCK`),
//! and whether a slot taken in it is told at once to move (`WORD_MOVE`) or to close
//! (`WORD_CLOSE`). A [`Connection`] owns no unit and no reference count: its open slot keeps
//! its word's unit, and so the block, alive. While nobody waits for the drain, a word keeps
//! its unit when it empties, so registering is one compare-exchange on the word and
//! dropping one subtraction (which clears the slot's `OPEN` bit and reads nothing first):
//! two read-modify-writes in all, as for a guard, and no lock.
//!
//! Words are in 16 shards (each thread's by where its stack is, so two threads registering
//! at once touch different cache lines; under loom, the first shard always).
//! A shard's words are in pages that double in size and are never freed before the
//! registry, so a slot never moves. A registration looks for a free slot from the shard's
//! hint (the word of the last slot freed, or found free), round the shard's pages once,
//! and adds a page only if all are full: a shard holds at most twice the most connections
//! it ever had at once. Only the first try, in the hint's word, is inlined where a
//! connection registers; the rest is out of line, so that the common path keeps its values
//! in registers (BENCHMARKS.md: spilled to the stack, they cost 1.5-2 ns more).
//!
//! # Invariants
//!
//! 1. A word with an open slot holds a guard unit (`HELD`, or, once `UNSTUCK`, its open
//!    slots hold it together: invariant 6): a registration sets `OPEN` only in a word that
//!    holds one, or hands the word a unit it took (setting `HELD` unless `UNSTUCK`); a word
//!    gives its unit up only in the read-modify-write that leaves it with no open slot. So
//!    a connection reaches the block (through [`BlockPtr`]) only while its word holds a
//!    unit, and counts as in flight until it is dropped. Only its `Connection` clears its
//!    slot's `OPEN` bit, on drop, after taking the slot's waker, and touches nothing after
//!    that read-modify-write unless it took the word's unit. A free slot's other bits may
//!    be its last owner's: the next registration clears them, and everyone else reads a
//!    slot's bits only while its `OPEN` bit is set.
//! 2. A slot's notice only moves forward: none, then `MOVE` ([`Notice::Move`]), then
//!    `CLOSE` ([`Notice::Close`]), each set by a read-modify-write of the word; whoever
//!    sets a bit counts it (`notified` for `MOVE`; `cut`, and `cut_after_notice` if `MOVE`
//!    was set, for `CLOSE`). Handing out a notice allocates nothing.
//! 3. A phase bit ([`MOVING`], [`CLOSING`], [`UNSTICKING`]) is set once, then every word
//!    is swept: a read-modify-write that marks it (`WORD_MOVE`, `WORD_CLOSE`, `UNSTUCK`),
//!    and tells its open slots to close (the cut) or gives its unit back (unsticking). A
//!    registration is a read-modify-write of its word too, so it comes either before the
//!    sweep (which tells it then, or over the window for the move) or after, and finds the
//!    mark: its notice comes with its slot. Nothing on the registration's path reads the
//!    phase; only a registration that adds a page does, after publishing it, with a
//!    `SeqCst` fence paired with the sweep's: the sweep counts the page, or the page is
//!    brought up to the phase by whoever made it (or both: bits are set once).
//! 4. Waking: a poll stores its waker in the slot's cell under the cell's lock, and sets
//!    `WAKER` (or re-reads the word) before unlocking; a notice sets its bit, then takes the
//!    waker under the same lock if `WAKER` was set. By the word's order and the lock's, the
//!    poll either sees the notice or its waker is taken and woken.
//! 5. Each connection told to move is counted once in the report: gone before the cut
//!    (`moved`, which is `notified` less `cut_after_notice`) or still there at the cut.
//! 6. Once someone waits for the drain, or the counter's last handle is dropped,
//!    [`UNSTICKING`] is set and every word is swept: each is marked `UNSTUCK` and loses
//!    `HELD`, as is every page made later (invariant 3); an empty word gives its unit back
//!    then, and the unit of one with open slots becomes theirs. The drop that empties an
//!    `UNSTUCK` word gives its unit back (it sees so in the value its subtraction returns),
//!    and a registration in an empty `UNSTUCK` word brings a unit of its own. So the drain
//!    ends when the last connection does, and the block is freed once the last owner of
//!    all is gone.

// The words hold guard units of the counter's block, and a connection reaches the block
// through a bare `BlockPtr`: each unsafe block is reviewed against invariants 1 and 6, and
// checked by the loom models below and by miri (`cargo +nightly miri test -p deputy-core`).
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::inflight::{BlockPtr, GuardRef, HandleRef};
use crate::runtime::Runtime;
use crate::sync::{AtomicU8, AtomicU64, AtomicUsize, Mutex, Ordering, fence};

/// What a long-lived connection is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Notice {
    /// Time to move: tell the client to reconnect elsewhere (a WebSocket close frame with
    /// 1001, an SSE event with a `retry:` hint, a game's "switch server" message), let it
    /// finish, and end.
    Move,
    /// The drain is over: close now.
    Close,
}

// The phase: bits that are set once, and never cleared (invariant 3).
/// The disconnect window: notices are handed out, and new connections get one at once.
pub(crate) const MOVING: u8 = 1;
/// The drain is over: every connection is told to close.
pub(crate) const CLOSING: u8 = 2;
/// Someone waits for the drain: words give their units back as they empty (invariant 6).
pub(crate) const UNSTICKING: u8 = 4;

#[cfg(not(loom))]
const SHARDS: usize = 16;
/// Words in a shard's first page; page `k` has `FIRST_WORDS << k`.
#[cfg(not(loom))]
const FIRST_WORDS: usize = 4;
// Under loom, smaller: every object is modelled.
#[cfg(loom)]
const SHARDS: usize = 2;
#[cfg(loom)]
const FIRST_WORDS: usize = 1;
/// Pages a shard can have: room for 16 × 4 × (2^26 − 1) slots in each shard.
const PAGES: usize = 26;
/// Slots in one word, four bits each; the top four bits are the word's own.
const SLOTS_PER_WORD: u32 = 15;

// A slot's four bits (invariant 1, 2 and 4), shifted to their slot's place in the word.
const OPEN: u64 = 0b0001;
const MOVE: u64 = 0b0010;
const CLOSE: u64 = 0b0100;
const WAKER: u64 = 0b1000;
/// The `OPEN` bit of every slot in a word.
const OPEN_BITS: u64 = 0x0111_1111_1111_1111;
/// The word's own four bits, above its slots'.
const WORD_BITS: u64 = 0b1111 << 60;
/// The word holds a guard unit of the block (invariant 1).
const HELD: u64 = 1 << 60;
/// The word gives its unit back as soon as it empties (invariant 6).
const UNSTUCK: u64 = 1 << 61;
/// The window has begun: a slot taken in this word is told to move at once (invariant 3).
const WORD_MOVE: u64 = 1 << 62;
/// The drain is over: a slot taken in this word is told to close at once (invariant 3).
const WORD_CLOSE: u64 = 1 << 63;

#[inline]
fn shift(slot: u32) -> u32 {
    slot * 4
}

/// A slot's notice, from its bits (unshifted).
#[inline]
fn notice_of(bits: u64) -> Option<Notice> {
    if bits & CLOSE != 0 {
        Some(Notice::Close)
    } else if bits & MOVE != 0 {
        Some(Notice::Move)
    } else {
        None
    }
}

/// The `OPEN` bit of a word's first free slot, or 0 if it is full.
#[inline]
fn first_free(word: u64) -> u64 {
    let free = !word & OPEN_BITS;
    free & free.wrapping_neg()
}

/// A slot's index, from its `OPEN` bit.
#[inline]
fn slot_of(open: u64) -> u32 {
    open.trailing_zeros() / 4
}

/// A word with the free slot whose `OPEN` bit is `open` taken: that bit set, and the
/// slot's other three bits, which may be its last owner's (invariant 1), cleared.
#[inline]
fn taken(word: u64, open: u64) -> u64 {
    // `open << 1` to `open << 3`: `MOVE`, `CLOSE` and `WAKER` of the slot.
    word & !(open << 4).wrapping_sub(open << 1) | open
}

/// Whether a word holds a guard unit (invariant 1): by its `HELD` bit until it is
/// `UNSTUCK`, and from then on while a slot is open.
#[inline]
fn holds_unit(word: u64) -> bool {
    if word & UNSTUCK == 0 {
        word & HELD != 0
    } else {
        word & OPEN_BITS != 0
    }
}

/// The page of a flat word index in a shard, and the word's index in it.
#[inline]
fn locate(flat: usize) -> (usize, usize) {
    let page = (usize::BITS - 1 - (flat / FIRST_WORDS + 1).leading_zeros()) as usize;
    (page, flat - first_word(page))
}

/// The flat index of a page's first word.
#[inline]
fn first_word(page: usize) -> usize {
    FIRST_WORDS * ((1 << page) - 1)
}

/// A slot's waker cell (invariant 4).
type Cell = Mutex<Option<Waker>>;

fn cells(words: usize) -> Box<[Cell]> {
    (0..words * SLOTS_PER_WORD as usize)
        .map(|_| Mutex::new(None))
        .collect()
}

/// One page of a shard after the first: its words, and a waker cell for each slot.
#[derive(Debug)]
struct Page {
    words: Box<[AtomicU64]>,
    cells: Box<[Cell]>,
}

impl Page {
    // Under loom, pages past the first are never made (`PageCell::get_or_init`).
    #[cfg_attr(loom, allow(dead_code))]
    fn new(words: usize) -> Self {
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            cells: cells(words),
        }
    }
}

/// A page made once, on first use. Under loom, which has no `OnceLock`, the models stay
/// within each shard's first page.
#[derive(Debug)]
struct PageCell {
    #[cfg(not(loom))]
    page: std::sync::OnceLock<Page>,
}

impl PageCell {
    fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            page: std::sync::OnceLock::new(),
        }
    }

    #[inline]
    fn get(&self) -> Option<&Page> {
        #[cfg(not(loom))]
        return self.page.get();
        #[cfg(loom)]
        None
    }

    #[inline]
    fn get_or_init(&self, words: usize) -> &Page {
        #[cfg(not(loom))]
        return self.page.get_or_init(|| Page::new(words));
        #[cfg(loom)]
        {
            let _ = words;
            panic!("loom models stay within each shard's first page")
        }
    }
}

/// One shard's pages, on cache lines of their own: registrations on two threads go to two
/// shards, and must not contend for the line between them either. The first page's words
/// are in the shard itself: a registration there reads no page's address first.
#[derive(Debug)]
#[repr(align(128))]
struct Shard {
    /// Words in the pages made so far (published after each page is made).
    words: AtomicUsize,
    /// Where a registration looks first: the last word found with a free slot, by a
    /// registration's search or by a drop (which frees one there).
    hint: AtomicUsize,
    first_words: [AtomicU64; FIRST_WORDS],
    first_cells: Box<[Cell]>,
    /// Page `k`, for `k` from 1 (`pages[0]` is never made).
    pages: [PageCell; PAGES],
}

impl Shard {
    fn new() -> Self {
        Self {
            words: AtomicUsize::new(FIRST_WORDS),
            hint: AtomicUsize::new(0),
            first_words: std::array::from_fn(|_| AtomicU64::new(0)),
            first_cells: cells(FIRST_WORDS),
            pages: std::array::from_fn(|_| PageCell::new()),
        }
    }

    /// Where the word at a flat index below `words` is.
    #[inline]
    fn place(&self, flat: usize) -> Place<'_> {
        let (page_index, index) = locate(flat);
        self.made(page_index, index)
            .expect("a flat index below `words` is in a page made")
    }

    /// A page's words and waker cells, if the page is made (the first is in the shard).
    #[inline]
    fn page(&self, page_index: usize) -> Option<(&[AtomicU64], &[Cell])> {
        if page_index == 0 {
            Some((&self.first_words, &self.first_cells))
        } else {
            let page = self.pages.get(page_index)?.get()?;
            Some((&page.words, &page.cells))
        }
    }

    /// Where a page's word is, if the page is made.
    #[inline]
    fn made(&self, page_index: usize, index: usize) -> Option<Place<'_>> {
        Some(Place {
            shard: self,
            word: self.page(page_index)?.0.get(index)?,
            page_index,
            index,
        })
    }

    /// A slot's waker cell, in a page made.
    fn cell(&self, page_index: usize, index: usize, slot: u32) -> &Cell {
        let (_, cells) = self.page(page_index).expect("a slot's page is made");
        &cells[index * SLOTS_PER_WORD as usize + slot as usize]
    }

    /// Each word made so far.
    fn each_word(&self) -> impl Iterator<Item = Place<'_>> {
        // Acquire: pairs with the Release in `grow`, so the pages counted are made.
        (0..self.words.load(Ordering::Acquire)).map(|flat| self.place(flat))
    }

    /// Takes a free slot (invariant 1). Returns where it is, its slot, and the word's bits
    /// before. The common path is one load and one compare-exchange on the hint's word,
    /// while that word is serving (it holds its unit by `HELD`, and no sweep has marked
    /// it); anything else is the out-of-line `search` (see the module's layout).
    #[inline]
    fn claim(&self, connections: &Connections, handle: &HandleRef) -> (Place<'_>, u32, u64) {
        // Relaxed: only where to look first.
        let hint = self.hint.load(Ordering::Relaxed);
        if let Some(place) = self.made(hint & HINT_PAGE, hint >> HINT_SHIFT) {
            let word = place.word();
            // Relaxed: a guess for the compare-exchange, which does the ordering.
            let current = word.load(Ordering::Relaxed);
            let open = first_free(current);
            // Serving: the word holds its unit by `HELD`, and no sweep has marked it.
            if open != 0 && current & WORD_BITS == HELD {
                // AcqRel: as in `take_free_slot`.
                let claimed = word.compare_exchange(
                    current,
                    taken(current, open),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                if claimed.is_ok() {
                    return (place, slot_of(open), current);
                }
            }
        }
        self.search(connections, handle)
    }

    /// The hint's word is full, or not serving, or was raced: round the shard's words from
    /// it once, then add a page.
    #[cold]
    #[inline(never)]
    fn search(&self, connections: &Connections, handle: &HandleRef) -> (Place<'_>, u32, u64) {
        // A unit taken for a word that needed one, kept for the next try if the race was lost.
        let mut unit = None;
        loop {
            // Acquire: see `each_word`. Relaxed for the hint: only where to look first.
            let words = self.words.load(Ordering::Acquire);
            let hint = self.hint.load(Ordering::Relaxed);
            let start = first_word(hint & HINT_PAGE) + (hint >> HINT_SHIFT);
            for step in 0..words {
                let mut flat = start + step;
                if flat >= words {
                    flat -= words;
                }
                let place = self.place(flat);
                if let Some((slot, before)) = take_free_slot(place.word(), handle, &mut unit) {
                    self.hint.store(place.hint(), Ordering::Relaxed);
                    return (place, slot, before);
                }
            }
            self.grow(words, connections, handle);
        }
    }

    /// Every word is full: makes the next page (unless another thread did), points the
    /// hint at it, and brings it up to the phase (invariants 3 and 6).
    #[cold]
    fn grow(&self, words: usize, connections: &Connections, handle: &HandleRef) {
        let page = locate(words).0;
        assert!(page < PAGES, "too many long-lived connections in one shard");
        self.pages[page].get_or_init(FIRST_WORDS << page);
        // Release: pairs with the Acquire loads of `words`.
        self.words
            .fetch_max(first_word(page + 1), Ordering::Release);
        self.hint.store(self.place(words).hint(), Ordering::Relaxed);
        // With the fence in `Connections::begin`: a sweep that began meanwhile either saw
        // this page counted, or is seen here, and the page brought up to it (both do no
        // harm: each bit is set once, and counted by whoever set it).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fences.
        let phase = connections.phase.load(Ordering::Relaxed);
        if phase == 0 {
            return;
        }
        for flat in words..first_word(page + 1) {
            let place = self.place(flat);
            connections.bring_up(&place, phase, true);
            if phase & UNSTICKING != 0 {
                // SAFETY: the handle is a unit of the registry's block.
                unsafe { connections.unstick_word(&place, handle.ptr()) };
            }
        }
    }
}

/// A word, its shard, the page's index in the shard, and the word's in the page.
struct Place<'a> {
    shard: &'a Shard,
    word: &'a AtomicU64,
    page_index: usize,
    index: usize,
}

impl<'a> Place<'a> {
    #[inline]
    fn word(&self) -> &'a AtomicU64 {
        self.word
    }

    /// A slot's waker cell.
    #[inline]
    fn cell(&self, slot: u32) -> &'a Cell {
        self.shard.cell(self.page_index, self.index, slot)
    }

    /// The shard's hint for this word: its index and its page's, packed (no search for
    /// the page on the common path).
    #[inline]
    fn hint(&self) -> usize {
        hint_of(self.page_index, self.index)
    }
}

/// A word's hint: its index in its page and its page's, packed.
#[inline]
fn hint_of(page_index: usize, index: usize) -> usize {
    index << HINT_SHIFT | page_index
}

/// A hint is `index << HINT_SHIFT | page_index` (fewer than 32 pages).
const HINT_SHIFT: u32 = 5;
const HINT_PAGE: usize = (1 << HINT_SHIFT) - 1;
const _: () = assert!(PAGES <= HINT_PAGE + 1);

/// Sets the `OPEN` bit of a free slot in `word`, if it has one (clearing what its last
/// owner left), with a unit handed to the word if it held none (invariant 1). `unit`
/// keeps a unit taken for a try that lost its race, for the next; one left over is
/// dropped. Returns the slot and the word's bits before.
#[inline]
fn take_free_slot(
    word: &AtomicU64,
    handle: &HandleRef,
    unit: &mut Option<GuardRef>,
) -> Option<(u32, u64)> {
    // Relaxed: a guess for the compare-exchange, which does the ordering.
    let mut current = word.load(Ordering::Relaxed);
    loop {
        let open = first_free(current);
        if open == 0 {
            return None;
        }
        let mut new = taken(current, open);
        if current & (WORD_MOVE | WORD_CLOSE) != 0 {
            // Invariant 3: the sweep has been here; the notice comes with the slot.
            new |= open
                * if current & WORD_CLOSE != 0 {
                    CLOSE
                } else {
                    MOVE
                };
        }
        let needs_unit = !holds_unit(current);
        if needs_unit {
            if unit.is_none() {
                *unit = Some(handle.guard());
            }
            if current & UNSTUCK == 0 {
                new |= HELD;
            }
        }
        // Acquire: orders this slot's use after its last owner's release (and the sweep
        // that marked the word, after the phase); Release: publishes the new unit's owner.
        match word.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                if needs_unit {
                    // The word holds the unit now (invariant 1).
                    if let Some(unit) = unit.take() {
                        unit.give_to_word();
                    }
                }
                return Some((slot_of(open), current));
            }
            Err(actual) => current = actual,
        }
    }
}

/// Every long-lived connection registered, and the counts for the report.
#[derive(Debug)]
pub(crate) struct Connections {
    shards: [Shard; SHARDS],
    phase: AtomicU8,
    notified: AtomicU64,
    cut: AtomicU64,
    cut_after_notice: AtomicU64,
}

/// How the long-lived connections ended (see [`Shutdown::connection`](crate::Shutdown::connection)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionsReport {
    /// Told to move, spread over the disconnect window (or at once, for one that came
    /// during it); those still open when the drain ended were told to close, and are `cut`.
    pub notified: u64,
    /// Of those, gone before the drain ended.
    pub moved: u64,
    /// Still open when the drain ended (told to move or not): told to close at once.
    pub cut: u64,
}

impl fmt::Display for ConnectionsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} long-lived connections told to move, {} moved, {} cut",
            self.notified, self.moved, self.cut
        )
    }
}

impl Connections {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard::new()),
            phase: AtomicU8::new(0),
            notified: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            cut_after_notice: AtomicU64::new(0),
        }
    }

    /// Registered now (told to move or not).
    pub(crate) fn open(&self) -> usize {
        self.count(|word| (word & OPEN_BITS).count_ones() as usize)
    }

    /// Guard units the words hold now (invariant 1).
    pub(crate) fn held(&self) -> usize {
        self.count(|word| usize::from(holds_unit(word)))
    }

    fn count(&self, of_word: impl Fn(u64) -> usize) -> usize {
        self.shards
            .iter()
            .flat_map(Shard::each_word)
            // Relaxed: a count at one instant, for the spread's plan and for status.
            .map(|place| of_word(place.word.load(Ordering::Relaxed)))
            .sum()
    }

    /// Invariant 6: from now on words give their units back as they empty, and those empty
    /// now give theirs back at once. Once; later calls return at once (the units still to
    /// come back notify whoever waits).
    ///
    /// # Safety
    ///
    /// `block` is the block this registry is in, and the caller holds a unit of it.
    pub(crate) unsafe fn unstick(&self, block: BlockPtr) {
        if self.begin(UNSTICKING) {
            return;
        }
        for place in self.shards.iter().flat_map(Shard::each_word) {
            // SAFETY: the caller's contract.
            unsafe { self.unstick_word(&place, block) };
        }
    }

    /// Gives the next connection without a notice (from `cursor` on) its `Move`; whether
    /// there was one.
    fn notify_next(&self, cursor: &mut Cursor) -> bool {
        while cursor.shard < SHARDS {
            let shard = &self.shards[cursor.shard];
            // Acquire: see `Shard::each_word`.
            let words = shard.words.load(Ordering::Acquire);
            while cursor.word < words {
                let place = shard.place(cursor.word);
                let word = place.word;
                // Relaxed: a guess for the compare-exchange.
                let mut current = word.load(Ordering::Relaxed);
                loop {
                    let waiting = waiting_slots(current) & slots_from(cursor.slot);
                    if waiting == 0 {
                        break;
                    }
                    let slot = waiting.trailing_zeros() / 4;
                    // AcqRel: as in `bring_up`.
                    match word.compare_exchange(
                        current,
                        current | MOVE << shift(slot),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            cursor.slot = slot + 1;
                            self.notified.fetch_add(1, Ordering::Relaxed);
                            if current >> shift(slot) & WAKER != 0 {
                                wake(place.cell(slot));
                            }
                            return true;
                        }
                        Err(actual) => current = actual,
                    }
                }
                cursor.word += 1;
                cursor.slot = 0;
            }
            cursor.shard += 1;
            cursor.word = 0;
        }
        false
    }

    /// The disconnect window: from `start`, the connections open then are told to move one
    /// by one, evenly spread over `window` with jitter (the i-th of n at a random instant of
    /// the i-th n-th of it); those that come meanwhile are told at once. Never resolves once
    /// done: it runs beside the wait for the drain, which ends it.
    pub(crate) async fn spread(&self, runtime: &dyn Runtime, start: Instant, window: Duration) {
        self.open_window();
        let count = self.open() as u32;
        let mut cursor = Cursor::default();
        let mut jitter = Jitter::seeded(start, count);
        for i in 0..count {
            let slice = window / count;
            let at = start + slice * i + slice.mul_f64(jitter.next());
            // Notices due within a timer tick go out together: one wake-up of this task
            // for them all, instead of a sleep each (timers are 1 ms grained anyway).
            if runtime.now() + TICK < at {
                runtime.sleep_until(at).await;
            }
            if !self.notify_next(&mut cursor) {
                break;
            }
        }
        std::future::pending::<()>().await;
    }

    /// The window begins (invariant 3): every word is marked, so a connection registered
    /// from now on is told to move at once; those open now are told one by one.
    fn open_window(&self) {
        self.begin(MOVING);
        for place in self.shards.iter().flat_map(Shard::each_word) {
            self.bring_up(&place, MOVING, false);
        }
    }

    /// The drain is over: every connection still open is told to close, and counted as cut.
    pub(crate) fn close_all(&self) {
        if self.begin(CLOSING) {
            return;
        }
        for place in self.shards.iter().flat_map(Shard::each_word) {
            self.bring_up(&place, CLOSING, true);
        }
    }

    /// A registration in a word a sweep has marked was given its notice with its slot
    /// (invariant 3): counts it (invariant 2).
    #[cold]
    fn count_at_once(&self, before: u64) {
        let count = if before & WORD_CLOSE != 0 {
            &self.cut
        } else {
            &self.notified
        };
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Brings one word up to the `phase` bits `MOVING` and `CLOSING` (invariants 2 and 3):
    /// marks it, so that slots taken in it later get their notice with the slot, and tells
    /// its open slots to close (`CLOSING`) or, with `move_open`, to move (`MOVING`),
    /// counting and waking those it tells.
    fn bring_up(&self, place: &Place<'_>, phase: u8, move_open: bool) {
        let word = place.word;
        // Relaxed: a guess for the compare-exchange.
        let mut current = word.load(Ordering::Relaxed);
        let (current, new) = loop {
            let mut new = current;
            if phase & CLOSING != 0 {
                // `OPEN << 2` is `CLOSE`: each open slot's `CLOSE` bit.
                new |= WORD_CLOSE | (current & OPEN_BITS) << 2;
            } else if phase & MOVING != 0 {
                new |= WORD_MOVE;
                if move_open {
                    new |= waiting_slots(current) << 1;
                }
            }
            // AcqRel: Acquire for the wakers' cells and the slots' owners; Release for the
            // notice, which the connection reads with Acquire.
            match word.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break (current, new),
                Err(actual) => current = actual,
            }
        };
        let told = new & !current;
        let closed = told >> 2 & OPEN_BITS;
        let moved = told >> 1 & OPEN_BITS;
        self.cut
            .fetch_add(u64::from(closed.count_ones()), Ordering::Relaxed);
        self.cut_after_notice.fetch_add(
            u64::from((closed & current >> 1).count_ones()),
            Ordering::Relaxed,
        );
        self.notified
            .fetch_add(u64::from(moved.count_ones()), Ordering::Relaxed);
        let mut waking = (closed | moved) & current >> 3;
        while waking != 0 {
            wake(place.cell(waking.trailing_zeros() / 4));
            waking &= waking - 1;
        }
    }

    /// Invariant 6 for one word: marks it `UNSTUCK`, and gives its unit back if it is
    /// empty.
    ///
    /// # Safety
    ///
    /// `block` is the block this registry is in, and the caller holds a unit of it.
    unsafe fn unstick_word(&self, place: &Place<'_>, block: BlockPtr) {
        // AcqRel as in a drop, whose part it may play: the unit given back publishes the
        // connections' work.
        let prev = place
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |current| {
                // An `UNSTUCK` word's unit is its open slots' (invariant 6).
                Some((current | UNSTUCK) & !HELD)
            })
            .unwrap_or_else(|current| current);
        if prev & (HELD | OPEN_BITS) == HELD {
            // SAFETY: we took the word's unit (cleared `HELD` of an empty word), and give it
            // up here; the caller's unit keeps the block alive until then.
            drop(unsafe { block.into_guard() });
        }
    }

    /// Sets a phase bit, once: the sweep that follows sees every word made before a
    /// registration could have missed the bit (a page made meanwhile is brought up by
    /// the registration that made it: `Shard::grow`). Whether it was set before.
    fn begin(&self, bit: u8) -> bool {
        // AcqRel, and the fence: pairs with the fence in `Shard::grow` (invariant 3).
        let before = self.phase.fetch_or(bit, Ordering::AcqRel) & bit != 0;
        fence(Ordering::SeqCst);
        before
    }

    pub(crate) fn report(&self) -> ConnectionsReport {
        // Relaxed: counts for the report, read once the drain is over; no other memory
        // depends on them.
        let notified = self.notified.load(Ordering::Relaxed);
        ConnectionsReport {
            notified,
            // Invariant 5: told to move, and not cut.
            moved: notified.saturating_sub(self.cut_after_notice.load(Ordering::Relaxed)),
            cut: self.cut.load(Ordering::Relaxed),
        }
    }
}

/// Where the sweep for `Move` notices is: the shard, its flat word index, the slot.
#[derive(Debug, Default)]
struct Cursor {
    shard: usize,
    word: usize,
    slot: u32,
}

/// The `OPEN` bit of each slot in `word` that is open without a notice.
#[inline]
fn waiting_slots(word: u64) -> u64 {
    word & OPEN_BITS & !((word >> 1 | word >> 2) & OPEN_BITS)
}

/// The bits of the slots from `slot` on.
#[inline]
fn slots_from(slot: u32) -> u64 {
    u64::MAX.checked_shl(shift(slot)).unwrap_or(0)
}

/// Wakes the waker in a slot's cell, if there is one (invariant 4), with the lock released.
fn wake(cell: &Cell) {
    let waker = cell.lock().take();
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Notices planned within this of now are handed out now: at most this early, never late
/// for it.
const TICK: Duration = Duration::from_millis(1);

/// Stratified jitter: a fraction in [0, 1) per notice, from a small xorshift generator (not
/// for secrets; only so that pods that started together do not notify in step).
struct Jitter(u64);

impl Jitter {
    fn seeded(start: Instant, count: u32) -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(count);
        std::hash::Hash::hash(&start, &mut hasher);
        Jitter(hasher.finish() | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A long-lived connection's registration: it counts as in flight, and receives its
/// [`Notice`]s, until dropped. From [`Shutdown::connection`](crate::Shutdown::connection).
///
/// ```
/// # use std::time::Duration;
/// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let connection = shutdown.connection();
/// assert_eq!(connection.notice_now(), None); // serving
/// # drop(connection);
/// // In the connection's task:
/// // loop { select! { message = socket.next() => ..., notice = connection.notice() => {
/// //     send_close_frame(1001, "server restarting").await; break } } }
/// ```
#[must_use = "the connection is registered only while this is alive"]
pub struct Connection {
    /// The block the registry is in, its shard and word: reached only while
    /// the slot is open, which keeps the word's unit, and so the block, alive (invariant 1).
    /// Shards and pages never move, and live as long as the registry.
    block: BlockPtr,
    shard: NonNull<Shard>,
    word: NonNull<AtomicU64>,
    /// The word's index in its page.
    index: u32,
    /// The page's index in its shard.
    page_index: u8,
    slot: u8,
    /// Whether a poll stored a waker in the slot's cell, for the drop to take (it is not
    /// read from the word, so that dropping is one read-modify-write and nothing more).
    waker: UnsafeCell<bool>,
}

// SAFETY: the pointers are to the registry's shard and word, which are `Sync` and live as
// long as the registry, which lives while the connection does (invariant 1): a connection
// is as safe to move or share as a `&Connections` and a slot it owns. Its `waker` flag is
// written only under the slot's cell lock, and read only through `&mut self`.
unsafe impl Send for Connection {}
// SAFETY: see above.
unsafe impl Sync for Connection {}

impl Connection {
    /// Registers a connection in the registry of `handle`'s block (invariant 1), with its
    /// notice at once if the window has begun (invariant 3).
    #[inline]
    pub(crate) fn register(handle: &HandleRef) -> Connection {
        let connections = handle
            .connections()
            .expect("connections register in the coordinator's counter");
        let shard = shard_of_this_thread();
        let shard = &connections.shards[shard];
        let (place, slot, before) = shard.claim(connections, handle);
        if before & (WORD_MOVE | WORD_CLOSE) != 0 {
            connections.count_at_once(before);
        }
        Connection {
            block: handle.ptr(),
            shard: NonNull::from(shard),
            word: NonNull::from(place.word),
            index: place.index as u32,
            page_index: place.page_index as u8,
            slot: slot as u8,
            waker: UnsafeCell::new(false),
        }
    }

    /// This connection's word.
    #[inline]
    fn word(&self) -> &AtomicU64 {
        // SAFETY: our slot is open until our drop, so its word holds a unit (invariant 1):
        // the registry is alive, and with it its shards and pages, which never move.
        unsafe { self.word.as_ref() }
    }

    /// This connection's shard.
    #[inline]
    fn shard(&self) -> &Shard {
        // SAFETY: as in `word`.
        unsafe { self.shard.as_ref() }
    }

    /// This connection's waker cell (found when first needed: most drops need none).
    fn cell(&self) -> &Cell {
        self.shard().cell(
            usize::from(self.page_index),
            self.index as usize,
            u32::from(self.slot),
        )
    }

    #[inline]
    fn shift(&self) -> u32 {
        shift(u32::from(self.slot))
    }

    /// The latest notice, if one was given.
    pub fn notice_now(&self) -> Option<Notice> {
        // Acquire: what the notifier wrote before its notice is seen after it.
        notice_of(self.word().load(Ordering::Acquire) >> self.shift())
    }

    /// Resolves with the latest notice once there is one: `Move` during the disconnect
    /// window, `Close` when the drain ends. Awaiting it again after a `Move` resolves at
    /// once with `Move` (or `Close`, once given); to wait for the `Close`, use
    /// [`closing`](Self::closing).
    ///
    /// A notice given before the future was made is seen at once. It borrows the
    /// registration, which needs nothing else alive: the handle it came from may be
    /// dropped; if the coordinator is dropped before `Done`, every open registration gets
    /// `Close`. A new future each turn of a `select!` loop misses nothing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the notice stays in the registration until it is dropped.
    pub fn notice(&self) -> NoticeFuture<'_> {
        NoticeFuture {
            connection: self,
            at_least: Notice::Move,
        }
    }

    /// Resolves when the drain is over and the connection must close at once (or the
    /// coordinator was dropped before `Done`); at once if that happened already.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`notice`](Self::notice).
    pub fn closing(&self) -> NoticeFuture<'_> {
        NoticeFuture {
            connection: self,
            at_least: Notice::Close,
        }
    }

    /// A stream that yields `stream`'s items until the first notice, then the item
    /// `farewell` makes of it (a server-sent event with a `retry:` hint, a gRPC status
    /// that says "retry elsewhere", a game's "switch server" message) and ends: a clean end
    /// the client reconnects from, not a reset. It owns the registration, so the
    /// connection counts as in flight until the stream is dropped. If `stream` ends first,
    /// so does this one, without a farewell. A notice given before the stream was made
    /// ends it at its first poll, with the farewell.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let events = futures::stream::iter(["tick 1", "tick 2"]);
    /// let events = shutdown
    ///     .connection()
    ///     .until_notice(events, |_notice: Notice| "retry: 1000\nevent: reconnect");
    /// assert_eq!(shutdown.in_flight(), 1); // the stream holds the registration
    /// // No notice came: the stream's own items, then its end, without a farewell.
    /// assert_eq!(events.collect::<Vec<_>>().await, ["tick 1", "tick 2"]);
    /// assert_eq!(shutdown.in_flight(), 0);
    /// # });
    /// ```
    pub fn until_notice<S, F>(self, stream: S, farewell: F) -> UntilNotice<S, F>
    where
        S: futures::Stream,
        F: FnOnce(Notice) -> S::Item,
    {
        UntilNotice {
            stream,
            farewell: Some(farewell),
            connection: Some(self),
        }
    }

    fn poll_notice(&self, at_least: Notice, cx: &mut Context<'_>) -> Poll<Notice> {
        let ready = |bits: u64| notice_of(bits).filter(|notice| *notice >= at_least);
        let word = self.word();
        let shift = self.shift();
        // Acquire: as in `notice_now`.
        let bits = word.load(Ordering::Acquire) >> shift;
        if let Some(notice) = ready(bits) {
            return Poll::Ready(notice);
        }
        // Invariant 4: the waker is stored, then `WAKER` set or the word re-read, under the
        // cell's lock.
        let mut cell = self.cell().lock();
        match &mut *cell {
            Some(waker) => waker.clone_from(cx.waker()),
            None => *cell = Some(cx.waker().clone()),
        }
        // SAFETY: written only here, under the cell's lock, and read only by the drop, which
        // has the connection to itself.
        unsafe { *self.waker.get() = true };
        // AcqRel and Acquire: the notice's bit, if set first, is seen with what came before.
        let bits = if bits & WAKER == 0 {
            word.fetch_or(WAKER << shift, Ordering::AcqRel) >> shift
        } else {
            word.load(Ordering::Acquire) >> shift
        };
        drop(cell);
        match ready(bits) {
            Some(notice) => Poll::Ready(notice),
            None => Poll::Pending,
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("notice", &self.notice_now())
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// From [`Connection::until_notice`].
    #[derive(Debug)]
    #[must_use = "streams do nothing unless polled"]
    pub struct UntilNotice<S, F> {
        #[pin]
        stream: S,
        farewell: Option<F>,
        connection: Option<Connection>,
    }
}

impl<S, F> futures::Stream for UntilNotice<S, F>
where
    S: futures::Stream,
    F: FnOnce(Notice) -> S::Item,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let Some(connection) = this.connection.as_ref() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(notice) = connection.poll_notice(Notice::Move, cx) {
            // The registration ends with the farewell: the drain need not wait for the
            // client to read it.
            *this.connection = None;
            return Poll::Ready(this.farewell.take().map(|farewell| farewell(notice)));
        }
        let next = this.stream.poll_next(cx);
        if let Poll::Ready(None) = next {
            *this.connection = None;
        }
        next
    }
}

impl Drop for Connection {
    #[inline]
    fn drop(&mut self) {
        if *self.waker.get_mut() {
            drop(self.cell().lock().take());
        }
        // Relaxed: only where the next registration looks first, which is then a word with a
        // free slot. Stored now, while the slot keeps the block alive (invariant 1).
        let shard = self.shard();
        let hint = hint_of(usize::from(self.page_index), self.index as usize);
        if shard.hint.load(Ordering::Relaxed) != hint {
            shard.hint.store(hint, Ordering::Relaxed);
        }
        // Invariant 1: clear the slot's `OPEN` bit (the others are left for the next owner to
        // clear), in one read-modify-write that touches nothing after, unless it emptied an
        // `UNSTUCK` word, whose unit is then ours. AcqRel: Release hands the slot, its cell
        // emptied, to its next owner, and publishes the connection's work to whoever gives
        // the word's unit back (Acquire, for when that is us).
        let own = OPEN << self.shift();
        let before = self.word().fetch_sub(own, Ordering::AcqRel);
        if before & UNSTUCK != 0 && before & OPEN_BITS == own {
            // SAFETY: we emptied an `UNSTUCK` word, so its unit is ours (invariant 6), and we
            // give it up here.
            drop(unsafe { self.block.into_guard() });
        }
    }
}

/// From [`Connection::notice`] and [`Connection::closing`].
///
/// A connection keeps one waker: await its notice from one task (the connection's own). Two
/// tasks awaiting the same connection's notice would take turns being the one woken.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct NoticeFuture<'a> {
    connection: &'a Connection,
    at_least: Notice,
}

impl Future for NoticeFuture<'_> {
    type Output = Notice;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Notice> {
        self.connection.poll_notice(self.at_least, cx)
    }
}

/// The shard this thread registers in, from where its stack is: each thread's stack is a
/// region of its own (2 MiB or more, apart from the others), so threads registering at once
/// go to different shards (but for one pair in 16), and a thread's registrations stay in
/// one. A thread-local would say it as well, but costs a call on every registration; the
/// choice only spreads the load (a connection remembers its shard), so a guess suffices.
/// Under loom, where stacks say nothing, the first shard, so that the models' threads race
/// in one word.
#[inline]
fn shard_of_this_thread() -> usize {
    #[cfg(not(loom))]
    {
        let marker = 0u8;
        let region = std::ptr::addr_of!(marker).addr() >> 21;
        // Fibonacci hashing: the top bits of the product mix every bit of the region.
        (region.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> (usize::BITS - 4)) % SHARDS
    }
    #[cfg(loom)]
    0
}

/// Loom models of the registry: run with `RUSTFLAGS="--cfg loom" cargo test -p deputy-core
/// --lib --release loom_models`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::InFlight;
    use loom::future::block_on;
    use loom::thread;

    /// By invariant 3: a connection registered while the window starts is either swept or
    /// told at once; never missed, and counted once.
    #[test]
    fn a_registration_racing_the_window_is_never_missed() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let registrar = {
                let in_flight = in_flight.clone();
                thread::spawn(move || in_flight.connection())
            };
            let connections = in_flight.connections();
            connections.open_window();
            while connections.notify_next(&mut Cursor::default()) {}
            let connection = registrar.join().unwrap();
            assert_eq!(connection.notice_now(), Some(Notice::Move));
            assert_eq!(connections.report().notified, 1);
        });
    }

    /// By invariant 4: a notice given while the connection's task registers its waker
    /// always wakes it.
    #[test]
    fn a_notice_racing_its_waiter_wakes_it() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let connection = in_flight.connection();
            let notifier = {
                let in_flight = in_flight.clone();
                thread::spawn(move || {
                    let connections = in_flight.connections();
                    connections.open_window();
                    connections.notify_next(&mut Cursor::default())
                })
            };
            assert_eq!(block_on(connection.notice()), Notice::Move);
            assert!(notifier.join().unwrap());
        });
    }

    /// By invariant 4, for the cut: a close given while the connection waits for it wakes it.
    #[test]
    fn the_cut_racing_its_waiter_wakes_it() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let connection = in_flight.connection();
            let closer = {
                let in_flight = in_flight.clone();
                thread::spawn(move || in_flight.connections().close_all())
            };
            assert_eq!(block_on(connection.closing()), Notice::Close);
            closer.join().unwrap();
            assert_eq!(in_flight.connections().report().cut, 1);
        });
    }

    /// By invariant 5: a connection closing while the drain ends is counted once, as moved
    /// or as cut.
    #[test]
    fn a_close_racing_the_cut_is_counted_once() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let connection = in_flight.connection();
            let connections = in_flight.connections();
            connections.open_window();
            assert!(connections.notify_next(&mut Cursor::default()));
            let closer = thread::spawn(move || drop(connection));
            connections.close_all();
            closer.join().unwrap();
            let report = connections.report();
            assert_eq!(report.notified, 1);
            assert_eq!(report.moved + report.cut, 1, "{report:?}");
        });
    }

    /// By invariant 1: two threads registering in one word while a third frees a slot in it
    /// take two slots of their own.
    #[test]
    fn registrations_racing_in_one_word_take_their_own_slots() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let first = in_flight.connection();
            let dropper = thread::spawn(move || drop(first));
            let other = {
                let in_flight = in_flight.clone();
                thread::spawn(move || in_flight.connection())
            };
            let mine = in_flight.connection();
            dropper.join().unwrap();
            let other = other.join().unwrap();
            assert_ne!((mine.word, mine.slot), (other.word, other.slot));
            assert_eq!(in_flight.connections().open(), 2);
        });
    }

    /// Invariants 1 and 6: the last connection of a word dropping while someone starts to
    /// wait: the word's unit is given back exactly once (by the drop or by the sweep), so
    /// the wait ends and the block is freed (loom reports a leak or a double free if not).
    #[test]
    fn a_drop_racing_the_unsticking_gives_the_unit_back_once() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let connection = in_flight.connection();
            let dropper = thread::spawn(move || drop(connection));
            block_on(in_flight.drained());
            dropper.join().unwrap();
            assert_eq!(in_flight.connections().held(), 0);
        });
    }
    /// Invariant 6: of two drops that race the unsticking in one word, exactly one gives
    /// the word's unit back (the one whose subtraction empties it once it is `UNSTUCK`, or
    /// the sweep, if it comes after both).
    #[test]
    fn two_drops_racing_the_unsticking_give_the_unit_back_once() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            let droppers: Vec<_> = [in_flight.connection(), in_flight.connection()]
                .into_iter()
                .map(|connection| thread::spawn(move || drop(connection)))
                .collect();
            block_on(in_flight.drained());
            for dropper in droppers {
                dropper.join().unwrap();
            }
            assert_eq!(in_flight.connections().held(), 0);
            assert_eq!(in_flight.count(), 0);
        });
    }

    /// Invariants 1, 3 and 6: a registration in an empty word racing the sweep either keeps
    /// the word's unit or takes a new one, and its word is `UNSTUCK` either way: its drop
    /// gives the unit back, and the wait ends.
    #[test]
    fn a_registration_racing_the_unsticking_still_ends_the_wait() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            drop(in_flight.connection()); // the word keeps its unit
            let registrar = {
                let in_flight = in_flight.clone();
                thread::spawn(move || drop(in_flight.connection()))
            };
            block_on(in_flight.drained());
            registrar.join().unwrap();
            assert_eq!(in_flight.connections().held(), 0);
            assert_eq!(in_flight.count(), 0);
        });
    }

    /// Invariant 6: the last handle dropping while the last connection does: the block is
    /// freed once, by whichever goes last (loom reports a leak or a use after free if not).
    #[test]
    fn the_last_handle_racing_the_last_connection_frees_the_block() {
        loom::model(|| {
            let in_flight = InFlight::with_connections();
            drop(in_flight.connection());
            let connection = in_flight.connection();
            let dropper = thread::spawn(move || drop(connection));
            drop(in_flight);
            dropper.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::InFlight;
    use std::pin::pin;
    use std::sync::Arc;

    /// Invariants 1 and 6: while nobody waits, an empty word keeps its unit (so the next
    /// registration is one compare-exchange); once someone waits, it gives it back, and a
    /// word gives its unit back as it empties.
    #[test]
    fn words_keep_their_unit_until_someone_waits() {
        let in_flight = InFlight::with_connections();
        let connections = in_flight.connections();
        drop(in_flight.connection());
        assert_eq!((connections.open(), connections.held()), (0, 1));
        assert_eq!(in_flight.count(), 0);
        let open = in_flight.connection();
        assert_eq!(in_flight.count(), 1);
        let mut drained = Box::pin(in_flight.drained());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(drained.as_mut().poll(&mut cx).is_pending());
        assert_eq!(connections.phase.load(Ordering::Relaxed), UNSTICKING);
        drop(open);
        assert_eq!((connections.open(), connections.held()), (0, 0));
        assert!(drained.as_mut().poll(&mut cx).is_ready());
        // A word taken again holds a unit while open, and gives it back as it empties.
        let again = in_flight.connection();
        assert_eq!((in_flight.count(), connections.held()), (1, 1));
        drop(again);
        assert_eq!((in_flight.count(), connections.held()), (0, 0));
    }

    /// Invariant 3 for pages made after a sweep: every connection registered after the
    /// window began is told to move at once, in the first page (marked by the sweep) and in
    /// pages made later (brought up by the registration that made them); after the cut,
    /// told to close; and each is counted once.
    #[test]
    fn pages_made_after_a_sweep_are_brought_up_to_it() {
        let in_flight = InFlight::with_connections();
        let connections = in_flight.connections();
        connections.open_window();
        let moving: Vec<_> = (0..200).map(|_| in_flight.connection()).collect();
        assert!(moving.iter().all(|c| c.notice_now() == Some(Notice::Move)));
        connections.close_all();
        assert!(moving.iter().all(|c| c.notice_now() == Some(Notice::Close)));
        let closing: Vec<_> = (0..200).map(|_| in_flight.connection()).collect();
        assert!(
            closing
                .iter()
                .all(|c| c.notice_now() == Some(Notice::Close))
        );
        let report = connections.report();
        assert_eq!((report.notified, report.cut, report.moved), (200, 400, 0));
        assert_eq!(in_flight.count(), 400);
    }

    /// Invariant 6 for pages made after someone waits: they give their units back as they
    /// empty, so the wait ends.
    #[test]
    fn pages_made_while_someone_waits_give_their_units_back() {
        let in_flight = InFlight::with_connections();
        let first = in_flight.connection();
        let mut drained = Box::pin(in_flight.drained());
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(drained.as_mut().poll(&mut cx).is_pending());
        assert_eq!(connections_phase(&in_flight), UNSTICKING);
        drop(first);
        assert!(drained.as_mut().poll(&mut cx).is_ready());
        let many: Vec<_> = (0..500).map(|_| in_flight.connection()).collect();
        let mut drained = Box::pin(in_flight.drained());
        assert!(drained.as_mut().poll(&mut cx).is_pending());
        drop(many);
        assert_eq!(in_flight.connections().held(), 0);
        assert!(drained.as_mut().poll(&mut cx).is_ready());
    }

    /// Invariant 1 for a slot reused: the drop takes the waker its polls stored (the task
    /// is not kept alive by the registry), and the next owner's slot holds only its `OPEN`
    /// bit, whatever its last owner left.
    #[test]
    fn a_slot_reused_keeps_nothing_of_its_last_owner() {
        struct Task;
        impl futures::task::ArcWake for Task {
            fn wake_by_ref(_: &Arc<Self>) {}
        }
        let in_flight = InFlight::with_connections();
        let task = Arc::new(Task);
        let waker = futures::task::waker(task.clone());
        let mut cx = Context::from_waker(&waker);
        let first = in_flight.connection();
        assert!(pin!(first.notice()).poll(&mut cx).is_pending());
        let slot = (first.word, first.slot);
        assert_ne!(
            first.word().load(Ordering::Relaxed) >> first.shift() & WAKER,
            0
        );
        drop(waker);
        assert_eq!(Arc::strong_count(&task), 2, "the cell holds the waker");
        drop(first);
        assert_eq!(Arc::strong_count(&task), 1, "the drop took the waker");
        let again = in_flight.connection();
        assert_eq!((again.word, again.slot), slot);
        assert_eq!(
            again.word().load(Ordering::Relaxed) >> again.shift() & (OPEN | MOVE | CLOSE | WAKER),
            OPEN
        );
    }

    fn connections_phase(in_flight: &InFlight) -> u8 {
        in_flight.connections().phase.load(Ordering::Relaxed)
    }

    /// Invariant 6: the last handle gives the idle words' units back, so the block is freed
    /// (miri reports a leak if not), also with a connection still open.
    #[test]
    fn the_block_is_freed_after_the_last_handle_and_connection() {
        let in_flight = InFlight::with_connections();
        drop(in_flight.connection());
        let open = in_flight.connection();
        let other = in_flight.connection();
        drop(other);
        drop(in_flight);
        drop(open);
    }
}

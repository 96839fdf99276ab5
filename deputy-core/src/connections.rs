//! Long-lived connections (WebSockets, server-sent events, streaming calls, a game's session):
//! registered, told to move to another backend (spread over the disconnect window, so that
//! their reconnections reach the other pods at a steady rate), and told to close at once
//! when the drain timeout ends.
//!
//! # Layout
//!
//! A registration is an [`Entry`] (its notice and its waker) shared by the [`Connection`] and
//! its shard's list, and a named guard of the coordinator's in-flight counter, so that it
//! counts as in flight (and is listed among the stragglers) until dropped. There are 16
//! shards, each a lock and a list; a thread registers in its own, so two threads registering
//! at once do not wait for each other. Dropping a connection marks its entry gone and takes no
//! lock; a shard's list forgets the entries gone when it is full, so it holds at most twice
//! the connections open. Registering happens once per connection, next to a handshake that
//! costs tens of microseconds: simple beats fast here (BENCHMARKS.md has the figures).
//!
//! # Invariants
//!
//! 1. An entry's notice only moves forward: none, then `MOVE` ([`Notice::Move`]), then
//!    `CLOSE` ([`Notice::Close`]), and none after `GONE`; each change is one read-modify-write
//!    of its state, and whoever makes it counts it (`notified` for `MOVE`; `cut`, and
//!    `cut_after_notice` if `MOVE` was set, for `CLOSE`).
//! 2. A phase bit ([`MOVING`], [`CLOSING`]) is set once, before the sweep that follows takes
//!    each shard's lock in turn; a registration reads the phase under its shard's lock. So
//!    a registration is either in the list when the sweep takes that lock, or sees the phase
//!    and starts with its notice: never missed.
//! 3. Waking: a poll stores its waker in the entry, then sets `WAKER` (a read-modify-write
//!    that re-reads the notice); a notice is set, then the waker taken if `WAKER` was set. By
//!    the order of those read-modify-writes and the waker's lock, the poll either sees the
//!    notice or its waker is woken.
//! 4. Each connection told to move is counted once in the report: gone before the cut
//!    (`moved`, which is `notified` less `cut_after_notice`) or still there at the cut.
//!    One told to move by its [`Mover`] (`MOVE` with `AGED`, outside any shutdown) is not
//!    counted as notified, nor as cut after a notice: only as cut, if it is still there.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::DrainGuard;
use crate::runtime::Runtime;
use crate::sync::{Arc, AtomicU8, AtomicU64, Mutex, MutexGuard, Ordering, fence};

/// What a long-lived connection is told to do.
///
/// ```
/// use deputy_core::Notice;
///
/// // What a WebSocket handler sends for each notice.
/// let close_code = |notice: Notice| match notice {
///     Notice::Move => 1001,  // going away: reconnect elsewhere
///     Notice::Close => 1012, // the drain is over
///     _ => 1001,
/// };
/// assert_eq!(close_code(Notice::Move), 1001);
/// assert!(Notice::Move < Notice::Close); // notices only move forward
/// ```
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

// The phase: bits that are set once, and never cleared (invariant 2).
/// The disconnect window: notices are handed out, and new connections get one at once.
const MOVING: u8 = 1;
/// The drain is over: every connection is told to close.
const CLOSING: u8 = 2;

// An entry's state (invariants 1 and 3).
const MOVE: u8 = 0b0001;
const CLOSE: u8 = 0b0010;
const GONE: u8 = 0b0100;
const WAKER: u8 = 0b1000;
/// With `MOVE`: given by a [`Mover`] (the connection's transport reached its age), not by a
/// shutdown, so no shutdown counts it.
const AGED: u8 = 0b1_0000;

#[cfg(not(loom))]
const SHARDS: usize = 16;
#[cfg(loom)]
const SHARDS: usize = 1;

/// One registration, shared by its [`Connection`] and its shard's list.
#[derive(Debug, Default)]
struct Entry {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl Entry {
    fn notice(&self) -> Option<Notice> {
        // Acquire: what the notifier wrote before its notice is seen after it.
        notice_of(self.state.load(Ordering::Acquire))
    }

    /// `MOVE` (with `AGED`) if it has no notice and is not gone (invariant 1); wakes its
    /// task. Whether it did.
    fn move_early(&self) -> bool {
        // AcqRel, as `Connections::tell`.
        let told = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |state| {
                let open = state & (GONE | MOVE | CLOSE) == 0;
                open.then_some(state | MOVE | AGED)
            });
        let Ok(before) = told else {
            return false;
        };
        if before & WAKER != 0 {
            let waker = self.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        true
    }

    fn gone(&self) -> bool {
        // Relaxed: only to forget the entry, which its connection no longer reads.
        self.state.load(Ordering::Relaxed) & GONE != 0
    }
}

fn notice_of(state: u8) -> Option<Notice> {
    if state & CLOSE != 0 {
        Some(Notice::Close)
    } else if state & MOVE != 0 {
        Some(Notice::Move)
    } else {
        None
    }
}

/// A shard's list, aligned so that two threads' locks share no cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<List>);

/// A shard's entries, and entries of connections gone that nothing else holds, to be used
/// again (registering then allocates nothing).
#[derive(Debug, Default)]
struct List {
    entries: Vec<Arc<Entry>>,
    spare: Vec<Arc<Entry>>,
}

impl List {
    /// An entry for a new connection, with `notice` (none: 0), in the list.
    #[inline]
    fn entry(&mut self, notice: u8) -> Arc<Entry> {
        if self.entries.len() == self.entries.capacity() {
            self.forget_gone();
        }
        let entry = match self.spare.pop() {
            Some(entry) => {
                // Relaxed: only this list held it (`forget_gone`), and it is handed out
                // under the lock; its waker was taken by its last connection's drop.
                entry.state.store(notice, Ordering::Relaxed);
                entry
            }
            None => Arc::new(Entry {
                state: AtomicU8::new(notice),
                waker: Mutex::new(None),
            }),
        };
        self.entries.push(entry.clone());
        entry
    }

    /// Forgets the entries of connections gone, keeping as spares those nothing else holds
    /// (a connection still being dropped, or the window's list of those to tell, may);
    /// leaves room for as many registrations again as there are entries left.
    #[cold]
    fn forget_gone(&mut self) {
        let spare = &mut self.spare;
        self.entries.retain(|entry| {
            if !entry.gone() {
                return true;
            }
            if Arc::strong_count(entry) == 1 && spare.len() < 64 {
                // Acquire: the last connection's use of it happens-before ours.
                fence(Ordering::Acquire);
                spare.push(entry.clone());
            }
            false
        });
        let room = self.entries.len().max(4);
        self.entries.reserve(room);
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
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .disconnect_window(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// let shutdown = coordinator.handle();
/// let stubborn = shutdown.connection(); // never moves
/// shutdown.trigger("deploy");
/// shutdown.force("do not wait"); // the drain ends: the connection is cut
/// let report = futures::executor::block_on(coordinator.run());
/// assert_eq!(stubborn.notice_now(), Some(Notice::Close));
/// assert_eq!(report.drain.connections.cut, 1);
/// assert_eq!(
///     report.drain.connections.to_string(),
///     "0 long-lived connections told to move, 0 moved, 1 cut"
/// );
/// ```
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
            shards: std::array::from_fn(|_| Shard::default()),
            phase: AtomicU8::new(0),
            notified: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            cut_after_notice: AtomicU64::new(0),
        }
    }

    /// Registers a connection that holds `guard` (invariant 2: with its notice at once if
    /// the window has begun).
    #[inline]
    pub(crate) fn register(&self, guard: DrainGuard) -> Connection {
        let mut list = self.shards[crate::sync::shard_of_this_thread(SHARDS)]
            .0
            .lock();
        // Relaxed: the shard's lock orders it with the sweep (invariant 2).
        let notice = match self.phase.load(Ordering::Relaxed) {
            0 => 0,
            phase if phase & CLOSING != 0 => {
                self.cut.fetch_add(1, Ordering::Relaxed);
                CLOSE
            }
            _ => {
                self.notified.fetch_add(1, Ordering::Relaxed);
                MOVE
            }
        };
        let entry = list.entry(notice);
        drop(list);
        Connection {
            entry,
            _guard: guard,
        }
    }

    /// Sets a phase bit, then locks each shard in turn (invariant 2), for `sweep` to see
    /// its entries.
    fn begin(&self, bit: u8, mut sweep: impl FnMut(&Arc<Entry>)) {
        // Relaxed: the shards' locks order it with registrations (invariant 2).
        if self.phase.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
        for shard in &self.shards {
            shard.0.lock().entries.iter().for_each(&mut sweep);
        }
    }

    /// Gives `entry` its `notice` if it can have it (invariant 1), counts it, and wakes its
    /// task; whether it did.
    fn tell(&self, entry: &Entry, notice: u8) -> bool {
        // AcqRel: Acquire for the waker; Release for the notice, which the connection reads
        // with Acquire.
        let told = entry
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |state| {
                let open = state & (GONE | CLOSE) == 0 && state & notice == 0;
                open.then_some(state | notice)
            });
        let Ok(before) = told else {
            return false;
        };
        if notice == CLOSE {
            self.cut.fetch_add(1, Ordering::Relaxed);
            if before & (MOVE | AGED) == MOVE {
                self.cut_after_notice.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.notified.fetch_add(1, Ordering::Relaxed);
        }
        if before & WAKER != 0 {
            let waker = entry.waker.lock().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
        true
    }

    /// The disconnect window: from `start`, the connections open then are told to move one
    /// by one, evenly spread over `window` with jitter (the i-th of n at a random instant of
    /// the i-th n-th of it); those that come meanwhile are told at once. Never resolves once
    /// done: it runs beside the wait for the drain, which ends it.
    pub(crate) async fn spread(&self, runtime: &dyn Runtime, start: Instant, window: Duration) {
        let waiting = self.open_window();
        let count = waiting.len() as u32;
        let mut jitter = Jitter::seeded(start, count);
        let mut next = waiting.iter();
        for i in 0..count {
            let slice = window / count;
            let at = start + slice * i + slice.mul_f64(jitter.next());
            // Notices due within a timer tick go out together: one wake-up of this task
            // for them all, instead of a sleep each (timers are 1 ms grained anyway).
            if runtime.now() + TICK < at {
                runtime.sleep_until(at).await;
            }
            // The next one still open and without a notice; those gone meanwhile give their
            // turn to the next.
            if !next.any(|entry| self.tell(entry, MOVE)) {
                break;
            }
        }
        std::future::pending::<()>().await;
    }

    /// The window begins (invariant 2): from now on a connection registered is told to move
    /// at once; returns those open without a notice now, to be told one by one.
    fn open_window(&self) -> Vec<Arc<Entry>> {
        let mut waiting = Vec::new();
        self.begin(MOVING, |entry| {
            if entry.state.load(Ordering::Relaxed) & (GONE | MOVE | CLOSE) == 0 {
                waiting.push(entry.clone());
            }
        });
        waiting
    }

    /// The drain is over: every connection still open is told to close, and counted as cut.
    pub(crate) fn close_all(&self) {
        self.begin(CLOSING, |entry| {
            self.tell(entry, CLOSE);
        });
    }

    pub(crate) fn report(&self) -> ConnectionsReport {
        // Relaxed: counts for the report, read once the drain is over; no other memory
        // depends on them.
        let notified = self.notified.load(Ordering::Relaxed);
        ConnectionsReport {
            notified,
            // Invariant 4: told to move, and not cut.
            moved: notified.saturating_sub(self.cut_after_notice.load(Ordering::Relaxed)),
            cut: self.cut.load(Ordering::Relaxed),
        }
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
    entry: Arc<Entry>,
    /// Dropped after the entry is marked gone: the drain ends only once it is.
    _guard: DrainGuard,
}

impl Connection {
    /// The latest notice, if one was given.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let connection = shutdown.connection();
    /// assert_eq!(connection.notice_now(), None);
    /// drop(coordinator); // ends the shutdown, abandoned: every connection is told to close
    /// assert_eq!(connection.notice_now(), Some(deputy_core::Notice::Close));
    /// ```
    pub fn notice_now(&self) -> Option<Notice> {
        self.entry.notice()
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
    ///
    /// # Examples
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let connection = shutdown.connection();
    /// # futures::executor::block_on(async {
    /// futures::select! {
    ///     // message = socket.next() => ..., in a real handler
    ///     notice = connection.notice().fuse() => println!("told to {notice:?}"),
    ///     _ = futures::future::ready(()).fuse() => {} // stands in for a message here
    /// }
    /// # });
    /// # use futures::FutureExt;
    /// ```
    pub fn notice(&self) -> NoticeFuture<'_> {
        NoticeFuture { connection: self }
    }

    /// Resolves when the drain is over and the connection must close at once (or the
    /// coordinator was dropped before `Done`); at once if that happened already.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`notice`](Self::notice).
    ///
    /// # Examples
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let connection = shutdown.connection();
    /// drop(coordinator); // abandoned: Close for everyone
    /// futures::executor::block_on(connection.closing()); // resolves at once
    /// ```
    pub fn closing(&self) -> Closing<'_> {
        Closing { connection: self }
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

    /// A handle that can tell this connection to move before any shutdown: for a server
    /// that recycles its transport (an HTTP connection past its maximum age), so that the
    /// streams on it move with it. See [`Mover`].
    ///
    /// ```
    /// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let connection = shutdown.connection();
    /// let mover = connection.mover(); // kept by the server, beside the transport
    /// assert!(mover.move_now());
    /// assert_eq!(connection.notice_now(), Some(Notice::Move));
    /// ```
    pub fn mover(&self) -> Mover {
        Mover {
            entry: self.entry.clone(),
        }
    }

    fn poll_notice(&self, at_least: Notice, cx: &mut Context<'_>) -> Poll<Notice> {
        let ready = |state: u8| notice_of(state).filter(|notice| *notice >= at_least);
        let entry = &*self.entry;
        if let Some(notice) = ready(entry.state.load(Ordering::Acquire)) {
            return Poll::Ready(notice);
        }
        // Invariant 3: the waker is stored, then `WAKER` set, re-reading the notice.
        let mut waker: MutexGuard<'_, Option<Waker>> = entry.waker.lock();
        match &mut *waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => *waker = Some(cx.waker().clone()),
        }
        drop(waker);
        // AcqRel: the notice, if set first, is seen with what came before it.
        match ready(entry.state.fetch_or(WAKER, Ordering::AcqRel)) {
            Some(notice) => Poll::Ready(notice),
            None => Poll::Pending,
        }
    }
}

/// Tells one [`Connection`] to move now, ahead of any shutdown; from
/// [`Connection::mover`]. Kept by whoever holds the connection's transport: deputy-tokio's
/// server tells the long-lived streams on an HTTP connection to move when that connection
/// reaches its maximum age.
///
/// The connection gets [`Notice::Move`] as at a shutdown (its handler says goodbye the same
/// way); a later shutdown's `Close` still reaches it. A shutdown's report does not count
/// these moves, which were not its own.
///
/// ```
/// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let connection = shutdown.connection();
/// let mover = connection.mover();
/// drop(connection);
/// assert!(!mover.move_now(), "gone: nothing to tell");
/// ```
#[derive(Clone)]
pub struct Mover {
    entry: Arc<Entry>,
}

impl Mover {
    /// Gives the connection its `Move` notice now, and wakes its task; whether it did (not
    /// if it had a notice already or is gone).
    ///
    /// ```
    /// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let connection = coordinator.handle().connection();
    /// let mover = connection.mover();
    /// assert!(mover.move_now());
    /// assert!(!mover.move_now(), "it has its notice already");
    /// assert_eq!(connection.notice_now(), Some(Notice::Move));
    /// ```
    pub fn move_now(&self) -> bool {
        self.entry.move_early()
    }

    /// Whether the connection is gone (its registration dropped): nothing to tell.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let connection = coordinator.handle().connection();
    /// let mover = connection.mover();
    /// assert!(!mover.is_gone());
    /// drop(connection);
    /// assert!(mover.is_gone());
    /// ```
    pub fn is_gone(&self) -> bool {
        self.entry.gone()
    }
}

impl fmt::Debug for Mover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mover")
            .field("notice", &self.entry.notice())
            .field("gone", &self.is_gone())
            .finish()
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
    ///
    /// ```
    /// use futures::StreamExt;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let ticks = futures::stream::repeat("tick");
    /// let events = shutdown.connection().until_notice(ticks, |_| "event: reconnect");
    /// drop(coordinator); // a notice (Close) comes: the farewell, then the end
    /// let seen: Vec<_> = futures::executor::block_on(events.collect());
    /// assert_eq!(seen, ["event: reconnect"]);
    /// ```
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
    fn drop(&mut self) {
        // Invariant 1: no notice after this. AcqRel: orders it with a notice being given.
        let before = self.entry.state.fetch_or(GONE, Ordering::AcqRel);
        if before & WAKER != 0 {
            // The task is not kept alive by the shard's list, which may keep the entry a while.
            drop(self.entry.waker.lock().take());
        }
    }
}

/// From [`Connection::notice`].
///
/// A connection keeps one waker: await its notice from one task (the connection's own). Two
/// tasks awaiting the same connection's notice would take turns being the one woken.
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let connection = shutdown.connection();
/// let notice: deputy_core::NoticeFuture<'_> = connection.notice();
/// drop(coordinator);
/// assert_eq!(futures::executor::block_on(notice), deputy_core::Notice::Close);
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct NoticeFuture<'a> {
    connection: &'a Connection,
}

impl Future for NoticeFuture<'_> {
    type Output = Notice;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Notice> {
        self.connection.poll_notice(Notice::Move, cx)
    }
}

/// From [`Connection::closing`]; one waker, as [`NoticeFuture`].
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let connection = shutdown.connection();
/// let closing: deputy_core::Closing<'_> = connection.closing();
/// drop(coordinator);
/// futures::executor::block_on(closing);
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Closing<'a> {
    connection: &'a Connection,
}

impl Future for Closing<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.connection.poll_notice(Notice::Close, cx).map(|_| ())
    }
}

/// Loom models of the registry: run with `RUSTFLAGS="--cfg loom" cargo test -p deputy-core
/// --lib --release loom_models`.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::InFlight;
    use loom::future::block_on;
    use loom::thread;

    fn connection(connections: &Connections) -> Connection {
        connections.register(InFlight::new().guard())
    }

    /// By invariant 2: a connection registered while the window starts is either swept or
    /// told at once; never missed, and counted once.
    #[test]
    fn a_registration_racing_the_window_is_never_missed() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let registrar = {
                let connections = connections.clone();
                thread::spawn(move || connection(&connections))
            };
            for entry in connections.open_window() {
                connections.tell(&entry, MOVE);
            }
            let connection = registrar.join().unwrap();
            assert_eq!(connection.notice_now(), Some(Notice::Move));
            assert_eq!(connections.report().notified, 1);
        });
    }

    /// By invariant 3: a notice given while the connection's task registers its waker
    /// always wakes it.
    #[test]
    fn a_notice_racing_its_waiter_wakes_it() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = connection(&connections);
            let notifier = {
                let connections = connections.clone();
                thread::spawn(move || {
                    let waiting = connections.open_window();
                    waiting.iter().any(|entry| connections.tell(entry, MOVE))
                })
            };
            assert_eq!(block_on(connection.notice()), Notice::Move);
            assert!(notifier.join().unwrap());
        });
    }

    /// By invariant 3, for the cut: a close given while the connection waits for it wakes it.
    #[test]
    fn the_cut_racing_its_waiter_wakes_it() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = connection(&connections);
            let closer = {
                let connections = connections.clone();
                thread::spawn(move || connections.close_all())
            };
            block_on(connection.closing());
            closer.join().unwrap();
            assert_eq!(connections.report().cut, 1);
        });
    }

    /// By invariants 1 and 4: a connection closing while the drain ends is counted once, as
    /// moved or as cut.
    #[test]
    fn a_close_racing_the_cut_is_counted_once() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = connection(&connections);
            let waiting = connections.open_window();
            assert!(connections.tell(&waiting[0], MOVE));
            let closer = thread::spawn(move || drop(connection));
            connections.close_all();
            closer.join().unwrap();
            let report = connections.report();
            assert_eq!(report.notified, 1);
            assert_eq!(report.moved + report.cut, 1, "{report:?}");
        });
    }

    /// By invariants 1, 3 and 4: a mover racing the shutdown's notice and its cut wakes the
    /// connection once with `Move`, and the report counts the move only if the shutdown
    /// gave it; the cut is counted once, never as cut after the shutdown's notice if the
    /// mover came first.
    #[test]
    fn a_mover_racing_the_shutdown_is_counted_consistently() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = connection(&connections);
            let mover = connection.mover();
            let aging = thread::spawn(move || mover.move_now());
            let waiting = connections.open_window();
            let told = waiting.iter().any(|entry| connections.tell(entry, MOVE));
            assert_eq!(block_on(connection.notice()), Notice::Move);
            let moved_by_age = aging.join().unwrap();
            assert!(told != moved_by_age, "exactly one gave the notice");
            connections.close_all();
            let report = connections.report();
            assert_eq!(report.cut, 1);
            assert_eq!(report.notified, u64::from(told));
            assert_eq!(report.moved, 0, "{report:?}");
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::InFlight;
    use std::pin::pin;

    /// A shard's list forgets the entries gone when it fills, so it holds at most about
    /// twice the connections open.
    #[test]
    fn a_shard_forgets_connections_gone() {
        let connections = Connections::new();
        let in_flight = InFlight::new();
        let open: Vec<_> = (0..10)
            .map(|_| connections.register(in_flight.guard()))
            .collect();
        for _ in 0..1_000 {
            drop(connections.register(in_flight.guard()));
        }
        let held: usize = connections
            .shards
            .iter()
            .map(|s| s.0.lock().entries.len())
            .sum();
        assert!(held <= 2 * 10 + 4, "{held} entries kept for 10 open");
        assert_eq!(in_flight.count(), 10);
        drop(open);
        assert_eq!(in_flight.count(), 0);
    }

    /// An entry used again (a spare) starts anew: no notice of its last connection's, and
    /// it is the same allocation.
    #[test]
    fn a_spare_entry_keeps_nothing_of_its_last_connection() {
        let connections = Connections::new();
        let in_flight = InFlight::new();
        let told: Vec<_> = (0..4)
            .map(|_| connections.register(in_flight.guard()))
            .collect();
        for connection in &told {
            assert!(connections.tell(&connection.entry, MOVE));
        }
        let addresses: Vec<_> = told.iter().map(|c| Arc::as_ptr(&c.entry)).collect();
        drop(told);
        let again: Vec<_> = (0..8)
            .map(|_| connections.register(in_flight.guard()))
            .collect();
        assert!(again.iter().all(|c| c.notice_now().is_none()));
        let reused = again
            .iter()
            .filter(|c| addresses.contains(&Arc::as_ptr(&c.entry)))
            .count();
        assert!(reused > 0, "no spare was used");
    }

    /// Invariant 3: the drop takes the waker its polls stored, so the shard's list does not
    /// keep the task alive.
    #[test]
    fn a_connection_gone_keeps_no_waker() {
        struct Task;
        impl futures::task::ArcWake for Task {
            fn wake_by_ref(_: &std::sync::Arc<Self>) {}
        }
        let connections = Connections::new();
        let task = std::sync::Arc::new(Task);
        let waker = futures::task::waker(task.clone());
        let mut cx = Context::from_waker(&waker);
        let connection = connections.register(InFlight::new().guard());
        assert!(pin!(connection.notice()).poll(&mut cx).is_pending());
        drop(waker);
        assert_eq!(
            std::sync::Arc::strong_count(&task),
            2,
            "the entry holds the waker"
        );
        drop(connection);
        assert_eq!(
            std::sync::Arc::strong_count(&task),
            1,
            "the drop took the waker"
        );
    }
}

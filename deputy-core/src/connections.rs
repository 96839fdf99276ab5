//! Long-lived connections (WebSockets, server-sent events, streaming calls, a game's session):
//! registered, told to move to another backend (spread over the disconnect window, so that
//! their reconnections reach the other pods at a steady rate), and told to close at once
//! when the drain timeout ends.
//!
//! # Invariants
//!
//! 1. A registration takes a slab slot in one of 16 shards (its thread's: each thread is
//!    given the next shard in turn, so two threads registering at once take different
//!    locks on different cache lines; under loom, the next shard each time) and a
//!    [`DrainGuard`]: it counts as in flight until it is dropped.
//! 2. A slot's notice only moves forward: none, then [`Notice::Move`], then
//!    [`Notice::Close`]. Each is set under the shard's lock, and the connection's waker is
//!    woken after the lock is released. Handing out a notice allocates nothing.
//! 3. The phase ([`SERVING`], [`MOVING`], [`CLOSING`]) is stored before the shards are swept,
//!    and read under a shard's lock by a registration: a connection registered during a
//!    sweep is either swept or sees the new phase and takes its notice at once.
//! 4. Each connection is counted once in the report: told to move (`notified`), and then
//!    either gone before the cut (`moved`) or still there at the cut (`cut`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::inflight::DrainGuard;
use crate::runtime::Runtime;
use crate::sync::{Arc, AtomicU8, AtomicU64, Mutex, Ordering};

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

/// Before the drain delay ends: no notices.
pub(crate) const SERVING: u8 = 0;
/// The disconnect window: notices are handed out, and new connections get one at once.
pub(crate) const MOVING: u8 = 1;
/// The drain is over: every connection is told to close.
pub(crate) const CLOSING: u8 = 2;

const SHARDS: usize = 16;

/// One connection's slot.
#[derive(Debug)]
struct Slot {
    notice: Option<Notice>,
    waker: Option<Waker>,
}

/// One shard's slab, on a cache line of its own: registrations on two threads go to two
/// shards, and must not contend for the line between them either.
#[derive(Debug)]
#[repr(align(128))]
struct Shard(Mutex<Slab<Slot>>);

impl std::ops::Deref for Shard {
    type Target = Mutex<Slab<Slot>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Every long-lived connection registered, and the counts for the report.
#[derive(Debug)]
pub(crate) struct Connections {
    shards: [Shard; SHARDS],
    next: AtomicU64,
    phase: AtomicU8,
    notified: AtomicU64,
    moved: AtomicU64,
    cut: AtomicU64,
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
            shards: std::array::from_fn(|_| Shard(Mutex::new(Slab::new()))),
            next: AtomicU64::new(0),
            phase: AtomicU8::new(SERVING),
            notified: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        }
    }

    /// Registered now (told to move or not).
    pub(crate) fn open(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Gives the next connection without a notice (from `cursor` on) its `Move`; whether
    /// there was one.
    fn notify_next(&self, cursor: &mut (usize, usize)) -> bool {
        while cursor.0 < SHARDS {
            let mut slab = self.shards[cursor.0].lock();
            while cursor.1 < slab.capacity() {
                let index = cursor.1;
                cursor.1 += 1;
                let Some(slot) = slab.get_mut(index) else {
                    continue;
                };
                if slot.notice.is_none() {
                    slot.notice = Some(Notice::Move);
                    let waker = slot.waker.take();
                    drop(slab);
                    self.notified.fetch_add(1, Ordering::Relaxed);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return true;
                }
            }
            drop(slab);
            *cursor = (cursor.0 + 1, 0);
        }
        false
    }

    /// The disconnect window: from `start`, the connections open then are told to move one
    /// by one, evenly spread over `window` with jitter (the i-th of n at a random instant of
    /// the i-th n-th of it); those that come meanwhile are told at once. Never resolves once
    /// done: it runs beside the wait for the drain, which ends it.
    pub(crate) async fn spread(&self, runtime: &dyn Runtime, start: Instant, window: Duration) {
        // SeqCst, with the load in `register`: a registration either sees MOVING (and takes
        // its notice at once) or holds its shard's lock before the sweep below takes it (and
        // is swept): invariant 3. The shard locks order the slots themselves.
        self.phase.store(MOVING, Ordering::SeqCst);
        let count = self.open() as u32;
        let mut cursor = (0, 0);
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

    /// The drain is over: every connection still open is told to close, and counted as cut.
    pub(crate) fn close_all(&self) {
        // SeqCst, as in `spread`: a registration after this sees CLOSING.
        if self.phase.swap(CLOSING, Ordering::SeqCst) == CLOSING {
            return;
        }
        let mut wakers = Vec::new();
        for shard in &self.shards {
            let mut slab = shard.lock();
            for (_, slot) in slab.iter_mut() {
                slot.notice = Some(Notice::Close);
                self.cut.fetch_add(1, Ordering::Relaxed);
                wakers.extend(slot.waker.take());
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn report(&self) -> ConnectionsReport {
        ConnectionsReport {
            // Relaxed: counts for the report, read once the drain is over; no other memory
            // depends on them.
            notified: self.notified.load(Ordering::Relaxed),
            moved: self.moved.load(Ordering::Relaxed),
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
/// let shutdown = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap().handle();
/// let connection = shutdown.connection();
/// assert_eq!(connection.notice_now(), None); // serving
/// # drop(connection);
/// // In the connection's task:
/// // loop { select! { message = socket.next() => ..., notice = connection.notice() => {
/// //     send_close_frame(1001, "server restarting").await; break } } }
/// ```
#[derive(Debug)]
#[must_use = "the connection is registered only while this is alive"]
pub struct Connection {
    connections: Arc<Connections>,
    shard: usize,
    index: usize,
    _guard: DrainGuard,
}

impl Connection {
    /// The latest notice, if one was given.
    pub fn notice_now(&self) -> Option<Notice> {
        self.connections.shards[self.shard].lock()[self.index].notice
    }

    /// Resolves with the latest notice once there is one: `Move` during the disconnect
    /// window, `Close` when the drain ends. Awaiting it again after a `Move` resolves at
    /// once with `Move` (or `Close`, once given); to wait for the `Close`, use
    /// [`closing`](Self::closing).
    pub fn notice(&self) -> NoticeFuture<'_> {
        NoticeFuture {
            connection: self,
            at_least: Notice::Move,
        }
    }

    /// Resolves when the drain is over and the connection must close at once.
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
    /// so does this one, without a farewell.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Notice, ShutdownCoordinator};
    /// use futures::StreamExt;
    ///
    /// # futures::executor::block_on(async {
    /// let shutdown = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap().handle();
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
        let mut slab = self.connections.shards[self.shard].lock();
        let slot = &mut slab[self.index];
        match slot.notice {
            Some(notice) if notice >= at_least => Poll::Ready(notice),
            _ => {
                match &mut slot.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => slot.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
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
    fn drop(&mut self) {
        let slot = self.connections.shards[self.shard]
            .lock()
            .remove(self.index);
        if slot.notice == Some(Notice::Move) {
            self.connections.moved.fetch_add(1, Ordering::Relaxed);
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

/// The shard this thread registers in: one per thread, handed out in turn the first time
/// (so each thread's registrations stay on its own shard and cache line). Under loom, where
/// thread-locals are not modelled, each registration takes the next shard.
fn shard_of_this_thread(connections: &Connections) -> usize {
    // Relaxed: only spreads the shards.
    let next = || (connections.next.fetch_add(1, Ordering::Relaxed) % SHARDS as u64) as usize;
    #[cfg(not(loom))]
    {
        thread_local! {
            static SHARD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
        }
        SHARD.with(|shard| {
            shard.get().unwrap_or_else(|| {
                let chosen = next();
                shard.set(Some(chosen));
                chosen
            })
        })
    }
    #[cfg(loom)]
    next()
}

/// Registers a connection (invariant 1), with its notice at once if the window has begun
/// (invariant 3).
pub(crate) fn register(connections: &Arc<Connections>, guard: DrainGuard) -> Connection {
    let shard = shard_of_this_thread(connections);
    let mut slab = connections.shards[shard].lock();
    // SeqCst: pairs with the phase's store in `spread` and swap in `close_all` (invariant 3).
    let notice = match connections.phase.load(Ordering::SeqCst) {
        SERVING => None,
        MOVING => {
            connections.notified.fetch_add(1, Ordering::Relaxed);
            Some(Notice::Move)
        }
        _ => {
            connections.cut.fetch_add(1, Ordering::Relaxed);
            Some(Notice::Close)
        }
    };
    let index = slab.insert(Slot {
        notice,
        waker: None,
    });
    drop(slab);
    Connection {
        connections: connections.clone(),
        shard,
        index,
        _guard: guard,
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

    /// By invariant 3: a connection registered while the window starts is either swept or
    /// told at once; never missed.
    #[test]
    fn a_registration_racing_the_window_is_never_missed() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let in_flight = InFlight::new();
            let registrar = {
                let (connections, guard) = (connections.clone(), in_flight.guard());
                thread::spawn(move || register(&connections, guard))
            };
            connections.phase.store(MOVING, Ordering::SeqCst);
            let mut cursor = (0, 0);
            while connections.notify_next(&mut cursor) {}
            let connection = registrar.join().unwrap();
            assert_eq!(connection.notice_now(), Some(Notice::Move));
            assert_eq!(connections.report().notified, 1);
        });
    }

    /// By invariant 2: a notice given while the connection's task registers its waker
    /// always wakes it.
    #[test]
    fn a_notice_racing_its_waiter_wakes_it() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = register(&connections, InFlight::new().guard());
            let notifier = {
                let connections = connections.clone();
                thread::spawn(move || {
                    connections.phase.store(MOVING, Ordering::SeqCst);
                    connections.notify_next(&mut (0, 0))
                })
            };
            assert_eq!(block_on(connection.notice()), Notice::Move);
            assert!(notifier.join().unwrap());
        });
    }

    /// By invariant 4: a connection closing while the drain ends is counted once, as moved
    /// or as cut.
    #[test]
    fn a_close_racing_the_cut_is_counted_once() {
        loom::model(|| {
            let connections = Arc::new(Connections::new());
            let connection = register(&connections, InFlight::new().guard());
            connections.phase.store(MOVING, Ordering::SeqCst);
            assert!(connections.notify_next(&mut (0, 0)));
            let closer = thread::spawn(move || drop(connection));
            connections.close_all();
            closer.join().unwrap();
            let report = connections.report();
            assert_eq!(report.notified, 1);
            assert_eq!(report.moved + report.cut, 1, "{report:?}");
        });
    }
}

//! The accept loop both servers share, built to keep answering under hostile and exhausting
//! load.
//!
//! # Invariants
//!
//! 1. At most `max_connections` connections are served at once. A new one beyond that takes
//!    the place of the oldest connection that is neither busy (a request being answered) nor
//!    fresh (accepted in the same burst and not polled yet, so not yet able to read the
//!    request its client sent); if there is none, the new one is closed at once. So clients
//!    that send their request at once (a probe, a preStop) are served whatever the idle and
//!    half-sent ones (keep-alive, slowloris) do.
//! 2. When the process is out of descriptors (EMFILE, ENFILE), a descriptor is freed before
//!    accepting again: an idle connection's (as in 1), else the reserve's (a descriptor kept
//!    open for this); only when neither is left does accepting pause, with a back-off from
//!    10 ms to 1 s, instead of spinning. The reserve is opened again as soon as a descriptor
//!    is free.
//! 3. Nothing is spawned: every connection is a future polled inside this one.
//! 4. Accepting goes on in bursts of up to half `max_connections` per readiness event (so a
//!    burst can always evict idle connections rather than shed new ones, by 1), and the
//!    connections are polled between bursts.

use std::fs::File;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_io::{Async, Timer};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;

use crate::log_limit::LogLimit;

/// The connections being served, each a boxed future.
pub(crate) type Connections = FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// One connection's place in the loop: whether it is busy, and the means to evict it.
#[derive(Debug)]
pub(crate) struct Slot {
    busy: AtomicBool,
    /// Not polled yet (invariant 1).
    fresh: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            busy: AtomicBool::new(false),
            fresh: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }
}

impl Slot {
    /// Marks the connection busy (a request is being answered: it is not evicted) or not.
    pub(crate) fn set_busy(&self, busy: bool) {
        // Relaxed: a hint for choosing whom to evict, read on its own.
        self.busy.store(busy, Ordering::Relaxed);
    }

    /// Whether it may be evicted for a newcomer (invariant 1).
    fn is_evictable(&self) -> bool {
        // Relaxed: hints for choosing whom to evict, each read on its own.
        !self.busy.load(Ordering::Relaxed) && !self.fresh.load(Ordering::Relaxed)
    }

    fn evict(&self) {
        // Release: pairs with the Acquire in `evicted`, so the woken future sees the flag.
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once the connection is evicted.
    async fn evicted(&self) {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            // Acquire: pairs with the Release in `evict`.
            if self.evicted.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// Tells when a listener may have connections to accept: async-io's [`Async`], or the
/// supervisor's own loop.
pub(crate) trait PollReadable: Sync {
    /// Ready when the listener may be readable; pending (with `cx`'s waker kept) until then.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl<T: Sync> PollReadable for Async<T> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Async::poll_readable(self, cx)
    }
}

/// What [`serve_until`] needs to know of a server.
pub(crate) struct Listener<'a, L> {
    /// For the logs: "control socket", "health endpoint".
    pub(crate) what: &'static str,
    /// The listener, non-blocking.
    pub(crate) listener: &'a L,
    /// When it is readable.
    pub(crate) readable: &'a dyn PollReadable,
    /// Invariant 1.
    pub(crate) max_connections: usize,
}

/// Accepts connections with `accept` and serves each with `serve`, all concurrently inside
/// this one future (invariant 3), until `until` resolves. Returns the connections still
/// open then, for the caller to finish or drop.
pub(crate) async fn serve_until<L, S, F>(
    server: Listener<'_, L>,
    accept: impl Fn(&L) -> io::Result<S>,
    serve: impl Fn(Async<S>, Arc<Slot>) -> F,
    until: impl Future,
) -> Connections
where
    S: std::os::fd::AsFd,
    F: Future<Output = ()> + Send + 'static,
{
    let mut state = Loop {
        what: server.what,
        max: server.max_connections.max(1),
        connections: Connections::new(),
        slots: Vec::new(),
        reserve: Reserve::open(),
        backoff: None,
        delay: MIN_BACKOFF,
        exhausted: LogLimit::new(Duration::from_secs(10)),
    };
    let mut until = pin!(until);
    poll_fn(|cx| {
        if until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        state.poll(cx, &server, &accept, &serve)
    })
    .await;
    state.connections
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

struct Loop {
    what: &'static str,
    max: usize,
    connections: Connections,
    /// Every connection's slot, oldest first; a slot whose connection ended is dropped from
    /// here (it is the only holder left).
    slots: Vec<Arc<Slot>>,
    reserve: Reserve,
    backoff: Option<Timer>,
    delay: Duration,
    exhausted: LogLimit,
}

impl Loop {
    /// Serves what is ready, then accepts; pending until the listener or a connection wakes.
    fn poll<L, S, F>(
        &mut self,
        cx: &mut Context<'_>,
        listener: &Listener<'_, L>,
        accept: &impl Fn(&L) -> io::Result<S>,
        serve: &impl Fn(Async<S>, Arc<Slot>) -> F,
    ) -> Poll<()>
    where
        S: std::os::fd::AsFd,
        F: Future<Output = ()> + Send + 'static,
    {
        loop {
            // Serve: poll the connections that are ready; finished ones leave the set.
            while let Poll::Ready(Some(())) = self.connections.poll_next_unpin(cx) {}
            self.slots.retain(|slot| Arc::strong_count(slot) > 1);
            if let Some(timer) = &mut self.backoff {
                if Pin::new(timer).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            match listener.readable.poll_readable(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    tracing::warn!(%error, "{} failed; not accepting any more", self.what);
                    return Poll::Pending;
                }
                Poll::Ready(Ok(())) => {}
            }
            if self.accept_burst(cx, listener.listener, accept, serve) == Burst::Spent {
                // Invariant 4: more may be waiting; let the connections (and other tasks)
                // run first.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Accepts until the listener has nothing more, or an error, or the burst is spent.
    fn accept_burst<L, S, F>(
        &mut self,
        cx: &mut Context<'_>,
        listener: &L,
        accept: &impl Fn(&L) -> io::Result<S>,
        serve: &impl Fn(Async<S>, Arc<Slot>) -> F,
    ) -> Burst
    where
        S: std::os::fd::AsFd,
        F: Future<Output = ()> + Send + 'static,
    {
        // Invariant 2: keep the reserve whenever a descriptor is free (but not in the very
        // accept it was given up for, which would take its descriptor back).
        self.reserve.refill();
        for _ in 0..(self.max / 2).max(1) {
            match accept(listener).and_then(Async::new) {
                Ok(stream) => self.admit(stream, serve),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Burst::Drained,
                // Invariant 2, at once: another thread of the process (its own accept loop)
                // would take a descriptor freed any later.
                Err(error) if is_exhaustion(&error) => {
                    if !self.free_a_descriptor(cx, &error) {
                        return Burst::Drained;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "{}: cannot accept a connection", self.what);
                    self.pause();
                    return Burst::Drained;
                }
            }
        }
        Burst::Spent
    }

    /// Serves a new connection, making room for it first (invariant 1).
    fn admit<S, F>(&mut self, stream: Async<S>, serve: &impl Fn(Async<S>, Arc<Slot>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.delay = MIN_BACKOFF;
        if self.slots.len() >= self.max && !self.evict_oldest_idle() {
            tracing::debug!("{}: every connection is busy; closing a new one", self.what);
            return;
        }
        let slot = Arc::new(Slot::default());
        self.slots.push(slot.clone());
        let connection = serve(stream, slot.clone());
        self.connections.push(Box::pin(async move {
            let mut connection = pin!(connection);
            let mut evicted = pin!(slot.evicted());
            poll_fn(|cx| {
                let done = connection.as_mut().poll(cx).is_ready();
                // Relaxed: see `is_evictable`.
                slot.fresh.store(false, Ordering::Relaxed);
                if done || evicted.as_mut().poll(cx).is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }));
    }

    /// Evicts the oldest connection that is not busy; whether there was one. Its descriptor
    /// is closed when its future is next polled, which the eviction's wake-up brings about.
    fn evict_oldest_idle(&mut self) -> bool {
        let Some(index) = self.slots.iter().position(|slot| slot.is_evictable()) else {
            return false;
        };
        self.slots.remove(index).evict();
        true
    }

    /// Out of descriptors (invariant 2): closes an idle connection (its future is polled
    /// here, so its descriptor is closed now) or the reserve, and says whether it did; else
    /// pauses accepting.
    #[cold]
    fn free_a_descriptor(&mut self, cx: &mut Context<'_>, error: &io::Error) -> bool {
        if self.evict_oldest_idle() {
            while let Poll::Ready(Some(())) = self.connections.poll_next_unpin(cx) {}
            return true;
        }
        if self.reserve.release() {
            tracing::debug!(
                "{}: out of file descriptors; the reserve is given up",
                self.what
            );
            return true;
        }
        if let Some(suppressed) = self.exhausted.allow() {
            tracing::warn!(%error, suppressed, "{}: out of file descriptors; pausing accepts", self.what);
        }
        self.pause();
        false
    }

    fn pause(&mut self) {
        self.backoff = Some(Timer::after(self.delay));
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}

/// How a burst of accepts ended.
#[derive(PartialEq, Eq)]
enum Burst {
    /// Nothing more to accept for now (or accepting has to wait).
    Drained,
    /// It accepted as many as a burst may.
    Spent,
}

/// EMFILE, ENFILE: the process or the system is out of descriptors.
fn is_exhaustion(error: &io::Error) -> bool {
    matches!(
        error
            .raw_os_error()
            .map(rustix::io::Errno::from_raw_os_error),
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)
    )
}

/// A descriptor kept open to be given up when the process has none left (invariant 2).
struct Reserve(Option<File>);

impl Reserve {
    fn open() -> Reserve {
        Reserve(File::open("/dev/null").ok())
    }

    /// Opens it again if it was given up and a descriptor is free.
    fn refill(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }

    /// Closes it, freeing one descriptor; whether there was one to close.
    fn release(&mut self) -> bool {
        self.0.take().is_some()
    }
}

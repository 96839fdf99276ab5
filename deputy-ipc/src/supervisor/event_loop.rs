//! The supervisor's own loop: the main thread sleeps in one `poll(2)` on the signalfd, an
//! eventfd, the control socket's listener and the nearest deadline, and acts on each itself,
//! without a hand-off to another thread.
//!
//! Why not `async_io::block_on`: under it, async-io's reactor thread takes the reactor
//! whenever the main thread lets go of it, so a signal or the child's SIGCHLD woke that
//! thread first, which then woke the main thread; and a process with that second thread
//! takes longer to exit, since the kernel must wake it to end it. Here, by default, deputy
//! has one thread: the signal wakes it, it triggers the shutdown and polls the coordinator
//! (whose timers are this loop's), which signals the child; SIGCHLD wakes it, it reaps and
//! polls the coordinator to its end. See BENCHMARKS.md, "signal to exit".
//!
//! What still needs async-io (a client connected to the control socket, the health port,
//! the notify socket, readiness checks, the helpers' timers) starts its reactor thread when
//! first used; their wakers reach this loop through the eventfd.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use deputy_core::runtime::{Runtime, Sleep};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use rustix::time::Timespec;

/// The loop's handle: where futures polled by it register what they wait for.
#[derive(Debug, Clone)]
pub(crate) struct EventLoop {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    notifier: Arc<Notifier>,
    waits: Mutex<Vec<Wait>>,
    next_key: AtomicU64,
}

/// One future waiting: for a descriptor to be readable, or for a deadline.
#[derive(Debug)]
struct Wait {
    key: u64,
    on: On,
    waker: Waker,
}

#[derive(Debug, Clone)]
enum On {
    /// A duplicate of the descriptor (the same open socket), so that polling it needs no
    /// borrow of its owner.
    Readable(Arc<OwnedFd>),
    Deadline(Instant),
}

/// Wakes the loop. A wake sets `woken`; it writes the eventfd only when the loop sleeps (or
/// is about to) in `poll`, so a wake on the loop's own thread, while it runs (a signal that
/// triggers the shutdown, a reaped child), costs no system call.
///
/// The two flags are a Dekker pair, all `SeqCst`: the loop stores `sleeping` then loads
/// `woken`; a waker swaps `woken` then loads `sleeping`. Either the loop sees the wake and
/// does not sleep, or the waker sees the loop asleep and writes: a wake is never lost.
#[derive(Debug)]
struct Notifier {
    woken: AtomicBool,
    sleeping: AtomicBool,
    fd: OwnedFd,
}

impl Wake for Notifier {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) && self.sleeping.load(Ordering::SeqCst) {
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }
}

impl EventLoop {
    /// A loop for this thread (nothing runs until [`block_on`](Self::block_on)).
    pub(crate) fn new() -> io::Result<EventLoop> {
        let notifier = Arc::new(Notifier {
            woken: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            fd: eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?,
        });
        Ok(EventLoop {
            shared: Arc::new(Shared {
                notifier,
                waits: Mutex::new(Vec::new()),
                next_key: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `future` to its end on this thread. Whenever `events` (the signalfd) is
    /// readable, calls `on_event` (which reads it) before polling the future again.
    pub(crate) fn block_on<T>(
        &self,
        events: BorrowedFd<'_>,
        mut on_event: impl FnMut(),
        future: impl Future<Output = T>,
    ) -> io::Result<T> {
        let notifier = &self.shared.notifier;
        let waker = Waker::from(notifier.clone());
        let mut context = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            // Cleared before the poll: a wake during it is seen by `sleep`, which then
            // returns at once.
            notifier.woken.store(false, Ordering::SeqCst);
            if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
                return Ok(value);
            }
            if self.sleep(events)? {
                on_event();
            }
        }
    }

    /// Sleeps in `poll` on `events`, the eventfd, the descriptors waited on and until the
    /// nearest deadline, unless a wake came first; wakes whoever is due. Returns whether
    /// `events` is readable.
    fn sleep(&self, events: BorrowedFd<'_>) -> io::Result<bool> {
        let notifier = &self.shared.notifier;
        notifier.sleeping.store(true, Ordering::SeqCst);
        if notifier.woken.load(Ordering::SeqCst) {
            notifier.sleeping.store(false, Ordering::SeqCst);
            return Ok(false);
        }
        let (fds, deadline) = self.interests();
        let mut polled: Vec<PollFd<'_>> = [events, notifier.fd.as_fd()]
            .into_iter()
            .chain(fds.iter().map(|fd| fd.as_fd()))
            .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN))
            .collect();
        let timeout = deadline.map(|at| {
            let left = at.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let result = poll(&mut polled, timeout.as_ref());
        notifier.sleeping.store(false, Ordering::SeqCst);
        let ready: Vec<RawFd> = fds
            .iter()
            .zip(&polled[2..])
            .filter(|(_, fd)| !fd.revents().is_empty())
            .map(|(fd, _)| fd.as_raw_fd())
            .collect();
        let event = !polled[0].revents().is_empty();
        if !polled[1].revents().is_empty() {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(&notifier.fd, &mut count);
        }
        drop(polled);
        self.wake_due(&ready, Instant::now());
        match result {
            Ok(_) | Err(rustix::io::Errno::INTR) => Ok(event),
            Err(error) => Err(error.into()),
        }
    }

    /// The descriptors waited on, and the nearest deadline.
    fn interests(&self) -> (Vec<Arc<OwnedFd>>, Option<Instant>) {
        let waits = self.waits();
        let fds = waits
            .iter()
            .filter_map(|wait| match &wait.on {
                On::Readable(fd) => Some(fd.clone()),
                On::Deadline(_) => None,
            })
            .collect();
        let deadline = waits
            .iter()
            .filter_map(|wait| match wait.on {
                On::Deadline(at) => Some(at),
                On::Readable(_) => None,
            })
            .min();
        (fds, deadline)
    }

    /// Wakes (and forgets) the waits on a descriptor of `ready` or a deadline up to `now`.
    fn wake_due(&self, ready: &[RawFd], now: Instant) {
        let mut due = Vec::new();
        self.waits().retain(|wait| {
            let is_due = match &wait.on {
                On::Readable(fd) => ready.contains(&fd.as_raw_fd()),
                On::Deadline(at) => *at <= now,
            };
            if is_due {
                due.push(wait.waker.clone());
            }
            !is_due
        });
        due.into_iter().for_each(Waker::wake);
    }

    fn waits(&self) -> MutexGuard<'_, Vec<Wait>> {
        self.shared.waits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or renews) the wait `key`.
    fn register(&self, key: u64, on: On, waker: &Waker) {
        let mut waits = self.waits();
        match waits.iter_mut().find(|wait| wait.key == key) {
            Some(wait) => {
                wait.on = on;
                wait.waker.clone_from(waker);
            }
            None => waits.push(Wait {
                key,
                on,
                waker: waker.clone(),
            }),
        }
        drop(waits);
        // A wait registered from another thread while the loop sleeps: let it look again.
        if self.shared.notifier.sleeping.load(Ordering::SeqCst) {
            self.shared.notifier.wake_by_ref();
        }
    }

    fn forget(&self, key: u64) {
        self.waits().retain(|wait| wait.key != key);
    }

    fn key(&self) -> u64 {
        self.shared.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// A source of readiness for `fd` (a duplicate of it, so drop the source with `fd`,
    /// or the socket stays open).
    pub(crate) fn readable(&self, fd: impl AsFd) -> io::Result<LoopFd> {
        Ok(LoopFd {
            event_loop: self.clone(),
            key: self.key(),
            fd: Arc::new(rustix::io::fcntl_dupfd_cloexec(fd, 0)?),
            armed: AtomicBool::new(false),
        })
    }
}

/// Readiness of one descriptor, from the loop (see [`EventLoop::readable`]).
#[derive(Debug)]
pub(crate) struct LoopFd {
    event_loop: EventLoop,
    key: u64,
    fd: Arc<OwnedFd>,
    /// Registered with the loop since it was last ready.
    armed: AtomicBool,
}

impl crate::accept::PollReadable for LoopFd {
    /// Ready once the loop has seen the descriptor readable since the last time it was
    /// ready (edge-like: read until `WouldBlock` before asking again).
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let still_waiting = {
            let mut waits = self.event_loop.waits();
            waits
                .iter_mut()
                .find(|wait| wait.key == self.key)
                .map(|wait| wait.waker.clone_from(cx.waker()))
                .is_some()
        };
        if still_waiting {
            return Poll::Pending;
        }
        if self.armed.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Ok(()));
        }
        self.armed.store(true, Ordering::Release);
        self.event_loop
            .register(self.key, On::Readable(self.fd.clone()), cx.waker());
        Poll::Pending
    }
}

impl Drop for LoopFd {
    fn drop(&mut self) {
        self.event_loop.forget(self.key);
    }
}

/// deputy-core's runtime on the loop's clock: timers are the loop's deadlines.
#[derive(Debug, Clone)]
pub(crate) struct LoopRuntime(pub(crate) EventLoop);

impl Runtime for LoopRuntime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(Deadline {
            event_loop: self.0.clone(),
            key: self.0.key(),
            at: deadline,
        })
    }
}

/// Resolves at `at`.
#[derive(Debug)]
struct Deadline {
    event_loop: EventLoop,
    key: u64,
    at: Instant,
}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            self.event_loop.forget(self.key);
            return Poll::Ready(());
        }
        self.event_loop
            .register(self.key, On::Deadline(self.at), cx.waker());
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        self.event_loop.forget(self.key);
    }
}

/// The control socket's listener, served from the loop (async-io's thread is not started
/// for it: only for a client that connects).
#[derive(Debug)]
pub(crate) struct LoopListener {
    listener: std::os::unix::net::UnixListener,
    readable: LoopFd,
}

impl LoopListener {
    pub(crate) fn new(
        event_loop: &EventLoop,
        listener: std::os::unix::net::UnixListener,
    ) -> io::Result<LoopListener> {
        let readable = event_loop.readable(&listener)?;
        Ok(LoopListener { listener, readable })
    }
}

impl crate::accept::PollReadable for LoopListener {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.readable.poll_readable(cx)
    }
}

impl crate::server::Owns for LoopListener {
    fn listener(&self) -> &std::os::unix::net::UnixListener {
        &self.listener
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use futures::channel::oneshot;
    use futures::future::poll_fn;

    use super::*;
    use crate::accept::PollReadable;

    /// Runs `test` on its own thread; fails if it has not finished within 10 s (a lost wake
    /// would leave the loop asleep for ever).
    fn bounded(test: impl FnOnce() + Send + 'static) {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            test();
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the loop woke up and finished");
    }

    /// A descriptor that never becomes readable, for `events`.
    fn quiet() -> OwnedFd {
        eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).unwrap()
    }

    #[test]
    fn wakes_from_other_threads_are_never_lost() {
        bounded(|| {
            let event_loop = EventLoop::new().unwrap();
            let events = quiet();
            for round in 0..500 {
                let (sender, receiver) = oneshot::channel();
                let waker = std::thread::spawn(move || {
                    // Some rounds wake while the loop polls, some while it sleeps.
                    if round % 2 == 0 {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    sender.send(round).unwrap();
                });
                let got = event_loop.block_on(events.as_fd(), || {}, receiver);
                assert_eq!(got.unwrap().unwrap(), round);
                waker.join().unwrap();
            }
        });
    }

    #[test]
    fn deadlines_end_the_sleep_nearest_first() {
        bounded(|| {
            let event_loop = EventLoop::new().unwrap();
            let runtime = LoopRuntime(event_loop.clone());
            let start = Instant::now();
            let (near, far) = (
                runtime.sleep_until(start + Duration::from_millis(30)),
                runtime.sleep_until(start + Duration::from_millis(60)),
            );
            let events = quiet();
            let first =
                event_loop.block_on(events.as_fd(), || {}, futures::future::select(far, near));
            assert!(matches!(first.unwrap(), futures::future::Either::Right(_)));
            assert!(start.elapsed() >= Duration::from_millis(30));
            assert!(
                event_loop.waits().is_empty(),
                "the dropped deadline is forgotten"
            );
        });
    }

    #[test]
    fn events_are_handed_to_on_event_and_descriptors_waited_on_wake_their_future() {
        bounded(|| {
            use std::os::unix::net::{UnixListener, UnixStream};
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("socket");
            let listener = UnixListener::bind(&path).unwrap();
            listener.set_nonblocking(true).unwrap();
            let event_loop = EventLoop::new().unwrap();
            let listener = LoopListener::new(&event_loop, listener).unwrap();
            let events = quiet();
            let client = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                UnixStream::connect(&path).unwrap();
                // And a signal-like event, after the connection.
                rustix::io::write(&events, &1u64.to_ne_bytes()).unwrap();
                events
            });
            let accept = poll_fn(|cx| {
                use crate::server::Owns as _;
                loop {
                    match listener.listener().accept() {
                        Ok(_) => return Poll::Ready(()),
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                        Err(error) => panic!("{error}"),
                    }
                    if listener.poll_readable(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            });
            let events_fd = quiet();
            event_loop
                .block_on(events_fd.as_fd(), || {}, accept)
                .unwrap();
            let events = client.join().unwrap();
            let handled = std::cell::Cell::new(0);
            event_loop
                .block_on(
                    events.as_fd(),
                    || {
                        let mut count = [0u8; 8];
                        if rustix::io::read(&events, &mut count).is_ok() {
                            handled.set(handled.get() + 1);
                        }
                    },
                    poll_fn(|_| {
                        if handled.get() > 0 {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    }),
                )
                .unwrap();
            assert_eq!(handled.get(), 1);
        });
    }
}

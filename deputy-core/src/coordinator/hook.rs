use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use crate::{CancellationToken, Reason};

/// What a hook is given when its phase starts.
///
/// # At the phase's deadline
///
/// A hook still running at [`deadline`](Self::deadline) is dropped right after its
/// [`token`](Self::token) is cancelled: code in the hook's own future after an `.await` of
/// that token never runs. The token is for work the hook handed elsewhere (a spawned task,
/// a thread), which outlives the hook's future and can stop cleanly when it fires. Clean-up
/// that must run belongs in a `Drop` of something the hook owns, or in a later phase.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use deputy_core::{HookContext, HookOutcome, ManualClock, Phase, ShutdownCoordinator};
///
/// let clock = ManualClock::new();
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .phase(Phase::new("flush").timeout(Duration::from_secs(1)))
///     .build(clock.clone())
///     .unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// coordinator
///     .hook("flush", "metrics", move |ctx: HookContext| async move {
///         assert_eq!((ctx.phase(), ctx.name()), ("flush", "metrics"));
///         // Work handed to a thread: it sees the token and stops cleanly.
///         let token = ctx.token().clone();
///         std::thread::spawn(move || {
///             token.wait_blocking();
///             tx.send("flusher stopped").unwrap();
///         });
///         // The hook itself hangs past its deadline: it is dropped there.
///         std::future::pending::<()>().await;
///     })
///     .unwrap();
/// coordinator.handle().trigger("test");
/// let run = std::thread::spawn(move || futures::executor::block_on(coordinator.run()));
/// while !run.is_finished() {
///     clock.advance(Duration::from_millis(100));
///     std::thread::yield_now();
/// }
/// let report = run.join().unwrap();
/// assert_eq!(report.phases[1].hooks[0].outcome, HookOutcome::TimedOut);
/// assert_eq!(rx.recv().unwrap(), "flusher stopped");
/// ```
#[derive(Debug, Clone)]
pub struct HookContext {
    pub(crate) phase: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) deadline: Instant,
    pub(crate) token: CancellationToken,
    pub(crate) reason: Reason,
}

impl HookContext {
    /// The phase this hook runs in.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// coordinator
    ///     .hook("flush", "kafka", move |ctx| async move {
    ///         tx.send(ctx.phase().to_owned()).unwrap();
    ///     })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert_eq!(rx.recv().unwrap(), "flush");
    /// ```
    pub fn phase(&self) -> &str {
        &self.phase
    }

    /// The hook's own name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// coordinator
    ///     .hook("flush", "kafka", move |ctx| async move {
    ///         tx.send(ctx.name().to_owned()).unwrap();
    ///     })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert_eq!(rx.recv().unwrap(), "kafka");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the phase times out (its own timeout, or the end of the grace period if that comes
    /// first), on the coordinator's clock. A hook still running then is dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// coordinator
    ///     .hook("flush", "kafka", move |ctx| async move {
    ///         // Give the broker what time is left, not a guess.
    ///         tx.send(ctx.deadline()).unwrap();
    ///     })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert!(rx.recv().is_ok());
    /// ```
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A token cancelled when the phase times out, just before the hook is dropped (so the
    /// hook's own code after awaiting it does not run): hand it to work the hook spawned, so
    /// that it stops too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// coordinator
    ///     .hook("flush", "kafka", move |ctx| async move {
    ///         let token = ctx.token().clone(); // for the thread that does the flushing
    ///         tx.send(token.is_cancelled()).unwrap();
    ///     })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert_eq!(rx.recv().unwrap(), false); // finished in time
    /// ```
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why shutdown was triggered.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// coordinator
    ///     .hook("flush", "kafka", move |ctx| async move {
    ///         tx.send(ctx.reason().to_string()).unwrap();
    ///     })
    ///     .unwrap();
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert_eq!(rx.recv().unwrap(), "deploy");
    /// ```
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

/// What a hook's future may return: `()`, or `Result<(), E>` for any error that displays.
/// An `Err` is recorded in the report as a failure with its message; the other hooks still run.
/// A hook whose body only panics (`|_| async { panic!("...") }`, whose output is `!`) is
/// accepted too, and reported as panicked.
///
/// ```
/// use deputy_core::HookOutput;
///
/// assert_eq!(().into_result(), Ok(()));
/// assert_eq!(Err::<(), _>("disk full").into_result(), Err("disk full".to_string()));
/// ```
pub trait HookOutput: Send + 'static {
    /// The outcome, with the error's message on failure.
    ///
    /// ```
    /// use deputy_core::HookOutput;
    ///
    /// assert_eq!(Err::<(), _>("disk full").into_result(), Err("disk full".to_string()));
    /// assert_eq!(().into_result(), Ok(()));
    /// ```
    fn into_result(self) -> Result<(), String>;
}

impl HookOutput for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display + Send + 'static> HookOutput for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The never type `!`, named on stable Rust through a function pointer's return type: the
/// output of `async { panic!() }` under edition 2024's inference.
type Never = <fn() -> ! as ReturnOf>::Output;

/// The return type of a function pointer (only to name [`Never`]). Public in name only:
/// the impl below is public, and its type must not name a private trait.
#[allow(unreachable_pub)]
pub trait ReturnOf {
    type Output;
}

impl<R> ReturnOf for fn() -> R {
    type Output = R;
}

impl HookOutput for Never {
    fn into_result(self) -> Result<(), String> {
        self
    }
}

pub(crate) type HookFuture = BoxFuture<'static, Result<(), String>>;

/// A registered hook, boxed.
pub(crate) struct Hook {
    pub(crate) name: Arc<str>,
    pub(crate) start: Box<dyn FnOnce(HookContext) -> HookFuture + Send>,
}

impl Hook {
    pub(crate) fn new<F, Fut>(name: &str, hook: F) -> Self
    where
        F: FnOnce(HookContext) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        Self {
            name: name.into(),
            start: Box::new(move |ctx| {
                let future = hook(ctx);
                Box::pin(async move { future.await.into_result() })
            }),
        }
    }
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook").field("name", &self.name).finish()
    }
}

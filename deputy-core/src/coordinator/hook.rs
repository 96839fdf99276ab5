use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use crate::{CancellationToken, Reason};

/// What a hook is given when its phase starts.
///
/// ```
/// use deputy_core::{HookContext, ShutdownCoordinator};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .build(deputy_core::ManualClock::new())
///     .unwrap();
/// coordinator
///     .hook("flush", "metrics", |ctx: HookContext| async move {
///         assert_eq!(ctx.phase(), "flush");
///         assert_eq!(ctx.name(), "metrics");
///         // Stop early, cleanly, if the phase times out:
///         let _stop = ctx.token().cancelled();
///     })
///     .unwrap();
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
    pub fn phase(&self) -> &str {
        &self.phase
    }

    /// The hook's own name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the phase times out (its own timeout, or the end of the grace period if that comes
    /// first), on the coordinator's clock. A hook still running then is dropped.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// A token cancelled when the phase times out, just before the hook is dropped: hand it to
    /// work the hook spawned so that it stops too.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Why shutdown was triggered.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
}

/// What a hook's future may return: `()`, or `Result<(), E>` for any error that displays.
/// An `Err` is recorded in the report as a failure with its message; the other hooks still run.
///
/// ```
/// use deputy_core::HookOutput;
///
/// assert_eq!(().into_result(), Ok(()));
/// assert_eq!(Err::<(), _>("disk full").into_result(), Err("disk full".to_string()));
/// ```
pub trait HookOutput: Send + 'static {
    /// The outcome, with the error's message on failure.
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

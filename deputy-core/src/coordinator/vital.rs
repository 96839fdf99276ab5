//! Vital tasks: background work the service cannot do without (a queue consumer, a cache
//! refresher, a leader-election loop). One that fails, panics or ends while the service should
//! be running triggers the shutdown, naming itself and its error; at shutdown each is told to
//! stop in the phase chosen for it, and the report says how it ended. Tasks can be grouped,
//! and a group stopped on its own while the service runs on.
//!
//! Start-up tasks (migrations, a cache warm-up) are vital tasks that end when start-up is
//! done: readiness and `/health/started` wait for them, a start-up timeout bounds them, and
//! a shutdown during start-up tells them to stop at once.
//!
//! A task is a future the caller spawns on its runtime (deputy-core spawns nothing). Each has
//! a hook in its phase: the hook cancels the task's token and waits for the task to end, so
//! the phase's timeout bounds the wait and the report's hook line is the task's outcome.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Either, select};

use super::handle::Shutdown;
use super::hook::HookOutput;
use super::report::{HookOutcome, HookReport};
use super::run::panic_message;
use crate::CancellationToken;
use crate::error::HookError;
use crate::sync::{Mutex, Ordering};

/// A vital task, ready to spawn on any runtime (`tokio::spawn(task)`, `smol::spawn(task)`):
/// it runs the task's future to its end, and says how it ended to the coordinator. Made by
/// [`Shutdown::vital`] or [`TaskGroup::vital`].
///
/// Until it is spawned (or polled), the task does not run, and its hook waits for it until
/// the phase's timeout. Dropping it before the task ends (a runtime shutting down, an abort)
/// counts as an end: it triggers the shutdown unless the task was told to stop.
#[must_use = "a vital task does nothing until it is spawned"]
pub struct VitalTask {
    future: BoxFuture<'static, ()>,
}

impl fmt::Debug for VitalTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VitalTask").finish_non_exhaustive()
    }
}

impl Future for VitalTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.future.as_mut().poll(cx)
    }
}

/// What a task's wrapper and its hook share.
#[derive(Debug)]
struct TaskState {
    name: String,
    /// A start-up task: its end, told to stop or not, is no failure.
    startup: bool,
    /// Cancelled to tell the task to stop.
    token: CancellationToken,
    /// Cancelled once the task has ended and `outcome` is set.
    ended: CancellationToken,
    outcome: Mutex<Option<HookOutcome>>,
}

impl TaskState {
    /// Records how the task ended (the first time only) and wakes whoever waits for it.
    fn end(&self, outcome: HookOutcome) {
        let mut slot = self.outcome.lock();
        if slot.is_none() {
            *slot = Some(outcome);
            drop(slot);
            self.ended.cancel();
        }
    }

    /// Waits for the task's end; its outcome.
    async fn outcome(&self) -> HookOutcome {
        self.ended.cancelled().await;
        self.outcome
            .lock()
            .clone()
            .expect("set before `ended` is cancelled")
    }
}

/// Records an end for a task whose future was dropped before it ended.
struct OnDrop {
    state: Arc<TaskState>,
    shutdown: Shutdown,
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if self.state.outcome.lock().is_none() {
            finish(&self.state, &self.shutdown, Err(Ended::Dropped));
        }
    }
}

/// How a task's future ended, when not with `Ok(())`.
enum Ended {
    Failed(String),
    Panicked(String),
    Dropped,
    /// A start-up task still running at the start-up timeout.
    StartupTimeout(Duration),
}

/// Records a task's end; if it was not told to stop, triggers the shutdown with a reason
/// that names it and says why.
fn finish(state: &TaskState, shutdown: &Shutdown, result: Result<(), Ended>) {
    let told_to_stop = state.token.is_cancelled();
    let (outcome, why) = match result {
        Ok(()) if told_to_stop => (HookOutcome::Completed, None),
        Ok(()) if state.startup => {
            // Relaxed: a count read on its own (readiness, `/health/started`).
            shutdown
                .shared
                .startup_pending
                .fetch_sub(1, Ordering::Relaxed);
            tracing::info!(task = %state.name, "start-up task done");
            (HookOutcome::Completed, None)
        }
        Ok(()) => {
            let why = "ended while the service was running".to_owned();
            (HookOutcome::Failed(why.clone()), Some(why))
        }
        Err(Ended::Failed(error)) => (
            HookOutcome::Failed(error.clone()),
            Some(format!("failed: {error}")),
        ),
        Err(Ended::Panicked(message)) => (
            HookOutcome::Panicked(message.clone()),
            Some(format!("panicked: {message}")),
        ),
        Err(Ended::Dropped) => {
            let why = "was dropped before it ended".to_owned();
            (HookOutcome::Failed(why.clone()), Some(why))
        }
        Err(Ended::StartupTimeout(timeout)) => {
            let why = format!("was still running at the start-up timeout ({timeout:?})");
            (HookOutcome::Failed(why.clone()), Some(why))
        }
    };
    let kind = if state.startup {
        "start-up task"
    } else {
        "vital task"
    };
    if let Some(why) = why {
        if told_to_stop {
            tracing::warn!(task = %state.name, "{kind} {} {why} while stopping", state.name);
        } else {
            tracing::error!(task = %state.name, "{kind} {} {why}; shutting down", state.name);
            shutdown.trigger(format!("{kind} {} {why}", state.name));
        }
    }
    // For work the task handed elsewhere (a spawned task, a thread): it is over.
    state.token.cancel();
    state.end(outcome);
}

impl Shutdown {
    /// A vital task named `name`, told to stop in phase `phase`: spawn what this returns.
    /// `task` gets the token that tells it to stop; it may return `()` or a `Result` whose
    /// error displays.
    ///
    /// - If it returns an error, panics, or ends before it is told to stop, the shutdown is
    ///   triggered with a reason that names the task and its error (`vital task refresher
    ///   failed: upstream gone`); the drain and the phases run as usual.
    /// - When `phase` starts, its token is cancelled and the phase waits for it to end (up
    ///   to the phase's timeout). The report has a hook line for it in that phase: completed
    ///   (it stopped in time), timed out, or failed or panicked with its error, which makes
    ///   the shutdown's outcome `failed` (exit code 1 by default).
    ///
    /// # Errors
    ///
    /// [`HookError::UnknownPhase`] if no phase has that name, [`HookError::PhaseStarted`] if
    /// it has started already.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{HookOutcome, ManualClock, Outcome, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let refresher = shutdown
    ///     .vital("refresher", "flush", |_stop| async {
    ///         Err::<(), _>("upstream gone") // fails at once
    ///     })
    ///     .unwrap();
    /// futures::executor::block_on(refresher); // tokio::spawn(refresher) in a service
    ///
    /// let report = futures::executor::block_on(coordinator.run());
    /// assert_eq!(report.reason.to_string(), "vital task refresher failed: upstream gone");
    /// assert_eq!(report.outcome, Outcome::Failed);
    /// assert_eq!(report.exit_code, 1);
    /// let hook = &report.phases[1].hooks[0]; // flush
    /// assert_eq!(hook.outcome, HookOutcome::Failed("upstream gone".into()));
    /// ```
    pub fn vital<F, Fut>(&self, name: &str, phase: &str, task: F) -> Result<VitalTask, HookError>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let (task, _) = self.vital_with(name, phase, CancellationToken::new(), false, task)?;
        Ok(task)
    }

    /// A start-up task named `name` (migrations, a cache warm-up): spawn what this returns.
    /// Until every start-up task has ended well, the service is not ready and not started
    /// ([`is_started`](Self::is_started), `/health/started` for the kubelet's
    /// `startupProbe`), whatever [`ready`](Self::ready) says.
    ///
    /// - An error, a panic, a drop, or still running at the
    ///   [start-up timeout](crate::Builder::startup_timeout) (it is then dropped) triggers the
    ///   shutdown with a reason that names it, as for a [vital](Self::vital) task; its hook
    ///   line (in the first phase) says so, and the exit code is 1.
    /// - A shutdown triggered during start-up tells it to stop at once (its token is a child
    ///   of the [draining token](Self::draining_token)); ending then is no failure.
    ///
    /// # Errors
    ///
    /// [`HookError::PhaseStarted`] if the shutdown's phases have started.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let warm_up = shutdown
    ///     .startup("warm-up", |_stop| async { Ok::<(), String>(()) /* caches loaded */ })
    ///     .unwrap();
    /// shutdown.ready();
    /// assert!(!shutdown.is_ready() && !shutdown.is_started()); // warm-up still to run
    /// futures::executor::block_on(warm_up); // tokio::spawn(warm_up) in a service
    /// assert!(shutdown.is_ready() && shutdown.is_started());
    /// ```
    pub fn startup<F, Fut>(&self, name: &str, task: F) -> Result<VitalTask, HookError>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let first = self.shared.phase_names[0].clone();
        let token = self.shared.draining.child();
        let (task, _) = self.vital_with(name, &first, token, true, task)?;
        // Relaxed: a count read on its own.
        self.shared.startup_pending.fetch_add(1, Ordering::Relaxed);
        Ok(task)
    }

    /// Whether start-up is complete, for `/health/started` (the kubelet's `startupProbe`):
    /// [`ready`](Self::ready) has been called and every [start-up task](Self::startup) has
    /// ended well. Once true, true for good.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.is_started());
    /// shutdown.ready();
    /// shutdown.not_ready(); // a dependency is down for now: not ready, but started
    /// assert!(shutdown.is_started() && !shutdown.is_ready());
    /// ```
    pub fn is_started(&self) -> bool {
        self.shared.is_started()
    }

    /// A group of vital tasks, told to stop in phase `phase` at shutdown, which can also be
    /// stopped on its own ([`TaskGroup::stop`]) while the service runs on.
    ///
    /// # Errors
    ///
    /// [`HookError::UnknownPhase`] if no phase has that name.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let consumers = shutdown.task_group("consumers", "flush").unwrap();
    /// let orders = consumers.vital("orders", |stop| async move { stop.cancelled().await }).unwrap();
    /// # drop(orders);
    /// ```
    pub fn task_group(&self, name: &str, phase: &str) -> Result<TaskGroup, HookError> {
        if !self.phases().any(|known| known == phase) {
            return Err(HookError::UnknownPhase {
                phase: phase.to_owned(),
                known: self.phases().map(str::to_owned).collect(),
            });
        }
        Ok(TaskGroup {
            shared: Arc::new(Group {
                name: name.to_owned(),
                phase: phase.to_owned(),
                token: CancellationToken::new(),
                shutdown: self.clone(),
                tasks: Mutex::new(Vec::new()),
                parent: None,
            }),
        })
    }

    /// [`vital`](Self::vital) with the task's own token (a group's child), or a start-up
    /// task; the task and what it shares with its hook.
    fn vital_with<F, Fut>(
        &self,
        name: &str,
        phase: &str,
        token: CancellationToken,
        startup: bool,
        task: F,
    ) -> Result<(VitalTask, Arc<TaskState>), HookError>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let state = Arc::new(TaskState {
            name: name.to_owned(),
            startup,
            token,
            ended: CancellationToken::new(),
            outcome: Mutex::new(None),
        });
        let in_hook = state.clone();
        self.hook(phase, name, move |_| async move {
            in_hook.token.cancel();
            match in_hook.outcome().await {
                HookOutcome::Completed => Ok(()),
                HookOutcome::Panicked(message) => std::panic::resume_unwind(Box::new(message)),
                HookOutcome::Failed(error) => Err(error),
                other => Err(other.to_string()),
            }
        })?;
        let on_drop = OnDrop {
            state: state.clone(),
            shutdown: self.clone(),
        };
        let deadline = if startup {
            self.shared.startup_deadline
        } else {
            None
        };
        let shutdown = self.clone();
        let future = async move {
            let token = on_drop.state.token.clone();
            let work = AssertUnwindSafe(async move { task(token).await.into_result() })
                .catch_unwind()
                .map(|result| match result {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err(Ended::Failed(error)),
                    Err(panic) => Err(Ended::Panicked(panic_message(&*panic))),
                });
            let result = match deadline {
                Some(deadline) => within_startup(&shutdown, &on_drop.state, deadline, work).await,
                None => work.await,
            };
            finish(&on_drop.state, &on_drop.shutdown, result);
        };
        Ok((
            VitalTask {
                future: future.boxed(),
            },
            state,
        ))
    }
}

/// Runs a start-up task's `work` until the start-up `deadline`; past it, unless the task was
/// told to stop meanwhile (then it may finish), the work is dropped and its token cancelled.
async fn within_startup(
    shutdown: &Shutdown,
    state: &TaskState,
    deadline: Instant,
    work: impl Future<Output = Result<(), Ended>>,
) -> Result<(), Ended> {
    let mut work = std::pin::pin!(work);
    let timer = shutdown.shared.runtime.sleep_until(deadline);
    match select(work.as_mut(), timer).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) if state.token.is_cancelled() => work.await,
        Either::Right(((), _)) => {
            let timeout = shutdown.shared.plan.startup_timeout.unwrap_or_default();
            Err(Ended::StartupTimeout(timeout))
        }
    }
}

/// A group of vital tasks that can be stopped on its own, while the service runs on
/// (tokio-graceful-shutdown's nested subsystems and partial shutdown). Made by
/// [`Shutdown::task_group`]; cheap to clone. At the service's shutdown, its tasks are told to
/// stop in the group's phase, like any vital task.
///
/// ```
/// use deputy_core::{ManualClock, ShutdownCoordinator, State};
/// use futures::executor::LocalPool;
/// use futures::task::LocalSpawnExt;
///
/// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
/// let shutdown = coordinator.handle();
/// let consumers = shutdown.task_group("consumers", "flush").unwrap();
/// let mut pool = LocalPool::new();
/// for topic in ["orders", "refunds"] {
///     let task = consumers.vital(topic, |stop| async move { stop.cancelled().await }).unwrap();
///     pool.spawner().spawn_local(task).unwrap();
/// }
/// pool.run_until_stalled();
///
/// // A rebalance: stop the consumers, not the service.
/// let stopped = pool.run_until(consumers.stop());
/// assert_eq!(stopped.len(), 2);
/// assert!(stopped.iter().all(|task| task.outcome == deputy_core::HookOutcome::Completed));
/// assert_eq!(shutdown.state(), State::Running);
/// ```
#[derive(Debug, Clone)]
pub struct TaskGroup {
    shared: Arc<Group>,
}

#[derive(Debug)]
struct Group {
    name: String,
    phase: String,
    /// Cancelled to stop the whole group; each task's token is a child.
    token: CancellationToken,
    shutdown: Shutdown,
    /// The tasks of this group and of the groups within it, in the order they were made.
    tasks: Mutex<Vec<Arc<TaskState>>>,
    /// The group this one is within.
    parent: Option<Arc<Group>>,
}

impl Group {
    /// Counts `task` in this group and every group it is within.
    fn add(&self, task: &Arc<TaskState>) {
        self.tasks.lock().push(task.clone());
        if let Some(parent) = &self.parent {
            parent.add(task);
        }
    }
}

impl TaskGroup {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// A vital task in this group, named `GROUP/NAME` in logs and the report: see
    /// [`Shutdown::vital`]. Stopping the group tells it to stop; ending after that is no
    /// failure.
    ///
    /// # Errors
    ///
    /// [`HookError::PhaseStarted`] if the group's phase has started already.
    pub fn vital<F, Fut>(&self, name: &str, task: F) -> Result<VitalTask, HookError>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        let group = &self.shared;
        let full_name = format!("{}/{name}", group.name);
        let (task, state) = group.shutdown.vital_with(
            &full_name,
            &group.phase,
            group.token.child(),
            false,
            task,
        )?;
        group.add(&state);
        Ok(task)
    }

    /// A group within this one (named `GROUP/NAME`), stopped with it, or on its own.
    pub fn group(&self, name: &str) -> TaskGroup {
        let group = &self.shared;
        TaskGroup {
            shared: Arc::new(Group {
                name: format!("{}/{name}", group.name),
                phase: group.phase.clone(),
                token: group.token.child(),
                shutdown: group.shutdown.clone(),
                tasks: Mutex::new(Vec::new()),
                parent: Some(group.clone()),
            }),
        }
    }

    /// Tells every task of the group (and of the groups within it) to stop, and waits for
    /// them to end; how each ended, in the order they were made (`duration`: from this
    /// call). The service runs on: a task that ends now is no reason to shut down, but one
    /// that fails or panics says so here. Bound the wait with your runtime's timeout. The
    /// future owns what it needs: spawn it, or await it.
    pub fn stop(&self) -> impl Future<Output = Vec<HookReport>> + Send + 'static {
        let group = self.shared.clone();
        async move {
            let runtime = &group.shutdown.shared.runtime;
            let start = runtime.now();
            group.token.cancel();
            let tasks = group.tasks.lock().clone();
            let mut reports = Vec::with_capacity(tasks.len());
            for task in tasks {
                let outcome = task.outcome().await;
                reports.push(HookReport {
                    name: task.name.clone(),
                    outcome,
                    duration: runtime.now().saturating_duration_since(start),
                });
            }
            reports
        }
    }
}

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::done::Done;
use super::escalation::Escalation;
use super::hook::{Hook, HookContext, HookOutput};
use super::propagation::Arrival;
use super::report::{ShutdownReport, TriggerKind, TriggerRecord};
use super::shared::Shared;
use super::status::Status;
use super::transitions::Transitions;
use crate::error::HookError;
use crate::inflight::Name;
use crate::{CancellationToken, DrainGuard, InFlight, Reason, State, Track};

/// A cheap, cloneable handle to a coordinator: trigger shutdown, read its state, take guards,
/// add hooks, watch progress. Made by [`ShutdownCoordinator::handle`](crate::ShutdownCoordinator::handle);
/// hand clones to every part of the program (and to libraries) that takes part in shutdown.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use deputy_core::{ManualClock, ShutdownCoordinator, State};
///
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(ManualClock::new())
///     .unwrap();
/// let shutdown = coordinator.handle();
/// shutdown.ready();
/// assert!(shutdown.is_ready());
///
/// let request = shutdown.guard();          // a request in flight
/// assert!(shutdown.trigger("deploy"));     // this call started shutdown
/// assert!(!shutdown.trigger("again"));     // the second does nothing
/// assert!(!shutdown.is_ready());           // readiness is off at once
/// assert_eq!(shutdown.state(), State::Draining);
///
/// drop(request);
/// let report = futures::executor::block_on(coordinator.run());
/// assert_eq!(shutdown.state(), State::Done);
/// assert_eq!(report.exit_code, 0);
/// ```
#[derive(Clone)]
pub struct Shutdown {
    pub(crate) shared: Arc<Shared>,
}

impl Shutdown {
    /// Starts shutting down. Returns `true` if this call started it, `false` if shutdown was
    /// already triggered (a repeated trigger never forces; see [`force`](Self::force)).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(shutdown.trigger("deploy")); // started it
    /// assert!(!shutdown.trigger("again")); // already triggered
    /// ```
    pub fn trigger(&self, reason: impl Into<Reason>) -> bool {
        self.shared.request(TriggerKind::Trigger, reason.into())
    }

    /// Skips the rest of the drain (delay and waiting for work in flight) and goes on to the
    /// stopping phases. Returns whether it changed anything: `false` before a trigger or once
    /// draining is over.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator, State};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.force("impatient"));
    /// shutdown.trigger("deploy");
    /// assert!(shutdown.force("impatient"));
    /// assert_eq!(shutdown.state(), State::Stopping);
    /// ```
    pub fn force(&self, reason: impl Into<Reason>) -> bool {
        self.shared.request(TriggerKind::Force, reason.into())
    }

    /// Stops now: what has not finished is recorded as abandoned and the coordinator reaches
    /// `Done` as soon as its future is polled. Returns whether it changed anything.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator, State, Outcome};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.trigger("deploy");
    /// assert!(shutdown.abandon("third ctrl-c"));
    /// let report = futures::executor::block_on(coordinator.run());
    /// assert_eq!(report.outcome, Outcome::Abandoned);
    /// ```
    pub fn abandon(&self, reason: impl Into<Reason>) -> bool {
        self.shared.request(TriggerKind::Abandon, reason.into())
    }

    /// The rule for signals from a person or a supervisor: the first call triggers, the
    /// second forces, the third and later abandon. Counts only its own calls, so a signal
    /// after a trigger from elsewhere (say a preStop hook) does not force.
    ///
    /// ```
    /// use deputy_core::{Escalation, ManualClock, Reason, ShutdownCoordinator};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert_eq!(shutdown.escalate(Reason::Signal(2)), Escalation::Triggered);
    /// assert_eq!(shutdown.escalate(Reason::Signal(2)), Escalation::Forced);
    /// assert_eq!(shutdown.escalate(Reason::Signal(2)), Escalation::Abandoned);
    /// ```
    pub fn escalate(&self, reason: impl Into<Reason>) -> Escalation {
        self.shared.escalate(reason.into())
    }

    /// What a signal handler calls for each signal it receives: [`escalate`](Self::escalate)
    /// with the signal as the reason, logged. When the result
    /// [`is_final`](Escalation::is_final), the handler should exit with `128 + signal`.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator, State};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.on_signal(15).is_final());
    /// assert_eq!(shutdown.state(), State::Draining);
    /// ```
    pub fn on_signal(&self, signal: i32) -> Escalation {
        let escalation = self.escalate(Reason::Signal(signal));
        let signal = Reason::Signal(signal);
        if escalation.is_warning() {
            tracing::warn!(%signal, state = %self.state(), "{escalation}");
        } else {
            tracing::info!(%signal, state = %self.state(), "{escalation}");
        }
        escalation
    }

    /// The current state: one atomic load.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// use deputy_core::State;
    /// assert_eq!(shutdown.state(), State::Running);
    /// shutdown.trigger("deploy");
    /// assert_eq!(shutdown.state(), State::Draining);
    /// ```
    pub fn state(&self) -> State {
        self.shared.state()
    }

    /// Whether shutdown has been triggered.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.is_triggered());
    /// shutdown.trigger("deploy");
    /// assert!(shutdown.is_triggered());
    /// ```
    pub fn is_triggered(&self) -> bool {
        self.state() > State::Running
    }

    /// Why shutdown was triggered (the first accepted trigger), or `None` while running.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, Reason, ShutdownCoordinator};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert_eq!(shutdown.reason(), None);
    /// shutdown.on_signal(15);
    /// shutdown.trigger("later");
    /// assert_eq!(shutdown.reason(), Some(Reason::Signal(15)));
    /// ```
    pub fn reason(&self) -> Option<Reason> {
        self.shared.reason()
    }

    /// Says the service is ready to receive traffic (K8sDeputy.jl's `readied!`). Readiness
    /// stays false until this is called, and turns false again from the first trigger on.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.is_ready()); // not until the service says so
    /// // ... caches warmed, connections open ...
    /// shutdown.ready();
    /// assert!(shutdown.is_ready());
    /// ```
    pub fn ready(&self) {
        self.shared.set_ready(true);
    }

    /// Says the service cannot take traffic for now (it may call [`ready`](Self::ready)
    /// again later).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.ready();
    /// shutdown.not_ready(); // the database is unreachable for now
    /// assert!(!shutdown.is_ready());
    /// ```
    pub fn not_ready(&self) {
        self.shared.set_ready(false);
    }

    /// Readiness for a `/health/ready` probe: [`ready`](Self::ready) was called and shutdown
    /// has not been triggered.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.ready();
    /// assert!(shutdown.is_ready());
    /// shutdown.trigger("deploy");
    /// assert!(!shutdown.is_ready()); // off from the trigger on
    /// ```
    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    /// The rule readiness follows during a shutdown ([`Builder::readiness`](crate::Builder::readiness)).
    ///
    /// ```
    /// use deputy_core::{ManualClock, Readiness, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// assert_eq!(coordinator.handle().readiness(), Readiness::OffAtTrigger);
    /// ```
    pub fn readiness(&self) -> crate::Readiness {
        self.shared.plan.readiness
    }

    /// The whole budget from the first trigger to `Done`
    /// ([`Builder::grace_period`](crate::Builder::grace_period)): for metrics, and for
    /// whatever must end before the kubelet's SIGKILL.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .grace_period(Duration::from_secs(59))
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// assert_eq!(coordinator.handle().grace_period(), Duration::from_secs(59));
    /// ```
    pub fn grace_period(&self) -> Duration {
        self.shared.plan.grace_period
    }

    /// Liveness for a `/health/live` probe: true until `Done`, unless
    /// [`not_live`](Self::not_live) says the service is stuck.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.trigger("deploy");
    /// assert!(shutdown.is_live()); // draining is alive
    /// ```
    pub fn is_live(&self) -> bool {
        self.shared.is_live()
    }

    /// Says the service is stuck and should be restarted: `/health/live` fails (a
    /// watchdog that was not fed, a deadlock detected). [`live`](Self::live) undoes it.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.not_live();
    /// assert!(!shutdown.is_live() && !shutdown.status().live);
    /// shutdown.live();
    /// assert!(shutdown.is_live());
    /// ```
    pub fn not_live(&self) {
        self.shared.set_live(false);
    }

    /// Says the service is no longer stuck (liveness is true again until `Done`).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.not_live();
    /// shutdown.live(); // the watchdog was fed again
    /// assert!(shutdown.is_live());
    /// ```
    pub fn live(&self) {
        self.shared.set_live(true);
    }

    /// Sets a line for people about what the service is doing (systemd's `STATUS=`), shown
    /// by `deputy status` and `/health/status`; an empty one clears it.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.set_message("loading 3 of 7 models");
    /// assert_eq!(shutdown.status().message.as_deref(), Some("loading 3 of 7 models"));
    /// shutdown.set_message("");
    /// assert_eq!(shutdown.status().message, None);
    /// ```
    pub fn set_message(&self, message: impl Into<String>) {
        let message: String = message.into();
        self.shared
            .set_message((!message.is_empty()).then(|| message.into()));
    }

    /// A [`guard`](Self::guard) with a name, so that `deputy status`, `/health/status` and
    /// the report (when the drain times out) can say what holds the drain open and since
    /// when: `GET /export ×2 (12.3s)`. The name's first 56 bytes are kept (a longer one is
    /// listed cut, ending in `…`), copied as they are: no lock, no allocation, one more
    /// atomic operation each way than an unnamed guard (BENCHMARKS.md). Ages are kept to a
    /// tenth of a second while the coordinator's [`run`](crate::ShutdownCoordinator::run)
    /// is polled, exactly otherwise.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let clock = ManualClock::new();
    /// let coordinator = ShutdownCoordinator::builder().build(clock.clone()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let _export = shutdown.guard_named("GET /export");
    /// clock.advance(Duration::from_secs(12));
    /// let _other = shutdown.guard_named("GET /export");
    /// let status = shutdown.status();
    /// assert_eq!(status.stragglers[0].to_string(), "GET /export ×2 (12.0s)");
    /// ```
    #[inline]
    pub fn guard_named(&self, name: impl AsRef<str>) -> DrainGuard {
        self.guard_with(Name::new(name.as_ref()))
    }

    /// A guard named `METHOD PATH` (`GET /export`), for a request: the two are recorded as
    /// they are, never formatted (deputy-tokio's `DrainLayer` takes one per request).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let _request = shutdown.guard_request("GET", "/export");
    /// assert_eq!(shutdown.status().stragglers[0].name, "GET /export");
    /// ```
    #[inline]
    pub fn guard_request(&self, method: &str, path: &str) -> DrainGuard {
        self.guard_with(Name::joined(method, b' ', path))
    }

    /// A guard named after the line that takes it (`src/jobs.rs:42`), for work with no
    /// better name.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let _job = shutdown.guard_here();
    /// let name = &shutdown.status().stragglers[0].name; // `src/main.rs:7`, say
    /// assert!(name.contains(".rs:"), "{name}");
    /// ```
    #[track_caller]
    pub fn guard_here(&self) -> DrainGuard {
        let at = std::panic::Location::caller();
        let line = at.line().to_string();
        self.guard_with(Name::joined(at.file(), b':', &line))
    }

    #[inline]
    fn guard_with(&self, name: Name<'_>) -> DrainGuard {
        let registration = self.shared.named.register(name, &*self.shared.runtime);
        self.shared.in_flight.guard().named(registration)
    }

    /// Notes a new connection or request, for [`Status::propagation`](crate::Status) and
    /// the report: after the trigger, the latest of each is when endpoints last sent this
    /// process new traffic. Before the trigger it costs one atomic load. deputy-tokio's
    /// `DrainLayer` notes every request; a server notes its accepts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{Arrival, ManualClock, ShutdownCoordinator};
    ///
    /// let clock = ManualClock::new();
    /// let coordinator = ShutdownCoordinator::builder().build(clock.clone()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.arrived(Arrival::Request); // before the trigger: not counted
    /// shutdown.trigger("deploy");
    /// clock.advance(Duration::from_millis(1400));
    /// shutdown.arrived(Arrival::Request);
    /// assert_eq!(shutdown.status().propagation.last_request, Some(Duration::from_millis(1400)));
    /// assert_eq!(shutdown.status().propagation.last_connection, None);
    /// ```
    pub fn arrived(&self, arrival: Arrival) {
        self.shared
            .arrivals
            .arrived(arrival, || self.shared.runtime.now());
    }

    /// Says that something reports this service's new connections and requests through
    /// [`arrived`](Self::arrived) (`DrainLayer` and `serve` in deputy-tokio do, and `deputy
    /// run` watching its child's port): the report's propagation then says "no new
    /// connection or request" when none came, instead of "not measured".
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator};
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(!shutdown.status().propagation.measured);
    /// shutdown.watch_arrivals();
    /// assert!(shutdown.status().propagation.measured);
    /// ```
    pub fn watch_arrivals(&self) {
        self.shared.arrivals.watch();
    }

    /// A token cancelled at the first trigger: stop taking new long-lived work.
    ///
    /// It is a child of the coordinator's own token, so cancelling it affects only its holders.
    /// It is cancelled too when the coordinator is dropped before `Done`. Its
    /// [`cancelled`](CancellationToken::cancelled) future needs nothing else kept alive:
    /// made from the temporary, stored, spawned or pinned in a `select!` loop, it resolves at
    /// the trigger (at once if the trigger came first).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let stop = shutdown.draining_token().cancelled(); // the token itself is gone
    /// shutdown.trigger("deploy");
    /// stop.await;
    /// # });
    /// ```
    pub fn draining_token(&self) -> CancellationToken {
        self.shared.draining.child()
    }

    /// A token cancelled when the drain ends and the stopping phases begin: stop what is
    /// still running.
    ///
    /// Like [`draining_token`](Self::draining_token)'s, its future needs nothing else kept
    /// alive, resolves at once if the drain is over already, and resolves when the
    /// coordinator is dropped before `Done`.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let stop = shutdown.stopping_token().cancelled();
    /// shutdown.trigger("deploy");
    /// shutdown.force("skip the drain");
    /// stop.await;
    /// # });
    /// ```
    pub fn stopping_token(&self) -> CancellationToken {
        self.shared.stopping.child()
    }

    /// Marks one unit of work as in flight; the drain waits for it (see [`InFlight::guard`]).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let request = shutdown.guard();
    /// assert_eq!(shutdown.in_flight(), 1);
    /// drop(request); // the response is sent
    /// assert_eq!(shutdown.in_flight(), 0);
    /// ```
    #[inline]
    pub fn guard(&self) -> DrainGuard {
        self.shared.in_flight.guard()
    }

    /// Registers a long-lived connection (a WebSocket, an event stream, a streaming call):
    /// it counts as in flight until the returned [`Connection`](crate::Connection) is
    /// dropped, and receives its [`Notice`](crate::Notice)s: `Move` once the drain delay is
    /// over, spread over the [disconnect window](crate::Builder::disconnect_window), and
    /// `Close` when the drain timeout ends with it still open. While open, it is listed
    /// among the stragglers as `connection` (see [`connection_named`](Self::connection_named)).
    /// Registering takes a lock of this thread's own and an allocation; dropping, neither.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let connection = shutdown.connection();
    /// assert_eq!(shutdown.in_flight(), 1);
    /// drop(connection);
    /// assert_eq!(shutdown.in_flight(), 0);
    /// ```
    pub fn connection(&self) -> crate::Connection {
        self.connection_named("connection")
    }

    /// A [`connection`](Self::connection) listed among the stragglers under `name`
    /// (`WS /chat`), as [`guard_named`](Self::guard_named) does for work.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let _chat = shutdown.connection_named("WS /chat");
    /// assert_eq!(shutdown.status().stragglers[0].to_string(), "WS /chat (0.0s)");
    /// ```
    pub fn connection_named(&self, name: impl AsRef<str>) -> crate::Connection {
        self.shared.connections.register(self.guard_named(name))
    }

    /// Wraps a future so it counts as in flight until it ends (see [`InFlight::track`]).
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let job = shutdown.track(async { 6 * 7 });
    /// assert_eq!(shutdown.in_flight(), 1);
    /// assert_eq!(futures::executor::block_on(job), 42);
    /// assert_eq!(shutdown.in_flight(), 0);
    /// ```
    pub fn track<F: Future>(&self, future: F) -> Track<F> {
        self.shared.in_flight.track(future)
    }

    /// Work in flight now.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let _a = shutdown.guard();
    /// let _b = shutdown.connection();
    /// assert_eq!(shutdown.in_flight(), 2);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.count()
    }

    /// The in-flight counter itself, to hand to code that knows nothing of shutdown.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// let counter: deputy_core::InFlight = shutdown.in_flight_counter();
    /// let _job = counter.guard(); // code that knows only InFlight
    /// assert_eq!(shutdown.in_flight(), 1);
    /// ```
    pub fn in_flight_counter(&self) -> InFlight {
        self.shared.in_flight.clone()
    }

    /// Adds a hook to the phase named `phase`; it runs when that phase starts, concurrently
    /// with the phase's other hooks. Libraries call this on a handle they were given, without
    /// owning `main`; the [default phases](crate::phases) are there for them.
    ///
    /// # Errors
    ///
    /// [`HookError::UnknownPhase`] if no phase has that name, [`HookError::PhaseStarted`] if it
    /// has started already.
    ///
    /// ```
    /// # use deputy_core::{ManualClock, ShutdownCoordinator};
    /// # let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.hook("flush", "producer", |_ctx| async { Ok::<(), std::io::Error>(()) }).unwrap();
    /// assert!(shutdown.hook("no-such-phase", "x", |_| async {}).is_err());
    /// ```
    pub fn hook<F, Fut>(&self, phase: &str, name: &str, hook: F) -> Result<(), HookError>
    where
        F: FnOnce(HookContext) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: HookOutput,
    {
        self.shared.add_hook(phase, Hook::new(name, hook))
    }

    /// The phases, in the order they run.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// assert_eq!(shutdown.phases().collect::<Vec<_>>(), deputy_core::phases::DEFAULTS);
    /// ```
    pub fn phases(&self) -> impl Iterator<Item = &str> + '_ {
        self.shared.phase_names.iter().map(|p| &**p)
    }

    /// Every state entered and phase started, in order, from the first trigger to `Done`.
    ///
    /// The stream owns what it reads: it misses nothing however late it is first polled
    /// (one made after `Done` yields the whole history, then ends), outlives this handle,
    /// and ends when the coordinator is dropped before `Done` (with the abandoned ending).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use deputy_core::{ManualClock, ShutdownCoordinator, State};
    /// # let coordinator = ShutdownCoordinator::builder()
    /// #     .drain_delay(std::time::Duration::ZERO)
    /// #     .without_default_phases()
    /// #     .phase(deputy_core::Phase::new("close"))
    /// #     .build(ManualClock::new())
    /// #     .unwrap();
    /// let shutdown = coordinator.handle();
    /// shutdown.trigger("test");
    /// futures::executor::block_on(coordinator.run());
    /// let seen: Vec<_> = futures::executor::block_on(shutdown.transitions().collect::<Vec<_>>())
    ///     .into_iter()
    ///     .map(|t| (t.state, t.phase))
    ///     .collect();
    /// assert_eq!(seen, [
    ///     (State::Draining, None),
    ///     (State::Stopping, Some("close".to_string())),
    ///     (State::Done, None),
    /// ]);
    /// ```
    pub fn transitions(&self) -> Transitions {
        Transitions::new(self.shared.clone())
    }

    /// A snapshot for status endpoints.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// use deputy_core::State;
    /// shutdown.ready();
    /// let _request = shutdown.guard();
    /// let status = shutdown.status();
    /// assert_eq!((status.state, status.ready, status.in_flight), (State::Running, true, 1));
    /// ```
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Every trigger, force and abandon request so far, in order (the report's
    /// [`triggers`](ShutdownReport::triggers), before it exists): for metrics.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let shutdown = coordinator.handle();
    /// use deputy_core::TriggerKind;
    /// shutdown.trigger("deploy");
    /// shutdown.trigger("again");
    /// let triggers = shutdown.triggers();
    /// assert_eq!(triggers.len(), 2);
    /// assert_eq!(triggers[0].kind, TriggerKind::Trigger);
    /// assert!(triggers[0].accepted && !triggers[1].accepted);
    /// ```
    pub fn triggers(&self) -> Vec<TriggerRecord> {
        self.shared.snapshot().triggers
    }

    /// Sets the exit code the report carries, whatever the outcome: for a program whose
    /// exit code something else decides (a supervisor passing on its child's, a service
    /// with a code of its own). Call it before `Done` (from a hook, say); returns false,
    /// changing nothing, once the report is made.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Outcome, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(std::time::Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let in_hook = shutdown.clone();
    /// coordinator
    ///     .hook("close", "child", move |_| async move {
    ///         in_hook.set_exit_code(143); // the child died of SIGTERM
    ///     })
    ///     .unwrap();
    /// shutdown.trigger("deploy");
    /// let report = futures::executor::block_on(coordinator.run());
    /// assert_eq!((report.outcome, report.exit_code), (Outcome::Clean, 143));
    /// assert!(!shutdown.set_exit_code(0));
    /// ```
    pub fn set_exit_code(&self, code: i32) -> bool {
        self.shared.set_exit_code(code)
    }

    /// The report, once shutdown is done.
    ///
    /// ```
    /// use std::time::Duration;
    /// use deputy_core::{ManualClock, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// assert!(shutdown.report().is_none());
    /// shutdown.trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// assert_eq!(shutdown.report().unwrap().exit_code, 0);
    /// ```
    pub fn report(&self) -> Option<Arc<ShutdownReport>> {
        self.shared.report()
    }

    /// Waits for the report: resolves when the shutdown reaches `Done`, at once if it has.
    ///
    /// The future owns what it watches: it can be spawned, stored, or awaited from many
    /// tasks, after this handle is dropped. If the coordinator is dropped before `Done` (never
    /// run, or its `run()` future dropped), the shutdown ends there as abandoned and this
    /// resolves with that report; it never waits for a shutdown nobody drives.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    ///
    /// ```
    /// use deputy_core::{ManualClock, Outcome, ShutdownCoordinator};
    ///
    /// let coordinator = ShutdownCoordinator::builder()
    ///     .drain_delay(std::time::Duration::ZERO)
    ///     .build(ManualClock::new())
    ///     .unwrap();
    /// let shutdown = coordinator.handle();
    /// let waiters: Vec<_> = (0..3).map(|_| shutdown.done()).collect();
    /// drop(shutdown);
    /// coordinator.handle().trigger("deploy");
    /// futures::executor::block_on(coordinator.run());
    /// for done in waiters {
    ///     assert_eq!(futures::executor::block_on(done).outcome, Outcome::Clean);
    /// }
    /// ```
    pub fn done(&self) -> Done {
        Done::new(self.shared.clone())
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

//! What `deputy run -- CMD` does, as a library: a supervisor that makes any program
//! terminate gracefully in a container.
//!
//! The shutdown is deputy-core's coordinator with one phase, `stop-child`, whose hook stops
//! the child and cleans up after it; so the control socket (`deputy terminate`, `deputy
//! status`), the health endpoints and the signal escalation rule are the same as in a service
//! that uses the library:
//!
//! 1. first SIGTERM/SIGINT (or `deputy terminate`, or `/shutdown`): readiness off, drain
//!    delay (the child keeps serving), then the child is asked to stop: over its control
//!    socket if it has one, else with the stop signal;
//! 2. the child exits: descendants it left get SIGTERM, `cleanup_timeout`, SIGKILL;
//! 3. the grace period (counted from the first signal) runs out, or a third signal comes:
//!    SIGKILL to the child's process group and every descendant.
//!
//! Everything runs on the main thread, in the supervisor's own loop (`event_loop.rs`): it
//! reads the signalfd, watches the control socket's listener and keeps the coordinator's
//! timers, so by default deputy has one thread and the path from a signal to exit never
//! waits for another. async-io's reactor thread starts only for what needs it (a client of
//! the control socket, the health port, the notify socket, readiness checks). Signals are
//! blocked in every thread and read from a signalfd, so none is lost, even as PID 1 (the
//! kernel queues a blocked signal to PID 1 where it would drop one with the default action).
//!
//! Files: `child.rs` starts, stops, reaps and cleans up after the child; `signals.rs` reads
//! and dispatches signals; `readiness.rs` follows the child's port; `error.rs` says why the
//! supervisor could not start.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use deputy_ipc::supervisor::{self, Config};
//!
//! let mut config = Config::new(["python3", "app.py"]);
//! config.drain_delay = Duration::from_secs(10);
//! config.health_port = Some(8081);
//! let code = supervisor::run(config).unwrap_or_else(|error| {
//!     eprintln!("deputy: {error}");
//!     error.exit_code()
//! });
//! std::process::exit(code);
//! ```

mod child;
mod error;
mod event_loop;
mod local_url;
mod notify;
mod readiness;
mod signal;
mod signals;
mod stop;
mod traffic;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deputy_core::{Ending, ExitCodes, Phase, Shutdown, ShutdownCoordinator};
use futures::future::{join, select};

use self::child::Child;
pub use self::error::RunError;
use self::event_loop::{EventLoop, LoopListener, LoopRuntime};
use self::local_url::LocalUrl;
use self::notify::NotifySocket;
use self::readiness::ReadyCheck;
pub use self::signal::{AnySignal, parse_signal, parse_stop_signal};
use self::signals::Signals;
use self::stop::{StopPlan, StopWay};
use crate::{ControlServer, HealthServer, ServerConfig};

/// Prints one of deputy's lines on stderr (see [`say_line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// [`say!`] for something that went wrong and deputy works around (a kill, a fallback):
/// `"level":"WARN"` in JSON lines.
macro_rules! say_warn {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line_at(tracing::Level::WARN, format_args!($($arg)*))
    };
}
pub(crate) use say_warn;

/// [`say!`] for something deputy could not do: `"level":"ERROR"` in JSON lines.
macro_rules! say_error {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line_at(tracing::Level::ERROR, format_args!($($arg)*))
    };
}
pub(crate) use say_error;

/// Writes one of `deputy run`'s lines on stderr, in one write (stderr is unbuffered: the line
/// cannot be split by the child's output, and it costs one system call): `deputy: ...` for a
/// person, or with `DEPUTY_LOG_FORMAT=json` one JSON object in tracing-subscriber's layout
/// (`timestamp`, `level`, `fields.message`, `target`), as the examples' logs. Never panics
/// (stderr may be closed).
pub fn say_line(message: std::fmt::Arguments<'_>) {
    say_line_at(tracing::Level::INFO, message);
}

/// [`say_line`] at `level`: the same text for a person; in JSON lines, the `level` field
/// says it (`WARN` for a kill or a fallback, `ERROR` for what deputy could not do).
pub fn say_line_at(level: tracing::Level, message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = match log_format() {
        crate::LogFormat::Json => {
            let mut line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                "level": level.as_str(),
                "fields": { "message": message.to_string() },
                "target": "deputy",
            })
            .to_string();
            line.push('\n');
            line
        }
        _ => format!("deputy: {message}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The format of deputy's lines, decided once (`run` decides it before the child starts,
/// so that the first line said on the way to exit does not pay for the terminal check).
fn log_format() -> &'static crate::LogFormat {
    static FORMAT: std::sync::OnceLock<crate::LogFormat> = std::sync::OnceLock::new();
    FORMAT.get_or_init(crate::LogFormat::from_env)
}

/// How to supervise a program: [`Config::new`] gives `deputy run`'s defaults.
///
/// ```
/// use std::time::Duration;
/// use deputy_ipc::supervisor::{AnySignal, Config};
///
/// let config = Config::new(["nginx", "-g", "daemon off;"]);
/// assert_eq!(config.grace, Duration::from_secs(25));
/// assert_eq!(config.drain_delay, Duration::from_secs(5));
/// assert_eq!(config.stop_signal, AnySignal::TERM);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The whole shutdown budget, from the first signal to SIGKILL. Default 25 s: 5 s short
    /// of Kubernetes' default terminationGracePeriodSeconds, for deputy to kill, reap and
    /// exit before the kubelet's SIGKILL.
    pub grace: Duration,
    /// How long the child keeps serving after the first signal, readiness off, before it is
    /// asked to stop. Default 5 s.
    pub drain_delay: Duration,
    /// The signal that asks the child to stop when it has no control socket. Default TERM.
    pub stop_signal: AnySignal,
    /// Send the stop signal and forwarded signals to the child's process group.
    pub group: bool,
    /// After the child exits, how long its leftovers get between SIGTERM and SIGKILL.
    /// Default 2 s.
    pub cleanup_timeout: Duration,
    /// Serve /health/live and /health/ready on this port (all addresses).
    pub health_port: Option<u16>,
    /// Ready only while the child accepts TCP connections on this port of 127.0.0.1.
    pub ready_port: Option<u16>,
    /// Ready only while `GET` on this `http://` URL (the child's own, on this machine)
    /// answers 2xx; more precise than `ready_port`, and exclusive with it.
    pub ready_url: Option<String>,
    /// Exit code mappings, FROM to TO, like tini's `-e`.
    pub map_exit: Vec<(i32, i32)>,
    /// The control directory (default: `$DEPUTY_IPC_DIR`, else /run).
    pub ipc_dir: Option<PathBuf>,
    /// Serve a control socket, so `deputy terminate` reaches the supervisor. Default true.
    pub control_socket: bool,
    /// When not PID 1, become a child subreaper. Default true.
    pub subreaper: bool,
    /// Start the child with the raised open-files limit too. By default deputy raises only
    /// its own soft RLIMIT_NOFILE to the hard limit (after starting the child), and the
    /// child gets the limit deputy was given, as Go does for the programs it execs.
    pub raise_child_nofile: bool,
    /// Serve `/shutdown` on the health port, for requests with this token (see
    /// [`shutdown_token_from_env`](crate::shutdown_token_from_env)); needs `health_port`.
    pub shutdown_token: Option<String>,
    /// Make the drain delay measure itself: `drain_delay` becomes its minimum, and it ends a
    /// `quiet_period` after the last new connection to the child's port (`ready_port`, or
    /// `ready_url`'s), at this at the latest. Needs one of those two.
    pub drain_delay_max: Option<Duration>,
    /// With `drain_delay_max`: how long without a new connection ends the drain delay.
    /// Default 1 s.
    pub quiet_period: Duration,
    /// Serve `/metrics` on the health port (Prometheus' text format); needs `health_port`.
    pub metrics: bool,
    /// Speak systemd's notify protocol: the child gets `NOTIFY_SOCKET`, readiness waits for
    /// its `READY=1`, `STATUS=` shows in `deputy status` (see `--notify` in `deputy run
    /// --help`). Exclusive with `ready_port` and `ready_url`.
    pub notify: bool,
    /// With `notify`: the child gets `WATCHDOG_USEC`, and liveness fails when this passes
    /// (from its `READY=1` on) without a `WATCHDOG=1`.
    pub watchdog: Option<Duration>,
    /// Ask the child to stop by running this command line instead (`nginx -s quit`): split
    /// into words as a shell would, run without a shell, with `DEPUTY_CHILD_PID` set. If it
    /// fails, the stop signal is sent. Exclusive with `stop_url`.
    pub stop_command: Option<String>,
    /// Ask the child to stop with a `POST` to this `http://` URL of its own (Envoy's
    /// `/quitquitquit`, Spring's `/actuator/shutdown`); unless it answers 2xx, the stop
    /// signal is sent.
    pub stop_url: Option<String>,
    /// SIGKILL the child this long after it was asked to stop, unless it asks for more
    /// (systemd's `EXTEND_TIMEOUT_USEC`, with `notify`); the grace period bounds it all.
    /// Default: none, the grace period alone.
    pub stop_timeout: Option<Duration>,
    /// Environment variables the child does not get: those deputy took its settings from
    /// (`deputy run` lists the ones set among its options' variables), so that a child
    /// that reads the same names (a service on the deputy library, K8sDeputy.jl) runs no
    /// second drain delay. With `health_port`, the child gets `DEPUTY_HEALTH_CHECK_PORT=off`
    /// instead, so one on the deputy library serves no health endpoints of its own.
    pub withheld_env: Vec<OsString>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

impl Config {
    /// `deputy run`'s defaults for `command`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<OsString>>(command: I) -> Config {
        Config {
            grace: Duration::from_secs(25),
            drain_delay: Duration::from_secs(5),
            stop_signal: AnySignal::TERM,
            group: false,
            cleanup_timeout: Duration::from_secs(2),
            health_port: None,
            ready_port: None,
            ready_url: None,
            map_exit: Vec::new(),
            ipc_dir: None,
            control_socket: true,
            subreaper: true,
            raise_child_nofile: false,
            shutdown_token: None,
            drain_delay_max: None,
            quiet_period: Duration::from_secs(1),
            metrics: false,
            notify: false,
            watchdog: None,
            stop_command: None,
            stop_url: None,
            stop_timeout: None,
            withheld_env: Vec::new(),
            command: command.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks what no supervisor could run with.
    fn check(&self) -> Result<(), RunError> {
        self.check_values()?;
        let ready = self.ready_port.is_some() || self.ready_url.is_some();
        let refusals = [
            (self.command.is_empty(), "no command to run"),
            (
                self.ready_port.is_some() && self.ready_url.is_some(),
                "give --ready-port or --ready-url, not both",
            ),
            (
                self.notify && ready,
                "with --notify, readiness is the child's READY=1: give no --ready-port or --ready-url",
            ),
            (
                self.watchdog.is_some() && !self.notify,
                "--watchdog needs --notify: the child feeds it with WATCHDOG=1",
            ),
            (
                self.stop_command.is_some() && self.stop_url.is_some(),
                "give --stop-command or --stop-url, not both",
            ),
            (
                self.drain_delay_max.is_some() && !ready,
                "--drain-delay-max needs --ready-port or --ready-url: deputy watches new \
                 connections to the child's port",
            ),
            (
                self.drain_delay_max
                    .is_some_and(|max| max < self.drain_delay),
                "--drain-delay-max must not be shorter than --drain-delay (its minimum)",
            ),
            (
                self.metrics && self.health_port.is_none(),
                "--metrics needs --health-port: /metrics is served there",
            ),
            (
                self.shutdown_token.is_some() && self.health_port.is_none(),
                "a /shutdown token needs --health-port: the endpoint is served there",
            ),
        ];
        refuse(&refusals)?;
        self.check_mappings()?;
        let (option, delay) = match self.drain_delay_max {
            Some(max) => ("--drain-delay-max", max),
            None => ("--drain-delay", self.drain_delay),
        };
        if delay >= self.grace {
            return Err(RunError::Usage(format!(
                "{option} ({}) must be shorter than --grace ({}): the child needs time to stop",
                humantime::format_duration(delay),
                humantime::format_duration(self.grace)
            )));
        }
        Ok(())
    }

    /// Refuses values no setting can mean: a zero duration or port, a duration too long.
    fn check_values(&self) -> Result<(), RunError> {
        let zero = |duration: Option<Duration>| duration.is_some_and(|d| d.is_zero());
        refuse(&[
            (self.grace.is_zero(), "--grace must be more than 0s"),
            (zero(self.watchdog), "--watchdog must be more than 0s"),
            (
                zero(self.stop_timeout),
                "--stop-timeout must be more than 0s",
            ),
            (
                self.quiet_period.is_zero(),
                "--quiet-period must be more than 0s",
            ),
            (
                self.health_port == Some(0),
                "--health-port 0 would serve on a port nobody knows: give the port the \
                 probes use (8081 by default in the manifests)",
            ),
            (
                self.ready_port == Some(0),
                "--ready-port 0 is no port: give the port the child listens on",
            ),
        ])?;
        self.check_lengths()
    }

    /// Refuses a duration past [`deputy_core::MAX_DURATION`] (a deadline computed from it
    /// could overflow at the first signal), naming its option.
    fn check_lengths(&self) -> Result<(), RunError> {
        let durations = [
            ("--grace", Some(self.grace)),
            ("--drain-delay", Some(self.drain_delay)),
            ("--drain-delay-max", self.drain_delay_max),
            ("--quiet-period", Some(self.quiet_period)),
            ("--cleanup-timeout", Some(self.cleanup_timeout)),
            ("--watchdog", self.watchdog),
            ("--stop-timeout", self.stop_timeout),
        ];
        match durations
            .iter()
            .find(|(_, value)| value.is_some_and(|d| d > deputy_core::MAX_DURATION))
        {
            Some((option, _)) => Err(RunError::Usage(format!(
                "{option} is longer than the longest duration deputy takes (100 years)"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses two `--map-exit` of the same code to different codes (which one would win
    /// is not for deputy to guess).
    fn check_mappings(&self) -> Result<(), RunError> {
        for (i, (from, to)) in self.map_exit.iter().enumerate() {
            if let Some((_, other)) = self.map_exit[..i]
                .iter()
                .find(|(earlier, other)| earlier == from && other != to)
            {
                return Err(RunError::Usage(format!(
                    "--map-exit maps {from} twice, to {other} and to {to}: give one"
                )));
            }
        }
        Ok(())
    }

    /// The exit code deputy passes on for the child's `code`.
    fn map(&self, code: i32) -> i32 {
        self.clone_map().map(code)
    }

    /// The `--map-exit` table, to take into the stop-child hook.
    fn clone_map(&self) -> ExitMap {
        ExitMap(self.map_exit.clone())
    }
}

/// The first refusal whose condition holds, as a usage error.
fn refuse(refusals: &[(bool, &str)]) -> Result<(), RunError> {
    match refusals.iter().find(|(refused, _)| *refused) {
        Some((_, why)) => Err(RunError::Usage((*why).to_owned())),
        None => Ok(()),
    }
}

/// `--map-exit`'s table: the child's exit code FROM becomes TO.
#[derive(Debug, Clone)]
struct ExitMap(Vec<(i32, i32)>);

impl ExitMap {
    fn map(&self, code: i32) -> i32 {
        self.0
            .iter()
            .find(|(from, _)| *from == code)
            .map_or(code, |(_, to)| *to)
    }
}

/// Parses an exit code mapping as `deputy run --map-exit` takes it: `FROM=TO`, or `FROM`
/// (to 0), each 0 to 255.
///
/// # Errors
///
/// A sentence for a person if either side is not an exit code.
pub fn parse_mapping(text: &str) -> Result<(i32, i32), String> {
    let code = |part: &str| {
        part.trim()
            .parse::<u8>()
            .map(i32::from)
            .map_err(|_| format!("`{part}` is not an exit code (0 to 255)"))
    };
    match text.split_once('=') {
        Some((from, to)) => Ok((code(from)?, code(to)?)),
        None => Ok((code(text)?, 0)),
    }
}

/// Runs `config.command` under the supervisor until it and its descendants are gone;
/// returns the exit code to exit with (the child's, mapped).
///
/// Call it from `main`, before any other thread starts: the signal mask it sets must be
/// inherited by every thread.
///
/// # Errors
///
/// A [`RunError`] if the configuration is unusable or the child cannot be started; its
/// [`exit_code`](RunError::exit_code) is the one to exit with.
pub fn run(config: Config) -> Result<i32, RunError> {
    supervise(config, |code| code)
}

/// [`run`], then the end of the process: once the child and its descendants are gone and
/// deputy's files are cleaned up (the control socket, the pid file, the termination
/// message), the process exits with the exit code there, without freeing what it holds.
/// Returns only if the supervisor could not start, with the error to report.
///
/// This is `deputy run`'s way out: freeing the supervisor's state (a dozen unmaps and
/// closes, which the kernel does anyway at exit) came after the child's death and before
/// the exit, where it cost about 75 µs on the way from the stop signal to exit (see
/// BENCHMARKS.md, "signal to exit").
///
/// # Examples
///
/// ```no_run
/// use deputy_ipc::supervisor::{self, Config};
///
/// let error = supervisor::run_then_exit(Config::new(["python3", "app.py"]));
/// eprintln!("deputy: {error}");
/// std::process::exit(error.exit_code());
/// ```
pub fn run_then_exit(config: Config) -> RunError {
    match supervise(config, |code| exit_now(code)) {
        Ok(code) => exit_now(code),
        Err(error) => error,
    }
}

/// Ends the process with `code` at once: stdout flushed (stderr has no buffer), no
/// destructors, no `atexit` handlers (deputy registers none).
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` takes no pointer and never returns; skipping destructors is its point,
    // and nothing this process holds needs one to run (the kernel closes and unmaps).
    unsafe { nix::libc::_exit(code) }
}

/// [`run`]'s body; `end` gets the exit code once everything is cleaned up, while the
/// supervisor's state is still held (its value is what `run` returns).
fn supervise(config: Config, end: impl FnOnce(i32) -> i32) -> Result<i32, RunError> {
    config.check()?;
    let (termination_log, message_before) = settle_the_way_out();
    let _ = log_format();
    let signals = take_process_duties(&config)?;
    let event_loop =
        EventLoop::new().map_err(|e| RunError::Setup(format!("cannot set up events: {e}")))?;
    let coordinator = plan(&config, &event_loop)?;
    let shutdown = coordinator.handle();
    let after = shutdown.clone();
    let health = health_server(&shutdown, &config)?;
    let stop = stop_plan(&config)?;
    let readiness = readiness_check(&config)?;
    let notify = notify_socket(&config, &stop.ipc_dir)?;
    // The control socket before the start, so that it (and the pid file) exists once the
    // child runs: binding is a few system calls; async-io's reactor and thread start later.
    let control = config
        .control_socket
        .then(|| control_server(&shutdown, &stop))
        .flatten();
    let mut env = child_env(&config);
    env.extend(notify.iter().flat_map(NotifySocket::env));
    let child = Arc::new(Child::spawn(
        &config.command,
        (&env, &config.withheld_env),
        stop,
    )?);
    // After the start, so the child keeps the limit deputy was given (unless told
    // otherwise): a flood of connections to the health port or the control socket should
    // not find deputy at a soft limit of 1,024 descriptors.
    if !config.raise_child_nofile {
        raise_nofile_limit();
    }
    if readiness.is_none() && notify.is_none() {
        shutdown.ready();
    }
    hook_child_stop(&coordinator, child.clone(), config.clone_map());
    let supervisor = Supervisor {
        coordinator,
        shutdown,
        control,
        health,
        child: child.clone(),
        grace: config.grace,
        drain_delay: config.drain_delay,
        readiness,
        notify,
        event_loop: event_loop.clone(),
    };
    let (on_signal, by) = (after.clone(), child.clone());
    let ran = event_loop.block_on(
        signals.fd(),
        || signals.handle(&on_signal, &by),
        supervisor.drive(),
    );
    if let Err(error) = ran {
        child.kill_all();
        return Err(RunError::Setup(format!("cannot wait for events: {error}")));
    }
    let exit = config.map(child.exit_code().unwrap_or(128 + 9));
    if let Some(path) = &termination_log {
        record_termination(path, &child, &after, exit, message_before);
    }
    Ok(end(exit))
}

/// What the way out needs, settled before the child starts, so that the way from the stop
/// signal to exit has less to do: stdout's buffer (std sets it up when first asked for it,
/// an allocation that musl may map; else `exit_now`'s flush would), and where the
/// termination message goes (the kubelet mounts /dev/termination-log before the container
/// starts) with that file's state now.
fn settle_the_way_out() -> (Option<PathBuf>, FileState) {
    drop(std::io::stdout());
    let path = crate::termination_log_path();
    let state = path.as_deref().and_then(termination_file_state);
    (path, state)
}

/// The process's own duties, before any thread exists (every thread inherits the blocked
/// signal mask): signals blocked for the signalfd, a subreaper when not PID 1, and the
/// descriptor limit raised now when the child is to have it too.
fn take_process_duties(config: &Config) -> Result<Signals, RunError> {
    let signals =
        Signals::block().map_err(|e| RunError::Setup(format!("cannot set up signals: {e}")))?;
    if std::process::id() != 1
        && config.subreaper
        && let Err(error) = nix::sys::prctl::set_child_subreaper(true)
    {
        say_warn!("cannot become a child subreaper ({error}); orphans will go to PID 1");
    }
    if config.raise_child_nofile {
        raise_nofile_limit();
    }
    Ok(signals)
}

/// The stop-child phase's hook: ask the child to stop its way, then clean up its sockets.
/// The child's exit code, mapped, is what deputy exits with: the report says so too, so that
/// `deputy terminate` and `/shutdown` tell the same code as the termination message.
fn hook_child_stop(
    coordinator: &deputy_core::ShutdownCoordinator,
    child: Arc<Child>,
    map: ExitMap,
) {
    let shutdown = coordinator.handle();
    coordinator
        .hook(child::PHASE, "child", move |_ctx| async move {
            child.stop().await;
            if let Some(code) = child.exit_code() {
                shutdown.set_exit_code(map.map(code));
            }
            child.clean_up().await;
        })
        .expect("the plan has the stop-child phase");
}

/// The termination message file's identity: when it was changed, its size and inode. A
/// child that writes its own message changes it; compared as a whole, not by time alone,
/// since file times come from a coarse clock that can lag this one by milliseconds.
type FileState = Option<(Option<SystemTime>, u64, u64)>;

fn termination_file_state(path: &Path) -> FileState {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len(), meta.ino()))
}

/// The container's termination message at `path` (see [`crate::record_termination`]): how
/// the child ended and deputy's exit code, the shutdown's summary, then what the child wrote
/// there itself during this run (a service that uses deputy), if anything.
fn record_termination(
    path: &Path,
    child: &Child,
    shutdown: &Shutdown,
    exit: i32,
    before: FileState,
) {
    let ending = child
        .ending()
        .unwrap_or_else(|| format!("process {} was not reaped", child.pid()));
    let mut message = format!("{ending}; deputy run exits with code {exit}\n");
    if let Some(report) = shutdown.report() {
        message.push_str(&report.summary());
    }
    if termination_file_state(path) != before
        && let Ok(own) = std::fs::read_to_string(path)
        && !own.trim().is_empty()
    {
        message.push_str("the child's own message:\n");
        message.push_str(&own);
    }
    if let Err(error) = crate::termination::write_termination_message_at(path, &message) {
        say_warn!(
            "cannot write the termination message to {}: {error}",
            path.display()
        );
    }
}

/// The coordinator: one phase, `stop-child`, bounded by the grace period.
fn plan(config: &Config, event_loop: &EventLoop) -> Result<ShutdownCoordinator, RunError> {
    let builder = ShutdownCoordinator::builder()
        .grace_period(config.grace)
        .drain_delay(config.drain_delay)
        .quiet_period(config.quiet_period);
    let builder = match config.drain_delay_max {
        Some(max) => builder.drain_delay_max(max),
        None => builder,
    };
    // Abandoned (the grace period over, a third signal), the child gets SIGKILL: deputy
    // then exits with what that maps to, and the report says so from the start.
    let codes = ExitCodes {
        abandoned: config.map(128 + 9),
        ..ExitCodes::default()
    };
    builder
        .exit_codes(codes)
        .without_default_phases()
        .phase(Phase::new(child::PHASE).timeout(config.grace))
        // The phase may use the whole grace period when a second signal skipped the delay;
        // the grace period still bounds the whole shutdown.
        .allow_over_budget()
        .build(LoopRuntime(event_loop.clone()))
        .map_err(|e| RunError::Setup(e.to_string()))
}

fn health_server(shutdown: &Shutdown, config: &Config) -> Result<Option<HealthServer>, RunError> {
    let Some(port) = config.health_port else {
        return Ok(None);
    };
    let server = HealthServer::bind(shutdown, SocketAddr::from(([0, 0, 0, 0], port)))
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let server = if config.metrics {
        server.with_metrics()
    } else {
        server
    };
    Ok(Some(match &config.shutdown_token {
        Some(token) => server.with_shutdown_endpoint(token.clone()),
        None => server,
    }))
}

/// How readiness is told, if not from the start.
fn readiness_check(config: &Config) -> Result<Option<ReadyCheck>, RunError> {
    if let Some(url) = &config.ready_url {
        return LocalUrl::parse("--ready-url", url)
            .map(|url| Some(ReadyCheck::Url(url)))
            .map_err(RunError::Usage);
    }
    Ok(config.ready_port.map(ReadyCheck::Port))
}

/// How the child is to be stopped.
fn stop_plan(config: &Config) -> Result<StopPlan, RunError> {
    Ok(StopPlan {
        signal: config.stop_signal,
        group: config.group,
        ipc_dir: config.ipc_dir.clone().unwrap_or_else(crate::ipc_dir),
        cleanup_timeout: config.cleanup_timeout,
        way: stop_way(config)?,
        timeout: config.stop_timeout,
    })
}

/// With `--notify`, the socket the child's messages come to, in the control directory.
fn notify_socket(config: &Config, dir: &Path) -> Result<Option<NotifySocket>, RunError> {
    if !config.notify {
        return Ok(None);
    }
    NotifySocket::bind(dir, config.watchdog)
        .map(Some)
        .map_err(|e| {
            RunError::Setup(format!(
                "cannot bind the notify socket in {}: {e}",
                dir.display()
            ))
        })
}

/// The child's own way to be asked to stop, if one is given.
fn stop_way(config: &Config) -> Result<Option<StopWay>, RunError> {
    if let Some(text) = &config.stop_command {
        let words = shell_words::split(text)
            .map_err(|e| RunError::Usage(format!("--stop-command `{text}`: {e}")))?;
        if words.is_empty() {
            return Err(RunError::Usage("--stop-command is empty".into()));
        }
        return Ok(Some(StopWay::Command(
            words.into_iter().map(OsString::from).collect(),
        )));
    }
    config
        .stop_url
        .as_ref()
        .map(|url| LocalUrl::parse("--stop-url", url).map(StopWay::Url))
        .transpose()
        .map_err(RunError::Usage)
}

/// [`crate::raise_nofile_limit`], said if it fails (deputy goes on with the limit it has).
fn raise_nofile_limit() {
    if let Err(error) = crate::raise_nofile_limit() {
        say_warn!("cannot raise the open-files limit: {error}");
    }
}

/// The supervisor's own control socket, and the pid file too, unless DEPUTY_ENTRYPOINT=0
/// says deputy runs under another supervisor (say, another `deputy run`), which keeps it.
fn control_server(shutdown: &Shutdown, stop: &StopPlan) -> Option<ControlServer> {
    match ControlServer::bind(shutdown, ServerConfig::default().dir(&stop.ipc_dir)) {
        Ok(server) => Some(server),
        Err(error) => {
            say_warn!("no control socket, `deputy terminate` will not find this process: {error}");
            None
        }
    }
}

/// What the child gets on top of deputy's environment.
fn child_env(config: &Config) -> Vec<(OsString, OsString)> {
    let mut env = vec![(crate::ENTRYPOINT_ENV.into(), "0".into())];
    // deputy serves the health endpoints: a child that uses deputy too must not try the
    // same port (its default is deputy's usual one), nor serve any the probes never see.
    if config.health_port.is_some() {
        env.push((
            crate::HEALTH_CHECK_PORT_ENV.into(),
            crate::HEALTH_CHECK_OFF.into(),
        ));
    }
    if let Some(dir) = &config.ipc_dir {
        env.push((crate::IPC_DIR_ENV.into(), dir.clone().into_os_string()));
    }
    env
}

/// Everything the supervisor runs, once the child is started.
struct Supervisor {
    coordinator: ShutdownCoordinator,
    shutdown: Shutdown,
    control: Option<ControlServer>,
    health: Option<HealthServer>,
    child: Arc<Child>,
    grace: Duration,
    drain_delay: Duration,
    readiness: Option<ReadyCheck>,
    notify: Option<NotifySocket>,
    event_loop: EventLoop,
}

impl Supervisor {
    /// Runs the signal loop, the servers and the shutdown until the child and its
    /// descendants are gone and the control socket's clients have hung up.
    async fn drive(self) {
        let Supervisor {
            coordinator,
            shutdown,
            control,
            health,
            child,
            grace,
            drain_delay,
            readiness,
            notify,
            event_loop,
        } = self;
        let background = background(
            &shutdown,
            &child,
            readiness.as_ref(),
            notify.as_ref(),
            (grace, drain_delay),
        );
        let supervise = async {
            let report = coordinator.run().await;
            if !child.is_done() {
                // After a third signal, that signal's line already said it.
                if report.ending != Ending::Abandoned {
                    say_warn!(
                        "the grace period of {} is over: killing process group {}",
                        humantime::format_duration(grace),
                        child.pid()
                    );
                }
                child.kill_all_and_wait().await;
            }
        };
        // Both end once shutdown is done and their clients have what they waited for: the
        // control socket's `deputy terminate`, and the health port's `/shutdown` (it lingers
        // a second after Done, so that an httpGet preStop gets its answer).
        let servers = async {
            let control = async {
                if let Some(control) = control {
                    control
                        .run_with(|listener| LoopListener::new(&event_loop, listener))
                        .await;
                }
            };
            let health = async {
                if let Some(health) = health {
                    health.run().await;
                }
            };
            join(control, health).await
        };
        let _ = select(pin!(join(supervise, servers)), pin!(background)).await;
    }
}

/// What runs beside the shutdown, to the end: readiness and the child's
/// traffic, the notify socket, and the line that says the shutdown started. Never returns.
async fn background(
    shutdown: &Shutdown,
    child: &Child,
    readiness: Option<&ReadyCheck>,
    notify: Option<&NotifySocket>,
    (grace, drain_delay): (Duration, Duration),
) {
    let readiness = async {
        if let Some(check) = readiness {
            // New connections to the child's port while draining: the report's propagation,
            // and what an adaptive drain delay waits out.
            join(
                readiness::follow(shutdown, check),
                traffic::watch(shutdown, check.port()),
            )
            .await;
        }
    };
    let notify = async {
        if let Some(notify) = notify {
            notify.serve(shutdown, child, grace).await;
        }
    };
    let _ = join(
        join(readiness, notify),
        announce(shutdown, child, drain_delay),
    )
    .await;
    std::future::pending::<()>().await;
}

/// Says when and why shutdown starts, whatever started it (a signal, `deputy terminate`,
/// `/shutdown`).
async fn announce(shutdown: &Shutdown, child: &Child, delay: Duration) {
    shutdown.draining_token().cancelled().await;
    if child.exit_code().is_some() {
        return; // the child's own exit started it, and that was said
    }
    let why = shutdown
        .reason()
        .map_or_else(|| "shutdown".to_owned(), |reason| reason.to_string());
    if delay.is_zero() {
        say!("{why}: readiness off, stopping process {}", child.pid());
    } else {
        say!(
            "{why}: readiness off, stopping process {} in {}",
            child.pid(),
            humantime::format_duration(delay)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mappings_default_to_zero_and_stay_in_range() {
        assert_eq!(parse_mapping("143"), Ok((143, 0)));
        assert_eq!(parse_mapping("1=2"), Ok((1, 2)));
        assert!(parse_mapping("256").is_err());
        assert!(parse_mapping("1=-1").is_err());
        assert!(parse_mapping("x=1").is_err());
    }
}

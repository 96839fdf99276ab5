//! `deputy run -- CMD`: a supervisor that makes any program terminate gracefully in a
//! container.
//!
//! The shutdown is deputy-core's coordinator with one phase, `stop-child`, whose hook stops
//! the child and cleans up after it; so the control socket (`deputy terminate`, `deputy
//! status`), the health endpoints and the signal escalation rule are the same as in a service
//! that uses the library:
//!
//! 1. first SIGTERM/SIGINT (or `deputy terminate`, or `/shutdown`): readiness off, drain
//!    delay (the child keeps serving), then the child is asked to stop: over its control
//!    socket if it has one, else with the stop signal;
//! 2. the child exits: descendants it left get SIGTERM, `--cleanup-timeout`, SIGKILL;
//! 3. the grace period (counted from the first signal) runs out, or a third signal comes:
//!    SIGKILL to the child's process group and every descendant.
//!
//! Everything runs on one thread (plus async-io's reactor thread); signals are blocked in
//! every thread and read from a signalfd, so none is lost, even as PID 1 (the kernel queues a
//! blocked signal to PID 1 where it would drop one with the default action).

mod args;
mod child;
mod signals;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use clap::Args;
use deputy_core::state::Ending;
use deputy_core::{Phase, Shutdown, ShutdownCoordinator};
use deputy_ipc::{ControlServer, HealthServer, ServerConfig};
use futures::future::{Either, join, select};
use nix::sys::signal::Signal;

use self::child::{Child, StopPlan};
use self::signals::Signals;

/// Prints one line for a person on stderr, prefixed `deputy:` so it stands apart from the
/// child's output, in one write. Never panics (stderr may be closed).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // One write per line (stderr is unbuffered): the line cannot be split by the
        // child's output, and it costs one system call.
        let line = format!("deputy: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}
pub(crate) use say;

/// Exit codes of `deputy run` itself; otherwise it exits with the child's code.
pub(crate) mod code {
    /// Bad command line (clap's code).
    pub(crate) const USAGE: i32 = 2;
    /// deputy could not set up or start the child (as docker and podman use it).
    pub(crate) const SETUP: i32 = 125;
    /// The command was found but could not be executed.
    pub(crate) const NOT_EXECUTABLE: i32 = 126;
    /// The command was not found.
    pub(crate) const NOT_FOUND: i32 = 127;
}

pub(crate) use self::args::quick_parse;

pub(crate) const HELP: &str = "\
On SIGTERM or SIGINT (or `deputy terminate`): readiness turns off (--health-port), the child
keeps serving for --drain-delay, then it is asked to stop, over its deputy control socket if
it serves one (else over its descendants' sockets, for a service under `sh -c`), else with
--stop-signal. If it is still running when --grace (counted from the first signal) is over,
its process group and every descendant get SIGKILL. A second signal skips the drain delay; a
third kills at once. SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH and SIGALRM are forwarded to
the child as they come.

Images whose STOPSIGNAL is SIGQUIT (nginx): set STOPSIGNAL SIGTERM and --stop-signal QUIT,
so the drain delay runs before nginx gets its QUIT.

The child runs in its own process group, with an empty signal mask and default signal
dispositions, deputy's stdin/stdout/stderr and environment (plus DEPUTY_ENTRYPOINT=0, so a
child that uses deputy leaves the entrypoint pid file to the supervisor, and DEPUTY_IPC_DIR
when --ipc-dir is given). At a terminal (docker run -it) the child's group gets the
terminal's foreground, as with tini: Ctrl-C then goes to the child itself. deputy reaps every
zombie: as PID 1, and otherwise as a child subreaper (unless --no-subreaper).

Exit code: the child's, or 128+N when signal N killed it (after --map-exit). deputy's own:
  2    bad command line
  125  deputy could not set up (health port, signals) or start the child
  126  the command cannot be executed
  127  the command was not found";

/// `--grace`'s default.
pub(crate) const DEFAULT_GRACE: &str = "25s";
/// `--drain-delay`'s default.
pub(crate) const DEFAULT_DRAIN_DELAY: &str = "5s";
/// `--stop-signal`'s default.
pub(crate) const DEFAULT_STOP_SIGNAL: &str = "TERM";
/// `--cleanup-timeout`'s default.
pub(crate) const DEFAULT_CLEANUP_TIMEOUT: &str = "2s";

/// The options of `deputy run`.
#[derive(Debug, PartialEq, Args)]
pub(crate) struct RunArgs {
    /// The whole shutdown budget, from the first signal to SIGKILL: drain delay, stop,
    /// cleanup. The default leaves 5 s of Kubernetes' default terminationGracePeriodSeconds
    /// (30 s) for deputy to kill, reap and exit before the kubelet's SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_GRACE, value_parser = humantime::parse_duration)]
    grace: Duration,
    /// How long the child keeps serving after the first signal, readiness off, before it is
    /// asked to stop: the time endpoints take to stop sending traffic.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_DRAIN_DELAY, value_parser = humantime::parse_duration)]
    drain_delay: Duration,
    /// The signal that asks the child to stop when it has no deputy control socket (a name
    /// like TERM, SIGQUIT, or a number).
    #[arg(long, value_name = "SIGNAL", default_value = DEFAULT_STOP_SIGNAL, value_parser = parse_signal)]
    stop_signal: Signal,
    /// Send the stop signal and forwarded signals to the child's whole process group, not
    /// only to the child.
    #[arg(long)]
    group: bool,
    /// After the child exits, how long the descendants it left get between SIGTERM and
    /// SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_CLEANUP_TIMEOUT, value_parser = humantime::parse_duration)]
    cleanup_timeout: Duration,
    /// Serve /health/live and /health/ready on this port (all addresses): ready while
    /// running (see --ready-port), not ready from the first signal on.
    #[arg(long, value_name = "PORT")]
    health_port: Option<u16>,
    /// Ready only while the child accepts TCP connections on this port of 127.0.0.1 (checked
    /// every 200 ms until it does, then every second), so a pod gets no traffic before the
    /// child listens. Without it, ready from the start.
    #[arg(long, value_name = "PORT")]
    ready_port: Option<u16>,
    /// Map the child's exit code FROM to TO (default 0), like tini's -e; repeat it for more
    /// codes. For example `--map-exit 143` makes a child killed by SIGTERM count as success.
    #[arg(long = "map-exit", value_name = "FROM[=TO]", value_parser = parse_mapping)]
    map_exit: Vec<(i32, i32)>,
    /// Where to put the control socket, and where the child's is looked for (default:
    /// $DEPUTY_IPC_DIR, else /run).
    #[arg(long, value_name = "DIR")]
    ipc_dir: Option<PathBuf>,
    /// Do not serve a control socket (`deputy terminate` then cannot reach this process).
    #[arg(long)]
    no_control_socket: bool,
    /// When not PID 1, do not become a child subreaper: orphaned descendants then go to
    /// PID 1 instead of being reaped and cleaned up by deputy.
    #[arg(long)]
    no_subreaper: bool,
    /// The program to run and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Parses `TERM`, `SIGTERM`, `term` or `15`.
fn parse_signal(text: &str) -> Result<Signal, String> {
    let text = text.trim();
    let signal = if let Ok(number) = text.parse::<i32>() {
        Signal::try_from(number).ok()
    } else {
        let upper = text.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        name.parse::<Signal>().ok()
    };
    match signal {
        Some(Signal::SIGKILL | Signal::SIGSTOP) => Err(format!(
            "{text} cannot be caught, so it cannot ask for a graceful stop"
        )),
        Some(signal) => Ok(signal),
        None => Err(format!(
            "`{text}` is not a signal (try TERM, INT, QUIT or a number)"
        )),
    }
}

/// Parses `FROM=TO` or `FROM` (to 0), each 0 to 255.
fn parse_mapping(text: &str) -> Result<(i32, i32), String> {
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

/// Runs the supervisor; returns the exit code.
pub(crate) fn main(args: RunArgs) -> i32 {
    match supervise(args) {
        Ok(code) => code,
        Err((code, message)) => {
            say!("{message}");
            code
        }
    }
}

fn supervise(args: RunArgs) -> Result<i32, (i32, String)> {
    if args.grace.is_zero() {
        return Err((code::USAGE, "--grace must be more than 0s".into()));
    }
    if args.drain_delay >= args.grace {
        return Err((
            code::USAGE,
            format!(
                "--drain-delay ({}) must be shorter than --grace ({}): the child needs time to stop",
                humantime::format_duration(args.drain_delay),
                humantime::format_duration(args.grace)
            ),
        ));
    }
    // First, before any thread exists: every thread inherits the blocked mask.
    let signals =
        Signals::block().map_err(|e| (code::SETUP, format!("cannot set up signals: {e}")))?;
    if std::process::id() != 1
        && !args.no_subreaper
        && let Err(error) = nix::sys::prctl::set_child_subreaper(true)
    {
        say!("cannot become a child subreaper ({error}); orphans will go to PID 1");
    }

    let coordinator = ShutdownCoordinator::builder()
        .grace_period(args.grace)
        .drain_delay(args.drain_delay)
        .without_default_phases()
        .phase(Phase::new(child::PHASE).timeout(args.grace))
        // The phase may use the whole grace period when a second signal skipped the delay;
        // the grace period still bounds the whole shutdown.
        .allow_over_budget()
        .build(deputy_smol::AsyncIoRuntime)
        .map_err(|e| (code::SETUP, e.to_string()))?;
    let shutdown = coordinator.handle();

    let health = match args.health_port {
        None => None,
        Some(port) => Some(
            HealthServer::bind(&shutdown, SocketAddr::from(([0, 0, 0, 0], port))).map_err(|e| {
                (
                    code::SETUP,
                    format!("cannot serve health endpoints on port {port}: {e}"),
                )
            })?,
        ),
    };

    let mut extra_env = vec![(deputy_ipc::ENTRYPOINT_ENV.into(), "0".into())];
    if let Some(dir) = &args.ipc_dir {
        extra_env.push((deputy_ipc::IPC_DIR_ENV.into(), dir.clone().into_os_string()));
    }
    let plan = StopPlan {
        signal: args.stop_signal,
        group: args.group,
        ipc_dir: args.ipc_dir.clone().unwrap_or_else(deputy_ipc::ipc_dir),
        cleanup_timeout: args.cleanup_timeout,
    };
    // The control socket before the start, so that it (and the pid file) exists once the
    // child runs: binding is a few system calls; async-io's reactor and thread start later.
    let control = if args.no_control_socket {
        None
    } else {
        match ControlServer::bind(
            &shutdown,
            // The pid file too, unless DEPUTY_ENTRYPOINT=0 says deputy runs under another
            // supervisor (say, another `deputy run`), which keeps it.
            ServerConfig::default().dir(&plan.ipc_dir),
        ) {
            Ok(server) => Some(server),
            Err(error) => {
                say!("no control socket, `deputy terminate` will not find this process: {error}");
                None
            }
        }
    };
    let child = Arc::new(Child::spawn(&args.command, &extra_env, plan)?);
    if args.ready_port.is_none() {
        shutdown.ready();
    }
    {
        let child = child.clone();
        coordinator
            .hook(child::PHASE, "child", move |_ctx| async move {
                child.stop().await;
                child.clean_up().await;
            })
            .expect("the plan has the stop-child phase");
    }

    async_io::block_on(
        Supervisor {
            coordinator,
            shutdown,
            control,
            health,
            child: child.clone(),
            grace: args.grace,
            drain_delay: args.drain_delay,
            ready_port: args.ready_port,
        }
        .drive(signals),
    );
    let exit = child.exit_code().unwrap_or(128 + Signal::SIGKILL as i32);
    Ok(args
        .map_exit
        .iter()
        .find(|(from, _)| *from == exit)
        .map_or(exit, |(_, to)| *to))
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
    ready_port: Option<u16>,
}

impl Supervisor {
    /// Runs the signal loop, the servers and the shutdown until the child and its
    /// descendants are gone and the control socket's clients have hung up.
    async fn drive(self, signals: Signals) {
        let Supervisor {
            coordinator,
            shutdown,
            control,
            health,
            child,
            grace,
            drain_delay,
            ready_port,
        } = self;
        let background = async {
            let health = async {
                if let Some(health) = health {
                    health.run().await;
                }
            };
            let readiness = async {
                if let Some(port) = ready_port {
                    follow_readiness(&shutdown, port).await;
                }
            };
            let _ = join(
                signals.run(&shutdown, &child),
                join(
                    join(health, readiness),
                    announce(&shutdown, &child, drain_delay),
                ),
            )
            .await;
            // The signal loop ends only on an error it reported; keep the rest going.
            std::future::pending::<()>().await;
        };
        let supervise = async {
            let report = coordinator.run().await;
            if !child.is_done() {
                // After a third signal, that signal's line already said it.
                if report.ending != Ending::Abandoned {
                    say!(
                        "the grace period of {} is over: killing process group {}",
                        humantime::format_duration(grace),
                        child.pid()
                    );
                }
                child.kill_everything().await;
            }
        };
        let control = async {
            if let Some(control) = control {
                control.run().await;
            }
        };
        let _ = select(pin!(join(supervise, control)), pin!(background)).await;
    }
}

/// Readiness follows whether the child accepts connections on `port`: checked every 200 ms
/// until it does, then every second, until shutdown starts (which turns readiness off for
/// good).
async fn follow_readiness(shutdown: &Shutdown, port: u16) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let draining = shutdown.draining_token();
    let mut was_ready = false;
    while !draining.is_cancelled() {
        let connect = async_io::Async::<std::net::TcpStream>::connect(address);
        let ready = matches!(
            select(pin!(connect), Timer::after(Duration::from_secs(1))).await,
            Either::Left((Ok(_), _))
        );
        if ready != was_ready {
            if ready {
                shutdown.ready();
                say!("ready: the child accepts connections on port {port}");
            } else {
                shutdown.not_ready();
                say!("not ready: the child refuses connections on port {port}");
            }
            was_ready = ready;
        }
        let every = if ready { 1000 } else { 200 };
        let _ = select(
            pin!(draining.cancelled()),
            Timer::after(Duration::from_millis(every)),
        )
        .await;
    }
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
    fn signals_are_read_by_name_with_or_without_sig_or_by_number() {
        for text in ["TERM", "SIGTERM", "term", "15", " 15 "] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("quit"), Ok(Signal::SIGQUIT));
        assert!(
            parse_signal("KILL")
                .unwrap_err()
                .contains("cannot be caught")
        );
        assert!(parse_signal("19").unwrap_err().contains("cannot be caught"));
        assert!(parse_signal("NOPE").unwrap_err().contains("not a signal"));
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn exit_code_mappings_default_to_zero_and_stay_in_range() {
        assert_eq!(parse_mapping("143"), Ok((143, 0)));
        assert_eq!(parse_mapping("1=2"), Ok((1, 2)));
        assert!(parse_mapping("256").is_err());
        assert!(parse_mapping("1=-1").is_err());
        assert!(parse_mapping("x=1").is_err());
    }
}

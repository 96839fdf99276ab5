//! What each command prints for a person (or as JSON lines), and the exit codes it maps
//! deputy-ipc's results to.

use std::time::{Duration, Instant};

use deputy_core::{Outcome, PhaseOutcome, Propagation};
use deputy_ipc::client::{self, Client, ClientError};
use deputy_ipc::protocol::Response;
use deputy_ipc::supervisor::RunError;

use crate::Failure;
use crate::cli::{RunArgs, Target, code};

/// A line for a person on stdout. A closed pipe (`deputy status | head -0`) is no reason to
/// stop, and a panic would be worse: the command goes on and exits with its code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say!`] without the newline (a JSON line already ends with one).
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

/// [`say!`] on stderr.
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `deputy run`: returns only if the supervisor could not start, with the exit code for
/// that; otherwise the supervisor exits with the child's code.
pub(crate) fn run(args: RunArgs) -> i32 {
    if args.quiet_period.is_some() && args.drain_delay_max.is_none() {
        return usage(
            "--quiet-period needs --drain-delay-max: it ends the adaptive drain delay, which \
             only --drain-delay-max turns on"
                .to_owned(),
        );
    }
    let mut config = args.into_config();
    // DEPUTY_METRICS=1 asks for /metrics where there is a health port to serve it on
    // (without one, the variable is only the child's business).
    let metrics_from_env = if config.health_port.is_some() {
        match deputy_ipc::metrics_from_env() {
            Ok(metrics) => metrics,
            Err(why) => return usage(why),
        }
    } else {
        false
    };
    config.metrics |= metrics_from_env;
    // What deputy took from the environment is not the child's (see RUN_HELP).
    config.withheld_env = crate::cli::RUN_ENV
        .iter()
        .chain(metrics_from_env.then_some(&deputy_ipc::METRICS_ENV))
        .filter(|name| std::env::var_os(name).is_some())
        .map(Into::into)
        .collect();
    // On success, the supervisor ends the process itself (see `run_then_exit`).
    let error = match shutdown_token(config.health_port.is_some()) {
        Ok(token) => {
            config.shutdown_token = token;
            deputy_ipc::supervisor::run_then_exit(config)
        }
        Err(error) => error,
    };
    fail(error)
}

/// Says why `deputy run` could not start, the supervisor's way; its exit code.
fn fail(error: RunError) -> i32 {
    deputy_ipc::supervisor::say_line_at(tracing::Level::ERROR, format_args!("{error}"));
    error.exit_code()
}

/// [`fail`] with a usage error.
fn usage(why: String) -> i32 {
    fail(RunError::Usage(why))
}

/// The /shutdown token from the environment, when there is a health port to serve it on
/// (without one, the variables are only the child's business).
fn shutdown_token(health_port: bool) -> Result<Option<String>, RunError> {
    if !health_port {
        return Ok(None);
    }
    deputy_ipc::shutdown_token_from_env().map_err(RunError::Usage)
}

/// `deputy terminate`: asks, then (with `wait`) prints the progress until done.
pub(crate) fn terminate(
    target: &Target,
    timeout: Option<Duration>,
    wait: bool,
    reason: &str,
    json: bool,
) -> Result<u8, Failure> {
    let limits = Limits::new(timeout);
    if let Some((dir, pid)) = julia_target(target) {
        return terminate_julia(&dir, pid, wait, limits.deadline, json).map_err(
            |error| match error {
                ClientError::TimedOut => limits.timed_out(pid, "still running"),
                error => failure(error),
            },
        );
    }
    let mut client = connect(target)?;
    let pid = client.pid();
    client.set_deadline(limits.first_answer());
    client
        .terminate_blocking(Some(reason), wait)
        .map_err(|error| match error {
            ClientError::TimedOut => no_answer(pid),
            error => failure(error),
        })?;
    follow(client, &limits, json)
}

/// When `terminate` gives up. A service that takes the connection but never answers
/// (stopped, hung) is not waited for without limit: its first answer comes within
/// [`ANSWER_WITHIN`] (or --timeout, if shorter); then the shutdown takes as long as it
/// takes, up to --timeout.
struct Limits {
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    first_answer_by: Instant,
}

impl Limits {
    fn new(timeout: Option<Duration>) -> Limits {
        let now = Instant::now();
        Limits {
            timeout,
            deadline: timeout.map(|timeout| now + timeout),
            first_answer_by: now + ANSWER_WITHIN,
        }
    }

    /// The client's deadline until the first answer.
    fn first_answer(&self) -> Option<Instant> {
        Some(
            self.deadline
                .map_or(self.first_answer_by, |d| d.min(self.first_answer_by)),
        )
    }

    /// Whether a time-out, with or without an answer so far, is the service's silence
    /// (rather than --timeout, which came first).
    fn silent(&self, answered: bool) -> bool {
        !answered && self.deadline.is_none_or(|d| self.first_answer_by < d)
    }

    fn timed_out(&self, pid: u32, what: &str) -> Failure {
        let after = humantime::format_duration(self.timeout.unwrap_or_default());
        Failure::new(
            code::TIMED_OUT,
            format!("timed out after {after}; process {pid} is {what}"),
        )
    }
}

/// Reads `terminate`'s replies to the last, printing each; the exit code it means.
fn follow(mut client: Client, limits: &Limits, json: bool) -> Result<u8, Failure> {
    let pid = client.pid();
    let mut answered = false;
    loop {
        let reply = match client.next_blocking() {
            Ok(Some(reply)) => reply,
            Err(ClientError::TimedOut) if limits.silent(answered) => return Err(no_answer(pid)),
            Err(ClientError::TimedOut) => {
                return Err(limits.timed_out(pid, "still shutting down"));
            }
            Err(error @ (ClientError::Refused { .. } | ClientError::Server { .. })) => {
                return Err(failure(error));
            }
            Err(ClientError::Protocol(error)) => {
                return Err(Failure::new(
                    code::ERROR,
                    format!("unexpected reply: {error}"),
                ));
            }
            // The connection dropped before Done: wait for the process to be gone. It
            // ended before its shutdown was done (killed, crashed): not a clean end.
            Ok(None) | Err(_) => {
                say_err!(
                    "deputy: connection to process {pid} closed before done; waiting for it to exit"
                );
                client::wait_gone_blocking(pid, limits.deadline)
                    .map_err(|_| limits.timed_out(pid, "still running"))?;
                say!("deputy: process {pid} exited before its shutdown was done (outcome unknown)");
                return Ok(code::FAILURES);
            }
        };
        if !answered {
            answered = true;
            client.set_deadline(limits.deadline);
        }
        if json {
            say_raw!("{}", reply.encode());
        }
        if let Some(exit) = show(&reply, pid, json) {
            // Keep the connection open until this process exits: the service (often PID 1)
            // waits for us to hang up before it exits, and when PID 1 exits the kernel kills
            // everything left in its namespace. Closing here, before our own exit, would let
            // it exit first and kill us with a non-zero status: a failed preStop. The kernel
            // closes the socket during our exit, after our exit status is settled.
            std::mem::forget(client);
            return exit;
        }
    }
}

/// How long a service has to answer a request at all (`status`, and `terminate`'s first
/// reply), so that one that takes the connection and never answers is not waited for
/// without limit.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A service that did not answer within [`ANSWER_WITHIN`].
fn no_answer(pid: u32) -> Failure {
    Failure::new(
        code::TIMED_OUT,
        format!(
            "process {pid} did not answer within {} (stopped or hung?)",
            humantime::format_duration(ANSWER_WITHIN)
        ),
    )
}

/// A Julia service with K8sDeputy.jl's `graceful_terminator` and no deputy socket: the pid
/// given, or the one in `julia-entrypoint.pid` when there is no deputy entrypoint.
fn julia_target(target: &Target) -> Option<(std::path::PathBuf, u32)> {
    let dir = target.ipc_dir.clone().unwrap_or_else(deputy_ipc::ipc_dir);
    let pid = match target.pid {
        Some(pid) => pid,
        None if deputy_ipc::entrypoint_pid(&dir).is_none() => {
            deputy_ipc::julia_entrypoint_pid(&dir)?
        }
        None => return None,
    };
    let julia = deputy_ipc::julia_socket_path(&dir, pid).exists()
        && !deputy_ipc::socket_path(&dir, pid).exists();
    julia.then_some((dir, pid))
}

/// `terminate` for a K8sDeputy.jl service: the line `terminate` on its socket (it sends no
/// reply), then, with `wait`, until the process is gone (as its `graceful_terminate` does,
/// without Julia's start-up, and with 10 ms polls instead of 100 ms).
fn terminate_julia(
    dir: &std::path::Path,
    pid: u32,
    wait: bool,
    deadline: Option<Instant>,
    json: bool,
) -> Result<u8, ClientError> {
    client::terminate_julia_blocking(dir, pid)?;
    if !json {
        say!("deputy: asked process {pid} to terminate over its K8sDeputy.jl socket");
    }
    if wait {
        client::wait_gone_blocking(pid, deadline)?;
        if !json {
            say!("deputy: process {pid} exited");
        }
    }
    Ok(code::CLEAN)
}

/// Prints one reply of `terminate` for a person (unless `json`); `Some` with the exit code
/// once the reply is the last.
fn show(reply: &Response, pid: u32, json: bool) -> Option<Result<u8, Failure>> {
    match reply {
        Response::Progress {
            state,
            phase,
            in_flight,
            elapsed_ms,
        } => {
            if !json {
                let phase = phase.as_ref().map(|p| format!(" {p}")).unwrap_or_default();
                say!(
                    "deputy: {state}{phase}, {in_flight} in flight, {}",
                    seconds(*elapsed_ms)
                );
            }
            None
        }
        Response::Done {
            outcome,
            exit_code,
            duration_ms,
            phases,
            ..
        } => {
            if !json {
                let problems: Vec<_> = phases
                    .iter()
                    .filter(|p| p.outcome != PhaseOutcome::Completed)
                    .map(|p| format!("{} {}", p.name, p.outcome))
                    .collect();
                let detail = if problems.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", problems.join(", "))
                };
                say!(
                    "deputy: done, {outcome} in {}, exit code {exit_code}{detail}",
                    seconds(*duration_ms)
                );
            }
            Some(Ok(if *outcome == Outcome::Clean {
                code::CLEAN
            } else {
                code::FAILURES
            }))
        }
        Response::Accepted { started } => {
            if !json {
                let what = if *started {
                    "shutdown started"
                } else {
                    "shutdown was already under way"
                };
                say!("deputy: {what} in process {pid}");
            }
            Some(Ok(code::CLEAN))
        }
        other => Some(Err(Failure::new(
            code::ERROR,
            format!("unexpected reply: {}", other.encode().trim_end()),
        ))),
    }
}

/// `deputy status`: one line (or the JSON line).
pub(crate) fn status(target: &Target, json: bool) -> Result<u8, Failure> {
    let mut client = connect(target)?;
    let pid = client.pid();
    client.set_deadline(Some(Instant::now() + ANSWER_WITHIN));
    let reply = client.status_blocking().map_err(|error| match error {
        ClientError::TimedOut => no_answer(pid),
        error => failure(error),
    })?;
    if json {
        say_raw!("{}", reply.encode());
    } else if let Response::Status {
        state,
        phase,
        in_flight,
        ready,
        live,
        message,
        last_connection_ms,
        last_request_ms,
        unmeasured,
        oldest,
        ..
    } = reply
    {
        let phase = phase.map(|p| format!(" {p}")).unwrap_or_default();
        let ready = if ready { "ready" } else { "not ready" };
        let live = if live { "live" } else { "not live" };
        let message = message.map(|m| format!(": {m}")).unwrap_or_default();
        let seen = if state == deputy_core::State::Running {
            String::new()
        } else {
            let mut seen = Propagation::default();
            seen.last_connection = last_connection_ms.map(Duration::from_millis);
            seen.last_request = last_request_ms.map(Duration::from_millis);
            seen.measured = !unmeasured;
            format!("; {seen}")
        };
        let oldest = if oldest.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = oldest
                .iter()
                .map(|work| {
                    let count = if work.count > 1 {
                        format!(" ×{}", work.count)
                    } else {
                        String::new()
                    };
                    format!("{}{count} ({})", work.name, seconds(work.age_ms))
                })
                .collect();
            format!("; oldest in flight: {}", names.join(", "))
        };
        say!(
            "deputy: process {pid} {state}{phase}, {ready}, {live}, {in_flight} in flight{oldest}{seen}{message}"
        );
    }
    Ok(code::CLEAN)
}

/// The target's control socket: `--pid`, else the entrypoint's.
fn connect(target: &Target) -> Result<Client, Failure> {
    let dir = target.ipc_dir.clone().unwrap_or_else(deputy_ipc::ipc_dir);
    let pid = match target.pid {
        Some(pid) => pid,
        None => Client::entrypoint(&dir).map_err(failure)?,
    };
    Client::connect_blocking(&dir, pid).map_err(failure)
}

/// The exit code (see `--help`) for a client error.
fn failure(error: ClientError) -> Failure {
    let code = match error {
        ClientError::NoEntrypoint { .. } | ClientError::NoSocket { .. } => code::NO_TARGET,
        ClientError::Refused { .. } => code::REFUSED,
        ClientError::TimedOut => code::TIMED_OUT,
        _ => code::ERROR,
    };
    Failure::new(code, error.to_string())
}

/// `1234` ms as `1.2s`.
fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

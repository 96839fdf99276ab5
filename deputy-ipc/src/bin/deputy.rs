//! `deputy`: ask a running service to shut down gracefully and watch it happen, or read its
//! state. Built to run as a Kubernetes preStop hook: it starts in about a millisecond, prints
//! one short line per step, and its exit code says how it went.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use deputy_ipc::protocol::{Request, Response};

/// Exit codes, listed in `--help`.
mod code {
    pub(crate) const CLEAN: u8 = 0;
    pub(crate) const FAILURES: u8 = 1;
    pub(crate) const NO_TARGET: u8 = 3;
    pub(crate) const REFUSED: u8 = 4;
    pub(crate) const TIMED_OUT: u8 = 5;
    pub(crate) const ERROR: u8 = 6;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done cleanly (terminate), or answered (status, terminate --no-wait)
  1  done, with failures: a hook failed or timed out, or shutdown was abandoned
  2  bad command line
  3  no such target: no pid file, no control socket, or no such process
  4  refused: the target belongs to another user
  5  timed out (--timeout) before the target was done
  6  any other error (connection, protocol)";

#[derive(Debug, Parser)]
#[command(name = "deputy", version, about = "Graceful shutdown for services: terminate, status", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the service to shut down gracefully; wait until it is done (the preStop command).
    #[command(after_help = EXIT_CODES)]
    Terminate {
        #[command(flatten)]
        target: Target,
        /// Give up after this long (like `30s` or `1500ms`); default: wait until done.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Return as soon as the request is accepted.
        #[arg(long)]
        no_wait: bool,
        /// Why, for the service's logs.
        #[arg(long, default_value = "deputy terminate")]
        reason: String,
        /// Print the service's JSON lines instead of lines for a person.
        #[arg(long)]
        json: bool,
    },
    /// Print the service's state, readiness and work in flight.
    #[command(after_help = EXIT_CODES)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a line for a person.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The service's pid (default: the one in deputy-entrypoint.pid in the control directory).
    #[arg(long)]
    pid: Option<u32>,
    /// Where the control sockets are (default: $DEPUTY_IPC_DIR, else /run).
    #[arg(long, value_name = "DIR")]
    ipc_dir: Option<PathBuf>,
}

/// A failure with its exit code and a line for a person.
struct Failure(u8, String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Terminate {
            target,
            timeout,
            no_wait,
            reason,
            json,
        } => terminate(&target, timeout, !no_wait, reason, json),
        Command::Status { target, json } => status(&target, json),
    };
    match result {
        // Flush, then exit without running destructors: see the note in `terminate`.
        Ok(code) => {
            let _ = std::io::stdout().flush();
            std::process::exit(i32::from(code))
        }
        Err(Failure(code, message)) => {
            eprintln!("deputy: {message}");
            ExitCode::from(code)
        }
    }
}

/// Finds the target's pid and connects to its socket.
fn connect(target: &Target) -> Result<(u32, UnixStream), Failure> {
    let dir = target.ipc_dir.clone().unwrap_or_else(deputy_ipc::ipc_dir);
    let pid = match target.pid {
        Some(pid) => pid,
        None => deputy_ipc::entrypoint_pid(&dir).ok_or_else(|| {
            Failure(
                code::NO_TARGET,
                format!(
                    "no target: {} is missing or holds no pid (give --pid, or set --ipc-dir / DEPUTY_IPC_DIR)",
                    deputy_ipc::entrypoint_path(&dir).display()
                ),
            )
        })?,
    };
    let socket = deputy_ipc::socket_path(&dir, pid);
    match UnixStream::connect(&socket) {
        Ok(stream) => Ok((pid, stream)),
        Err(error) if error.kind() == ErrorKind::PermissionDenied => Err(Failure(
            code::REFUSED,
            format!("refused: {} belongs to another user", socket.display()),
        )),
        Err(error) => Err(Failure(
            code::NO_TARGET,
            format!(
                "no target: cannot connect to {} ({error})",
                socket.display()
            ),
        )),
    }
}

fn send(stream: &mut UnixStream, request: &Request) -> Result<(), Failure> {
    stream
        .write_all(request.encode().as_bytes())
        .map_err(|e| Failure(code::ERROR, format!("cannot send the request: {e}")))
}

fn refused_or_error(code_text: &str, message: &str) -> Failure {
    let exit = if code_text == "refused" {
        code::REFUSED
    } else {
        code::ERROR
    };
    Failure(exit, format!("{code_text}: {message}"))
}

fn terminate(
    target: &Target,
    timeout: Option<Duration>,
    wait: bool,
    reason: String,
    json: bool,
) -> Result<u8, Failure> {
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    let (pid, mut stream) = connect(target)?;
    send(
        &mut stream,
        &Request::Terminate {
            reason: Some(reason),
            wait,
        },
    )?;
    let mut lines = BufReader::new(
        stream
            .try_clone()
            .map_err(|e| Failure(code::ERROR, e.to_string()))?,
    );
    let mut line = String::new();
    loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure(
                    code::TIMED_OUT,
                    format!(
                        "timed out after {:?}; process {pid} is still shutting down",
                        timeout.unwrap_or_default()
                    ),
                ));
            }
            let _ = stream.set_read_timeout(Some(left));
        }
        line.clear();
        let read = match lines.read_line(&mut line) {
            Ok(read) => read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => 0,
        };
        if read == 0 {
            // The connection dropped before Done: wait for the process to be gone.
            return wait_for_exit(pid, deadline, timeout);
        }
        if json {
            print!("{line}");
        }
        let response = Response::decode(line.trim_end().as_bytes())
            .map_err(|e| Failure(code::ERROR, format!("unexpected reply: {e}")))?;
        match response {
            Response::Progress {
                state,
                phase,
                in_flight,
                elapsed_ms,
            } => {
                if !json {
                    let phase = phase.map(|p| format!(" {p}")).unwrap_or_default();
                    println!(
                        "deputy: {state}{phase}, {in_flight} in flight, {:.1}s",
                        elapsed_ms as f64 / 1000.0
                    );
                }
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
                        .filter(|p| p.outcome != "completed")
                        .map(|p| format!("{} {}", p.name, p.outcome))
                        .collect();
                    let detail = if problems.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", problems.join(", "))
                    };
                    println!(
                        "deputy: done, {outcome} in {:.1}s, exit code {exit_code}{detail}",
                        duration_ms as f64 / 1000.0
                    );
                }
                // Keep the connection open until this process exits: the service (often
                // PID 1) waits for us to hang up before it exits, and when PID 1 exits the
                // kernel kills everything left in its namespace. Closing here, before our
                // own exit, would let it exit first and kill us with a non-zero status: a
                // failed preStop. The kernel closes the socket during our exit, after our
                // exit status is settled.
                std::mem::forget(lines);
                std::mem::forget(stream);
                return Ok(if outcome == "clean" {
                    code::CLEAN
                } else {
                    code::FAILURES
                });
            }
            Response::Accepted { started } => {
                if !json {
                    let what = if started {
                        "shutdown started"
                    } else {
                        "shutdown was already under way"
                    };
                    println!("deputy: {what} in process {pid}");
                }
                return Ok(code::CLEAN);
            }
            Response::Error {
                code: code_text,
                message,
            } => return Err(refused_or_error(&code_text, &message)),
            Response::Status { .. } => {
                return Err(Failure(code::ERROR, "unexpected status reply".into()));
            }
            _ => return Err(Failure(code::ERROR, "unexpected reply".into())),
        }
    }
}

/// After the connection dropped: polls the pid until the process is gone.
fn wait_for_exit(
    pid: u32,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
) -> Result<u8, Failure> {
    let Some(process) = rustix::process::Pid::from_raw(pid as i32) else {
        return Err(Failure(code::NO_TARGET, format!("no such process: {pid}")));
    };
    eprintln!("deputy: connection to process {pid} closed before done; waiting for it to exit");
    loop {
        if is_gone(process) {
            println!("deputy: process {pid} exited (outcome unknown)");
            return Ok(code::CLEAN);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Failure(
                code::TIMED_OUT,
                format!(
                    "timed out after {:?}; process {pid} is still running",
                    timeout.unwrap_or_default()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the process has exited: it no longer exists, or it is a zombie waiting for its
/// parent to reap it (it will never run again).
fn is_gone(process: rustix::process::Pid) -> bool {
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(process) {
        return true;
    }
    // /proc/<pid>/stat is `pid (comm) STATE ...`; comm may hold spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{}/stat", process.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace()
                .next()
                .map(|state| state == "Z" || state == "X")
        })
        .unwrap_or(false)
}

fn status(target: &Target, json: bool) -> Result<u8, Failure> {
    let (pid, mut stream) = connect(target)?;
    send(&mut stream, &Request::Status)?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| Failure(code::ERROR, format!("no reply: {e}")))?;
    match Response::decode(line.trim_end().as_bytes()) {
        Ok(Response::Status {
            state,
            phase,
            in_flight,
            ready,
            live,
            ..
        }) => {
            if json {
                print!("{line}");
            } else {
                let phase = phase.map(|p| format!(" {p}")).unwrap_or_default();
                let ready = if ready { "ready" } else { "not ready" };
                let live = if live { "live" } else { "not live" };
                println!(
                    "deputy: process {pid} {state}{phase}, {ready}, {live}, {in_flight} in flight"
                );
            }
            Ok(code::CLEAN)
        }
        Ok(Response::Error {
            code: code_text,
            message,
        }) => Err(refused_or_error(&code_text, &message)),
        Ok(_) => Err(Failure(code::ERROR, "unexpected reply".into())),
        Err(error) => Err(Failure(code::ERROR, format!("unexpected reply: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

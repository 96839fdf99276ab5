//! `deputy terminate` and `deputy status`: the client side of the control socket.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use deputy_ipc::protocol::{Request, Response};

use crate::{Failure, Target, code};

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

pub(crate) fn terminate(
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
    crate::procs::state_and_parent(process.as_raw_nonzero().get() as u32)
        .is_some_and(|(state, _)| state == 'Z' || state == 'X')
}

pub(crate) fn status(target: &Target, json: bool) -> Result<u8, Failure> {
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

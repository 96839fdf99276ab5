//! A client of a service's control socket: `status`, and `terminate` with its progress.
//!
//! Every call is async, on async-io (so under any executor), with a `_blocking` twin that
//! runs the same body on the calling thread, as smol-rs does `recv` / `recv_blocking`. The
//! `deputy` binary's `terminate` and `status`, and `deputy run` asking its child to stop, are
//! built on it.
//!
//! # Examples
//!
//! ```no_run
//! use deputy_ipc::client::Client;
//! use deputy_ipc::protocol::Response;
//!
//! # fn main() -> Result<(), deputy_ipc::client::ClientError> {
//! let dir = deputy_ipc::ipc_dir();
//! let mut client = Client::connect_blocking(&dir, Client::entrypoint(&dir)?)?;
//! client.terminate_blocking(Some("preStop"), true)?;
//! while let Some(reply) = client.next_blocking()? {
//!     if let Response::Done { outcome, .. } = reply {
//!         println!("done: {outcome}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod error;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncWriteExt};

pub use self::error::ClientError;
use crate::protocol::{ErrorCode, Request, Response};

/// How long [`Client::connect`] tries again while the server's backlog is full.
const CONNECT_RETRIES_FOR: Duration = Duration::from_secs(5);

/// A connection to one service's control socket.
///
/// Its futures own nothing but the connection and watch no coordinator: each resolves when
/// the service answers, closes the connection (`Ok(None)` or [`ClientError::Closed`]), or
/// the [deadline](Self::set_deadline) passes ([`ClientError::TimedOut`]). Without a
/// deadline, a service that accepts but never answers leaves them pending: set one.
#[derive(Debug)]
pub struct Client {
    pid: u32,
    stream: BufReader<Async<UnixStream>>,
    deadline: Option<Instant>,
}

impl Client {
    /// The pid in the entrypoint pid file of `dir`: the service `deputy terminate` reaches
    /// when given no pid.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoEntrypoint`] if the file is missing or holds no pid.
    pub fn entrypoint(dir: &Path) -> Result<u32, ClientError> {
        crate::entrypoint_pid(dir).ok_or_else(|| ClientError::NoEntrypoint {
            path: crate::entrypoint_path(dir),
        })
    }

    /// Connects to the control socket of process `pid` in `dir`.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoSocket`] if nothing listens there (checked first with one `stat`, so
    /// a process without a socket costs no socket of ours), [`ClientError::Refused`] if the
    /// socket belongs to another user, [`ClientError::Io`] otherwise. A full backlog is
    /// waited out for up to 5 s.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping it drops the half-made connection.
    pub async fn connect(dir: &Path, pid: u32) -> Result<Client, ClientError> {
        let path = crate::socket_path(dir, pid);
        if let Err(source) = std::fs::symlink_metadata(&path) {
            return Err(ClientError::NoSocket { path, source });
        }
        // A full backlog (a flood of idle clients the server has not accepted yet) makes a
        // UNIX socket's connect fail at once with EAGAIN: try again for a while, as the
        // server sheds idle clients to make room.
        let give_up = Instant::now() + CONNECT_RETRIES_FOR;
        loop {
            match Async::<UnixStream>::connect(&path).await {
                Ok(stream) => {
                    return Ok(Client {
                        pid,
                        stream: BufReader::new(stream),
                        deadline: None,
                    });
                }
                Err(error)
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        && Instant::now() < give_up =>
                {
                    Timer::after(Duration::from_millis(5)).await;
                }
                Err(source) => return Err(connect_error(path, source)),
            }
        }
    }

    /// The blocking twin of [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_blocking(dir: &Path, pid: u32) -> Result<Client, ClientError> {
        async_io::block_on(Self::connect(dir, pid))
    }

    /// The pid of the process this client is connected to.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// After `deadline`, every call fails with [`ClientError::TimedOut`] (`None`: never).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Asks for the service's state; the answer is a [`Response::Status`].
    ///
    /// # Errors
    ///
    /// A [`ClientError`] if the request cannot be sent or the answer is not a status.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped call may leave half a line on the connection.
    pub async fn status(&mut self) -> Result<Response, ClientError> {
        self.send(&Request::Status).await?;
        match self.next().await? {
            Some(status @ Response::Status { .. }) => Ok(status),
            Some(other) => Err(unexpected(&other)),
            None => Err(ClientError::Closed),
        }
    }

    /// The blocking twin of [`status`](Self::status).
    ///
    /// # Errors
    ///
    /// As [`status`](Self::status).
    pub fn status_blocking(&mut self) -> Result<Response, ClientError> {
        async_io::block_on(self.status())
    }

    /// Sends `terminate`. With `wait`, the service then streams a [`Response::Progress`] per
    /// state and phase and a last [`Response::Done`], read with [`next`](Self::next);
    /// without, it answers one [`Response::Accepted`].
    ///
    /// # Errors
    ///
    /// A [`ClientError`] if the request cannot be sent.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped call may have sent part of the request.
    pub async fn terminate(&mut self, reason: Option<&str>, wait: bool) -> Result<(), ClientError> {
        let request = Request::Terminate {
            reason: reason.map(str::to_owned),
            wait,
        };
        self.send(&request).await
    }

    /// The blocking twin of [`terminate`](Self::terminate).
    ///
    /// # Errors
    ///
    /// As [`terminate`](Self::terminate).
    pub fn terminate_blocking(
        &mut self,
        reason: Option<&str>,
        wait: bool,
    ) -> Result<(), ClientError> {
        async_io::block_on(self.terminate(reason, wait))
    }

    /// Asks the service to shut down without waiting for it: returns whether this request
    /// started the shutdown (false: it was already under way).
    ///
    /// # Errors
    ///
    /// A [`ClientError`] if the request fails or the answer is not `accepted`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`terminate`](Self::terminate).
    pub async fn ask_to_terminate(&mut self, reason: Option<&str>) -> Result<bool, ClientError> {
        self.terminate(reason, false).await?;
        match self.next().await? {
            Some(Response::Accepted { started }) => Ok(started),
            Some(other) => Err(unexpected(&other)),
            None => Err(ClientError::Closed),
        }
    }

    /// The next reply line; `None` once the service has closed the connection. An error
    /// reply is returned as [`ClientError::Refused`] or [`ClientError::Server`].
    ///
    /// # Errors
    ///
    /// A [`ClientError`] for an error reply, a line that is not a reply, a failed read, or
    /// the deadline.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that matters here: a line read only in part stays buffered
    /// and is completed by the next call.
    pub async fn next(&mut self) -> Result<Option<Response>, ClientError> {
        let mut line = String::new();
        let read = timed(self.deadline, self.stream.read_line(&mut line)).await??;
        if read == 0 {
            return Ok(None);
        }
        match Response::decode(line.trim_end().as_bytes()).map_err(ClientError::Protocol)? {
            Response::Error {
                code: ErrorCode::Refused,
                message,
            } => Err(ClientError::Refused { message }),
            Response::Error { code, message } => Err(ClientError::Server { code, message }),
            reply => Ok(Some(reply)),
        }
    }

    /// The blocking twin of [`next`](Self::next).
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next).
    pub fn next_blocking(&mut self) -> Result<Option<Response>, ClientError> {
        async_io::block_on(self.next())
    }

    async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let line = request.encode();
        let write = self.stream.get_mut().write_all(line.as_bytes());
        Ok(timed(self.deadline, write).await??)
    }
}

/// `future`, bounded by the deadline if there is one.
async fn timed<F: std::future::Future>(
    deadline: Option<Instant>,
    future: F,
) -> Result<F::Output, ClientError> {
    match deadline {
        None => Ok(future.await),
        Some(deadline) => crate::timeout::until(deadline, future)
            .await
            .ok_or(ClientError::TimedOut),
    }
}

fn connect_error(path: PathBuf, source: std::io::Error) -> ClientError {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::PermissionDenied => ClientError::Refused {
            message: format!("{} belongs to another user", path.display()),
        },
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            ClientError::NoSocket { path, source }
        }
        _ => ClientError::Io(source),
    }
}

fn unexpected(reply: &Response) -> ClientError {
    let line = reply.encode();
    ClientError::Protocol(crate::protocol::ProtocolError::InvalidJson(format!(
        "unexpected reply {}",
        line.trim_end()
    )))
}

/// Asks a K8sDeputy.jl service (process `pid`, socket in `dir`) to terminate, as its
/// `graceful_terminate` does: connects to `graceful-terminator.<pid>.socket`, writes the line
/// `terminate` and closes. Its protocol has no reply: follow with [`wait_gone`].
///
/// # Errors
///
/// [`ClientError::NoSocket`] if nothing listens there, [`ClientError::Refused`] if the socket
/// belongs to another user, [`ClientError::Io`] otherwise.
///
/// # Cancel safety
///
/// Cancel safe: dropping it before the write closes the connection unsent.
pub async fn terminate_julia(dir: &Path, pid: u32) -> Result<(), ClientError> {
    let path = crate::julia_socket_path(dir, pid);
    if let Err(source) = std::fs::symlink_metadata(&path) {
        return Err(ClientError::NoSocket { path, source });
    }
    let mut stream = Async::<UnixStream>::connect(&path)
        .await
        .map_err(|source| connect_error(path, source))?;
    stream.write_all(b"terminate\n").await?;
    stream.close().await?;
    Ok(())
}

/// The blocking twin of [`terminate_julia`].
///
/// # Errors
///
/// As [`terminate_julia`].
pub fn terminate_julia_blocking(dir: &Path, pid: u32) -> Result<(), ClientError> {
    async_io::block_on(terminate_julia(dir, pid))
}

/// Whether process `pid` has exited: it no longer exists, or it is a zombie waiting for its
/// parent to reap it (it will never run again).
pub fn is_gone(pid: u32) -> bool {
    let Some(process) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(process) {
        return true;
    }
    crate::procs::state_and_parent(pid).is_some_and(|(state, _)| state == 'Z' || state == 'X')
}

/// Waits (polling every 10 ms) until process `pid` [is gone](is_gone), or `deadline`.
///
/// # Errors
///
/// [`ClientError::TimedOut`] if the deadline passes first.
///
/// # Cancel safety
///
/// Cancel safe: it only watches.
pub async fn wait_gone(pid: u32, deadline: Option<Instant>) -> Result<(), ClientError> {
    loop {
        if is_gone(pid) {
            return Ok(());
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(ClientError::TimedOut);
        }
        Timer::after(Duration::from_millis(10)).await;
    }
}

/// The blocking twin of [`wait_gone`].
///
/// # Errors
///
/// As [`wait_gone`].
pub fn wait_gone_blocking(pid: u32, deadline: Option<Instant>) -> Result<(), ClientError> {
    async_io::block_on(wait_gone(pid, deadline))
}

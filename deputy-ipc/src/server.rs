//! The control socket server: one UNIX socket per process, answering the [`protocol`].
//!
//! It runs inside the service's own async runtime, whatever that is: sockets and timers come
//! from async-io, which drives its own reactor thread, and connections are served
//! concurrently inside the server's future, with nothing spawned.
//!
//! [`protocol`]: crate::protocol

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_io::Async;
use deputy_core::{Reason, Shutdown};
use futures::stream::StreamExt;
use futures::{AsyncReadExt, AsyncWriteExt};

use crate::accept::{Listener, PollReadable, Slot, serve_until};
use crate::error::IpcError;
use crate::protocol::{ErrorCode, MAX_LINE, ProtocolError, Request, Response};
use crate::timeout::within;
use crate::{entrypoint_path, ipc_dir, socket_path};

/// How the control server is set up.
///
/// ```
/// use std::time::Duration;
/// use deputy_ipc::ServerConfig;
///
/// let config = ServerConfig::default()
///     .dir("/tmp")
///     .entrypoint(false)
///     .read_timeout(Duration::from_secs(2))
///     .linger(Duration::from_millis(500));
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    dir: Option<PathBuf>,
    entrypoint: bool,
    read_timeout: Duration,
    linger: Duration,
    max_clients: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            dir: None,
            entrypoint: !entrypoint_disabled(),
            read_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            max_clients: 64,
        }
    }
}

impl ServerConfig {
    /// The directory for the socket (default: [`ipc_dir`], from `DEPUTY_IPC_DIR`).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Whether to write `deputy-entrypoint.pid` so `deputy terminate` finds this process
    /// without `--pid`. Default: true, unless `DEPUTY_ENTRYPOINT` is `0` or `false` (which
    /// `deputy run` sets for its child, so the pid file names the supervisor). Turn it off
    /// when several processes share a container.
    pub fn entrypoint(mut self, entrypoint: bool) -> Self {
        self.entrypoint = entrypoint;
        self
    }

    /// How long a client may take to send its request line (default 5 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// After `Done`, how long to wait for connected clients to read the last message and hang
    /// up before the server returns and the process may exit (default 1 s). This is what lets
    /// a preStop `deputy terminate` exit on its own before PID 1 does.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The most clients served at once (default 64). A client beyond it takes the place of
    /// the oldest one that has not sent its request yet, so a preStop gets through however
    /// many idle clients hold the socket; if every client is busy (a `terminate` that waits
    /// for the end), the new one is closed. When the process runs out of descriptors, one
    /// kept in reserve is given up so that a preStop is still accepted.
    pub fn max_clients(mut self, max: usize) -> Self {
        self.max_clients = max.max(1);
        self
    }
}

/// The process the entrypoint pid file of `dir` names, if it is not `own` and still serves
/// its control socket there: something accepts on it (a socket left by a process gone, or
/// by an earlier container whose pid is now another's, refuses the connection).
fn live_entrypoint(dir: &Path, own: u32) -> Option<u32> {
    let other = crate::entrypoint_pid(dir).filter(|other| *other != own)?;
    UnixStream::connect(socket_path(dir, other))
        .is_ok()
        .then_some(other)
}

/// Whether [`ENTRYPOINT_ENV`](crate::ENTRYPOINT_ENV) turns the entrypoint pid file off.
fn entrypoint_disabled() -> bool {
    // A value that is neither yes nor no keeps the default (the file is written).
    crate::bool_from_env(crate::ENTRYPOINT_ENV) == Ok(Some(false))
}

/// The control socket of one process, bound and ready to serve.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use deputy_core::ShutdownCoordinator;
/// use deputy_ipc::{ControlServer, ServerConfig};
///
/// let dir = std::env::temp_dir().join(format!("deputy-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let coordinator = ShutdownCoordinator::builder()
///     .drain_delay(Duration::ZERO)
///     .build(deputy_smol::AsyncIoRuntime)
///     .unwrap();
/// let server = ControlServer::bind(&coordinator.handle(), ServerConfig::default().dir(&dir)).unwrap();
/// let socket = server.socket_path().to_owned();
/// assert!(socket.exists());
///
/// coordinator.handle().trigger("example");
/// futures::executor::block_on(futures::future::join(coordinator.run(), server.run()));
/// assert!(!socket.exists()); // removed on a clean exit
/// ```
#[derive(Debug)]
pub struct ControlServer {
    shutdown: Shutdown,
    /// Registered with async-io's reactor only in [`run`](Self::run): binding stays a few
    /// system calls, with no reactor (nor its thread) to start.
    listener: UnixListener,
    files: Files,
    config: ServerConfig,
}

/// Removes the socket and the pid file when dropped.
#[derive(Debug)]
struct Files {
    socket: PathBuf,
    /// The pid file, and the identity (device, inode) of the one this process wrote.
    pid_file: Option<(PathBuf, (u64, u64))>,
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket);
        if let Some((pid_file, ours)) = &self.pid_file {
            // Only if it is still ours: another process may have taken the entrypoint over,
            // which (as here) writes a new file and renames it over this one. One `stat`
            // tells, where reading the pid back took six system calls on the way to exit.
            if identity(pid_file).is_some_and(|now| now == *ours) {
                let _ = fs::remove_file(pid_file);
            }
        }
    }
}

/// A file's device and inode, which a rename over it changes.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl ControlServer {
    /// Binds `deputy.<pid>.sock` in the configured directory (replacing a stale one), makes
    /// it readable by this user only, and writes the entrypoint pid file if configured.
    ///
    /// # Errors
    ///
    /// [`IpcError::NoDirectory`], [`IpcError::NotADirectory`], [`IpcError::PathTooLong`] or
    /// [`IpcError::Unwritable`], naming the path and `DEPUTY_IPC_DIR`, or [`IpcError::Io`].
    pub fn bind(shutdown: &Shutdown, config: ServerConfig) -> Result<ControlServer, IpcError> {
        let dir = config.dir.clone().unwrap_or_else(ipc_dir);
        if !dir.exists() {
            return Err(IpcError::NoDirectory { path: dir });
        }
        if !dir.is_dir() {
            return Err(IpcError::NotADirectory { path: dir });
        }
        let pid = crate::own_pid();
        let socket = socket_path(&dir, pid);
        if socket.as_os_str().len() > crate::error::MAX_SOCKET_PATH {
            return Err(IpcError::PathTooLong { path: socket });
        }
        let unwritable = |path: &Path| {
            let path = path.to_owned();
            move |source| IpcError::Unwritable { path, source }
        };
        // A file left by an earlier run with the same pid (a restarted pod with /run on a
        // volume) would make bind fail: it is stale, since this pid is ours now.
        match fs::remove_file(&socket) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(unwritable(&socket)(error));
            }
            _ => {}
        }
        let listener = UnixListener::bind(&socket).map_err(unwritable(&socket))?;
        let mut files = Files {
            socket: socket.clone(),
            pid_file: None,
        };
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
            .map_err(unwritable(&socket))?;
        if config.entrypoint
            && let Some(other) = live_entrypoint(&dir, pid)
        {
            // Another service of this directory is the entrypoint and still serves: taking
            // the file over would leave `deputy terminate` without a target once this one
            // exits, while the other still runs.
            tracing::warn!(
                other,
                "{} names process {other}, which still serves its control socket: left as it is; \
                 reach this process with --pid {pid}",
                entrypoint_path(&dir).display()
            );
        } else if config.entrypoint {
            let pid_file = entrypoint_path(&dir);
            let temporary = dir.join(format!(".deputy-entrypoint.{pid}.tmp"));
            fs::write(&temporary, format!("{pid}\n")).map_err(unwritable(&temporary))?;
            let written = identity(&temporary);
            fs::rename(&temporary, &pid_file).map_err(unwritable(&pid_file))?;
            files.pid_file = written.map(|ours| (pid_file, ours));
        }
        tracing::debug!(socket = %socket.display(), "control socket listening");
        Ok(ControlServer {
            shutdown: shutdown.clone(),
            listener,
            files,
            config,
        })
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.files.socket
    }

    /// Serves clients until shutdown is done, then waits (at most the linger time) for
    /// connected clients to hang up, and removes the socket and pid file.
    ///
    /// # Cancel safety
    ///
    /// Dropping it closes every connection and removes the files.
    pub async fn run(self) {
        self.run_with(Async::new).await;
    }

    /// [`run`](Self::run), with `readiness` making the listener (non-blocking) into what
    /// tells when it is readable and owns it: async-io's [`Async`], or the supervisor's loop.
    pub(crate) async fn run_with<R: PollReadable + Owns>(
        self,
        readiness: impl FnOnce(UnixListener) -> io::Result<R>,
    ) {
        let ControlServer {
            shutdown,
            listener,
            files,
            config,
        } = self;
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|()| readiness(listener))
        {
            Ok(listener) => listener,
            Err(error) => {
                // Dropping the files tells clients at once that nobody will answer.
                tracing::error!(%error, "the control socket cannot be served");
                return;
            }
        };
        let server = Listener {
            what: "control socket",
            listener: listener.listener(),
            readable: &listener,
            max_connections: config.max_clients,
        };
        let mut connections = serve_until(
            server,
            |listener| listener.accept().map(|(stream, _)| stream),
            |stream, slot| serve(stream, slot, shutdown.clone(), config.clone()),
            shutdown.done(),
        )
        .await;
        drop(listener);
        // Done: give the clients still connected (a preStop `deputy terminate`) the time to
        // read the last message and hang up, so they exit before this process does.
        if !connections.is_empty() {
            let drain = async { while connections.next().await.is_some() {} };
            let _ = within(config.linger, drain).await;
        }
        drop(files);
    }
}

/// What owns the control socket's listener while it is served.
pub(crate) trait Owns {
    fn listener(&self) -> &UnixListener;
}

impl Owns for Async<UnixListener> {
    fn listener(&self) -> &UnixListener {
        self.get_ref()
    }
}

async fn serve(
    stream: Async<UnixStream>,
    slot: Arc<Slot>,
    shutdown: Shutdown,
    config: ServerConfig,
) {
    if let Err(error) = serve_inner(&stream, &slot, &shutdown, &config).await {
        tracing::debug!(%error, "control connection ended");
    }
}

/// One connection: the peer's credentials, one request line, the answer.
async fn serve_inner(
    stream: &Async<UnixStream>,
    slot: &Slot,
    shutdown: &Shutdown,
    config: &ServerConfig,
) -> io::Result<()> {
    let peer_pid = match check_peer(stream)? {
        Ok(pid) => pid,
        Err(refusal) => return send(stream, &refusal).await,
    };
    let request = read_request(stream, config).await?;
    // From here on it is a client with a request: not one to evict for a newcomer.
    slot.set_busy(true);
    match request {
        None => Ok(()),
        Some(Err(refusal)) => send(stream, &refusal).await,
        Some(Ok(Request::Status)) => send(stream, &Response::status(&shutdown.status())).await,
        Some(Ok(Request::Terminate { reason, wait })) => {
            let started = shutdown.trigger(Reason::Ipc);
            tracing::info!(
                started,
                client_reason = reason.as_deref().unwrap_or(""),
                peer_pid,
                "terminate requested on the control socket"
            );
            if wait {
                stream_progress(stream, shutdown).await
            } else {
                send(stream, &Response::Accepted { started }).await
            }
        }
    }
}

/// The peer's pid if it may control this process (same user, or root), else the refusal.
fn check_peer(stream: &Async<UnixStream>) -> io::Result<Result<Option<i32>, Response>> {
    // nix, not rustix: rustix's `UCred` holds a non-zero pid, but the kernel reports 0 for a
    // peer in a PID namespace this process cannot see (a preStop entered from outside).
    let peer =
        nix::sys::socket::getsockopt(stream.get_ref(), nix::sys::socket::sockopt::PeerCredentials)?;
    let peer_uid = peer.uid();
    if peer_uid == nix::unistd::getuid().as_raw() || peer_uid == 0 {
        return Ok(Ok(Some(peer.pid())));
    }
    tracing::warn!(
        peer_uid,
        peer_pid = peer.pid(),
        "refused a control connection from another user"
    );
    Ok(Err(Response::Error {
        code: ErrorCode::Refused,
        message: "only the same user or root may control this process".into(),
    }))
}

/// The request line, bounded in time and length; `None` if the client hung up first; the
/// answer to send instead if the line is late or bad.
async fn read_request(
    stream: &Async<UnixStream>,
    config: &ServerConfig,
) -> io::Result<Option<Result<Request, Response>>> {
    let Some(line) = within(config.read_timeout, read_line(stream)).await else {
        return Ok(Some(Err(Response::Error {
            code: ErrorCode::Timeout,
            message: format!("no request line within {:?}", config.read_timeout),
        })));
    };
    let request = match line? {
        Line::Complete(line) => Request::decode(&line),
        Line::TooLong => Err(ProtocolError::TooLong),
        Line::Closed => return Ok(None),
    };
    Ok(Some(request.map_err(|error| {
        tracing::debug!(%error, "bad control request");
        Response::error(&error)
    })))
}

/// `terminate` with `wait`: a progress line per transition, the summary at `Done`, then the
/// connection stays open until the client hangs up (the server's linger bounds this).
async fn stream_progress(stream: &Async<UnixStream>, shutdown: &Shutdown) -> io::Result<()> {
    let mut transitions = shutdown.transitions();
    while let Some(transition) = transitions.next().await {
        send(
            stream,
            &Response::progress(&transition, shutdown.in_flight()),
        )
        .await?;
    }
    let report = shutdown.done().await;
    send(stream, &Response::done(&report)).await?;
    let mut rest = [0u8; 256];
    let mut reader = stream;
    while reader.read(&mut rest).await? > 0 {}
    Ok(())
}

async fn send(stream: &Async<UnixStream>, response: &Response) -> io::Result<()> {
    let mut writer = stream;
    writer.write_all(response.encode().as_bytes()).await
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
    Closed,
}

/// Reads one line, refusing (without buffering it) anything longer than [`MAX_LINE`].
async fn read_line(stream: &Async<UnixStream>) -> io::Result<Line> {
    let mut reader = stream;
    let mut line = Vec::with_capacity(256);
    let mut chunk = [0u8; 4096];
    loop {
        let read = reader.read(&mut chunk).await?;
        if read == 0 {
            return Ok(if line.is_empty() {
                Line::Closed
            } else {
                Line::Complete(line)
            });
        }
        if let Some(end) = chunk[..read].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..end]);
            return Ok(if line.len() > MAX_LINE + 1 {
                Line::TooLong
            } else {
                Line::Complete(line)
            });
        }
        line.extend_from_slice(&chunk[..read]);
        if line.len() > MAX_LINE + 1 {
            return Ok(Line::TooLong);
        }
    }
}

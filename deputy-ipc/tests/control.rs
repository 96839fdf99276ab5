//! The control socket with real sockets: a service (coordinator + server) on a thread, and
//! blocking clients talking to it. Every wait is bounded by a socket read timeout.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use deputy_core::{Builder, ShutdownCoordinator, ShutdownReport};
use deputy_ipc::protocol::{Request, Response};
use deputy_ipc::{ControlServer, IpcError, ServerConfig};

const BOUND: Duration = Duration::from_secs(10);

enum Runtime {
    /// async-io's timer on `futures::executor`.
    AsyncIo,
    /// tokio's timer on a multi-threaded tokio runtime.
    Tokio,
    /// async-io's timer on smol's executor, with the server spawned as its own task.
    Smol,
}

struct Service {
    socket: PathBuf,
    shutdown: deputy_core::Shutdown,
    thread: Option<JoinHandle<ShutdownReport>>,
}

impl Service {
    fn start(dir: &Path, builder: Builder, config: ServerConfig, runtime: Runtime) -> Service {
        let (coordinator, server) = match runtime {
            Runtime::AsyncIo | Runtime::Smol => {
                let c = builder.build(deputy_smol::AsyncIoRuntime).unwrap();
                let s = ControlServer::bind(&c.handle(), config.dir(dir)).unwrap();
                (c, s)
            }
            Runtime::Tokio => {
                let c = builder.build(deputy_tokio::TokioRuntime).unwrap();
                let s = ControlServer::bind(&c.handle(), config.dir(dir)).unwrap();
                (c, s)
            }
        };
        let socket = server.socket_path().to_owned();
        let shutdown = coordinator.handle();
        let thread = std::thread::spawn(move || match runtime {
            Runtime::Tokio => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let server = tokio::spawn(server.run());
                    let report = tokio::spawn(coordinator.run()).await.unwrap();
                    server.await.unwrap();
                    report
                }),
            Runtime::Smol => {
                let executor = smol::Executor::new();
                smol::block_on(executor.run(async {
                    let server = executor.spawn(server.run());
                    let report = executor.spawn(coordinator.run()).await;
                    server.await;
                    report
                }))
            }
            Runtime::AsyncIo => {
                futures::executor::block_on(futures::future::join(coordinator.run(), server.run()))
                    .0
            }
        });
        Service {
            socket,
            shutdown,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).unwrap();
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream
    }

    fn ask(&self, line: &[u8]) -> Vec<Response> {
        let mut stream = self.connect();
        stream.write_all(line).unwrap();
        read_all(stream)
    }

    fn join(&mut self) -> ShutdownReport {
        self.thread.take().unwrap().join().unwrap()
    }
}

fn read_all(stream: UnixStream) -> Vec<Response> {
    BufReader::new(stream)
        .lines()
        .map(|line| Response::decode(line.unwrap().as_bytes()).unwrap())
        .collect()
}

fn fast() -> Builder {
    ShutdownCoordinator::builder()
        .drain_delay(Duration::from_millis(50))
        .drain_timeout(Duration::from_secs(2))
}

fn quiet() -> ServerConfig {
    ServerConfig::default().linger(Duration::from_secs(2))
}

fn status_of(service: &Service) -> (String, bool, bool) {
    match &service.ask(&Request::Status.encode().into_bytes())[..] {
        [
            Response::Status {
                state, ready, live, ..
            },
        ] => (state.to_string(), *ready, *live),
        other => panic!("unexpected {other:?}"),
    }
}

fn terminate_and_follow(runtime: Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(dir.path(), fast(), quiet(), runtime);
    service.shutdown.ready();
    assert_eq!(status_of(&service), ("running".into(), true, true));
    let pid_file = deputy_ipc::entrypoint_path(dir.path());
    assert_eq!(
        deputy_ipc::entrypoint_pid(dir.path()),
        Some(std::process::id())
    );

    let responses = service.ask(
        Request::Terminate {
            reason: Some("test".into()),
            wait: true,
        }
        .encode()
        .as_bytes(),
    );
    let states: Vec<_> = responses
        .iter()
        .filter_map(|r| match r {
            Response::Progress { state, phase, .. } => Some((state.as_str(), phase.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            ("draining", None),
            ("stopping", Some("stop-accepting".into())),
            ("stopping", Some("flush".into())),
            ("stopping", Some("close".into())),
            ("done", None),
        ]
    );
    match responses.last().unwrap() {
        Response::Done {
            outcome,
            exit_code,
            phases,
            ..
        } => {
            assert_eq!((outcome.as_str(), *exit_code), ("clean", 0));
            assert_eq!(phases.len(), 3);
        }
        other => panic!("last response {other:?}"),
    }
    let report = service.join();
    assert_eq!(report.reason, deputy_core::Reason::Ipc);
    assert!(!service.socket.exists(), "socket left behind");
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn terminate_streams_every_transition_then_the_report_on_async_io() {
    terminate_and_follow(Runtime::AsyncIo);
}

#[test]
fn terminate_streams_every_transition_then_the_report_on_tokio() {
    terminate_and_follow(Runtime::Tokio);
}

#[test]
fn terminate_streams_every_transition_then_the_report_on_smol() {
    terminate_and_follow(Runtime::Smol);
}

#[test]
fn a_second_terminate_while_draining_gets_progress_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let builder = ShutdownCoordinator::builder().drain_delay(Duration::from_millis(300));
    let mut service = Service::start(dir.path(), builder, quiet(), Runtime::AsyncIo);
    let first = service.ask(
        Request::Terminate {
            reason: None,
            wait: false,
        }
        .encode()
        .as_bytes(),
    );
    assert_eq!(first, [Response::Accepted { started: true }]);
    let second = service.ask(
        Request::Terminate {
            reason: None,
            wait: true,
        }
        .encode()
        .as_bytes(),
    );
    assert!(matches!(second[0], Response::Progress { state, .. } if state.as_str() == "draining"));
    assert!(matches!(second.last(), Some(Response::Done { .. })));
    assert_eq!(service.join().triggers.len(), 2);
}

#[test]
fn bad_input_gets_an_error_reply_and_the_service_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(dir.path(), fast(), quiet(), Runtime::AsyncIo);
    let mut long = vec![b'x'; 64 * 1024 + 10];
    long.push(b'\n');
    let cases: [(&[u8], &str); 5] = [
        (b"{not json\n", "invalid_json"),
        (b"{\"v\":9,\"op\":\"status\"}\n", "unsupported_version"),
        (b"{\"v\":1,\"op\":\"reboot\"}\n", "unknown_op"),
        (b"terminate\n", "invalid_json"),
        (&long, "line_too_long"),
    ];
    for (line, code) in cases {
        match &service.ask(line)[..] {
            [Response::Error { code: got, message }] => {
                assert_eq!(got.as_str(), code);
                assert!(!message.is_empty());
            }
            other => panic!("{code}: {other:?}"),
        }
    }
    assert_eq!(status_of(&service).0, "running");
    service.shutdown.trigger("end");
    service.join();
}

#[test]
fn silent_clients_time_out_and_hold_up_neither_others_nor_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = quiet().read_timeout(Duration::from_millis(300));
    let mut service = Service::start(dir.path(), fast(), config, Runtime::AsyncIo);
    let silent: Vec<_> = (0..5).map(|_| service.connect()).collect();
    // Others are served while the silent ones wait.
    assert_eq!(status_of(&service).0, "running");
    // The silent ones are told why they are dropped.
    for stream in silent {
        match &read_all(stream)[..] {
            [Response::Error { code, .. }] => assert_eq!(code.as_str(), "timeout"),
            other => panic!("{other:?}"),
        }
    }
    // A client that connects and never sends nor hangs up does not hold up shutdown past
    // the linger time.
    let _lingering = service.connect();
    service.shutdown.trigger("end");
    let report = service.join();
    assert_eq!(report.exit_code, 0);
}

#[test]
fn hundreds_of_concurrent_clients_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut service = Service::start(dir.path(), fast(), quiet(), Runtime::AsyncIo);
    let socket = service.socket.clone();
    let clients: Vec<_> = (0..300)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut stream = UnixStream::connect(&socket).unwrap();
                stream.set_read_timeout(Some(BOUND)).unwrap();
                stream
                    .write_all(Request::Status.encode().as_bytes())
                    .unwrap();
                read_all(stream)
            })
        })
        .collect();
    for client in clients {
        assert!(matches!(
            &client.join().unwrap()[..],
            [Response::Status { .. }]
        ));
    }
    service.shutdown.trigger("end");
    service.join();
}

#[test]
fn a_stale_socket_file_is_replaced_and_the_socket_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let stale = deputy_ipc::socket_path(dir.path(), std::process::id());
    std::fs::write(&stale, b"left over from an earlier run").unwrap();
    let mut service = Service::start(dir.path(), fast(), quiet(), Runtime::AsyncIo);
    assert_eq!(status_of(&service).0, "running");
    let mode = std::fs::metadata(&service.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    service.shutdown.trigger("end");
    service.join();
}

#[test]
fn the_pid_file_is_removed_at_the_end_unless_another_process_took_the_entrypoint_over() {
    let coordinator = fast().build(deputy_smol::AsyncIoRuntime).unwrap();
    let config = || ServerConfig::default().entrypoint(true);
    let dir = tempfile::tempdir().unwrap();
    let pid_file = deputy_ipc::entrypoint_path(dir.path());

    let server = ControlServer::bind(&coordinator.handle(), config().dir(dir.path())).unwrap();
    assert!(pid_file.exists());
    drop(server);
    assert!(!pid_file.exists(), "its own pid file is removed");

    let server = ControlServer::bind(&coordinator.handle(), config().dir(dir.path())).unwrap();
    // Another entrypoint takes over as deputy does: a new file renamed over this one (its
    // pid may even be this one's, in another PID namespace sharing the volume).
    let newer = dir.path().join("newer");
    std::fs::write(&newer, format!("{}\n", std::process::id())).unwrap();
    std::fs::rename(&newer, &pid_file).unwrap();
    drop(server);
    assert!(
        pid_file.exists(),
        "another process's pid file is left alone"
    );
}

#[test]
fn setup_errors_name_the_path_and_the_variable() {
    let coordinator = fast().build(deputy_smol::AsyncIoRuntime).unwrap();
    let missing = ControlServer::bind(
        &coordinator.handle(),
        ServerConfig::default().dir("/nonexistent/deputy"),
    )
    .unwrap_err();
    assert!(matches!(missing, IpcError::NoDirectory { .. }));
    let message = missing.to_string();
    assert!(message.contains("/nonexistent/deputy") && message.contains("DEPUTY_IPC_DIR"));

    // A directory nobody may create files in, root included: /proc.
    let error = ControlServer::bind(&coordinator.handle(), ServerConfig::default().dir("/proc"))
        .unwrap_err();
    assert!(matches!(error, IpcError::Unwritable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("/proc/deputy.") && message.contains("DEPUTY_IPC_DIR"),
        "{message}"
    );
}

#[test]
fn a_peer_of_another_user_is_refused() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut service = Service::start(dir.path(), fast(), quiet(), Runtime::AsyncIo);
    let client = |socket: &Path| {
        use std::os::unix::process::CommandExt;
        // This test binary, run again as `nobody`, as the client (see `peer_client`).
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "peer_client",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DEPUTY_TEST_CLIENT_SOCKET", socket)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    let reply_of = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| {
                line.split_once("client: ")
                    .map(|(_, reply)| reply.to_owned())
            })
            .unwrap_or_else(|| panic!("no client line in {out:?}"))
    };
    // The socket's mode keeps other users out...
    let out = client(&service.socket);
    assert!(reply_of(&out).starts_with("connect failed"), "{out:?}");
    // ...and if the mode is loosened, the credential check still refuses them.
    std::fs::set_permissions(&service.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = client(&service.socket);
    let reply = Response::decode(reply_of(&out).as_bytes()).unwrap();
    assert!(
        matches!(reply, Response::Error { code, .. } if code.as_str() == "refused"),
        "{reply:?}"
    );
    assert_eq!(
        status_of(&service).0,
        "running",
        "a refused peer triggered shutdown"
    );
    service.shutdown.trigger("end");
    service.join();
}

/// The client half of `a_peer_of_another_user_is_refused`, run by it in a child process of
/// another user; ignored in a normal run.
#[test]
#[ignore = "run by a_peer_of_another_user_is_refused"]
fn peer_client() {
    let socket = std::env::var("DEPUTY_TEST_CLIENT_SOCKET").expect("run by another test");
    match UnixStream::connect(&socket) {
        Err(error) => println!("client: connect failed: {error}"),
        Ok(mut stream) => {
            stream.set_read_timeout(Some(BOUND)).unwrap();
            // The server may refuse (and hang up) before the request is written: the write
            // can then fail, and the refusal is still there to read.
            let _ = stream.write_all(b"{\"v\":1,\"op\":\"terminate\"}\n");
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).unwrap();
            println!("client: {}", line.trim());
        }
    }
}

//! Rolling termination, zero drops: a pod behind a round-robin TCP proxy (standing in for
//! kube-proxy) with a second healthy backend, under keep-alive load with fast and slow
//! requests. Then, at one moment, what Kubernetes does: the proxy drops the pod after a
//! propagation delay, the preStop (`deputy terminate`) runs, then SIGTERM, and SIGKILL at the
//! grace period. No request may fail. The pod is http-service (the library), or plain-server
//! (no shutdown handling at all) under `deputy run`. The same harness against a naive server
//! that exits at once must see failures, so the test can fail.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod support;

use support::proxy::{Proxy, prestop};
use support::{Proc, deputy, example, free_port, is_root_with_unshare, keep_alive_get};

const CLIENTS: usize = 8;

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    slow_ok: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 5 {
            errors.push(why);
        }
    }
}

/// Keep-alive clients through the proxy until `stop`; with `fresh`, half of them open a new
/// connection for every request (new traffic that keeps coming until the endpoint is
/// removed, as new clients do in a cluster).
fn load(
    proxy: SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    fresh: bool,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|client| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut connection: Option<BufReader<TcpStream>> = None;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let slow = (n + client) % 5 == 0;
                    let path = if slow { "/work?ms=400" } else { "/" };
                    let stream = match &mut connection {
                        Some(stream) => stream,
                        None => match TcpStream::connect(proxy) {
                            Ok(s) => {
                                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                                connection.insert(BufReader::new(s))
                            }
                            Err(error) => {
                                tally.fail(format!("connect: {error}"));
                                continue;
                            }
                        },
                    };
                    tally.sent.fetch_add(1, Ordering::Relaxed);
                    match keep_alive_get(stream, path) {
                        Ok(close) => {
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                            if slow {
                                tally.slow_ok.fetch_add(1, Ordering::Relaxed);
                            }
                            if close || (fresh && client % 2 == 0) {
                                connection = None;
                            }
                        }
                        Err(error) => {
                            tally.fail(format!("{path}: {error}"));
                            connection = None;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect()
}

/// What runs in the pod.
#[derive(Clone, Copy, PartialEq)]
enum Pod {
    /// http-service: the library, drain delay 2.5 s.
    HttpService,
    /// axum-service: the front door's example, as http-service.
    AxumService,
    /// http-service with the drain delay that measures itself: at least 1 s, at most 10 s,
    /// over after 1 s without new traffic.
    HttpServiceAdaptive,
    /// plain-server under `deputy run`, drain delay 3 s (the longest propagation, 2 s, plus
    /// the slowest request, 0.4 s, with room to spare: plain-server cannot finish requests
    /// on its own once it has the SIGTERM).
    PlainServerUnderDeputyRun,
    /// plain-server alone, with no preStop: what deputy run replaces (the control).
    PlainServerAlone,
}

/// Starts the pod (as PID 1 of a new PID namespace when possible); returns it and its HTTP
/// address, once it serves.
fn start_service(dir: &Path, as_pid_1: bool, pod: Pod) -> (Proc, SocketAddr) {
    let port = free_port().to_string();
    let (program, mut args): (_, Vec<OsString>) = match pod {
        Pod::HttpService | Pod::AxumService => (
            example(if pod == Pod::AxumService {
                "axum-service"
            } else {
                "http-service"
            }),
            ["--port", &port, "--health-port", &free_port().to_string()]
                .into_iter()
                .chain(["--drain-delay", "2500ms", "--drain-timeout", "5s"])
                .chain(["--grace-period", "20s", "--ipc-dir"])
                .map(OsString::from)
                .collect(),
        ),
        Pod::HttpServiceAdaptive => (
            example("http-service"),
            ["--port", &port, "--health-port", &free_port().to_string()]
                .into_iter()
                .chain(["--drain-delay", "1s", "--drain-delay-max", "10s"])
                .chain(["--quiet-period", "1s", "--drain-timeout", "1s"])
                .chain(["--grace-period", "20s", "--ipc-dir"])
                .map(OsString::from)
                .collect(),
        ),
        Pod::PlainServerUnderDeputyRun => (
            deputy(),
            ["run", "--drain-delay", "3s", "--grace", "20s"]
                .into_iter()
                // plain-server dies of the SIGTERM: that is its success.
                .chain(["--map-exit", "143", "--ipc-dir"])
                .map(OsString::from)
                .collect(),
        ),
        Pod::PlainServerAlone => (
            example("plain-server"),
            vec!["--port".into(), port.clone().into()],
        ),
    };
    match pod {
        Pod::HttpService | Pod::AxumService | Pod::HttpServiceAdaptive => args.push(dir.into()),
        Pod::PlainServerUnderDeputyRun => {
            args.push(dir.into());
            args.extend(["--".into(), example("plain-server").into()]);
            args.extend(["--port".into(), port.clone().into()]);
        }
        Pod::PlainServerAlone => {}
    }
    let mut service = if as_pid_1 {
        Proc::start_as_pid_1(program, args)
    } else {
        Proc::start(program, args)
    };
    let line = service.next_out();
    assert!(
        line.contains("serving") || line.contains("listening"),
        "{line}"
    );
    let port: u16 = port.parse().unwrap();
    (service, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// What one rolling termination came to.
struct Outcome {
    sent: u64,
    ok: u64,
    failed: u64,
    slow_ok: u64,
    errors: Vec<String>,
    status: std::process::ExitStatus,
    stderr: String,
    /// From the preStop and the endpoint removal's start to the pod's exit.
    drain_time: Duration,
    stdout: String,
}

fn rolling_termination(pod_kind: Pod, propagation: Duration) -> Outcome {
    // Not plain-server alone: as PID 1 it would not even die of the SIGTERM (the kernel drops
    // a signal to PID 1 that has no handler), and the SIGKILL would come at the deadline.
    let as_pid_1 = is_root_with_unshare() && pod_kind != Pod::PlainServerAlone;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (mut pod, pod_addr) = start_service(dir_a.path(), as_pid_1, pod_kind);
    let pod_pid = pod.pid();
    // The other backend is of the same kind: a keep-alive backend next to one that closes
    // every connection would end up with every client, and the pod with no traffic.
    let other_kind = match pod_kind {
        Pod::HttpService | Pod::AxumService | Pod::HttpServiceAdaptive => Pod::HttpService,
        Pod::PlainServerUnderDeputyRun | Pod::PlainServerAlone => Pod::PlainServerAlone,
    };
    let (other, other_addr) = start_service(dir_b.path(), false, other_kind);
    let proxy = Proxy::start(vec![pod_addr, other_addr]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let fresh = pod_kind == Pod::HttpServiceAdaptive;
    let clients = load(proxy.addr, stop.clone(), tally.clone(), fresh);
    std::thread::sleep(Duration::from_millis(500));

    // The kubelet and the endpoints controller, at the same moment.
    let start = Instant::now();
    let grace = Duration::from_secs(22);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(propagation);
            proxy.remove(pod_addr);
        });
        // The preStop, if the pod has one; then SIGTERM.
        if pod_kind != Pod::PlainServerAlone {
            prestop(pod_pid, as_pid_1, dir_a.path()).unwrap();
        }
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pod_pid as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
    });
    let status = loop {
        if let Some(status) = pod.try_wait() {
            break status;
        }
        // (Dropping the pod kills it.)
        assert!(start.elapsed() < grace, "SIGKILL at the grace period");
        std::thread::sleep(Duration::from_millis(10));
    };
    let drain_time = start.elapsed();
    std::thread::sleep(Duration::from_millis(500)); // load keeps flowing to the other backend
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    drop(other);
    let ended = pod.finish();
    let (stderr, stdout) = (ended.err(), ended.out());
    let outcome = Outcome {
        sent: tally.sent.load(Ordering::Relaxed),
        ok: tally.ok.load(Ordering::Relaxed),
        failed: tally.failed.load(Ordering::Relaxed),
        slow_ok: tally.slow_ok.load(Ordering::Relaxed),
        errors: tally.errors.lock().unwrap().clone(),
        status,
        stderr,
        drain_time,
        stdout,
    };
    let name = match pod_kind {
        Pod::HttpService => "http-service",
        Pod::AxumService => "axum-service",
        Pod::HttpServiceAdaptive => "http-service, adaptive drain delay",
        Pod::PlainServerUnderDeputyRun => "plain-server under deputy run",
        Pod::PlainServerAlone => "plain-server alone",
    };
    println!(
        "{name}, propagation {propagation:?}: sent {}, ok {}, failed {}, slow ok {}, pod exited after {drain_time:?} (PID 1: {as_pid_1})",
        outcome.sent, outcome.ok, outcome.failed, outcome.slow_ok
    );
    outcome
}

/// No request failed, every one completed (slow ones included), and the pod exited cleanly.
fn assert_no_loss(outcome: Outcome) {
    assert_eq!(outcome.failed, 0, "failed requests: {:?}", outcome.errors);
    assert_eq!(
        outcome.sent, outcome.ok,
        "every request that was sent completed"
    );
    assert!(outcome.slow_ok > 0);
    assert!(
        outcome.status.success(),
        "the pod exited with {:?}: {}",
        outcome.status,
        outcome.stderr
    );
    for bad in ["panicked", "stack backtrace"] {
        assert!(!outcome.stderr.contains(bad), "{}", outcome.stderr);
    }
}

#[test]
fn rolling_termination_loses_no_request_with_fast_propagation() {
    assert_no_loss(rolling_termination(
        Pod::HttpService,
        Duration::from_millis(100),
    ));
}

#[test]
fn rolling_termination_loses_no_request_with_slow_propagation() {
    assert_no_loss(rolling_termination(
        Pod::HttpService,
        Duration::from_secs(2),
    ));
}

#[test]
fn the_axum_service_on_the_front_door_loses_no_request() {
    let outcome = rolling_termination(Pod::AxumService, Duration::from_millis(1000));
    assert!(
        outcome.stdout.contains("shutdown clean"),
        "{}",
        outcome.stdout
    );
    assert_no_loss(outcome);
}

#[test]
fn the_adaptive_drain_delay_ends_after_the_traffic_and_loses_no_request() {
    // Endpoints take 1.5 s; the delay is at least 1 s, at most 10 s, over after 1 s of quiet.
    let outcome = rolling_termination(Pod::HttpServiceAdaptive, Duration::from_millis(1500));
    let (drain_time, stdout) = (outcome.drain_time, outcome.stdout.clone());
    assert_no_loss(outcome);
    // The fixed alternative waits the whole 10 s; this one about 1.5 + 1 s, and then the
    // last requests. The bound is generous: it only tells the two apart.
    assert!(
        drain_time < Duration::from_secs(8),
        "{drain_time:?}\n{stdout}"
    );
    // The report says when the last new traffic came: just before the endpoint went, 1.5 s
    // after the trigger (new connections keep coming until then).
    let drain = stdout
        .lines()
        .find(|line| line.contains("drain:"))
        .unwrap_or_default();
    println!("{drain}");
    assert!(drain.contains("last new connection 1."), "{stdout}");
}

#[test]
fn a_plain_server_under_deputy_run_loses_no_request_with_fast_propagation() {
    assert_no_loss(rolling_termination(
        Pod::PlainServerUnderDeputyRun,
        Duration::from_millis(100),
    ));
}

#[test]
fn a_plain_server_under_deputy_run_loses_no_request_with_slow_propagation() {
    assert_no_loss(rolling_termination(
        Pod::PlainServerUnderDeputyRun,
        Duration::from_secs(2),
    ));
}

#[test]
fn the_same_plain_server_alone_loses_requests() {
    // What deputy run adds: the same program, the same harness, no supervisor.
    let outcome = rolling_termination(Pod::PlainServerAlone, Duration::from_millis(100));
    assert!(outcome.failed > 0, "no request failed without deputy run");
}

/// A server that does what many do on SIGTERM: exits at once, dropping every connection.
fn naive_server() -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    {
        let (killed, open) = (killed.clone(), open.clone());
        std::thread::spawn(move || {
            while !killed.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            for stream in open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(NetShutdown::Both);
            }
        });
    }
    let flag = killed.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let Ok(stream) = stream else { continue };
            open.lock().unwrap().push(stream.try_clone().unwrap());
            let flag = flag.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || flag.load(Ordering::Relaxed)
                    {
                        return;
                    }
                    while line.trim_end() != "" {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = reader
                        .get_mut()
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
                }
            });
        }
    });
    (addr, killed)
}

#[test]
fn the_same_harness_sees_failures_from_a_naive_server() {
    let (naive, kill) = naive_server();
    let (other, _) = naive_server();
    let proxy = Proxy::start(vec![naive, other]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients = load(proxy.addr, stop.clone(), tally.clone(), false);
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM and endpoint removal at the same moment; the naive server exits at once.
    kill.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    proxy.remove(naive);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    println!(
        "naive server: sent {}, failed {failed}",
        tally.sent.load(Ordering::Relaxed)
    );
    assert!(
        failed > 0,
        "the harness saw no failure from a server that drops its connections"
    );
}

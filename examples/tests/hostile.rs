//! deputy's endpoints under hostile and exhausting load, as real processes over real sockets:
//! services started with the common soft limit of 1,024 open files (`prlimit`), then flooded
//! with idle and half-sent (slowloris) connections, on the health port, on the control
//! socket, and on the application's own port, while the kubelet's probes and the preStop
//! must still get through.
//!
//! Every wait is bounded (probes by 2 s, as the kubelet's default timeout); the figures
//! (probe latencies, CPU) are printed for BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{Proc, deputy, example, free_port};

/// The kubelet's default probe timeout.
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// The health port's header read timeout in these tests (ipc-service's default, 5 s).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether this process can hold `count` more descriptors (it raises its own limit first);
/// says "skipped" when not, or when prlimit is missing.
fn can_flood(count: u64) -> bool {
    let limit = deputy_ipc::raise_nofile_limit().expect("getrlimit works");
    let enough = limit.after.is_none_or(|after| after > count + 200);
    let prlimit = Command::new("prlimit").arg("--version").output().is_ok();
    if !enough || !prlimit {
        eprintln!("skipped: needs prlimit and an open-files limit above {count}");
    }
    enough && prlimit
}

/// `program ARGS` with at most 1,024 open files, soft and hard, as many containers and
/// systemd services start.
fn with_1024_files(program: &Path, args: &[&str], dir: &Path) -> Proc {
    let mut command = Command::new("prlimit");
    command
        .arg("--nofile=1024:1024")
        .arg("--")
        .arg(program)
        .args(args)
        .arg("--ipc-dir")
        .arg(dir);
    Proc::spawn(command)
}

/// ipc-service with 1,024 files and its health port, once it listens; returns it, the
/// health port and the control socket's path.
fn ipc_service(dir: &Path) -> (Proc, u16, String) {
    let port = free_port();
    let mut service = with_1024_files(
        &example("ipc-service"),
        &["--health-port", &port.to_string()],
        dir,
    );
    let line = service.expect_out("listening");
    let socket = line.rsplit(' ').next().unwrap().to_owned();
    (service, port, socket)
}

/// Opens `count` connections to `addr`: every other one idle, the rest half-sent (a request
/// line and part of a header, never finished). Connections that cannot be made within 3 s
/// are left out.
fn flood(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    for i in 0..count {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
            continue;
        };
        if i % 2 == 1 {
            let _ = stream.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        open.push(stream);
    }
    open
}

/// Keeps the half-sent connections trickling (a byte each, as slowloris does) until `stop`.
fn trickle(streams: &[TcpStream], until: Instant) {
    while Instant::now() < until {
        for (i, mut stream) in streams.iter().enumerate() {
            if i % 2 == 1 {
                let _ = stream.write_all(b"a");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How many of `streams` the server still holds open (a read would block).
fn still_open(streams: &[TcpStream]) -> usize {
    streams
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 64];
            let open = matches!((&**stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            stream.set_nonblocking(false).unwrap();
            open
        })
        .count()
}

/// `count` readiness probes, one after another, each on a new connection as the kubelet's
/// are; every one must answer 200 within [`PROBE_BOUND`]. Returns the latencies, sorted.
fn probe(port: u16, count: usize) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = (0..count)
        .map(|i| {
            let start = Instant::now();
            let status = http_status_within(port, "/health/ready", PROBE_BOUND);
            let took = start.elapsed();
            assert_eq!(status, 200, "probe {i} failed after {took:?}");
            assert!(took < PROBE_BOUND, "probe {i} took {took:?}");
            took
        })
        .collect();
    latencies.sort();
    latencies
}

/// A GET whose connect and read are bounded by `bound`; 0 when there is no answer.
fn http_status_within(port: u16, path: &str, bound: Duration) -> u16 {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, bound) else {
        return 0;
    };
    stream.set_read_timeout(Some(bound)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..read])
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The median and 99th percentile of sorted latencies, in ms.
fn percentiles(sorted: &[Duration]) -> (f64, f64) {
    let at = |q: f64| {
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

/// The CPU `pid` uses over `window`, in percent of one core (from /proc/<pid>/stat).
fn cpu_percent(pid: u32, window: Duration) -> f64 {
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let before = ticks();
    std::thread::sleep(window);
    let used = (ticks() - before) as f64 / hz;
    used / window.as_secs_f64() * 100.0
}

/// `deputy ARGS --ipc-dir DIR`, bounded; returns its exit code and output.
fn deputy_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(deputy());
    command.args(args).arg("--ipc-dir").arg(dir);
    let out = command.output().expect("deputy runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn under_a_flood_of_idle_and_slowloris_connections_the_health_port_answers_and_the_prestop_works() {
    if !can_flood(1_100) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, port, _) = ipc_service(dir.path());
    let started = Instant::now();
    let streams = flood(SocketAddr::from(([127, 0, 0, 1], port)), 1_100);
    println!(
        "flood: {} connections open to the health port",
        streams.len()
    );
    assert!(streams.len() >= 1_000, "the flood could not connect");

    std::thread::scope(|scope| {
        scope.spawn(|| trickle(&streams, started + HEADER_TIMEOUT + Duration::from_secs(3)));
        // Probes answer, and quickly.
        let latencies = probe(port, 40);
        let (median, p99) = percentiles(&latencies);
        println!("probes under the flood: median {median:.2} ms, p99 {p99:.2} ms");
        // `deputy status` works.
        let (code, text) = deputy_in(dir.path(), &["status"]);
        assert_eq!(code, Some(0), "{text}");
        // The flood costs the service next to no CPU.
        let cpu = cpu_percent(service.pid(), Duration::from_secs(5));
        println!("service CPU over 5 s under the flood: {cpu:.1} %");
        assert!(cpu < 5.0, "the service used {cpu:.1} % of a core");
    });
    // Every idle and half-sent connection is closed within the header timeout of its
    // opening: all were opened within a second or two of `started`.
    let deadline = started + HEADER_TIMEOUT + Duration::from_secs(2);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    assert_eq!(still_open(&streams), 0, "connections still held open");

    let (code, text) = deputy_in(dir.path(), &["terminate"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(service.finish().code, 0);
}

#[test]
fn under_2000_idle_clients_the_control_socket_still_takes_status_and_terminate() {
    if !can_flood(2_000) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, port, socket) = ipc_service(dir.path());
    let idle: Vec<UnixStream> = (0..2_000).filter_map(|_| connect_unix(&socket)).collect();
    println!("flood: {} idle clients on the control socket", idle.len());
    assert!(idle.len() >= 1_900, "the flood could not connect");

    let start = Instant::now();
    let (code, text) = deputy_in(dir.path(), &["status"]);
    let took = start.elapsed();
    println!("deputy status under the flood: {took:?}");
    assert_eq!(code, Some(0), "{text}");
    // A bound, generous next to the milliseconds it takes: a server that lets the flood
    // hold its descriptors answers only when its read timeouts free them, 5 s and more.
    assert!(took < Duration::from_secs(4), "deputy status took {took:?}");
    let latencies = probe(port, 20);
    let (median, p99) = percentiles(&latencies);
    println!("probes under the control-socket flood: median {median:.2} ms, p99 {p99:.2} ms");
    let cpu = cpu_percent(service.pid(), Duration::from_secs(5));
    println!("service CPU over 5 s under the control-socket flood: {cpu:.1} %");
    assert!(cpu < 5.0, "the service used {cpu:.1} % of a core");

    let start = Instant::now();
    let (code, text) = deputy_in(dir.path(), &["terminate"]);
    println!("deputy terminate under the flood: {:?}", start.elapsed());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("done, clean"), "{text}");
    assert_eq!(service.finish().code, 0);
    drop(idle);
}

#[test]
fn with_its_descriptors_exhausted_by_its_own_clients_a_service_still_shuts_down_losing_nothing() {
    if !can_flood(1_100) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let health = free_port();
    let mut service = with_1024_files(
        &example("http-service"),
        &[
            "--port",
            &port.to_string(),
            "--health-port",
            &health.to_string(),
            "--drain-delay",
            "1s",
        ],
        dir.path(),
    );
    service.expect_out("serving");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Requests accepted before the descriptors run out, still running when the preStop
    // comes: none may be lost.
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream
                .write_all(b"GET /work?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();
    // Idle clients of the application itself take every descriptor the service has left.
    let idle = flood_idle(addr, 1_100);
    println!(
        "flood: {} idle connections to the application port",
        idle.len()
    );
    let cpu = cpu_percent(service.pid(), Duration::from_secs(2));
    println!("http-service CPU over 2 s with its descriptors exhausted: {cpu:.1} %");
    assert!(cpu < 5.0, "the accept loop spins: {cpu:.1} % of a core");

    // The preStop arrives: it is accepted all the same (a descriptor kept in reserve), the
    // shutdown completes, and the requests in flight complete.
    let start = Instant::now();
    let (code, text) = deputy_in(dir.path(), &["terminate"]);
    println!(
        "deputy terminate with descriptors exhausted: {:?}",
        start.elapsed()
    );
    assert_eq!(code, Some(0), "{text}");
    for (i, mut stream) in slow.into_iter().enumerate() {
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i}: {answer:?}"
        );
        assert!(answer.contains("worked 4000 ms"), "request {i}: {answer:?}");
    }
    assert_eq!(service.finish().code, 0);
    drop(idle);
}

/// A connection to the UNIX socket at `path`, made without blocking: a full backlog (EAGAIN)
/// is tried again for up to 2 s, then the connection is left out.
fn connect_unix(path: &str) -> Option<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let address = SocketAddrUnix::new(path).unwrap();
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let give_up = Instant::now() + Duration::from_secs(2);
    loop {
        match rustix::net::connect(&socket, &address) {
            Ok(()) => return Some(UnixStream::from(socket)),
            Err(rustix::io::Errno::AGAIN) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return None,
        }
    }
}

/// Opens up to `count` idle connections to `addr`, giving up on each after 200 ms and on the
/// whole after 20 failures (once the service is out of descriptors and its backlog is full,
/// every connect fails).
fn flood_idle(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(count);
    let mut failures = 0;
    while open.len() < count && failures < 20 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => open.push(stream),
            Err(_) => failures += 1,
        }
    }
    open
}

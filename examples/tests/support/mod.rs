//! The end-to-end tests' one harness: the binaries they run, built once ([`deputy`],
//! [`example`]); a process with its output read line by line ([`Proc`]: started directly or
//! as PID 1 under unshare, waited for with a [`BOUND`], killed on drop); and small helpers.

#![allow(dead_code)] // each test file uses its own subset

pub(crate) mod endpoints;
mod proc;
pub(crate) mod proxy;
pub(crate) mod run;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::mpsc::Receiver;
use std::time::Duration;

#[allow(unused_imports)] // not every test file runs processes
pub(crate) use proc::{Ended, Proc};

/// How long any one step may take before a test fails (not a timing goal: a bound that keeps
/// a broken build from hanging CI).
pub(crate) const BOUND: Duration = Duration::from_secs(20);

/// The examples the end-to-end tests run.
const EXAMPLES: [&str; 10] = [
    "axum-service",
    "grpc-service",
    "http-service",
    "ipc-service",
    "plain-server",
    "signal-service",
    "smol-worker",
    "stream-service",
    "tcp-proxy",
    "worker-service",
];

/// `target/<profile>`, with `deputy` and every example the tests run built in it: once per
/// test binary, in one cargo run (a no-op when they are up to date).
pub(crate) fn target_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(&EXAMPLES))
}

/// The `deputy` binary.
pub(crate) fn deputy() -> PathBuf {
    target_dir().join("deputy")
}

/// The example `name`'s binary.
pub(crate) fn example(name: &str) -> PathBuf {
    target_dir().join("examples").join(name)
}

/// Builds the `deputy` binary and the named examples (debug profile, like the tests) and
/// returns the target directory: `deputy` is in it, the examples under `examples/`.
fn build(examples: &[&str]) -> PathBuf {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args([
        "build",
        "--quiet",
        "-p",
        "deputy-ipc",
        "--bin",
        "deputy",
        "-p",
        "deputy-examples",
    ]);
    for example in examples {
        command.args(["--example", example]);
    }
    assert!(
        command.status().expect("cargo runs").success(),
        "building {examples:?} failed"
    );
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// Reads `output` on a thread; its lines arrive on the returned channel, which closes at EOF.
pub(crate) fn lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The host's pid of the PID 1 that `unshare --fork` (pid `unshare`) starts, once it has.
pub(crate) fn pid_1_of(unshare: u32) -> u32 {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
            .unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unshare started nothing"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The http-service example on a free port (its health endpoints on another), its control
/// socket in `dir`, with `options` and `env` on top, once it serves: it and its port.
pub(crate) fn http_service(
    dir: &Path,
    options: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> (Proc, u16) {
    let (service, port, _) = http_service_with_health(dir, options, env);
    (service, port)
}

/// [`http_service`], with its health port: it, its port and its health port.
pub(crate) fn http_service_with_health(
    dir: &Path,
    options: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> (Proc, u16, u16) {
    let (port, health) = (free_port(), free_port());
    let mut command = Command::new(example("http-service"));
    command
        .args(["--port", &port.to_string(), "--health-port"])
        .arg(health.to_string())
        .arg("--ipc-dir")
        .arg(dir)
        .args(options)
        .envs(env.iter().copied());
    let mut service = Proc::spawn(command);
    service.expect_out("http-service: serving");
    (service, port, health)
}

/// A TCP port that was free on every address a moment ago, for a server under test to bind.
///
/// Taken below Linux's ephemeral range (32768-60999): a port the kernel picked for `bind(0)`
/// and the test released is also one it hands to the next outgoing connection (a client of
/// another test in this binary), which then holds it, and the server's bind fails. Ports
/// here are handed out in turn from a start that differs per process, so one binary's tests
/// never get the same port twice.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7_919) % COUNT,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {FIRST} to {}", FIRST + COUNT);
}

/// Whether this machine can run the PID 1 tests: root, with util-linux's unshare.
pub(crate) fn is_root_with_unshare() -> bool {
    rustix::process::getuid().is_root() && Command::new("unshare").arg("--version").output().is_ok()
}

/// [`is_root_with_unshare`], saying "skipped" when not.
pub(crate) fn can_unshare() -> bool {
    let can = is_root_with_unshare();
    if !can {
        eprintln!("skipped: needs root and unshare");
    }
    can
}

/// One HTTP/1.1 request to 127.0.0.1; returns the status code, or 0 if there was no answer.
pub(crate) fn http_status(port: u16, method: &str, path: &str) -> u16 {
    http_request(port, method, path, &[]).0
}

/// One HTTP/1.1 request to 127.0.0.1 with extra headers; returns the status code (0 if there
/// was no answer) and the body.
pub(crate) fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let _ = stream.write_all(request.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

/// Lossy UTF-8.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails if `output` shows a panic or a backtrace.
pub(crate) fn assert_no_panic(output: &str) {
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
        assert!(!output.contains(bad), "found {bad:?} in: {output}");
    }
}

/// What `deputy status` says of the service whose control socket is in `dir`.
pub(crate) fn deputy_status(dir: &Path) -> String {
    let out = Command::new(deputy())
        .args(["status", "--ipc-dir"])
        .arg(dir)
        .output()
        .unwrap();
    text(&out.stdout)
}

/// One HTTP/1.1 `GET path` on a kept-alive `stream`; an error unless the answer is 200 with
/// its whole body; whether the server asked to close the connection.
pub(crate) fn keep_alive_get(
    stream: &mut BufReader<TcpStream>,
    path: &str,
) -> std::io::Result<bool> {
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n"
    )?;
    let mut status = String::new();
    stream.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status line {status:?}")));
    }
    let (mut length, mut close) = (0usize, false);
    loop {
        let mut header = String::new();
        if stream.read_line(&mut header)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = header.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if header == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body)?;
    Ok(close)
}

//! The `deputy` binary against `ipc-service`, as real processes over real sockets: the
//! preStop path, exit codes, health statuses, and the service as PID 1 of its own PID
//! namespace with the preStop entered into it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{
    BOUND, Proc, assert_no_panic, can_unshare, deputy, example, free_port, http_status, text,
};

fn deputy_cmd() -> Command {
    Command::new(deputy())
}

/// Starts `ipc-service --ipc-dir DIR ARGS`; returns it, once it has said its pid, and that
/// pid.
fn start_service(dir: &Path, args: &[&str]) -> (Proc, u32) {
    let mut all = vec!["--ipc-dir".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    with_pid(Proc::start(example("ipc-service"), all))
}

/// Starts ipc-service as PID 1 of a new PID namespace, as a container runtime would.
fn start_as_pid_1(dir: &Path) -> (Proc, u32) {
    let args = ["--ipc-dir".as_ref(), dir.as_os_str()];
    with_pid(Proc::start_as_pid_1(example("ipc-service"), args))
}

/// The service and the pid its first line gives (`ipc-service: pid N ...`).
fn with_pid(mut service: Proc) -> (Proc, u32) {
    let first = service.next_out();
    let pid = first
        .split_whitespace()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));
    (service, pid)
}

fn run(command: &mut Command) -> Output {
    command.output().expect("deputy runs")
}

#[test]
fn terminate_through_the_entrypoint_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _) = start_service(dir.path(), &["--hook-ms", "200"]);
    let out = run(deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path()));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("deputy: draining"), "{stdout}");
    assert!(stdout.contains("deputy: stopping flush"), "{stdout}");
    assert!(stdout.contains("deputy: done, clean"), "{stdout}");
    let ended = service.finish();
    assert_eq!(ended.code, 0);
    assert_eq!(
        ended.out[1..] // after the pid line
            .iter()
            .map(|l| l.split(" after ").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "ipc-service: draining",
            "ipc-service: stopping stop-accepting",
            "ipc-service: stopping flush",
            "ipc-service: stopping close",
            "ipc-service: done",
            "ipc-service: exit code 0",
        ]
    );
    assert_no_panic(&ended.err());
    assert!(!deputy_ipc::entrypoint_path(dir.path()).exists());
}

#[test]
fn two_processes_without_entrypoint_are_terminated_by_pid() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_service(dir.path(), &["--no-entrypoint"]);
    let b = start_service(dir.path(), &["--no-entrypoint"]);
    assert!(!deputy_ipc::entrypoint_path(dir.path()).exists());
    // Without a pid there is no target, and the message names the path it looked at.
    let out = run(deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("deputy-entrypoint.pid"),
        "{}",
        text(&out.stderr)
    );
    for (_, pid) in [&b, &a] {
        let out = run(deputy_cmd()
            .args([
                "terminate",
                "--json",
                "--pid",
                &pid.to_string(),
                "--ipc-dir",
            ])
            .arg(dir.path()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let last = text(&out.stdout).lines().last().unwrap().to_owned();
        assert!(last.contains("\"type\":\"done\""), "{last}");
    }
    assert_eq!(a.0.finish().code, 0);
    assert_eq!(b.0.finish().code, 0);
}

#[test]
fn exit_codes_say_how_it_went() {
    let dir = tempfile::tempdir().unwrap();
    // Done with failures: 1, and the service exits with its report's code.
    let (failing, _) = start_service(dir.path(), &["--fail-hook"]);
    let out = run(deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("close failed"),
        "{}",
        text(&out.stdout)
    );
    let ended = failing.finish();
    assert_eq!(ended.code, 1);
    assert_no_panic(&ended.err());

    // Timed out: 5, and the service still finishes on its own.
    let (slow, _) = start_service(dir.path(), &["--hook-ms", "1500"]);
    let out = run(deputy_cmd()
        .args(["terminate", "--timeout", "300ms", "--ipc-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(slow.finish().code, 0);

    // No such target: 3, naming the socket path.
    let out = run(deputy_cmd()
        .args(["status", "--pid", "999999", "--ipc-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("deputy.999999.sock"),
        "{}",
        text(&out.stderr)
    );

    // Bad command line: 2 (clap's), with the codes listed in --help.
    assert_eq!(
        run(deputy_cmd().arg("terminate").arg("--bogus"))
            .status
            .code(),
        Some(2)
    );
    let help = text(&run(deputy_cmd().args(["terminate", "--help"])).stdout);
    for line in [
        "0  done cleanly",
        "1  done, with failures",
        "3  no such target",
        "4  refused",
        "5  timed out",
    ] {
        assert!(help.contains(line), "--help lacks {line:?}");
    }
}

#[test]
fn refused_for_another_user() {
    if !rustix::process::getuid().is_root() {
        eprintln!("skipped: needs root to run deputy as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (service, _) = start_service(dir.path(), &[]);
    let out = run(deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path())
        .uid(65534)
        .gid(65534));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = run(deputy_cmd().arg("status").arg("--ipc-dir").arg(dir.path()));
    assert!(
        text(&out.stdout).contains("running"),
        "the refused peer changed the state"
    );
    let out = run(deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(service.finish().code, 0);
}

#[test]
fn health_statuses_follow_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (service, _) = start_service(
        dir.path(),
        &[
            "--health-port",
            &port.to_string(),
            "--drain-delay",
            "1500ms",
        ],
    );
    // ipc-service calls ready() right after printing its first line.
    let deadline = Instant::now() + BOUND;
    while http_status(port, "GET", "/health/ready") != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(http_status(port, "GET", "/health/live"), 200);
    assert_eq!(http_status(port, "HEAD", "/health/ready"), 200);
    assert_eq!(http_status(port, "GET", "/health/status"), 200);
    assert_eq!(http_status(port, "POST", "/health/live"), 405);
    assert_eq!(http_status(port, "GET", "/nope"), 404);
    assert_eq!(
        http_status(port, "GET", "/shutdown"),
        404,
        "/shutdown is opt-in"
    );

    let terminate = deputy_cmd()
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // While draining: not ready, still live.
    let deadline = Instant::now() + BOUND;
    while http_status(port, "GET", "/health/ready") != 503 {
        assert!(Instant::now() < deadline, "readiness never turned off");
    }
    assert_eq!(http_status(port, "GET", "/health/live"), 200);
    let out = terminate.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // Done: not live (the endpoints linger a second after Done).
    assert_eq!(http_status(port, "GET", "/health/live"), 503);
    assert_eq!(service.finish().code, 0);
}

#[test]
fn as_pid_1_the_prestop_exits_cleanly_before_the_namespace_dies() {
    if !can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, pid) = start_as_pid_1(dir.path());
    assert_eq!(pid, 1, "ipc-service is not PID 1");
    assert_eq!(deputy_ipc::entrypoint_pid(dir.path()), Some(1));
    let host_pid = service.pid();
    // The preStop runs inside the namespace, as the kubelet's exec does: when PID 1 exits
    // the kernel kills it, so it must have exited by then, cleanly.
    let out = run(Command::new("nsenter")
        .args(["--target", &host_pid.to_string(), "--pid", "--"])
        .arg(deputy())
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir.path()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "preStop: {:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("deputy: done, clean"));
    assert_eq!(service.finish().code, 0);
}

#[test]
fn if_the_connection_drops_terminate_waits_for_the_process_to_go() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, _) = start_service(dir.path(), &["--drain-delay", "10s"]);
    let terminate = deputy_cmd()
        .args(["terminate", "--timeout", "20s", "--ipc-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is draining (the terminate request has arrived), then kill the service.
    let line = service.next_out();
    assert!(line.starts_with("ipc-service: draining"), "{line}");
    // Killed, and not reaped yet: a zombie counts as gone.
    service.kill();
    let out = terminate.wait_with_output().unwrap();
    // 0 means done cleanly: a service killed mid-shutdown was not.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("outcome unknown"));
    assert!(
        text(&out.stderr).contains("closed before done"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("exited"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_restart_as_pid_1_replaces_the_stale_socket() {
    if !can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let as_pid_1 = || start_as_pid_1(dir.path()).0;
    // A pod killed hard leaves its socket and pid file behind...
    let mut first = as_pid_1();
    let first_pid = first.pid();
    first.kill();
    // `--kill-child` kills the service when unshare dies, a moment later: wait for it.
    let deadline = Instant::now() + BOUND;
    while std::fs::read_to_string(format!("/proc/{first_pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    }) {
        assert!(Instant::now() < deadline, "the first service did not die");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stale = deputy_ipc::socket_path(dir.path(), 1);
    assert!(stale.exists(), "the killed service left no socket behind");
    let out = run(deputy_cmd().arg("status").arg("--ipc-dir").arg(dir.path()));
    assert_eq!(
        out.status.code(),
        Some(3),
        "a stale socket answered: {}",
        text(&out.stdout)
    );
    // ...and the restarted one, PID 1 again, takes the same path over.
    let second = as_pid_1();
    let out = run(deputy_cmd()
        .args(["terminate", "--timeout", "20s", "--ipc-dir"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(second.finish().code, 0);
    assert!(!stale.exists());
}

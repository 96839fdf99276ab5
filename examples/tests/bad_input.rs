//! Bad input, as a careless or hostile user gives it, to every binary: each case gets a
//! clear error that names the right thing, and the documented exit code; never a panic, a
//! backtrace, a hang or an orphan.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

mod support;

use support::{Proc, deputy, example, free_port};

/// One case: the program, its arguments, its environment, the exit code it must end with,
/// and what its output (stderr, else stdout) must say.
struct Case {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    says: &'static str,
}

fn case(program: PathBuf, args: &[&str], code: i32, says: &'static str) -> Case {
    Case {
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        code,
        says,
    }
}

impl Case {
    fn env(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.env.push((name, value.into()));
        self
    }

    fn check(&self) {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // As in a developer's shell: a backtrace must still not reach the user.
            .env("RUST_BACKTRACE", "1");
        let ended = Proc::spawn(command).finish(); // bounded; fails on a panic
        let (code, out, err) = ended.texts();
        let what = format!("{:?} {:?} {:?}", self.program, self.args, self.env);
        assert_eq!(code, self.code, "{what}:\n{err}\n{out}");
        assert!(
            err.contains(self.says) || out.contains(self.says),
            "{what}: no {:?} in:\n{err}\n{out}",
            self.says
        );
        assert!(!err.contains("Stack backtrace"), "{what}: {err}");
    }
}

#[test]
fn deputy_run_refuses_bad_input_with_a_clear_line() {
    let d = deputy;
    let cases = [
        case(
            d(),
            &["run", "--grace", "18446744073709551615s", "--", "true"],
            2,
            "longer than",
        ),
        case(
            d(),
            &["run", "--stop-signal", "CHLD", "--", "true"],
            2,
            "ignored by default",
        ),
        case(
            d(),
            &["run", "--stop-signal", "NOPE", "--", "true"],
            2,
            "is not a signal",
        ),
        case(
            d(),
            &["run", "--ready-port", "0", "--", "true"],
            2,
            "--ready-port 0",
        ),
        case(
            d(),
            &["run", "--health-port", "0", "--", "true"],
            2,
            "--health-port 0",
        ),
        case(
            d(),
            &[
                "run",
                "--ready-url",
                "http://127.0.0.1:99999/",
                "--",
                "true",
            ],
            2,
            "99999 is not a port",
        ),
        case(
            d(),
            &["run", "--quiet-period", "2s", "--", "true"],
            2,
            "needs --drain-delay-max",
        ),
        case(
            d(),
            &["run", "--map-exit", "7", "--map-exit", "7=5", "--", "true"],
            2,
            "maps 7 twice",
        ),
        case(
            d(),
            &["run", "--notify", "--watchdog", "0s", "--", "true"],
            2,
            "--watchdog must be more than 0s",
        ),
        case(
            d(),
            &["run", "--stop-timeout", "0s", "--", "true"],
            2,
            "--stop-timeout must",
        ),
        case(
            d(),
            &["run", "--", "true"],
            2,
            "invalid value 'xyz' for DEPUTY_GRACE_PERIOD",
        )
        .env("DEPUTY_GRACE_PERIOD", "xyz"),
        case(d(), &["run", "--", "true"], 2, "for DEPUTY_GROUP (--group)")
            .env("DEPUTY_GROUP", "maybe"),
        case(
            d(),
            &["run", "--no-control-socket", "--", "/no/such/program"],
            127,
            "not found",
        ),
        case(
            d(),
            &["terminate", "--timeout", "300000000000y"],
            2,
            "longer than",
        ),
    ];
    for case in cases {
        case.check();
    }
}

#[test]
fn deputy_names_the_control_directory_problem_and_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let long = dir.path().join("x".repeat(120));
    std::fs::create_dir(&long).unwrap();
    for (ipc_dir, says) in [
        (&file, "is not a directory"),
        (&long, "more than a Unix socket allows"),
    ] {
        let ipc_dir = ipc_dir.to_str().unwrap();
        case(
            deputy(),
            &["run", "--ipc-dir", ipc_dir, "--", "true"],
            0,
            says,
        )
        .check();
    }
    let empty = tempfile::tempdir().unwrap();
    let empty = empty.path().to_str().unwrap();
    case(
        deputy(),
        &["terminate", "--ipc-dir", empty],
        3,
        "deputy-entrypoint.pid",
    )
    .check();
}

#[test]
fn a_busy_health_port_is_named_as_the_health_port() {
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let free = free_port().to_string();
    for case in [
        case(
            deputy(),
            &[
                "run",
                "--health-port",
                &port,
                "--ipc-dir",
                dir,
                "--",
                "true",
            ],
            125,
            "cannot serve the health endpoints on 0.0.0.0:",
        ),
        case(
            example("http-service"),
            &["--health-port", &port, "--port", &free, "--ipc-dir", dir],
            1,
            "http-service: cannot serve the health endpoints on 0.0.0.0:",
        ),
    ] {
        case.check();
    }
    // And it says the cause once, without "control socket".
    let out = Command::new(example("http-service"))
        .args(["--health-port", &port, "--port", &free, "--ipc-dir", dir])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("control socket"), "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

#[test]
fn the_examples_refuse_bad_input_and_answer_help() {
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let cases = [
        case(
            example("http-service"),
            &["--drain-delay", "18446744073709551615s"],
            2,
            "longer than",
        ),
        case(
            example("http-service"),
            &["--health-port", "0"],
            1,
            "--health-port 0",
        ),
        case(
            example("http-service"),
            &["--grace-period", "1s"],
            1,
            "http-service: drain delay, drain timeout and phase timeouts add up",
        ),
        case(
            example("http-service"),
            &[],
            2,
            "`maybe` is not a yes or no",
        )
        .env("DEPUTY_METRICS", "maybe"),
        case(
            example("http-service"),
            &[],
            2,
            "for DEPUTY_DRAIN_DELAY (--drain-delay)",
        )
        .env("DEPUTY_DRAIN_DELAY", "xyz"),
        // TLS: a file that is not there is named; half a pair is refused.
        case(
            example("http-service"),
            &[
                "--tls-cert",
                "/nonexistent/tls.crt",
                "--tls-key",
                "/nonexistent/tls.key",
            ],
            1,
            "http-service: TLS file /nonexistent/tls.crt: No such file or directory",
        ),
        case(
            example("grpc-service"),
            &["--tls-cert", "/nonexistent/tls.crt"],
            2,
            "--tls-key <TLS_KEY>",
        ),
        case(example("axum-service"), &[], 2, "--tls-cert <TLS_CERT>")
            .env("DEPUTY_TLS_KEY", "/etc/tls/tls.key"),
        case(
            example("plain-server"),
            &["--help"],
            0,
            "usage: plain-server",
        ),
        case(
            example("plain-server"),
            &["--bogus"],
            2,
            "usage: plain-server",
        ),
        case(
            example("plain-server"),
            &["--port", &port],
            1,
            "cannot listen on port",
        ),
        case(example("demo"), &["--help"], 0, "usage: demo"),
        case(example("demo"), &["--bogus"], 2, "unknown argument"),
    ];
    for case in cases {
        case.check();
    }
}

#[test]
fn a_second_service_in_the_directory_leaves_the_entrypoint_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = Command::new(example("ipc-service"));
        command.arg("--ipc-dir").arg(dir.path());
        let mut service = Proc::spawn(command);
        service.expect_out("listening on");
        service
    };
    let first = start();
    let mut second = start();
    let named = std::fs::read_to_string(dir.path().join("deputy-entrypoint.pid")).unwrap();
    assert_eq!(named.trim(), first.pid().to_string());
    second.kill();
    second.wait_exit();
    let status = Command::new(deputy())
        .args(["status", "--ipc-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    drop(first);
}

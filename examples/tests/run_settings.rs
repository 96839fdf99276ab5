//! `deputy run`'s settings: the open-files limit (its own raised, the child's kept), options
//! from the environment that the child does not see, and the command line over the
//! environment.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::run::{IGNORES_TERM, assert_said, deputy_run_with_env};
use support::{Proc, deputy as deputy_bin, free_port, http_status};

/// The soft and hard open-files limits of `pid`, from /proc/<pid>/limits.
fn nofile(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let mut fields = line.split_whitespace().skip(3);
    (fields.next().unwrap().into(), fields.next().unwrap().into())
}

#[test]
fn deputy_raises_its_own_open_files_limit_and_the_child_keeps_the_one_it_was_given() {
    let run = |raise_child: bool| {
        let mut command = Command::new("prlimit");
        command.args(["--nofile=1024:4096", "--"]).arg(deputy_bin());
        command.args(["run", "--no-control-socket"]);
        if raise_child {
            command.arg("--raise-child-nofile");
        }
        command.args([
            "--",
            "sh",
            "-c",
            "echo child $(ulimit -Sn); exec sleep 1000",
        ]);
        let mut deputy = Proc::spawn(command);
        let child = deputy.expect_out("child ");
        // deputy raises its own limit right after the child has started: wait for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut own = nofile(deputy.pid());
        while own.0 != "4096" && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            own = nofile(deputy.pid());
        }
        deputy.signal(Sig::TERM);
        assert_eq!(deputy.finish().code, 128 + 15);
        (child, own)
    };
    let (child, own) = run(false);
    assert_eq!(child, "child 1024");
    assert_eq!(own, ("4096".into(), "4096".into()));
    let (child, own) = run(true);
    assert_eq!(child, "child 4096");
    assert_eq!(own, ("4096".into(), "4096".into()));
}

/// The options from the environment, under the names services on the deputy library read:
/// deputy takes them, and the child does not see them (it would bind the same health port,
/// or run a second drain delay), while the rest of the environment (PORT) reaches it.
#[test]
fn options_come_from_the_environment_and_the_child_does_not_see_them() {
    let health = free_port();
    let health_text = health.to_string();
    let mut deputy = deputy_run_with_env(
        &[
            "--",
            "sh",
            "-c",
            &format!("env | grep -E '^(PORT|DEPUTY_)' | sort; {IGNORES_TERM}"),
        ],
        &[
            ("DEPUTY_GRACE_PERIOD", "1500ms"),
            ("DEPUTY_DRAIN_DELAY", "0s"),
            ("DEPUTY_HEALTH_CHECK_PORT", &health_text),
            ("DEPUTY_NO_CONTROL_SOCKET", "true"),
            ("PORT", "8080"),
        ],
    );
    let mut seen = Vec::new();
    loop {
        let line = deputy.next_out();
        if line.contains("ready") {
            break;
        }
        seen.push(line);
    }
    // The health port is deputy's: a child on the deputy library is told to serve none.
    assert_eq!(
        seen,
        [
            "DEPUTY_ENTRYPOINT=0",
            "DEPUTY_HEALTH_CHECK_PORT=off",
            "PORT=8080"
        ]
    );
    // deputy took the health port, and serves it.
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    let sent = Instant::now();
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 137, "{err}");
    assert_said(
        &err,
        &[
            "stopping process",
            "the grace period of 1s 500ms is over: killing process group",
        ],
    );
    // DEPUTY_DRAIN_DELAY=0s, not the default 5s.
    assert!(!err.contains(" in 5s"), "{err}");
    assert!(sent.elapsed() >= Duration::from_millis(1500), "{err}");
}

/// The command line wins over the environment.
#[test]
fn the_command_line_wins_over_the_environment() {
    let deputy = deputy_run_with_env(
        &[
            "--no-control-socket",
            "--grace",
            "10s",
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
        &[("DEPUTY_GRACE_PERIOD", "0s"), ("DEPUTY_MAP_EXIT", "3=4,5")],
    );
    let (code, _, err) = deputy.finish().texts();
    // DEPUTY_GRACE_PERIOD=0s would be refused; the command line's 10s is taken, and the
    // environment's mappings apply (3 becomes 4).
    assert_eq!(code, 4, "{err}");
}

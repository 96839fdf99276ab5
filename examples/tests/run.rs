//! `deputy run` as real processes with real signals: the grace period, reaping, exit codes,
//! the drain delay, the stop over a control socket or a signal, escalation, cleanup of
//! descendants, a clean signal state for the child, and PID 1 (through
//! `unshare --pid --fork --mount-proc`, as root).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Proc, can_unshare, deputy as deputy_bin, example, free_port, http_status, text};

/// `deputy run ARGS`; `args` holds the options, `--` and the command.
fn deputy_run(args: &[&str]) -> Proc {
    Proc::start(
        deputy_bin(),
        std::iter::once("run").chain(args.iter().copied()),
    )
}

/// `deputy run ARGS` as PID 1 of new PID and mount namespaces, with its own /proc, as a
/// container runtime starts it.
fn deputy_run_as_pid_1(args: &[&str]) -> Proc {
    Proc::start_as_pid_1(
        deputy_bin(),
        std::iter::once("run").chain(args.iter().copied()),
    )
}

/// The exit code and stderr of `deputy run ARGS`, run to the end.
fn run_to_end(args: &[&str]) -> (i32, String, String) {
    deputy_run(args).finish().texts()
}

/// `deputy terminate --ipc-dir DIR` through `command` (deputy itself, or nsenter in front of
/// it), as a preStop hook: it must succeed and report a clean shutdown.
fn prestop(mut command: Command, dir: &Path) {
    let out = command
        .args(["terminate", "--ipc-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("deputy: done, clean"), "{out:?}");
}

/// Fails unless deputy's stderr `err` holds every one of `parts`.
fn assert_said(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "no {part:?} in:\n{err}");
    }
}

/// Whether a process of this pid exists (zombie or not).
fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

use rustix::process::Signal as Sig;

const IGNORES_TERM: &str = "trap '' TERM; echo ready; while :; do sleep 0.1; done";

#[test]
fn a_child_that_ignores_term_is_killed_when_the_grace_period_is_over() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--grace",
        "1s",
        "--drain-delay",
        "200ms",
        "--",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    deputy.expect_out("ready");
    let sent = Instant::now();
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 137, "{err}");
    assert_said(
        &err,
        &[
            "sent SIGTERM to process",
            "the grace period of 1s is over: killing process group",
            "was killed by SIGKILL",
        ],
    );
    assert!(
        sent.elapsed() >= Duration::from_secs(1),
        "killed before the grace period"
    );
}

#[test]
fn exit_codes_pass_through_and_a_signal_becomes_128_plus_it() {
    let quiet = ["--no-control-socket", "--"];
    let with = |options: &[&str], command: &[&str]| {
        let args: Vec<&str> = options
            .iter()
            .chain(&quiet)
            .chain(command)
            .copied()
            .collect();
        run_to_end(&args)
    };
    assert_eq!(with(&[], &["true"]).0, 0);
    assert_eq!(with(&[], &["sh", "-c", "exit 3"]).0, 3);
    let (code, _, err) = with(&[], &["sh", "-c", "kill -USR1 $$"]);
    assert_eq!(code, 128 + 10);
    assert_said(&err, &["was killed by SIGUSR1"]);
    assert_eq!(with(&["--map-exit", "3=0"], &["sh", "-c", "exit 3"]).0, 0);
    assert_eq!(with(&["--map-exit", "4=9"], &["sh", "-c", "exit 4"]).0, 9);
    assert_eq!(
        with(&["--map-exit", "138"], &["sh", "-c", "kill -USR1 $$"]).0,
        0
    );
    assert_eq!(with(&["--map-exit", "3=0"], &["sh", "-c", "exit 5"]).0, 5);

    let (code, _, err) = with(&[], &["deputy-no-such-command"]);
    assert_eq!(code, 127);
    assert_said(&err, &["command not found"]);
    let dir = tempfile::tempdir().unwrap();
    let not_executable = dir.path().join("script");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let (code, _, err) = with(&[], &[not_executable.to_str().unwrap()]);
    assert_eq!(code, 126, "{err}");

    // Bad command lines: clap's code 2, one line saying what is wrong.
    for bad in [
        &["--drain-delay", "30s", "--grace", "10s"][..],
        &["--grace", "10"],
        &["--stop-signal", "KILL"],
        &["--stop-signal", "NOPE"],
        &["--map-exit", "300"],
    ] {
        let (code, _, err) = with(bad, &["true"]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(!err.is_empty(), "{bad:?} said nothing");
    }
}

/// Counts zombies in this PID namespace (its /proc); the child of deputy prints it.
const ORPHANS_THEN_COUNT_ZOMBIES: &str = "\
for i in 1 2 3 4 5; do (sleep 0.05 &); done
sleep 0.5
z=0
for f in /proc/[0-9]*/stat; do
  set -- $(cat $f 2>/dev/null | sed 's/.*) //'); [ \"$1\" = Z ] && z=$((z+1))
done
echo zombies=$z";

#[test]
fn as_pid_1_the_zombies_of_a_double_forking_child_are_reaped() {
    if !can_unshare() {
        return;
    }
    // The measure can see zombies: with a PID 1 that never waits (sleep), the orphans stay.
    let control = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg(format!(
            "sh -c '{}' & exec sleep 1",
            ORPHANS_THEN_COUNT_ZOMBIES.replace('\'', "'\\''")
        ))
        .output()
        .unwrap();
    assert!(
        text(&control.stdout).contains("zombies=5"),
        "control: {}",
        text(&control.stdout)
    );

    let mut deputy = deputy_run_as_pid_1(&[
        "--no-control-socket",
        "--",
        "sh",
        "-c",
        ORPHANS_THEN_COUNT_ZOMBIES,
    ]);
    let line = deputy.expect_out("zombies=");
    assert_eq!(line, "zombies=0");
    assert_eq!(deputy.finish().code, 0);
}

#[test]
fn as_a_subreaper_orphans_are_reaped() {
    // Not PID 1: the orphans come to deputy (a child subreaper), which reaps them. The child
    // counts the zombies whose parent is deputy ($PPID).
    let script = "\
for i in 1 2 3 4 5; do (sleep 0.05 &); done
sleep 0.5
z=0
for f in /proc/[0-9]*/stat; do
  set -- $(cat $f 2>/dev/null | sed 's/.*) //'); [ \"$1\" = Z ] && [ \"$2\" = $PPID ] && z=$((z+1))
done
echo zombies=$z";
    let mut deputy = deputy_run(&["--no-control-socket", "--", "sh", "-c", script]);
    assert_eq!(deputy.expect_out("zombies="), "zombies=0");
    assert_eq!(deputy.finish().code, 0);
}

#[test]
fn the_child_keeps_serving_during_the_drain_delay_then_gets_the_stop_signal() {
    let (port, health) = (free_port(), free_port());
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "1500ms",
        "--health-port",
        &health.to_string(),
        "--",
        example("plain-server").to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    deputy.expect_out("plain-server: listening");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    deputy.expect_err("readiness off, stopping process");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    // During the delay, the child still answers.
    assert_eq!(http_status(port, "GET", "/"), 200);
    deputy.expect_err("sent SIGTERM to process");
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

#[test]
fn with_ready_port_readiness_waits_for_the_child_to_listen() {
    // The child listens only once the test writes to a FIFO: until then deputy must say
    // "not ready", then "ready", then "not ready" again from the first signal on.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("go");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let (port, health) = (free_port(), free_port());
    let script = format!(
        "echo started; read go < {}; exec {} --port {port}",
        fifo.display(),
        example("plain-server").display()
    );
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "1s",
        "--health-port",
        &health.to_string(),
        "--ready-port",
        &port.to_string(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    deputy.expect_out("started");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    std::fs::write(&fifo, "go\n").unwrap();
    deputy.expect_out("plain-server: listening");
    deputy.expect_err("ready: the child accepts connections on port");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    deputy.expect_err("readiness off");
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

#[test]
fn a_child_with_a_control_socket_is_stopped_over_it_and_terminate_reaches_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let mut deputy = deputy_run(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "0s",
        "--",
        example("http-service").to_str().unwrap(),
        "--port",
        &free_port().to_string(),
        "--health-port",
        &free_port().to_string(),
        "--drain-delay",
        "0s",
    ]);
    deputy.expect_out("http-service: serving");
    // The entrypoint pid file names the supervisor, not the child (DEPUTY_ENTRYPOINT=0).
    assert_eq!(deputy_ipc::entrypoint_pid(dir.path()), Some(deputy.pid()));

    let status = Command::new(deputy_bin())
        .args(["status", "--ipc-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        text(&status.stdout).contains("running, ready"),
        "{status:?}"
    );
    prestop(Command::new(deputy_bin()), dir.path());

    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["over its control socket"]);
    assert!(!err.contains("sent SIGTERM"), "{err}");
    // The child's own report says why it stopped.
    assert!(out.contains("reason: control socket request"), "{out}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "files left in the control directory"
    );
}

#[test]
fn a_service_under_a_shell_without_exec_is_stopped_over_its_control_socket() {
    // K8sDeputy.jl's advice, `sh -c "julia entrypoint.jl; sleep 1"`: the service is a
    // grandchild of deputy, and the shell would die of a SIGTERM without passing it on.
    let dir = tempfile::tempdir().unwrap();
    let service = format!(
        "{} --port {} --health-port {} --drain-delay 0s; echo \"service exited with $?\"",
        example("http-service").display(),
        free_port(),
        free_port()
    );
    let mut deputy = deputy_run(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "0s",
        "--",
        "sh",
        "-c",
        &service,
    ]);
    deputy.expect_out("http-service: serving");
    deputy.signal(Sig::TERM);
    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["over its control socket"]);
    assert!(!err.contains("sent SIGTERM"), "{err}");
    assert!(out.contains("reason: control socket request"), "{out}");
    assert!(out.contains("service exited with 0"), "{out}");
}

#[test]
fn stop_signal_quit_is_what_the_child_gets() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--stop-signal",
        "QUIT",
        "--",
        "sh",
        "-c",
        "trap 'echo got QUIT; exit 0' QUIT; trap 'echo got TERM; exit 1' TERM; \
         echo ready; while :; do sleep 0.1; done",
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    let (code, out, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("got QUIT") && !out.contains("got TERM"),
        "{out}"
    );
    assert_said(&err, &["sent SIGQUIT to process"]);
}

/// deputy running `script` (which prints "ready"), in the 100 s drain delay of a first
/// SIGTERM: a test that needs deputy to go on before then fails at the bound, not later.
fn in_a_long_drain_delay(script: &str) -> Proc {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "100s",
        "--grace",
        "200s",
        "--",
        "sh",
        "-c",
        script,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    deputy.expect_err("stopping process");
    deputy
}

/// A shell with a background sleep that takes 0.3 s to stop on SIGTERM (ample time for a
/// SIGTERM sent to its group to end the sleep); prints "ready" once both run.
const SHELL_WITH_A_CHILD: &str = "sleep 1000 & trap 'sleep 0.3; exit 0' TERM; echo ready; wait";

#[test]
fn with_group_the_stop_signal_reaches_the_whole_process_group() {
    let stop = |group: bool| {
        let mut args = vec!["--no-control-socket", "--drain-delay", "0s"];
        if group {
            args.push("--group");
        }
        args.extend([
            "--cleanup-timeout",
            "200ms",
            "--",
            "sh",
            "-c",
            SHELL_WITH_A_CHILD,
        ]);
        let mut deputy = deputy_run(&args);
        deputy.expect_out("ready");
        deputy.signal(Sig::TERM);
        deputy.finish().texts()
    };
    // Without --group the shell alone gets SIGTERM; its sleep is left for the cleanup.
    let (code, _, err) = stop(false);
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["sent SIGTERM to process ", "1 process left behind"]);
    // With it, the sleep gets it too, and nothing is left.
    let (code, _, err) = stop(true);
    assert_eq!(code, 0, "{err}");
    assert_said(&err, &["sent SIGTERM to process group"]);
    assert!(!err.contains("left behind"), "{err}");
}

#[test]
fn a_second_signal_skips_the_drain_delay() {
    let deputy = in_a_long_drain_delay("echo ready; exec sleep 1000");
    deputy.signal(Sig::INT);
    // Without the skip this would wait 100 s and the bound would fail the test.
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
    assert_said(&err, &["SIGINT: skipping the rest of the drain"]);
}

#[test]
fn a_child_that_exits_during_the_drain_delay_ends_it() {
    let deputy =
        in_a_long_drain_delay("trap 'exit 4' HUP; echo ready; while :; do sleep 0.1; done");
    // The child goes on its own (here on a forwarded SIGHUP): without the skip, deputy
    // would wait out the 100 s delay and the bound would fail the test.
    deputy.signal(Sig::HUP);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 4, "{err}");
    assert_said(&err, &["exited with code 4"]);
}

#[test]
fn a_third_signal_kills_at_once() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--grace",
        "200s",
        "--",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::TERM);
    deputy.expect_err("sent SIGTERM");
    deputy.signal(Sig::TERM);
    deputy.expect_err("SIGTERM: the drain is already over");
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 137, "{err}");
    assert_said(&err, &["SIGTERM: exiting at once: killing process group"]);
}

/// Leaves two descendants: one that dies on SIGTERM, one that ignores it (it inherits the
/// ignore, so no signal can come before it is set); prints their pids.
const LEAVES_TWO: &str = "\
sleep 1000 & echo $!
trap '' TERM
sleep 1001 & echo $!
exit 0";

#[test]
fn descendants_left_behind_get_term_then_kill() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--cleanup-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        LEAVES_TWO,
    ]);
    let first: u32 = deputy.expect_out("").parse().unwrap();
    let second: u32 = deputy.expect_out("").parse().unwrap();
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "2 processes left behind by process",
            "1 process still running after 500ms: sending SIGKILL",
        ],
    );
    assert!(
        !exists(first) && !exists(second),
        "{first} or {second} is still there"
    );
}

#[test]
fn as_pid_1_descendants_left_behind_get_term_then_kill() {
    if !can_unshare() {
        return;
    }
    let deputy = deputy_run_as_pid_1(&[
        "--no-control-socket",
        "--cleanup-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        LEAVES_TWO,
    ]);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "2 processes left behind by process 2",
            "1 process still running after 500ms",
        ],
    );
}

#[test]
fn as_pid_1_without_its_own_proc_leftovers_are_reached_through_the_group() {
    if !can_unshare() {
        return;
    }
    // `unshare --pid` without `--mount-proc`: /proc shows the outer namespace, whose pids
    // would name the wrong processes. deputy falls back to the child's process group.
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child"])
        .arg(deputy_bin())
        .args(["run", "--no-control-socket", "--cleanup-timeout", "300ms"])
        .args(["--", "sh", "-c", LEAVES_TWO]);
    let (code, _, err) = Proc::spawn_unshare(command).finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "SIGTERM to its process group",
            "still running after 300ms: sending SIGKILL",
        ],
    );
}

#[test]
fn signals_other_than_term_and_int_are_forwarded() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--",
        "sh",
        "-c",
        "trap 'echo got HUP' HUP; trap 'echo got USR2' USR2; echo ready; \
         while :; do sleep 0.1; done",
    ]);
    deputy.expect_out("ready");
    deputy.signal(Sig::HUP);
    deputy.expect_out("got HUP");
    deputy.signal(Sig::USR2);
    deputy.expect_out("got USR2");
    deputy.signal(Sig::TERM);
    assert_eq!(deputy.finish().code, 128 + 15);
}

/// The signal mask, ignored signals and process group a program sees, from its
/// /proc/self/status and stat.
const SHOW_SIGNAL_STATE: &str = "grep -E '^Sig(Blk|Ign)' /proc/self/status; \
     echo pgrp=$(cut -d' ' -f5 /proc/$$/stat) pid=$$";

#[test]
fn the_child_gets_a_clean_signal_state_its_own_group_and_deputys_stdio_and_environment() {
    // A parent that ignores SIGHUP and SIGUSR2 (nohup, some shells): the ignore survives
    // exec, as the control shows, and deputy must not pass it on.
    let control = Command::new("sh")
        .args([
            "-c",
            "trap '' HUP USR2; exec sh -c \"$1\"",
            "sh",
            SHOW_SIGNAL_STATE,
        ])
        .output()
        .unwrap();
    assert!(
        !text(&control.stdout).contains("SigIgn:\t0000000000000000"),
        "control: {}",
        text(&control.stdout)
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' HUP USR2; exec \"$0\" run --no-control-socket -- sh -c \"$1\"")
        .arg(deputy_bin())
        .arg(SHOW_SIGNAL_STATE)
        .output()
        .unwrap();
    let out = text(&out.stdout);
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    let ids: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("pgrp="))
        .unwrap()
        .split(' ')
        .map(|part| part.split('=').nth(1).unwrap())
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "the child does not lead its own process group: {out}"
    );

    // stdin, stdout and the environment pass through; deputy's own lines go to stderr.
    let mut child = Command::new(deputy_bin())
        .args(["run", "--no-control-socket", "--", "sh", "-c"])
        .arg("cat; echo \"FOO=$FOO ENTRYPOINT=$DEPUTY_ENTRYPOINT\"; exit 7")
        .env("FOO", "bar")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from stdin\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        text(&output.stdout),
        "from stdin\nFOO=bar ENTRYPOINT=0\n",
        "{output:?}"
    );
    assert_eq!(output.status.code(), Some(7));
    let err = text(&output.stderr);
    assert!(
        err.lines().all(|line| line.starts_with("deputy: ")),
        "unprefixed line in {err}"
    );
}

#[test]
fn as_pid_1_a_prestop_terminate_reaches_the_supervisor() {
    if !can_unshare() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut deputy = deputy_run_as_pid_1(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--drain-delay",
        "300ms",
        "--map-exit",
        "143",
        "--",
        example("plain-server").to_str().unwrap(),
        "--port",
        &port.to_string(),
    ]);
    deputy.expect_out("plain-server: listening");
    assert_eq!(deputy_ipc::entrypoint_pid(dir.path()), Some(1));
    // The kubelet's exec runs inside the namespace; when PID 1 exits, whatever is left in it
    // is killed, so the preStop must be done first, and cleanly.
    let mut nsenter = Command::new("nsenter");
    nsenter
        .args(["--target", &deputy.pid().to_string(), "--pid", "--"])
        .arg(deputy_bin());
    prestop(nsenter, dir.path());
    let (code, _, err) = deputy.finish().texts();
    // plain-server dies of the SIGTERM (143), mapped to 0.
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "control socket request: readiness off",
            "was killed by SIGTERM",
        ],
    );
}

#[test]
fn at_a_terminal_the_child_gets_the_foreground() {
    // `script` (util-linux) runs deputy on a new pseudo-terminal, as `docker run -it` does. In
    // a background process group the child's `read` would stop it (SIGTTIN) for good.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: needs script (util-linux)");
        return;
    }
    let command = format!(
        "{} run --no-control-socket -- sh -c 'read line; echo \"got $line\"'",
        deputy_bin().display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    let (mut script, mut stdin) = Proc::spawn_with_stdin(script);
    std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
    let answer = script.expect_out("got ");
    assert_eq!(answer.trim_end(), "got hello");
}

/// `deputy run ARGS` with `VAR=VALUE`s added to its environment.
fn deputy_run_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(deputy_bin());
    command.arg("run").args(args).envs(env.iter().copied());
    Proc::spawn(command)
}

const TOKEN: &str = "0123456789abcdef0123";

#[test]
fn with_a_token_the_health_port_serves_shutdown_for_an_httpget_prestop() {
    let health = free_port();
    let mut deputy = deputy_run_with_env(
        &[
            "--no-control-socket",
            "--drain-delay",
            "0s",
            "--health-port",
            &health.to_string(),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
        &[("DEPUTY_SHUTDOWN_TOKEN", TOKEN)],
    );
    deputy.expect_out("ready");
    let shutdown = |token: &str| {
        support::http_request(
            health,
            "POST",
            "/shutdown?wait=10s",
            &[("x-deputy-token", token)],
        )
    };
    // A wrong token changes nothing.
    assert_eq!(shutdown("not-the-token-not-the-token").0, 403);
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    // The right one: the answer comes when all is done (deputy waits to give it).
    let (status, body) = shutdown(TOKEN);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"type\":\"done\""), "{body}");
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
    assert_said(&err, &["sent SIGTERM to process"]);
}

#[test]
fn a_shutdown_token_too_short_to_be_a_secret_is_refused() {
    let health = free_port().to_string();
    let (code, _, err) = deputy_run_with_env(
        &["--health-port", &health, "--", "true"],
        &[("DEPUTY_SHUTDOWN_TOKEN", "short")],
    )
    .finish()
    .texts();
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["DEPUTY_SHUTDOWN_TOKEN", "at least 16"]);
}

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

/// An HTTP server in Python whose /ready answers 503 until the file `argv[2]` exists, then
/// 200: `ready-server.py PORT FILE`.
const READY_SERVER: &str = r#"
import http.server, os, sys
port, flag = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/ready" and os.path.exists(flag)
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("ready-server: answered %d" % (200 if ok else 503), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print("ready-server: listening", flush=True)
server.serve_forever()
"#;

#[test]
fn with_ready_url_readiness_follows_the_childs_own_answer() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: needs python3");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ready-server.py");
    std::fs::write(&script, READY_SERVER).unwrap();
    let flag = dir.path().join("ready");
    let (port, health) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{port}/ready");
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--health-port",
        &health.to_string(),
        "--ready-url",
        &url,
        "--",
        "python3",
        script.to_str().unwrap(),
        &port.to_string(),
        flag.to_str().unwrap(),
    ]);
    deputy.expect_out("ready-server: listening");
    // The port accepts connections, but the URL says 503 to deputy's check: not ready.
    deputy.expect_out("ready-server: answered 503");
    assert_eq!(http_status(port, "GET", "/ready"), 503);
    assert_eq!(http_status(health, "GET", "/health/ready"), 503);
    std::fs::write(&flag, "").unwrap();
    deputy.expect_err("ready: http://127.0.0.1");
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    deputy.signal(Sig::TERM);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
}

#[test]
fn ready_url_takes_only_http_urls_and_not_with_ready_port() {
    let (code, _, err) = run_to_end(&["--ready-url", "https://x/ready", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["only http://"]);
    let (code, _, _) = run_to_end(&[
        "--ready-url",
        "http://127.0.0.1:1/ready",
        "--ready-port",
        "1",
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
}

#[test]
fn metrics_are_served_on_the_health_port_when_asked_for() {
    let health = free_port();
    for (args, env) in [
        (vec!["--metrics"], None),
        (vec![], Some(("DEPUTY_METRICS", "1"))),
    ] {
        let mut command = Command::new(deputy_bin());
        command
            .args([
                "run",
                "--no-control-socket",
                "--drain-delay",
                "0s",
                "--health-port",
            ])
            .arg(health.to_string())
            .args(&args)
            .args(["--", "sh", "-c", "echo started; exec sleep 1000"]);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let mut deputy = Proc::spawn(command);
        deputy.expect_out("started");
        let (status, body) = support::http_request(health, "GET", "/metrics", &[]);
        assert_eq!(status, 200, "{args:?} {env:?}: {body}");
        assert!(body.contains("deputy_state{state=\"running\"} 1"), "{body}");
        assert!(body.contains("deputy_ready 1"), "{body}");
        deputy.signal(Sig::TERM);
        assert_eq!(deputy.finish().code, 128 + 15);
    }
    let (code, _, err) = run_to_end(&["--metrics", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["--metrics needs --health-port"]);
}

#[test]
fn an_adaptive_drain_delay_waits_out_new_connections_to_the_childs_port() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let port = free_port();
    let mut command = Command::new(deputy_bin());
    command
        .args([
            "run",
            "--no-control-socket",
            "--grace",
            "20s",
            "--ready-port",
        ])
        .arg(port.to_string())
        .args([
            "--drain-delay",
            "1s",
            "--drain-delay-max",
            "10s",
            "--quiet-period",
            "1s",
        ])
        .args(["--map-exit", "143", "--"])
        .arg(example("plain-server"))
        .args(["--port", &port.to_string()])
        .env("DEPUTY_TERMINATION_LOG", &log);
    let mut deputy = Proc::spawn(command);
    deputy.expect_out("plain-server: listening");
    deputy.expect_err("ready: the child accepts connections");
    // New clients for 2 s after the signal, a new connection each 50 ms: endpoints still
    // sending traffic. A fixed 1 s delay would stop plain-server under them.
    let started = std::time::Instant::now();
    deputy.signal(Sig::TERM);
    let mut failed = 0;
    while started.elapsed() < Duration::from_secs(2) {
        if support::http_status(port, "GET", "/") != 200 {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = deputy.finish();
    let took = started.elapsed();
    assert_eq!(failed, 0, "requests failed while traffic still came");
    assert_eq!(ended.code, 0, "{}", ended.err());
    // Over after the traffic and a quiet second, well before the 10 s maximum.
    assert!(took < Duration::from_secs(9), "{took:?}");
    // The report saw the last one, about 2 s after the signal (it looks every 100 ms).
    let message = std::fs::read_to_string(&log).unwrap();
    let last: f64 = message
        .split_once("last new connection ")
        .and_then(|(_, rest)| rest.split_once('s'))
        .and_then(|(seconds, _)| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no last new connection in: {message}"));
    assert!((1.5..3.0).contains(&last), "{message}");
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

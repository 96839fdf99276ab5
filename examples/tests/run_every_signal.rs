//! `deputy run` owns every signal it can catch: the ones it does not act on (anything but
//! SIGTERM and SIGINT) go to the child, and none of them kills, stops or orphans deputy,
//! whether it runs as PID 1 (a container) or under a shell, systemd or another init.
//!
//! The child is a shell that traps each signal by number and says so; a signal that
//! reached deputy and not the child, or that stopped or killed deputy, fails the test.

use std::process::Command;

mod support;

use support::{Proc, can_unshare, deputy};

/// The signals users have seen kill, stop or bypass deputy, by number: SIGRTMIN+3 (37,
/// systemd's halt signal and a common STOPSIGNAL), SIGPWR, SIGTSTP, SIGTTIN, SIGTTOU,
/// SIGUSR1, SIGWINCH; and the usual ones to forward, SIGHUP (reload) and SIGUSR2.
const SIGNALS: [(&str, i32); 9] = [
    ("SIGHUP", 1),
    ("SIGUSR2", 12),
    ("SIGRTMIN+3", 37),
    ("SIGPWR", 30),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGUSR1", 10),
    ("SIGWINCH", 28),
];

/// A child that says `got N` for each signal of [`SIGNALS`] it receives.
fn trapping_child() -> String {
    let traps: String = SIGNALS
        .iter()
        .map(|(_, number)| format!("trap 'echo got {number}' {number}; "))
        .collect();
    format!("{traps}echo ready; while :; do sleep 0.05; done")
}

/// The state letter of process `pid` (R, S, T for stopped, Z...), or None if it is gone.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name's closing parenthesis.
    stat.rsplit_once(") ")?.1.chars().next()
}

fn sends_every_signal_to_the_child_and_lives(mut deputy: Proc) {
    deputy.expect_out("ready");
    for (name, number) in SIGNALS {
        let pid = rustix::process::Pid::from_raw(deputy.pid() as i32).unwrap();
        // SAFETY: none of these numbers is one the C library keeps for itself (32, 33).
        #[allow(unsafe_code)]
        let signal = unsafe { rustix::process::Signal::from_raw_unchecked(number) };
        rustix::process::kill_process(pid, signal).expect("deputy is running");
        deputy.expect_out(&format!("got {number}"));
        let now = state(deputy.pid());
        assert!(
            matches!(now, Some('R' | 'S')),
            "after {name}, deputy is {now:?} (T: stopped, None: gone)"
        );
    }
    deputy.signal(rustix::process::Signal::TERM);
    let ended = deputy.finish();
    // The child, a shell without a TERM trap, dies of the stop signal: 128 + 15.
    assert_eq!(ended.code, 143, "{}", ended.err());
}

#[test]
fn not_as_pid_1_every_signal_goes_to_the_child_and_deputy_lives() {
    let mut command = Command::new(deputy());
    command.args(["run", "--no-control-socket", "--drain-delay", "0s", "--"]);
    command.args(["sh", "-c", &trapping_child()]);
    sends_every_signal_to_the_child_and_lives(Proc::spawn(command));
}

#[test]
fn as_pid_1_every_signal_goes_to_the_child_and_deputy_lives() {
    if !can_unshare() {
        return;
    }
    let child = trapping_child();
    let deputy = Proc::start_as_pid_1(
        deputy(),
        [
            "run",
            "--no-control-socket",
            "--drain-delay",
            "0s",
            "--",
            "sh",
            "-c",
            &child,
        ],
    );
    sends_every_signal_to_the_child_and_lives(deputy);
}

#[test]
fn a_real_time_stop_signal_stops_the_child() {
    // systemd's own way: STOPSIGNAL SIGRTMIN+3. The child exits 0 on it.
    let mut command = Command::new(deputy());
    command.args([
        "run",
        "--no-control-socket",
        "--drain-delay",
        "0s",
        "--stop-signal",
        "SIGRTMIN+3",
        "--",
        "sh",
        "-c",
        "trap 'echo stopping; exit 0' 37; echo ready; while :; do sleep 0.05; done",
    ]);
    let mut deputy = Proc::spawn(command);
    deputy.expect_out("ready");
    deputy.signal(rustix::process::Signal::TERM);
    deputy.expect_out("stopping");
    let ended = deputy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(ended.err().contains("sent SIGRTMIN+3"), "{}", ended.err());
}

#[test]
fn a_child_killed_by_a_real_time_signal_is_reaped_with_its_code() {
    // nix's waitpid turned such a status into an error after reaping: the exit was lost.
    let mut command = Command::new(deputy());
    command.args([
        "run",
        "--no-control-socket",
        "--",
        "sh",
        "-c",
        "kill -37 $$",
    ]);
    let ended = Proc::spawn(command).finish();
    assert_eq!(ended.code, 128 + 37, "{}", ended.err());
    assert!(
        ended.err().contains("killed by SIGRTMIN+3"),
        "{}",
        ended.err()
    );
}

//! Real signals to real processes: the escalation rule behaves the same on tokio and on smol.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

mod support;

const BOUND: Duration = Duration::from_secs(20);

struct Process {
    child: Child,
    lines: Receiver<String>,
}

impl Process {
    fn start(runtime: &str, hang: bool) -> Process {
        let dir = support::build(&["signal-service"]);
        let mut command = Command::new(dir.join("examples/signal-service"));
        command.args(["--runtime", runtime]);
        if hang {
            command.arg("--hang");
        }
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let lines = support::lines(child.stdout.take().unwrap());
        let process = Process { child, lines };
        process.expect("signal-service: ready");
        process
    }

    fn expect(&self, line: &str) {
        let got = self
            .lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("no {line:?}"));
        assert_eq!(got, line);
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }

    fn exit_code(mut self) -> i32 {
        self.child
            .wait()
            .unwrap()
            .code()
            .expect("exited, not killed")
    }
}

fn second_signal_skips_the_drain(runtime: &str) {
    let process = Process::start(runtime, false);
    process.signal(Signal::TERM);
    process.expect("signal-service: draining");
    // The drain delay is 30 s: only the second signal can end it this soon.
    process.signal(Signal::TERM);
    process.expect("signal-service: stopping stop-accepting");
    process.expect("signal-service: stopping flush");
    process.expect("signal-service: stopping close");
    process.expect("signal-service: done");
    process.expect("signal-service: exit code 0");
    assert_eq!(process.exit_code(), 0);
}

fn third_signal_exits_at_once(runtime: &str) {
    let process = Process::start(runtime, true);
    process.signal(Signal::INT);
    process.expect("signal-service: draining");
    process.signal(Signal::INT);
    process.expect("signal-service: stopping stop-accepting");
    // The hook hangs for 10 s; the third Ctrl-C gets the person out now.
    process.signal(Signal::INT);
    assert_eq!(process.exit_code(), 130);
}

#[test]
fn tokio_second_signal_skips_the_drain() {
    second_signal_skips_the_drain("tokio");
}

#[test]
fn smol_second_signal_skips_the_drain() {
    second_signal_skips_the_drain("smol");
}

#[test]
fn tokio_third_signal_exits_at_once_with_128_plus_the_signal() {
    third_signal_exits_at_once("tokio");
}

#[test]
fn smol_third_signal_exits_at_once_with_128_plus_the_signal() {
    third_signal_exits_at_once("smol");
}

//! Real signals to real processes: the escalation rule behaves the same on tokio and on smol.

use rustix::process::Signal;

mod support;

use support::{Proc, example};

/// signal-service on `runtime` (perhaps with a hook that hangs), once it is ready.
fn start(runtime: &str, hang: bool) -> Proc {
    let mut args = vec!["--runtime", runtime];
    if hang {
        args.push("--hang");
    }
    let mut process = Proc::start(example("signal-service"), args);
    expect(&mut process, "signal-service: ready");
    process
}

/// The next line of the service is `line`.
fn expect(process: &mut Proc, line: &str) {
    assert_eq!(process.next_out(), line);
}

fn second_signal_skips_the_drain(runtime: &str) {
    let mut process = start(runtime, false);
    process.signal(Signal::TERM);
    expect(&mut process, "signal-service: draining");
    // The drain delay is 30 s: only the second signal can end it this soon.
    process.signal(Signal::TERM);
    expect(&mut process, "signal-service: stopping stop-accepting");
    expect(&mut process, "signal-service: stopping flush");
    expect(&mut process, "signal-service: stopping close");
    expect(&mut process, "signal-service: done");
    expect(&mut process, "signal-service: exit code 0");
    assert_eq!(process.finish().code, 0);
}

fn third_signal_exits_at_once(runtime: &str) {
    let mut process = start(runtime, true);
    process.signal(Signal::INT);
    expect(&mut process, "signal-service: draining");
    process.signal(Signal::INT);
    expect(&mut process, "signal-service: stopping stop-accepting");
    // The hook hangs for 10 s; the third Ctrl-C gets the person out now.
    process.signal(Signal::INT);
    assert_eq!(process.finish().code, 130);
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

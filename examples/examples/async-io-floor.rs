//! The least a supervisor built like `deputy run` can take from signal to exit: the
//! supervisors benchmark's yardstick, not something to deploy.
//!
//! `async-io-floor -- CMD ARGS` runs CMD; on SIGTERM it sends CMD SIGTERM and exits with
//! 128 + the signal that killed CMD. Like `deputy run`, it reads its signals from a signalfd
//! on async-io's reactor under `async_io::block_on` (so it has async-io's second thread);
//! unlike it, it has no coordinator, no control socket, no messages, no clean-up. The gap
//! between this and tini-static is what the design costs; the gap between `deputy run` and
//! this is what deputy's own path costs (see BENCHMARKS.md).

use std::os::unix::process::CommandExt;
use std::process::Command;

use async_io::Async;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

fn main() {
    let command: Vec<String> = std::env::args()
        .skip_while(|arg| arg != "--")
        .skip(1)
        .collect();
    let Some((program, args)) = command.split_first() else {
        eprintln!("usage: async-io-floor -- CMD [ARGS]");
        std::process::exit(2);
    };
    // Blocked before the start, so that no SIGTERM can find them unblocked; the child gets
    // an empty mask back.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGCHLD);
    signals.thread_block().expect("signals block");
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: between fork and exec, only sigprocmask, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || Ok(signals.thread_unblock()?));
    }
    let child = command.spawn().expect("the command starts");
    let pid = Pid::from_raw(child.id() as i32);
    let fd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .expect("a signalfd");
    let fd = Async::new(fd).expect("on the reactor");
    let code = async_io::block_on(async {
        loop {
            fd.readable().await.expect("readable");
            while let Some(info) = fd.get_ref().read_signal().expect("a signal") {
                if info.ssi_signo == Signal::SIGTERM as u32 {
                    let _ = kill(pid, Signal::SIGTERM);
                }
                if let Some(code) = exited(pid) {
                    return code;
                }
            }
        }
    });
    std::process::exit(code);
}

/// The exit code to pass on, once `pid` has exited.
fn exited(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(128 + signal as i32),
        _ => None,
    }
}

//! The supervisor's signals: blocked in every thread and read from a signalfd.

use std::io;

use deputy_core::{Escalation, Shutdown};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::child::Child;
use super::say;

/// Start the graceful shutdown (second: skip the drain delay; third: kill).
const SHUTDOWN: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];

/// Passed on to the child as they come.
pub(crate) const FORWARDED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGALRM,
];

/// The signals deputy handles, blocked, and the descriptor they are read from.
#[derive(Debug)]
pub(crate) struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the handled signals in this thread (call it before any other thread starts, so
    /// they all inherit the mask) and opens a signalfd for them. Also sets SIGCHLD to its
    /// default action: if deputy inherited it ignored, the kernel would reap children itself
    /// and their exit codes would be lost.
    #[allow(unsafe_code)]
    pub(crate) fn block() -> nix::Result<Signals> {
        let mut set = SigSet::empty();
        for signal in SHUTDOWN.iter().chain(&FORWARDED).chain(&[Signal::SIGCHLD]) {
            set.add(*signal);
        }
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installs the default action, no handler code: nothing can run in a signal
        // context, so no async-signal-safety rule applies.
        unsafe { sigaction(Signal::SIGCHLD, &default) }?;
        // SIGTTOU too, never read: once the child has the terminal's foreground, deputy is in
        // a background group, where handing the foreground back to the child (after a stop)
        // or a write with TOSTOP set would otherwise stop deputy itself.
        let mut blocked = set;
        blocked.add(Signal::SIGTTOU);
        blocked.thread_block()?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd })
    }

    /// The descriptor to wait on: readable when a signal is pending.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.fd.as_fd()
    }

    /// Handles every pending signal: SIGCHLD reaps, SIGTERM and SIGINT escalate the
    /// shutdown, the others go to the child. Called by the supervisor's loop when the
    /// signalfd is readable; a failure to read is said, once.
    pub(crate) fn handle(&self, shutdown: &Shutdown, child: &Child) {
        if let Err(error) = self.serve(shutdown, child) {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| say!("cannot read signals: {error}"));
        }
    }

    /// Reads up to 8 signals a time: a short read means none is left, so the usual wake (one
    /// signal) takes one `read`, not a second one to see `EAGAIN`.
    fn serve(&self, shutdown: &Shutdown, child: &Child) -> io::Result<()> {
        const RECORD: usize = std::mem::size_of::<nix::sys::signalfd::siginfo>();
        let mut buffer = [0u8; 8 * RECORD];
        loop {
            let read = match rustix::io::read(&self.fd, &mut buffer) {
                Ok(read) => read,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Ok(()),
                Err(error) => return Err(error.into()),
            };
            for record in buffer[..read].chunks_exact(RECORD) {
                // `ssi_signo` is the record's first field.
                let number = u32::from_ne_bytes([record[0], record[1], record[2], record[3]]);
                match Signal::try_from(number as i32) {
                    Ok(Signal::SIGCHLD) => child.reap(shutdown),
                    Ok(signal @ (Signal::SIGTERM | Signal::SIGINT)) => {
                        escalate(shutdown, child, signal);
                    }
                    Ok(other) => child.forward(other),
                    Err(_) => {}
                }
            }
            if read < buffer.len() {
                return Ok(());
            }
        }
    }
}

/// deputy-core's escalation rule, said in its words: the first shutdown signal starts
/// shutdown (announced elsewhere, whatever started it), the second skips the drain delay,
/// the third kills everything at once (and the shutdown, now abandoned, waits for the kills
/// to be reaped: never wait here, since this loop reaps).
fn escalate(shutdown: &Shutdown, child: &Child, signal: Signal) {
    let name = signal.as_str();
    let escalation = shutdown.escalate(deputy_core::Reason::Signal(signal as i32));
    if escalation.is_final() {
        if !child.is_done() {
            say!(
                "{name}: {escalation}: killing process group {}",
                child.pid()
            );
            child.kill_all();
        }
    } else if escalation != Escalation::Triggered {
        say!("{name}: {escalation}");
    }
}

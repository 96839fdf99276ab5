//! The supervisor's signals: every catchable one is blocked in every thread and read from a
//! signalfd, as tini does. The trigger signals (`--trigger-signal`: SIGTERM and SIGINT by
//! default) escalate the shutdown, SIGCHLD reaps, and every other one (SIGHUP, SIGUSR1,
//! SIGRTMIN+3, SIGPWR, SIGTSTP, ...) goes to the child: no signal kills, stops or orphans
//! deputy while it has a child.
//!
//! Not read: SIGKILL and SIGSTOP (no process can catch them); the signals of a fault
//! (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS), which are deputy's own and must
//! keep their default action; and SIGPIPE, which Rust's start-up ignores (a write to a
//! closed pipe then fails with EPIPE instead of raising a signal that would be forwarded).

use std::io;

use deputy_core::{Escalation, Shutdown};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::child::Child;
use super::signal::AnySignal;
use super::{say, say_error, say_warn};

/// The signals deputy does not read (see the module's doc).
const NOT_READ: [Signal; 9] = [
    Signal::SIGKILL,
    Signal::SIGSTOP,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGPIPE,
];

/// The signals deputy handles, blocked, and the descriptor they are read from.
#[derive(Debug)]
pub(crate) struct Signals {
    fd: SignalFd,
    /// The signals that start and escalate the shutdown.
    trigger: Vec<AnySignal>,
}

impl Signals {
    /// Blocks every signal deputy reads in this thread (call it before any other thread
    /// starts, so they all inherit the mask) and opens a signalfd for them. Also sets
    /// SIGCHLD to its default action: if deputy inherited it ignored, the kernel would reap
    /// children itself and their exit codes would be lost.
    ///
    /// Blocking SIGTTOU also keeps deputy running when, in a background group after giving
    /// the terminal's foreground to the child, it hands the foreground back or writes with
    /// TOSTOP set: the kernel then lets the call through and sends nothing.
    #[allow(unsafe_code)]
    pub(crate) fn block(trigger: &[AnySignal]) -> nix::Result<Signals> {
        // Every signal the C library lets a program block (glibc's sigfillset leaves out
        // the two it keeps for its threads), real-time ones included.
        let mut set = SigSet::all();
        for signal in NOT_READ {
            set.remove(signal);
        }
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: installs the default action, no handler code: nothing can run in a signal
        // context, so no async-signal-safety rule applies.
        unsafe { sigaction(Signal::SIGCHLD, &default) }?;
        set.thread_block()?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals {
            fd,
            trigger: trigger.to_vec(),
        })
    }

    /// The descriptor to wait on: readable when a signal is pending.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.fd.as_fd()
    }

    /// Handles every pending signal: SIGCHLD reaps, a trigger signal escalates the
    /// shutdown, every other one goes to the child. Called by the supervisor's loop when the
    /// signalfd is readable; a failure to read is said, once.
    pub(crate) fn handle(&self, shutdown: &Shutdown, child: &Child) {
        if let Err(error) = self.serve(shutdown, child) {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| say_error!("cannot read signals: {error}"));
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
                let Some(signal) = AnySignal::from_number(number as i32) else {
                    continue;
                };
                if signal.standard() == Some(Signal::SIGCHLD) {
                    child.reap(shutdown);
                } else if self.trigger.contains(&signal) {
                    escalate(shutdown, child, signal);
                } else {
                    child.forward(signal);
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
fn escalate(shutdown: &Shutdown, child: &Child, signal: AnySignal) {
    let name = signal.to_string();
    let escalation = shutdown.escalate(deputy_core::Reason::Signal(signal.number()));
    if escalation.is_final() {
        if !child.is_done() {
            say_warn!(
                "{name}: {escalation}: killing process group {}",
                child.pid()
            );
            child.kill_all();
        }
    } else if escalation != Escalation::Triggered {
        say!("{name}: {escalation}");
    }
}

//! A process under test: started directly or as PID 1 of new PID and mount namespaces (as a
//! container runtime starts it), its stdout and stderr read line by line on threads, every
//! wait bounded by [`BOUND`], killed on drop so a failed test leaves nothing behind.

use std::ffi::OsStr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::{BOUND, assert_no_panic, lines, pid_1_of};

/// A running process and what it has printed so far.
pub(crate) struct Proc {
    child: Child,
    /// The pid to signal: the process's own, or (under unshare) that of the PID 1 it runs as,
    /// seen from the test.
    pid: u32,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen_out: Vec<String>,
    seen_err: Vec<String>,
}

/// How a [`Proc`] ended: its exit code (-1 if killed by a signal) and everything it printed.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) code: i32,
    pub(crate) out: Vec<String>,
    pub(crate) err: Vec<String>,
}

impl Ended {
    /// stdout, lines joined.
    pub(crate) fn out(&self) -> String {
        self.out.join("\n")
    }

    /// stderr, lines joined.
    pub(crate) fn err(&self) -> String {
        self.err.join("\n")
    }

    /// The exit code, stdout and stderr.
    pub(crate) fn texts(&self) -> (i32, String, String) {
        (self.code, self.out(), self.err())
    }
}

impl Proc {
    /// Starts `program ARGS`.
    pub(crate) fn start(
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Proc {
        let mut command = Command::new(program);
        command.args(args);
        Self::spawn(command)
    }

    /// Starts `program ARGS` as PID 1 of new PID and mount namespaces, with its own /proc
    /// (`unshare --pid --fork --mount-proc --kill-child`; needs root).
    pub(crate) fn start_as_pid_1(
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Proc {
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(program)
            .args(args);
        Self::spawn_unshare(command)
    }

    /// Starts `command`, an `unshare --fork` command line of the test's own; the pid to
    /// signal is then the PID 1 it starts.
    pub(crate) fn spawn_unshare(command: Command) -> Proc {
        let mut proc = Self::spawn(command);
        proc.pid = pid_1_of(proc.child.id());
        proc
    }

    /// Starts `command` as it is set up (environment, directory), stdin from /dev/null and
    /// stdout and stderr read by the harness.
    pub(crate) fn spawn(mut command: Command) -> Proc {
        command.stdin(Stdio::null());
        Self::spawn_as_is(command)
    }

    /// [`spawn`](Self::spawn), with stdin a pipe the test writes to.
    pub(crate) fn spawn_with_stdin(mut command: Command) -> (Proc, ChildStdin) {
        command.stdin(Stdio::piped());
        let mut proc = Self::spawn_as_is(command);
        let stdin = proc.child.stdin.take().unwrap();
        (proc, stdin)
    }

    fn spawn_as_is(mut command: Command) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Proc {
            pid: child.id(),
            child,
            stdout,
            stderr,
            seen_out: Vec::new(),
            seen_err: Vec::new(),
        }
    }

    /// The pid to signal (under unshare: the host's pid of the PID 1 inside).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The pid of what the test started (under unshare: unshare itself).
    pub(crate) fn child_id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).unwrap();
        rustix::process::kill_process(pid, signal).expect("the process is running");
    }

    /// Waits for a line on stdout that contains `text`; returns it.
    pub(crate) fn expect_out(&mut self, text: &str) -> String {
        match wait_for(&self.stdout, &mut self.seen_out, text) {
            Some(line) => line,
            None => self.fail_waiting(text, "stdout"),
        }
    }

    /// Waits for a line on stderr that contains `text`; returns it.
    pub(crate) fn expect_err(&mut self, text: &str) -> String {
        match wait_for(&self.stderr, &mut self.seen_err, text) {
            Some(line) => line,
            None => self.fail_waiting(text, "stderr"),
        }
    }

    /// Fails the test: no line with `text` came on `stream`. Says everything the process
    /// printed on both streams, and how it ended if it has, so the cause is in the failure.
    fn fail_waiting(&mut self, text: &str, stream: &str) -> ! {
        for (lines, seen) in [
            (&self.stdout, &mut self.seen_out),
            (&self.stderr, &mut self.seen_err),
        ] {
            while let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(100)) {
                seen.push(line);
            }
        }
        panic!(
            "no line with {text:?} on {stream}; the process {}\nstdout: {:?}\nstderr: {:?}",
            match self.child.try_wait() {
                Ok(Some(status)) => format!("ended ({status})"),
                _ => "is still running".to_owned(),
            },
            self.seen_out,
            self.seen_err
        )
    }

    /// The next line on stdout, whatever it is.
    pub(crate) fn next_out(&mut self) -> String {
        self.expect_out("")
    }

    /// Waits for the process to exit; returns its exit code and all it printed. Fails the
    /// test if stderr shows a panic.
    pub(crate) fn finish(self) -> Ended {
        let ended = self.finish_even_panicking();
        assert_no_panic(&ended.err());
        ended
    }

    /// [`finish`](Self::finish), for a process whose panic is what the test is about.
    pub(crate) fn finish_even_panicking(mut self) -> Ended {
        let status = self.wait_exit();
        for (lines, seen) in [
            (&self.stdout, &mut self.seen_out),
            (&self.stderr, &mut self.seen_err),
        ] {
            // The pipes may be held a moment longer by the process's own children.
            while let Ok(line) = lines.recv_timeout(BOUND) {
                seen.push(line);
            }
        }
        Ended {
            code: status.code().unwrap_or(-1),
            out: std::mem::take(&mut self.seen_out),
            err: std::mem::take(&mut self.seen_err),
        }
    }

    /// Sends SIGKILL to what the test started, without reaping it (until drop, it stays a
    /// zombie); under `unshare --kill-child`, the kernel then kills the PID 1 inside, a
    /// moment later.
    pub(crate) fn kill(&mut self) {
        self.child.kill().unwrap();
    }

    /// The exit status, if the process has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits (bounded) for the process to exit, without reading the rest of its output.
    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; it said: {:?}",
                self.pid,
                self.seen_err
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    /// Under `unshare --kill-child`, killing unshare kills the PID 1 inside too.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line from `lines` that contains `text`, every line read kept in `seen`; `None`
/// once [`BOUND`] has passed or the stream has ended.
fn wait_for(lines: &Receiver<String>, seen: &mut Vec<String>, text: &str) -> Option<String> {
    let deadline = Instant::now() + BOUND;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(text) {
                    return Some(line);
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
        }
    }
}

//! `deputy run` as the end-to-end tests start it: directly, or as PID 1 of new PID and mount
//! namespaces, and what they check of its output.

use std::path::Path;
use std::process::Command;

use super::{Proc, deputy, text};

/// `deputy run ARGS`; `args` holds the options, `--` and the command.
pub(crate) fn deputy_run(args: &[&str]) -> Proc {
    Proc::start(deputy(), std::iter::once("run").chain(args.iter().copied()))
}

/// `deputy run ARGS` as PID 1 of new PID and mount namespaces, with its own /proc, as a
/// container runtime starts it.
pub(crate) fn deputy_run_as_pid_1(args: &[&str]) -> Proc {
    Proc::start_as_pid_1(deputy(), std::iter::once("run").chain(args.iter().copied()))
}

/// The exit code and stderr of `deputy run ARGS`, run to the end.
pub(crate) fn run_to_end(args: &[&str]) -> (i32, String, String) {
    deputy_run(args).finish().texts()
}

/// `deputy terminate --ipc-dir DIR` through `command` (deputy itself, or nsenter in front of
/// it), as a preStop hook: it must succeed and report a clean shutdown.
pub(crate) fn prestop(mut command: Command, dir: &Path) {
    let out = command
        .args(["terminate", "--ipc-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).contains("deputy: done, clean"), "{out:?}");
}

/// Fails unless deputy's stderr `err` holds every one of `parts`.
pub(crate) fn assert_said(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "no {part:?} in:\n{err}");
    }
}

/// Whether a process of this pid exists (zombie or not).
pub(crate) fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `deputy run ARGS` with `VAR=VALUE`s added to its environment.
pub(crate) fn deputy_run_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut command = Command::new(deputy());
    command.arg("run").args(args).envs(env.iter().copied());
    Proc::spawn(command)
}

pub(crate) const IGNORES_TERM: &str = "trap '' TERM; echo ready; while :; do sleep 0.1; done";

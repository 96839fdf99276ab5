//! `deputy`: ask a running service to shut down gracefully and watch it happen, or read its
//! state (`terminate`, `status`: built to run as a Kubernetes preStop hook, it starts in about
//! a millisecond, prints one short line per step, and its exit code says how it went); or run
//! any program under a supervisor that shuts it down gracefully (`run`).
//!
//! This file parses and dispatches; the work is in deputy-ipc's library: `client` for
//! `terminate` and `status` (their output for people is in `commands.rs`), `supervisor` for
//! `run`.

use std::io::Write;
use std::process::ExitCode;

mod cli;
mod commands;

use cli::{Cli, Command};

/// Why a command failed: the exit code (see `--help`) and a line for a person.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = deputy_ipc::parse_args_from(cli::command());
    let result = match cli.command {
        Command::Terminate {
            target,
            timeout,
            no_wait,
            reason,
            json,
        } => commands::terminate(&target, timeout, !no_wait, &reason, json),
        Command::Status { target, json } => commands::status(&target, json),
        Command::Run(args) => std::process::exit(commands::run(*args)),
    };
    match result {
        // Flush, then exit without running destructors: see the note in `terminate`.
        Ok(code) => {
            let _ = std::io::stdout().flush();
            std::process::exit(i32::from(code))
        }
        Err(Failure { code, message }) => {
            // Never a panic on a closed stderr.
            let _ = writeln!(std::io::stderr(), "deputy: {message}");
            ExitCode::from(code)
        }
    }
}

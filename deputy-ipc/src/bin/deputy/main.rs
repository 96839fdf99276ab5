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

use clap::Parser;

mod cli;
mod commands;
mod quick;

use cli::{Cli, Command};

/// clap reports a bad value by its flag (`invalid value 'x' for '--grace <DURATION>'`) even
/// when it came from the option's `DEPUTY_` variable; then this names the variable, which is
/// what the person has to fix.
fn name_the_variable(error: clap::Error) -> clap::Error {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let long = shown.split_whitespace().next().unwrap_or_default();
    let given_as_flag =
        std::env::args().any(|arg| arg == long || arg.starts_with(&format!("{long}=")));
    let command = Cli::command();
    let variable = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments())
        .find(|arg| {
            arg.get_long()
                .is_some_and(|name| format!("--{name}") == long)
        })
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str())
        .filter(|env| !given_as_flag && std::env::var_os(env).is_some());
    match variable {
        Some(variable) => {
            let text = error.render().to_string().replace(
                &format!("for '{shown}'"),
                &format!("for {variable} (--{})", &long[2..]),
            );
            clap::Error::raw(error.kind(), text.trim_start_matches("error: "))
        }
        None => error,
    }
}

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
    // `deputy run` starts every container: skip building clap's parser when the arguments
    // are plain (see quick.rs); clap still reads everything else.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|command| command == "run")
        && let Some(run) = quick::quick_parse(&args.collect::<Vec<_>>())
    {
        std::process::exit(commands::run(run));
    }
    let cli = Cli::try_parse().unwrap_or_else(|error| {
        let error = name_the_variable(error);
        error.exit()
    });
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

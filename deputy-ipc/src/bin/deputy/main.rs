//! `deputy`: ask a running service to shut down gracefully and watch it happen, or read its
//! state (`terminate`, `status`: built to run as a Kubernetes preStop hook, it starts in about
//! a millisecond, prints one short line per step, and its exit code says how it went); or run
//! any program under a supervisor that shuts it down gracefully (`run`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod client;
mod procs;
mod run;

/// Exit codes, listed in `--help`.
mod code {
    pub(crate) const CLEAN: u8 = 0;
    pub(crate) const FAILURES: u8 = 1;
    pub(crate) const NO_TARGET: u8 = 3;
    pub(crate) const REFUSED: u8 = 4;
    pub(crate) const TIMED_OUT: u8 = 5;
    pub(crate) const ERROR: u8 = 6;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done cleanly (terminate), or answered (status, terminate --no-wait)
  1  done, with failures: a hook failed or timed out, or shutdown was abandoned
  2  bad command line
  3  no such target: no pid file, no control socket, or no such process
  4  refused: the target belongs to another user
  5  timed out (--timeout) before the target was done
  6  any other error (connection, protocol)";

#[derive(Debug, Parser)]
#[command(name = "deputy", version, about = "Graceful shutdown for services: terminate, status, run", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the service to shut down gracefully; wait until it is done (the preStop command).
    #[command(after_help = EXIT_CODES)]
    Terminate {
        #[command(flatten)]
        target: Target,
        /// Give up after this long (like `30s` or `1500ms`); default: wait until done.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Return as soon as the request is accepted.
        #[arg(long)]
        no_wait: bool,
        /// Why, for the service's logs.
        #[arg(long, default_value = "deputy terminate")]
        reason: String,
        /// Print the service's JSON lines instead of lines for a person.
        #[arg(long)]
        json: bool,
    },
    /// Run a program under a supervisor: PID 1 duties, drain delay, graceful stop, escalation.
    #[command(after_help = run::HELP)]
    Run(run::RunArgs),
    /// Print the service's state, readiness and work in flight.
    #[command(after_help = EXIT_CODES)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a line for a person.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The service's pid (default: the one in deputy-entrypoint.pid in the control directory).
    #[arg(long)]
    pid: Option<u32>,
    /// Where the control sockets are (default: $DEPUTY_IPC_DIR, else /run).
    #[arg(long, value_name = "DIR")]
    ipc_dir: Option<PathBuf>,
}

/// A failure with its exit code and a line for a person.
struct Failure(u8, String);

fn main() -> ExitCode {
    // `deputy run` starts every container: skip building clap's parser when the arguments
    // are plain (see run/args.rs); clap still reads everything else.
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|command| command == "run")
        && let Some(run) = run::quick_parse(&args.collect::<Vec<_>>())
    {
        std::process::exit(run::main(run));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Terminate {
            target,
            timeout,
            no_wait,
            reason,
            json,
        } => client::terminate(&target, timeout, !no_wait, reason, json),
        Command::Status { target, json } => client::status(&target, json),
        Command::Run(args) => std::process::exit(run::main(args)),
    };
    match result {
        // Flush, then exit without running destructors: see the note in `terminate`.
        Ok(code) => {
            let _ = std::io::stdout().flush();
            std::process::exit(i32::from(code))
        }
        Err(Failure(code, message)) => {
            eprintln!("deputy: {message}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

//! What `deputy run -- CMD` does, as a library: a supervisor that makes any program
//! terminate gracefully in a container.
//!
//! The shutdown is deputy-core's coordinator with one phase, `stop-child`, whose hook stops
//! the child and cleans up after it; so the control socket (`deputy terminate`, `deputy
//! status`), the health endpoints and the signal escalation rule are the same as in a service
//! that uses the library:
//!
//! 1. first SIGTERM/SIGINT (or `deputy terminate`, or `/shutdown`): readiness off, drain
//!    delay (the child keeps serving), then the child is asked to stop: over its control
//!    socket if it has one, else with the stop signal;
//! 2. the child exits: descendants it left get SIGTERM, `cleanup_timeout`, SIGKILL;
//! 3. the grace period (counted from the first signal) runs out, or a third signal comes:
//!    SIGKILL to the child's process group and every descendant.
//!
//! Everything runs on the main thread, in the supervisor's own loop (`event_loop.rs`): it
//! reads the signalfd, watches the control socket's listener and keeps the coordinator's
//! timers, so by default deputy has one thread and the path from a signal to exit never
//! waits for another. async-io's reactor thread starts only for what needs it (a client of
//! the control socket, the health port, the notify socket, readiness checks). Signals are
//! blocked in every thread and read from a signalfd, so none is lost, even as PID 1 (the
//! kernel queues a blocked signal to PID 1 where it would drop one with the default action).
//!
//! Files, one concern each:
//! - `config.rs`: [`Config`], its defaults (written once, in [`Config::new`]) and its checks;
//! - `run.rs`: the run script, from the checks to the exit code, and the parts it sets up;
//! - `background.rs`: what runs beside the shutdown (servers, readiness, notify);
//! - `child.rs` starts, reaps and cleans up after the child; `stop.rs` asks it to stop, by the
//!   plan of `stop_plan.rs`; `signals.rs` reads and dispatches signals (`signal.rs` names
//!   them); `readiness.rs` and `traffic.rs` follow the child's port; `notify.rs` speaks
//!   systemd's notify protocol; `event_loop.rs` is the loop everything runs on;
//! - `log.rs`: deputy's lines on stderr; `termination_file.rs`: the container's termination
//!   message; `error.rs` says why the supervisor could not start.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use deputy_ipc::supervisor::{self, Config};
//!
//! let mut config = Config::new(["python3", "app.py"]);
//! config.drain_delay = Duration::from_secs(10);
//! config.health_port = Some(8081);
//! let code = supervisor::run(config).unwrap_or_else(|error| {
//!     eprintln!("deputy: {error}");
//!     error.exit_code()
//! });
//! std::process::exit(code);
//! ```

mod background;
mod child;
mod config;
mod error;
mod event_loop;
mod local_url;
mod log;
mod notify;
mod readiness;
mod run;
mod signal;
mod signals;
mod stop;
mod stop_plan;
mod termination_file;
mod traffic;

pub use self::config::{Config, parse_mapping};
pub use self::error::RunError;
pub(crate) use self::log::{say, say_error, say_warn};
pub use self::log::{say_line, say_line_at};
pub use self::run::{run, run_then_exit};
pub use self::signal::{AnySignal, parse_signal, parse_stop_signal, parse_trigger_signal};

//! Out-of-process control for deputy: how another process (a Kubernetes preStop hook, the
//! `deputy` binary, the kubelet's probes) asks a service to shut down and watches it happen.
//!
//! This crate is where the UNIX-socket control protocol, the HTTP health endpoints
//! (`/health/live`, `/health/ready`) and the `deputy` binary (`terminate`, `status`, `run`)
//! live: [`ControlServer`] serves the [`protocol`] on `deputy.<pid>.sock`, [`HealthServer`]
//! the probes' endpoints. Behind features: `client` (a client of the control socket, which
//! `deputy terminate` and `deputy status` are built on) and `supervisor` (what `deputy run`
//! does); `cli` (the default) adds the binary, a thin `main` over them. With
//! `default-features = false` the crate pulls in neither clap nor the supervisor's
//! dependencies.
//!
//! # Examples
//!
//! ```
//! assert_eq!(deputy_ipc::DEFAULT_IPC_DIR, "/run");
//! assert_eq!(deputy_ipc::DEFAULT_HEALTH_CHECK_PORT, 8081);
//! ```

// Unsafe code only where the supervisor sets signal dispositions (allowed there, each with
// its SAFETY comment).
#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod accept;
#[cfg(feature = "cli")]
mod args;
#[cfg(feature = "client")]
pub mod client;
mod error;
mod front;
mod health;
mod limits;
mod log_format;
mod log_limit;
mod metrics;
mod paths;
pub(crate) use paths::own_pid;
#[cfg(feature = "client")]
mod procs;
pub mod protocol;
mod server;
mod settings;
#[cfg(feature = "supervisor")]
pub mod supervisor;
mod termination;
mod timeout;

#[cfg(feature = "cli")]
pub use args::{parse_args, parse_args_from};
/// deputy-core, re-exported: a service on the front door ([`Deputy`]) needs no other
/// dependency than this crate and its runtime's adapter (`deputy_ipc::deputy_core::Phase`).
pub use deputy_core;
pub use error::IpcError;
pub use front::{
    DEFAULT_DRAIN_DELAY, DEFAULT_DRAIN_TIMEOUT, DEFAULT_GRACE_PERIOD, Deputy, Running,
    ServeSettings, Settings, StartError, exit,
};
pub use health::{
    DEFAULT_HEALTH_LINGER, HealthServer, MIN_SHUTDOWN_TOKEN, SHUTDOWN_TOKEN_ENV,
    SHUTDOWN_TOKEN_FILE_ENV, SHUTDOWN_TOKEN_HEADER, health_port, shutdown_token_from_env,
};
pub use limits::{NofileLimit, raise_nofile_limit};
#[cfg(feature = "logs")]
pub use log_format::init_logs;
pub use log_format::{LOG_FORMAT_ENV, LogFormat};
pub use paths::{
    entrypoint_path, entrypoint_pid, ipc_dir, julia_entrypoint_pid, julia_socket_path,
    julia_socket_pid, socket_path, socket_pid,
};
pub use server::{ControlServer, ServerConfig};
pub use settings::{bool_from_env, parse_bool, parse_duration};
pub use termination::{
    DEFAULT_TERMINATION_LOG, MAX_TERMINATION_MESSAGE, TERMINATION_LOG_ENV, record_termination,
    termination_log_path, termination_message, write_termination_message,
};

/// The environment variable that, set to a yes (`1`, `true`, `yes`, `on`), turns on
/// `/metrics` in the examples and `deputy run` (see [`HealthServer::with_metrics`]).
pub const METRICS_ENV: &str = "DEPUTY_METRICS";

/// Whether [`METRICS_ENV`] asks for `/metrics`: false when unset or empty.
///
/// # Errors
///
/// A value that is neither yes nor no (see [`parse_bool`]), with the variable's name.
pub fn metrics_from_env() -> Result<bool, String> {
    Ok(bool_from_env(METRICS_ENV)?.unwrap_or(false))
}

/// The environment variable with [`HealthServer::linger`]'s duration (`15s`) in the
/// examples and `deputy run`: how long the health endpoints (and `/metrics`) keep answering
/// after the shutdown is done.
pub const HEALTH_LINGER_ENV: &str = "DEPUTY_HEALTH_LINGER";

/// The directory for control sockets when `DEPUTY_IPC_DIR` is not set (as K8sDeputy.jl).
pub const DEFAULT_IPC_DIR: &str = "/run";

/// The environment variable naming the control-socket directory.
pub const IPC_DIR_ENV: &str = "DEPUTY_IPC_DIR";

/// The health endpoints' port when `DEPUTY_HEALTH_CHECK_PORT` is not set (as K8sDeputy.jl).
pub const DEFAULT_HEALTH_CHECK_PORT: u16 = 8081;

/// The environment variable that, set to `0` or `false`, keeps a service from writing the
/// entrypoint pid file by default (see [`ServerConfig::entrypoint`]). `deputy run` sets it for
/// its child, so that `deputy terminate` reaches the supervisor.
pub const ENTRYPOINT_ENV: &str = "DEPUTY_ENTRYPOINT";

/// The environment variable naming the health endpoints' port.
pub const HEALTH_CHECK_PORT_ENV: &str = "DEPUTY_HEALTH_CHECK_PORT";

/// [`HEALTH_CHECK_PORT_ENV`]'s value for "serve no health endpoints" (see [`health_port`]).
pub const HEALTH_CHECK_OFF: &str = "off";

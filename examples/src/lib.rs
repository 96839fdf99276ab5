//! Runnable deputy services (in `examples/`) and the end-to-end tests that drive them (in
//! `tests/`). Nothing here is published.
//!
//! Run the demo with `cargo run --example demo`, the HTTP service with
//! `cargo run --release --example http-service`.

/// The defaults of the `http-service` example, shared with the test that checks the
/// Kubernetes manifests in `examples/k8s/` against them.
pub mod http_service {
    /// Port of the service itself.
    pub const PORT: u16 = 8080;
    /// Port of the health endpoints (deputy's default, as K8sDeputy.jl's).
    pub const HEALTH_PORT: u16 = deputy_ipc::DEFAULT_HEALTH_CHECK_PORT;
    /// Whole shutdown budget, from the trigger.
    pub const GRACE_PERIOD: &str = "30s";
    /// Time to keep serving after the trigger while endpoints propagate.
    pub const DRAIN_DELAY: &str = "5s";
    /// Time to wait for requests in flight after the delay.
    pub const DRAIN_TIMEOUT: &str = "15s";
    /// The stop-accepting phase's timeout, in seconds.
    pub const STOP_ACCEPTING_SECS: u64 = 3;
}

/// Logs to stderr through `tracing`, at `RUST_LOG`'s level, else `default` (`"info"`,
/// `"error"`...), so stdout stays for the lines meant for a person: coloured only at a
/// terminal without `NO_COLOR`, one JSON object per line with `DEPUTY_LOG_FORMAT=json`.
pub fn init_logs(default: &str) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false);
    match deputy_ipc::LogFormat::from_env() {
        deputy_ipc::LogFormat::Json => logs.json().init(),
        deputy_ipc::LogFormat::Text { colour } => logs.with_ansi(colour).init(),
        _ => logs.init(),
    }
}

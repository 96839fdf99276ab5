//! Runnable deputy services (in `examples/`) and the end-to-end tests that drive them (in
//! `tests/`). Nothing here is published, and no example depends on it for its wiring: each
//! shows it whole in its own file, with the published crates' public API (deputy-ipc's
//! front door, `deputy_ipc::Deputy`). What is left here are the defaults the tests check the
//! Kubernetes manifests against.
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
    /// Whole shutdown budget, from the trigger (the front door's default).
    pub const GRACE_PERIOD: &str = deputy_ipc::DEFAULT_GRACE_PERIOD;
    /// Time to keep serving after the trigger while endpoints propagate.
    pub const DRAIN_DELAY: &str = deputy_ipc::DEFAULT_DRAIN_DELAY;
    /// Time to wait for requests in flight after the delay.
    pub const DRAIN_TIMEOUT: &str = deputy_ipc::DEFAULT_DRAIN_TIMEOUT;
    /// The stop-accepting phase's timeout, in seconds (deputy-core's default).
    pub const STOP_ACCEPTING_SECS: u64 = deputy_core::DEFAULT_PHASE_TIMEOUT.as_secs();
}

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

/// Ends an example's `main` the way a person reads an error: one line, `name: what: why`,
/// and exit code 1; never a backtrace (anyhow prints one when `RUST_BACKTRACE` is set, as it
/// often is in a developer's shell, and a refused setting is no bug).
pub fn exit_on_error<T>(name: &str, result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|error| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{name}: {error:#}");
        std::process::exit(1);
    })
}

/// What http-service and stream-service share: the shutdown's flags, and the control socket
/// and health endpoints bound from them.
pub mod service {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use anyhow::Context as _;
    use deputy_core::{Builder, Phase, Shutdown, ShutdownCoordinator};
    use deputy_ipc::{ControlServer, HealthServer, ServerConfig};

    use crate::http_service as defaults;

    /// The shutdown's flags, each with its `DEPUTY_` variable; durations are written `30s`,
    /// `1500ms`. The defaults match `examples/k8s/deployment.yaml`.
    #[derive(Debug, clap::Args)]
    pub struct DrainOptions {
        /// Port of /health/live and /health/ready (default: $DEPUTY_HEALTH_CHECK_PORT, else 8081).
        #[arg(long)]
        pub health_port: Option<u16>,
        /// Whole shutdown budget, from the trigger (keep it below terminationGracePeriodSeconds).
        #[arg(long, env = "DEPUTY_GRACE_PERIOD", default_value = defaults::GRACE_PERIOD, value_parser = deputy_ipc::parse_duration)]
        pub grace_period: Duration,
        /// Keep serving this long after the trigger while endpoints propagate (with
        /// --drain-delay-max: at least this long).
        #[arg(long, env = "DEPUTY_DRAIN_DELAY", default_value = defaults::DRAIN_DELAY, value_parser = deputy_ipc::parse_duration)]
        pub drain_delay: Duration,
        /// Make the drain delay measure itself: after --drain-delay, end it once no new
        /// connection or request has come for --quiet-period, and at this at the latest. Not for
        /// a service with rare traffic (quiet there is not propagation).
        #[arg(long, env = "DEPUTY_DRAIN_DELAY_MAX", value_parser = deputy_ipc::parse_duration)]
        pub drain_delay_max: Option<Duration>,
        /// With --drain-delay-max: how long without new traffic ends the drain delay.
        #[arg(long, env = "DEPUTY_QUIET_PERIOD", default_value = "1s", value_parser = deputy_ipc::parse_duration)]
        pub quiet_period: Duration,
        /// Then wait this long for requests in flight.
        #[arg(long, env = "DEPUTY_DRAIN_TIMEOUT", default_value = defaults::DRAIN_TIMEOUT, value_parser = deputy_ipc::parse_duration)]
        pub drain_timeout: Duration,
        /// Control socket directory (default: $DEPUTY_IPC_DIR, else /run).
        #[arg(long)]
        pub ipc_dir: Option<PathBuf>,
        /// Serve /metrics on the health port (Prometheus' text format).
        #[arg(long, env = "DEPUTY_METRICS", value_parser = deputy_ipc::parse_bool)]
        pub metrics: bool,
        /// Keep the health endpoints (and /metrics) answering this long after the shutdown
        /// is done, so Prometheus scrapes its end: set it to the scrape interval. Never past
        /// the grace period.
        #[arg(long, env = "DEPUTY_HEALTH_LINGER", default_value = "1s", value_parser = deputy_ipc::parse_duration)]
        pub health_linger: Duration,
        /// Tell long-lived connections (WebSockets, event streams, streaming calls) to move
        /// over this long, after the drain delay (default: half the drain timeout; at most
        /// the drain timeout).
        #[arg(long, env = "DEPUTY_DISCONNECT_WINDOW", value_parser = deputy_ipc::parse_duration)]
        pub disconnect_window: Option<Duration>,
        /// Keep /health/ready on through the drain, off only when the listener closes, so
        /// that a terminating pod serves what kube-proxy sends it when no ready endpoint is
        /// left (one replica, maxSurge 0, externalTrafficPolicy Local).
        #[arg(long, env = "DEPUTY_READY_WHILE_DRAINING", value_parser = deputy_ipc::parse_bool)]
        pub ready_while_draining: bool,
        /// How long start-up tasks may take, from the start; one still running then ends the
        /// run with exit code 1, naming it (default: no limit).
        #[arg(long, env = "DEPUTY_STARTUP_TIMEOUT", value_parser = deputy_ipc::parse_duration)]
        pub startup_timeout: Option<Duration>,
    }

    impl DrainOptions {
        /// A coordinator's builder with these settings and a `stop-accepting` phase (the
        /// server's hook goes there).
        pub fn builder(&self) -> Builder {
            let mut builder = ShutdownCoordinator::builder()
                .grace_period(self.grace_period)
                .drain_delay(self.drain_delay)
                .quiet_period(self.quiet_period)
                .drain_timeout(self.drain_timeout);
            if let Some(max) = self.drain_delay_max {
                builder = builder.drain_delay_max(max);
            }
            if let Some(window) = self.disconnect_window {
                builder = builder.disconnect_window(window);
            }
            if self.ready_while_draining {
                builder = builder.readiness(deputy_core::Readiness::UntilListenerCloses);
            }
            if let Some(timeout) = self.startup_timeout {
                builder = builder.startup_timeout(timeout);
            }
            builder.phase(
                Phase::new("stop-accepting")
                    .timeout(Duration::from_secs(defaults::STOP_ACCEPTING_SECS)),
            )
        }

        /// The start every service shares, on tokio: logs, the open-files limit raised (as Go
        /// does: a flood of connections should not find the process at a soft limit of 1,024
        /// descriptors when the hard limit allows more), the coordinator with its signal
        /// triggers, the control socket and health endpoints, and the service's listener on
        /// `port`.
        ///
        /// # Errors
        ///
        /// A plan over its budget, or what cannot be bound, with its context.
        pub async fn start(
            &self,
            name: &str,
            port: u16,
        ) -> anyhow::Result<(
            deputy_core::ShutdownCoordinator,
            Endpoints,
            tokio::net::TcpListener,
        )> {
            crate::init_logs("info");
            deputy_ipc::raise_nofile_limit().context("open-files limit")?;
            let coordinator = self.builder().build(deputy_tokio::TokioRuntime)?;
            let shutdown = coordinator.handle();
            let signals =
                deputy_tokio::handle_signals(shutdown.clone(), deputy_tokio::DEFAULT_SIGNALS)?;
            tokio::spawn(signals);
            let endpoints = self.endpoints(&shutdown, name)?;
            let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
                .await
                .with_context(|| format!("port {port}"))?;
            Ok((coordinator, endpoints, listener))
        }

        /// Binds the control socket (in --ipc-dir, `$DEPUTY_IPC_DIR`, else /run, else the
        /// temporary directory) and the health endpoints (with `/shutdown` when
        /// `DEPUTY_SHUTDOWN_TOKEN_FILE` or `DEPUTY_SHUTDOWN_TOKEN` gives a token, and
        /// `/metrics` with --metrics).
        ///
        /// # Errors
        ///
        /// What cannot be bound, with its context.
        pub fn endpoints(&self, shutdown: &Shutdown, name: &str) -> anyhow::Result<Endpoints> {
            let explicit_dir = self
                .ipc_dir
                .clone()
                .or_else(|| std::env::var_os("DEPUTY_IPC_DIR").map(PathBuf::from));
            let control = match &explicit_dir {
                Some(dir) => ControlServer::bind(shutdown, ServerConfig::default().dir(dir)),
                // On a laptop /run is often not writable: fall back to the temporary directory
                // rather than refuse to start; in a container, set DEPUTY_IPC_DIR (or mount /run).
                None => ControlServer::bind(shutdown, ServerConfig::default()).or_else(|error| {
                    let fallback = std::env::temp_dir();
                    eprintln!("{name}: {error}; using {} instead", fallback.display());
                    ControlServer::bind(shutdown, ServerConfig::default().dir(&fallback))
                }),
            }?;
            // DEPUTY_HEALTH_CHECK_PORT=off (from `deputy run --health-port`): none.
            let health_port = match self.health_port {
                Some(0) => anyhow::bail!(
                    "--health-port 0 would serve on a port nobody knows: give the port the probes use"
                ),
                Some(port) => Some(port),
                None => deputy_ipc::health_port().map_err(anyhow::Error::msg)?,
            };
            let health = match health_port {
                Some(port) => Some(self.health(shutdown, port)?),
                None => None,
            };
            Ok(Endpoints {
                control,
                health,
                health_port,
            })
        }

        /// The health endpoints on `port`, with `/shutdown` and `/metrics` as set.
        fn health(&self, shutdown: &Shutdown, port: u16) -> anyhow::Result<HealthServer> {
            // The error names the address and the cause: no context to add.
            let mut health = HealthServer::bind(shutdown, SocketAddr::from(([0, 0, 0, 0], port)))?;
            if let Some(token) =
                deputy_ipc::shutdown_token_from_env().map_err(anyhow::Error::msg)?
            {
                health = health.with_shutdown_endpoint(token);
            }
            if self.metrics {
                health = health.with_metrics();
            }
            health = health.linger(self.health_linger);
            Ok(health)
        }
    }

    /// The control socket and the health endpoints, bound, not yet serving.
    #[derive(Debug)]
    pub struct Endpoints {
        control: ControlServer,
        health: Option<HealthServer>,
        /// The health endpoints' port (none with `DEPUTY_HEALTH_CHECK_PORT=off`).
        pub health_port: Option<u16>,
    }

    impl Endpoints {
        /// The control socket's directory, for the line that says how to stop the service.
        pub fn ipc_dir(&self) -> String {
            self.control
                .socket_path()
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        }

        /// Serves both on tokio until the shutdown is over; await the handle before exiting,
        /// so a preStop reads the end (`deputy terminate`, or an httpGet on /shutdown).
        pub fn spawn(self) -> tokio::task::JoinHandle<()> {
            let control = tokio::spawn(self.control.run());
            let health = tokio::spawn(async move {
                if let Some(health) = self.health {
                    health.run().await;
                }
            });
            tokio::spawn(async move {
                let _ = tokio::join!(control, health);
            })
        }
    }

    /// How to run `deputy terminate` for this service, as it was started: with cargo (which
    /// sets `CARGO` for what it runs), with the `deputy` built beside it, or from `PATH`.
    fn terminate_hint(ipc_dir: &str) -> String {
        if std::env::var_os("CARGO").is_some() {
            return format!(
                "DEPUTY_IPC_DIR={ipc_dir} cargo run -p deputy-ipc --bin deputy -- terminate"
            );
        }
        // target/<profile>/examples/NAME -> target/<profile>/deputy
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("deputy")))
            .filter(|deputy| deputy.is_file());
        let deputy = beside.map_or("deputy".to_owned(), |path| path.display().to_string());
        format!("{deputy} terminate --ipc-dir {ipc_dir}")
    }

    /// Writes a line to stdout; a closed stdout (the reader gone) must not make a panic, here
    /// of all places, in the middle of a shutdown.
    pub fn say(line: std::fmt::Arguments<'_>) {
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// The rest of a service's `main`, once its server task is spawned: the server joins the
    /// `stop-accepting` phase, the endpoints serve, the service says it is ready (`{name}:
    /// serving on {address} ...` and how to stop it), the coordinator runs to its end, and
    /// the process exits with the report's code, after the report on stdout and in the
    /// termination log (for `kubectl describe pod`: DEPUTY_TERMINATION_LOG, or
    /// /dev/termination-log).
    ///
    /// # Errors
    ///
    /// If the hook cannot be added (no `stop-accepting` phase).
    pub async fn run_to_end(
        coordinator: deputy_core::ShutdownCoordinator,
        endpoints: Endpoints,
        server: tokio::task::JoinHandle<()>,
        name: &str,
        address: &str,
    ) -> anyhow::Result<std::convert::Infallible> {
        let shutdown = coordinator.handle();
        let hook = format!("{}-server", name.trim_end_matches("-service"));
        shutdown.hook("stop-accepting", &hook, |_| async move {
            server.await.map_err(|_| "the server task panicked")
        })?;
        let (ipc_dir, health_port) = (endpoints.ipc_dir(), endpoints.health_port);
        let endpoints = endpoints.spawn();
        shutdown.ready();
        let health = health_port.map_or("no health endpoints".to_owned(), |port| {
            format!("health on :{port}")
        });
        say(format_args!(
            "{name}: serving on {address} ({health}, pid {})",
            std::process::id()
        ));
        say(format_args!(
            "{name}: stop with Ctrl-C, or `{}`",
            terminate_hint(&ipc_dir)
        ));
        let report = coordinator.run().await;
        // Let a preStop read the end before this process (maybe PID 1) exits.
        let _ = endpoints.await;
        say(format_args!("{report}"));
        deputy_ipc::record_termination(&report);
        std::process::exit(report.exit_code);
    }
}

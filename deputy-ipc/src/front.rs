//! The front door: a service's whole Kubernetes wiring from the `DEPUTY_*` settings, so that
//! its author writes only the server. [`Deputy::from_env`] reads the plan and the endpoints'
//! settings; [`start`](Deputy::start) raises the open-files limit, builds the coordinator on
//! any runtime, and binds the control socket (for the preStop's `deputy terminate`) and the
//! health endpoints (probes, `/metrics`, `/shutdown`); [`Running::run`] serves them with the
//! server and the signals until the shutdown is over, and the health server's linger, and
//! writes the termination message. [`exit`] ends the process with the report's code.
//!
//! Everything is driven by the one future [`Running::run`] returns: nothing is spawned, so
//! it works on tokio, smol or any executor.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy_core::runtime::Runtime;
use deputy_core::{
    BuildError, Builder, CancellationToken, HookOutput, Readiness, Shutdown, ShutdownCoordinator,
    ShutdownReport,
};
use futures::future::{Either, join, select};

use crate::{ControlServer, HealthServer, IpcError, ServerConfig};

/// The whole shutdown budget when `DEPUTY_GRACE_PERIOD` is not set: Kubernetes' default
/// `terminationGracePeriodSeconds` (set that a few seconds higher, so the process can exit).
pub const DEFAULT_GRACE_PERIOD: &str = "30s";
/// The drain delay when `DEPUTY_DRAIN_DELAY` is not set.
pub const DEFAULT_DRAIN_DELAY: &str = "5s";
/// The drain timeout when `DEPUTY_DRAIN_TIMEOUT` is not set.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "15s";

/// A service's shutdown settings, each with its flag (behind the `clap` feature:
/// `#[command(flatten)]` it into your options) and its `DEPUTY_` variable; durations are
/// written `30s`, `1500ms`. [`from_env`](Self::from_env) reads the variables alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[non_exhaustive]
pub struct Settings {
    /// Port of /health/live, /health/ready, /health/started (default:
    /// $DEPUTY_HEALTH_CHECK_PORT, else 8081; the variable may say `off`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub health_port: Option<u16>,
    /// Whole shutdown budget, from the trigger (keep it below terminationGracePeriodSeconds).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_GRACE_PERIOD", default_value = DEFAULT_GRACE_PERIOD, value_parser = crate::parse_duration))]
    pub grace_period: Duration,
    /// Keep serving this long after the trigger while endpoints propagate (with
    /// --drain-delay-max: at least this long).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_DRAIN_DELAY", default_value = DEFAULT_DRAIN_DELAY, value_parser = crate::parse_duration))]
    pub drain_delay: Duration,
    /// Make the drain delay measure itself: after --drain-delay, end it once no new
    /// connection or request has come for --quiet-period, and at this at the latest. Not for
    /// a service with rare traffic (quiet there is not propagation).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_DRAIN_DELAY_MAX", value_parser = crate::parse_duration))]
    pub drain_delay_max: Option<Duration>,
    /// With --drain-delay-max: how long without new traffic ends the drain delay.
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_QUIET_PERIOD", default_value = "1s", value_parser = crate::parse_duration))]
    pub quiet_period: Duration,
    /// Then wait this long for requests in flight.
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = crate::parse_duration))]
    pub drain_timeout: Duration,
    /// Control socket directory (default: $DEPUTY_IPC_DIR, else /run, else the temporary
    /// directory).
    #[cfg_attr(feature = "clap", arg(long))]
    pub ipc_dir: Option<PathBuf>,
    /// Serve /metrics on the health port (Prometheus' text format).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_METRICS", value_parser = crate::parse_bool))]
    pub metrics: bool,
    /// Keep the health endpoints (and /metrics) answering this long after the shutdown is
    /// done, so Prometheus scrapes its end: set it to the scrape interval. Never past the
    /// grace period.
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_HEALTH_LINGER", default_value = "1s", value_parser = crate::parse_duration))]
    pub health_linger: Duration,
    /// Tell long-lived connections (WebSockets, event streams, streaming calls) to move over
    /// this long, after the drain delay (default: half the drain timeout; at most the drain
    /// timeout).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_DISCONNECT_WINDOW", value_parser = crate::parse_duration))]
    pub disconnect_window: Option<Duration>,
    /// Keep /health/ready on through the drain, off only when the listener closes, so that a
    /// terminating pod serves what kube-proxy sends it when no ready endpoint is left (one
    /// replica, maxSurge 0, externalTrafficPolicy Local).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_READY_WHILE_DRAINING", value_parser = crate::parse_bool))]
    pub ready_while_draining: bool,
    /// How long start-up tasks may take, from the start; one still running then ends the
    /// run with exit code 1, naming it (default: no limit).
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_STARTUP_TIMEOUT", value_parser = crate::parse_duration))]
    pub startup_timeout: Option<Duration>,
}

impl Default for Settings {
    /// Every setting's default, as if no variable were set.
    fn default() -> Self {
        let duration = |text| crate::parse_duration(text).expect("a default parses");
        Settings {
            health_port: None,
            grace_period: duration(DEFAULT_GRACE_PERIOD),
            drain_delay: duration(DEFAULT_DRAIN_DELAY),
            drain_delay_max: None,
            quiet_period: duration("1s"),
            drain_timeout: duration(DEFAULT_DRAIN_TIMEOUT),
            ipc_dir: None,
            metrics: false,
            health_linger: crate::DEFAULT_HEALTH_LINGER,
            disconnect_window: None,
            ready_while_draining: false,
            startup_timeout: None,
        }
    }
}

/// The duration variable `name`: `None` if unset or empty.
/// A server's settings, beside [`Settings`]: connections recycled by age, and TLS. Each
/// has its flag (the `clap` feature: `#[command(flatten)]` it next to `Settings`) and its
/// `DEPUTY_` variable; [`serve_options`](Self::serve_options) (the `tokio` feature) makes
/// deputy-tokio's `ServeOptions` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[non_exhaustive]
pub struct ServeSettings {
    /// Ask each connection to end once it is this old (±10 %), so that load spreads again
    /// after a scale-out: HTTP/2 gets GOAWAY, HTTP/1 `Connection: close` on its next
    /// response, long-lived streams that watch its age a move notice.
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_MAX_CONNECTION_AGE", value_parser = crate::parse_duration))]
    pub max_connection_age: Option<Duration>,
    /// With --max-connection-age: how long a connection asked to end may take to finish
    /// what it has before it is closed.
    #[cfg_attr(feature = "clap", arg(long, env = "DEPUTY_MAX_CONNECTION_AGE_GRACE", default_value = "10s", value_parser = crate::parse_duration))]
    pub max_connection_age_grace: Duration,
    /// Serve TLS with this certificate chain (PEM, leaf first), read again when it changes
    /// (a Kubernetes Secret updated in place); needs --tls-key. ALPN: h2 and http/1.1.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "DEPUTY_TLS_CERT", requires = "tls_key")
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "DEPUTY_TLS_KEY", requires = "tls_cert")
    )]
    pub tls_key: Option<PathBuf>,
}

impl Default for ServeSettings {
    /// No maximum age (a grace of 10 s once there is one), no TLS.
    fn default() -> Self {
        ServeSettings {
            max_connection_age: None,
            max_connection_age_grace: Duration::from_secs(10),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ServeSettings {
    /// The settings from the `DEPUTY_` variables alone (for a service without clap): an
    /// error names the variable.
    ///
    /// ```
    /// let serve = deputy_ipc::ServeSettings::from_env()?;
    /// assert_eq!(serve.max_connection_age, None); // DEPUTY_MAX_CONNECTION_AGE unset
    /// # Ok::<(), String>(())
    /// ```
    pub fn from_env() -> Result<ServeSettings, String> {
        let mut serve = ServeSettings {
            max_connection_age: duration_from_env("DEPUTY_MAX_CONNECTION_AGE")?,
            tls_cert: path_from_env("DEPUTY_TLS_CERT"),
            tls_key: path_from_env("DEPUTY_TLS_KEY"),
            ..ServeSettings::default()
        };
        if let Some(grace) = duration_from_env("DEPUTY_MAX_CONNECTION_AGE_GRACE")? {
            serve.max_connection_age_grace = grace;
        }
        match (&serve.tls_cert, &serve.tls_key) {
            (Some(_), None) => Err("DEPUTY_TLS_CERT is set without DEPUTY_TLS_KEY".to_string()),
            (None, Some(_)) => Err("DEPUTY_TLS_KEY is set without DEPUTY_TLS_CERT".to_string()),
            _ => Ok(serve),
        }
    }

    /// deputy-tokio's server options from these settings (the `tokio` feature). The TLS
    /// files are read here: an error names the file.
    ///
    /// ```no_run
    /// # async fn example(shutdown: deputy_ipc::deputy_core::Shutdown) -> std::io::Result<()> {
    /// let serve = deputy_ipc::ServeSettings::from_env().map_err(std::io::Error::other)?;
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// deputy_tokio::serve_with(listener, shutdown, app, serve.serve_options()?).await;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    pub fn serve_options(&self) -> std::io::Result<deputy_tokio::ServeOptions> {
        let mut options = deputy_tokio::ServeOptions::default()
            .max_connection_age_grace(self.max_connection_age_grace);
        if let Some(age) = self.max_connection_age {
            options = options.max_connection_age(age);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.tls(deputy_tokio::Tls::from_pem_files(cert, key)?);
        }
        Ok(options)
    }

    /// The URL scheme these settings serve: `https` with TLS, else `http`.
    ///
    /// ```
    /// assert_eq!(deputy_ipc::ServeSettings::default().scheme(), "http");
    /// ```
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// A path from the environment; unset or empty is none.
fn path_from_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

fn duration_from_env(name: &str) -> Result<Option<Duration>, String> {
    match std::env::var(name) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => crate::parse_duration(&text)
            .map(Some)
            .map_err(|why| format!("{name}: {why}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{name}: the value is not valid UTF-8"))
        }
    }
}

impl Settings {
    /// The settings from the `DEPUTY_*` variables, the defaults for those not set. The
    /// health port and the control directory are read at [`Deputy::start`].
    ///
    /// # Errors
    ///
    /// A sentence naming the variable whose value does not parse.
    ///
    /// ```
    /// // In a plain test run no DEPUTY_ variable is set: the defaults.
    /// # if std::env::vars().all(|(name, _)| !name.starts_with("DEPUTY_")) {
    /// let settings = deputy_ipc::Settings::from_env().unwrap();
    /// assert_eq!(settings, deputy_ipc::Settings::default());
    /// assert_eq!(settings.grace_period, std::time::Duration::from_secs(30));
    /// # }
    /// ```
    pub fn from_env() -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (name, slot) in [
            ("DEPUTY_GRACE_PERIOD", &mut settings.grace_period),
            ("DEPUTY_DRAIN_DELAY", &mut settings.drain_delay),
            ("DEPUTY_QUIET_PERIOD", &mut settings.quiet_period),
            ("DEPUTY_DRAIN_TIMEOUT", &mut settings.drain_timeout),
            (crate::HEALTH_LINGER_ENV, &mut settings.health_linger),
        ] {
            if let Some(value) = duration_from_env(name)? {
                *slot = value;
            }
        }
        settings.drain_delay_max = duration_from_env("DEPUTY_DRAIN_DELAY_MAX")?;
        settings.disconnect_window = duration_from_env("DEPUTY_DISCONNECT_WINDOW")?;
        settings.startup_timeout = duration_from_env("DEPUTY_STARTUP_TIMEOUT")?;
        settings.metrics = crate::metrics_from_env()?;
        settings.ready_while_draining =
            crate::bool_from_env("DEPUTY_READY_WHILE_DRAINING")?.unwrap_or(false);
        Ok(settings)
    }

    /// A coordinator's builder with these settings and the default phases
    /// (`stop-accepting`, `flush`, `close`). Add phases or change exit codes on it with
    /// [`Deputy::configure`].
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
            builder = builder.readiness(Readiness::UntilListenerCloses);
        }
        if let Some(timeout) = self.startup_timeout {
            builder = builder.startup_timeout(timeout);
        }
        builder
    }
}

/// Why [`Deputy::start`] could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A setting's value is wrong (the message names it).
    Setting(String),
    /// The plan does not fit its budget, or names phases wrongly.
    Plan(BuildError),
    /// The control socket or the health endpoints cannot be bound.
    Bind(IpcError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Setting(why) => f.write_str(why),
            StartError::Plan(error) => write!(f, "{error}"),
            StartError::Bind(error) => write!(f, "{error}"),
        }
    }
}

/// The message says everything (the plan's or the binding's own message, with its cause),
/// so no source is given: a chain printer (`{:#}`) would repeat it.
impl std::error::Error for StartError {}

/// A service about to start: its name (for logs and the lines it prints), its settings,
/// and changes to its plan in code.
///
/// ```no_run
/// # async fn server(shutdown: deputy_core::Shutdown) {}
/// use deputy_core::Phase;
///
/// # async fn main_() -> Result<(), Box<dyn std::error::Error>> {
/// let running = deputy_ipc::Deputy::from_env("orders")?
///     .configure(|plan| plan.phase(Phase::new("flush-kafka")))
///     .start(deputy_smol::AsyncIoRuntime)?;
/// let shutdown = running.shutdown();
/// let signals = deputy_smol::handle_signals(shutdown.clone(), deputy_smol::DEFAULT_SIGNALS)?;
/// let report = running.run(server(shutdown), signals).await;
/// deputy_ipc::exit(&report);
/// # }
/// ```
pub struct Deputy {
    name: String,
    settings: Settings,
    configure: Vec<Box<dyn FnOnce(Builder) -> Builder>>,
}

impl std::fmt::Debug for Deputy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deputy")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Deputy {
    /// A service named `name` with `settings` (from flags: see [`Settings`]).
    pub fn new(name: &str, settings: Settings) -> Deputy {
        Deputy {
            name: name.to_owned(),
            settings,
            configure: Vec::new(),
        }
    }

    /// A service named `name` with the settings of the `DEPUTY_*` variables
    /// ([`Settings::from_env`]).
    ///
    /// # Errors
    ///
    /// [`StartError::Setting`], naming the variable that does not parse.
    pub fn from_env(name: &str) -> Result<Deputy, StartError> {
        Ok(Deputy::new(
            name,
            Settings::from_env().map_err(StartError::Setting)?,
        ))
    }

    /// Changes the plan in code (phases, exit codes, a longer budget): `change` gets the
    /// builder made from the settings.
    pub fn configure(mut self, change: impl FnOnce(Builder) -> Builder + 'static) -> Deputy {
        self.configure.push(Box::new(change));
        self
    }

    /// Starts: raises the open-files limit to its maximum (a flood of connections should not
    /// find the process at a soft limit of 1,024), builds the coordinator on `runtime`, binds
    /// the control socket (in the settings' directory, `$DEPUTY_IPC_DIR`, else /run, else
    /// the temporary directory) and the health endpoints (with `/metrics` when asked for,
    /// and `/shutdown` when `DEPUTY_SHUTDOWN_TOKEN_FILE` or `DEPUTY_SHUTDOWN_TOKEN` gives a
    /// token). Nothing is served until [`Running::run`].
    ///
    /// # Errors
    ///
    /// A setting that is wrong (`DEPUTY_HEALTH_CHECK_PORT`, the token), a plan over its
    /// budget, or what cannot be bound.
    pub fn start(self, runtime: impl Runtime) -> Result<Running, StartError> {
        if let Err(error) = crate::raise_nofile_limit() {
            tracing::warn!(%error, "cannot raise the open-files limit");
        }
        let Deputy {
            name,
            settings,
            configure,
        } = self;
        let builder = configure
            .into_iter()
            .fold(settings.builder(), |builder, change| change(builder));
        let coordinator = builder.build(runtime).map_err(StartError::Plan)?;
        let shutdown = coordinator.handle();
        let control = control_server(&shutdown, &settings)?;
        let health_port = match settings.health_port {
            Some(0) => {
                return Err(StartError::Setting(
                    "health port 0 (--health-port 0) would serve on a port nobody knows: give the port the probes use"
                        .into(),
                ));
            }
            Some(port) => Some(port),
            None => crate::health_port().map_err(StartError::Setting)?,
        };
        let health = match health_port {
            Some(port) => Some(health_server(&shutdown, &settings, port)?),
            None => None,
        };
        Ok(Running {
            name,
            coordinator,
            control,
            health,
            health_port,
            address: None,
        })
    }
}

/// The control socket, where the settings or `$DEPUTY_IPC_DIR` say; else in /run, or in the
/// temporary directory when /run cannot be written (a laptop).
fn control_server(shutdown: &Shutdown, settings: &Settings) -> Result<ControlServer, StartError> {
    let explicit = settings
        .ipc_dir
        .clone()
        .or_else(|| std::env::var_os(crate::IPC_DIR_ENV).map(PathBuf::from));
    let bound = match &explicit {
        Some(dir) => ControlServer::bind(shutdown, ServerConfig::default().dir(dir)),
        None => ControlServer::bind(shutdown, ServerConfig::default()).or_else(|error| {
            let fallback = std::env::temp_dir();
            tracing::warn!(%error, fallback = %fallback.display(), "using the temporary directory for the control socket");
            ControlServer::bind(shutdown, ServerConfig::default().dir(&fallback))
        }),
    };
    bound.map_err(StartError::Bind)
}

/// The health endpoints on `port` (all addresses), with `/shutdown` and `/metrics` as set.
fn health_server(
    shutdown: &Shutdown,
    settings: &Settings,
    port: u16,
) -> Result<HealthServer, StartError> {
    let mut health = HealthServer::bind(shutdown, SocketAddr::from(([0, 0, 0, 0], port)))
        .map_err(StartError::Bind)?
        .linger(settings.health_linger);
    if let Some(token) = crate::shutdown_token_from_env().map_err(StartError::Setting)? {
        health = health.with_shutdown_endpoint(token);
    }
    if settings.metrics {
        health = health.with_metrics();
    }
    Ok(health)
}

/// A started service: its coordinator built, its control socket and health endpoints bound.
/// Take its [`shutdown`](Self::shutdown) handle for the server, then [`run`](Self::run).
#[derive(Debug)]
pub struct Running {
    name: String,
    coordinator: ShutdownCoordinator,
    control: ControlServer,
    health: Option<HealthServer>,
    health_port: Option<u16>,
    address: Option<String>,
}

/// How the server ended, for its hook.
#[derive(Debug, Default)]
struct ServerEnd {
    ended: CancellationToken,
    result: Mutex<Option<Result<(), String>>>,
}

impl Running {
    /// The shutdown's handle: for the server, `DrainLayer`, vital tasks, signals.
    pub fn shutdown(&self) -> Shutdown {
        self.coordinator.handle()
    }

    /// The health endpoints' port (none with `DEPUTY_HEALTH_CHECK_PORT=off`).
    pub fn health_port(&self) -> Option<u16> {
        self.health_port
    }

    /// The control socket's directory (where `deputy terminate --ipc-dir` finds it).
    pub fn ipc_dir(&self) -> PathBuf {
        ipc_dir_of(self.control.socket_path())
    }

    /// Where the server serves, for the line [`run`](Self::run) prints when the service is
    /// ready (`NAME: serving on ADDRESS (health on :8081, pid N)`).
    pub fn serving_on(mut self, address: impl Into<String>) -> Running {
        self.address = Some(address.into());
        self
    }

    /// Runs the service to its end: serves the control socket and the health endpoints,
    /// polls `server` (it must end once the shutdown's drain is over, as
    /// `deputy_tokio::serve` does; its output, `()` or a `Result`, is the report's `server`
    /// hook in the first phase, `stop-accepting`; if it ends before the shutdown, with an
    /// error or not, that triggers the shutdown and the hook fails) and `signals` (the adapter's
    /// `handle_signals`, or `std::future::pending()` for none), says the service is ready
    /// and prints a line saying where and how to stop it, runs the coordinator, waits for
    /// the health server's linger, and writes the termination message (for `kubectl
    /// describe pod`). Returns the report; [`exit`] ends the process with its code.
    ///
    /// Nothing is spawned: everything runs inside this future, on any executor.
    pub async fn run<S, G>(self, server: S, signals: G) -> ShutdownReport
    where
        S: Future,
        S::Output: HookOutput,
        G: Future<Output = ()>,
    {
        let Running {
            name,
            coordinator,
            control,
            health,
            health_port,
            address,
        } = self;
        let shutdown = coordinator.handle();
        let control_dir = control.socket_path().to_path_buf();
        let end = Arc::new(ServerEnd::default());
        let in_hook = end.clone();
        let first = shutdown.phases().next().map(str::to_owned);
        if let Some(phase) = first {
            // The phase has not started: the coordinator is not running yet.
            let _ = shutdown.hook(&phase, "server", move |_| async move {
                in_hook.ended.cancelled().await;
                let result = in_hook.result.lock().expect("not poisoned").take();
                result.unwrap_or(Ok(()))
            });
        }
        let in_server = shutdown.clone();
        let server = async move {
            let mut result = server.await.into_result();
            // A server that ends before the shutdown is a service that cannot serve.
            if !in_server.is_triggered() {
                let why = match &result {
                    Ok(()) => "ended while the service was running".to_owned(),
                    Err(error) => format!("failed: {error}"),
                };
                tracing::error!("the server {why}; shutting down");
                in_server.trigger(format!("the server {why}"));
                result = result.and(Err(why));
            }
            *end.result.lock().expect("not poisoned") = Some(result);
            end.ended.cancel();
        };
        let endpoints = join(control.run(), async move {
            if let Some(health) = health {
                health.run().await;
            }
        });
        shutdown.ready();
        let ipc_dir = ipc_dir_of(&control_dir);
        say_ready(&name, address.as_deref(), health_port, &ipc_dir);
        let main = pin!(async move { join(coordinator.run(), endpoints).await.0 });
        // The server ends with the drain; the signals' future may never end.
        let background = pin!(join(server, signals));
        let report = match select(main, background).await {
            Either::Left((report, _)) => report,
            Either::Right((_, main)) => main.await,
        };
        crate::record_termination(&report);
        report
    }
}

/// The directory of the control socket at `socket`.
fn ipc_dir_of(socket: &std::path::Path) -> PathBuf {
    socket.parent().map(PathBuf::from).unwrap_or_default()
}

/// The lines that say the service is up, where, and how to stop it; a closed stdout must
/// not make a panic.
fn say_ready(
    name: &str,
    address: Option<&str>,
    health_port: Option<u16>,
    ipc_dir: &std::path::Path,
) {
    use std::io::Write as _;
    let health = health_port.map_or("no health endpoints".to_owned(), |port| {
        format!("health on :{port}")
    });
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    let _ = match address {
        Some(address) => writeln!(out, "{name}: serving on {address} ({health}, pid {pid})"),
        None => writeln!(out, "{name}: running ({health}, pid {pid})"),
    };
    let _ = writeln!(
        out,
        "{name}: stop with Ctrl-C, or `deputy terminate --ipc-dir {}`",
        ipc_dir.display()
    );
}

/// Ends the process the way a Kubernetes service should: the report on stdout, then the
/// exit code it maps to (0 clean, 1 failed, 2 timed out, 3 abandoned, unless configured).
pub fn exit(report: &ShutdownReport) -> ! {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{report}");
    std::process::exit(report.exit_code)
}

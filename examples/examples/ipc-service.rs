//! A service that another process shuts down over its control socket: the coordinator, the
//! control socket (and, with `--health-port`, the HTTP health endpoints), `ready()` after
//! start-up, and one printed line per transition. The `deputy` binary's tests drive it.
//!
//! Run it, then stop it from another terminal:
//!
//! ```text
//! DEPUTY_IPC_DIR=/tmp cargo run --example ipc-service -- --hook-ms 500
//! DEPUTY_IPC_DIR=/tmp cargo run -p deputy-ipc --bin deputy -- terminate
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use deputy_core::{ShutdownCoordinator, State};
use deputy_ipc::{ControlServer, ServerConfig};
use deputy_smol::AsyncIoRuntime;
use futures::StreamExt;

#[derive(Debug, Parser)]
#[command(about = "a service stopped over its deputy control socket")]
struct Options {
    /// Serve /health/live, /health/ready and /health/status on this port, on every address
    /// (the kubelet probes the pod's IP).
    #[arg(long)]
    health_port: Option<u16>,
    /// Add a stopping hook that takes this many milliseconds.
    #[arg(long, default_value_t = 0)]
    hook_ms: u64,
    /// Add a stopping hook that returns an error.
    #[arg(long)]
    fail_hook: bool,
    /// Do not write the entrypoint pid file (address this process by pid).
    #[arg(long)]
    no_entrypoint: bool,
    /// The control directory (default: $DEPUTY_IPC_DIR, else /run).
    #[arg(long)]
    ipc_dir: Option<PathBuf>,
    /// How long to keep serving after the trigger (like `5s`, `0s`).
    #[arg(long, default_value = "0s", value_parser = deputy_ipc::parse_duration)]
    drain_delay: Duration,
    /// How long a health connection may take to send a request head (idle ones included).
    #[arg(long, default_value = "5s", value_parser = deputy_ipc::parse_duration)]
    header_read_timeout: Duration,
    /// Serve /metrics on the health port (Prometheus' text format).
    #[arg(long, env = "DEPUTY_METRICS", value_parser = deputy_ipc::parse_bool)]
    metrics: bool,
}

fn main() {
    if let Err(error) = run() {
        // One line for a person; a refused setting is no bug (no backtrace).
        eprintln!("ipc-service: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    deputy_ipc::init_logs("error");
    // Hook panics are caught and reported by the coordinator; anything else gets one line,
    // never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ipc-service: internal error: {info}")
    }));
    // As Go does: a flood of connections should not find the process at a soft limit of
    // 1,024 descriptors when the hard limit allows more.
    deputy_ipc::raise_nofile_limit().context("open-files limit")?;

    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(30))
        .drain_delay(options.drain_delay)
        .drain_timeout(Duration::from_secs(10))
        .build(AsyncIoRuntime)?;
    let shutdown = coordinator.handle();
    if options.hook_ms > 0 {
        let ms = options.hook_ms;
        shutdown.hook("flush", "slow-flush", move |_| async move {
            async_io::Timer::after(Duration::from_millis(ms)).await;
        })?;
    }
    if options.fail_hook {
        shutdown.hook("close", "failing-close", |_| async {
            Err::<(), _>("connection reset by peer")
        })?;
    }

    let mut config = ServerConfig::default().entrypoint(!options.no_entrypoint);
    if let Some(dir) = &options.ipc_dir {
        config = config.dir(dir);
    }
    let server = ControlServer::bind(&shutdown, config).context("control socket")?;
    let health = match options.health_port {
        Some(port) => {
            let mut server =
                deputy_ipc::HealthServer::bind(&shutdown, ([0, 0, 0, 0], port).into())?
                    .header_read_timeout(options.header_read_timeout);
            if options.metrics {
                server = server.with_metrics();
            }
            // /shutdown, for an httpGet preStop, when DEPUTY_SHUTDOWN_TOKEN_FILE (or
            // DEPUTY_SHUTDOWN_TOKEN) gives its token.
            Some(
                match deputy_ipc::shutdown_token_from_env().map_err(anyhow::Error::msg)? {
                    Some(token) => server.with_shutdown_endpoint(token),
                    None => server,
                },
            )
        }
        None => None,
    };
    println!(
        "ipc-service: pid {} listening on {}",
        std::process::id(),
        server.socket_path().display()
    );

    let progress = {
        let shutdown = shutdown.clone();
        async move {
            let mut transitions = shutdown.transitions();
            while let Some(t) = transitions.next().await {
                let phase = t.phase.map(|p| format!(" {p}")).unwrap_or_default();
                println!(
                    "ipc-service: {}{phase} after {} ms",
                    t.state,
                    t.at.as_millis()
                );
                if t.state == State::Done {
                    break;
                }
            }
        }
    };
    shutdown.ready();
    let health = async move {
        if let Some(health) = health {
            health.run().await;
        }
    };
    let (report, ..) = futures::executor::block_on(futures::future::join4(
        coordinator.run(),
        server.run(),
        progress,
        health,
    ));
    println!("ipc-service: exit code {}", report.exit_code);
    deputy_ipc::record_termination(&report);
    std::process::exit(report.exit_code);
}

//! A coordinator taken through a whole shutdown on a plain executor, with its report printed.
//!
//! It shows the sequence a Kubernetes pod goes through: the service is ready and serving,
//! a trigger arrives (here from a timer thread, standing in for SIGTERM), readiness turns off
//! at once while requests keep arriving for the drain delay, the drain waits for the requests
//! in flight, then the phases run their hooks in order, and the report gives the exit code.
//!
//! Run it with:
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! `RUST_LOG=debug cargo run --example demo` shows every hook as well;
//! `cargo run --example demo -- --slow-hook` adds a hook that never finishes, to show a phase
//! timing out in the report (and exit code 2).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use deputy_core::{Phase, ShutdownCoordinator, State};
use deputy_smol::AsyncIoRuntime;

fn main() {
    if let Err(error) = run() {
        // One line for a person; a refused setting is no bug (no backtrace).
        eprintln!("demo: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    // The demo takes no options: say what it is rather than run it on `--help`.
    if let Some(arg) = std::env::args().nth(1) {
        let usage = "usage: demo   (no options: a whole shutdown on a plain executor, \
                     its report printed)";
        if arg == "--help" || arg == "-h" {
            println!("{usage}");
            return Ok(());
        }
        eprintln!("demo: unknown argument `{arg}`\n{usage}");
        std::process::exit(2);
    }
    deputy_ipc::init_logs("info");

    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(8))
        .drain_delay(Duration::from_millis(500))
        .drain_timeout(Duration::from_secs(2))
        .phase(Phase::new("flush").timeout(Duration::from_millis(800)))
        .phase(Phase::new("close").timeout(Duration::from_millis(500)))
        .build(AsyncIoRuntime)
        .context("the shutdown plan does not fit its grace period")?;

    // Libraries add their hooks to the default phases through a handle.
    let shutdown = coordinator.handle();
    shutdown.hook("stop-accepting", "listener", |_| async {
        tracing::info!("listener closed");
    })?;
    shutdown.hook("flush", "event-log", |_| async {
        async_io::Timer::after(Duration::from_millis(200)).await;
        Ok::<_, std::io::Error>(())
    })?;
    if std::env::args().any(|arg| arg == "--slow-hook") {
        shutdown.hook("flush", "slow-exporter", |_| async {
            // Never finishes: the phase timeout drops it, and the report says so.
            async_io::Timer::never().await;
        })?;
    }
    shutdown.hook("close", "database", |_| async {
        async_io::Timer::after(Duration::from_millis(100)).await;
    })?;

    shutdown.ready();
    println!(
        "ready: {}  (state {})",
        shutdown.is_ready(),
        shutdown.state()
    );

    // Requests: one every 100 ms for 1.2 s, each taking 400 ms; a guard per request.
    let requests = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut served = Vec::new();
            while start.elapsed() < Duration::from_millis(1200) {
                let guard = shutdown.guard();
                let state = shutdown.state();
                served.push(std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(400));
                    drop(guard);
                    state
                }));
                std::thread::sleep(Duration::from_millis(100));
            }
            served
                .into_iter()
                .map(|r| r.join().expect("request thread"))
                .collect::<Vec<_>>()
        })
    };

    // The "SIGTERM", 300 ms in.
    {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            shutdown.trigger("demo SIGTERM");
            println!(
                "ready: {}  (state {})",
                shutdown.is_ready(),
                shutdown.state()
            );
        });
    }

    let report = futures::executor::block_on(coordinator.run());
    let served = requests.join().expect("request thread");
    let late = served.iter().filter(|s| **s != State::Running).count();
    println!(
        "served {} requests, {late} of them after the trigger, none dropped",
        served.len()
    );
    println!("{report}");
    println!("exit code {}", report.exit_code);
    std::process::exit(report.exit_code);
}

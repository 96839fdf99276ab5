//! Signals as triggers, with the escalation rule, on tokio or smol: the first SIGTERM or
//! SIGINT starts a graceful shutdown, the second skips the drain, the third exits at once
//! with 128 + the signal. Prints one line per transition.
//!
//! ```text
//! cargo run --example signal-service -- --runtime tokio     # then press Ctrl-C, up to 3 times
//! cargo run --example signal-service -- --runtime smol --hang
//! ```

use std::time::Duration;

use clap::{Parser, ValueEnum};
use deputy_core::{Phase, Shutdown, ShutdownCoordinator, State};
use futures::StreamExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    Tokio,
    Smol,
}

#[derive(Debug, Parser)]
#[command(about = "a service that shuts down on signals")]
struct Options {
    /// The async runtime to run on.
    #[arg(long, value_enum)]
    runtime: Runtime,
    /// Add a stopping hook that never finishes (so only a third signal ends it early).
    #[arg(long)]
    hang: bool,
}

async fn print_transitions(shutdown: Shutdown) {
    let mut transitions = shutdown.transitions();
    while let Some(t) = transitions.next().await {
        let phase = t.phase.map(|p| format!(" {p}")).unwrap_or_default();
        println!("signal-service: {}{phase}", t.state);
        if t.state == State::Done {
            break;
        }
    }
}

fn main() {
    if let Err(error) = run() {
        // One line for a person; a refused setting is no bug (no backtrace).
        eprintln!("signal-service: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    let builder = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(60))
        .drain_delay(Duration::from_secs(30))
        .drain_timeout(Duration::from_secs(10))
        .phase(Phase::new("stop-accepting").timeout(Duration::from_secs(10)));
    let report = match options.runtime {
        Runtime::Tokio => {
            let coordinator = builder.build(deputy_tokio::TokioRuntime)?;
            add_hooks(&coordinator.handle(), options.hang)?;
            tokio::runtime::Runtime::new()?.block_on(async {
                let shutdown = coordinator.handle();
                tokio::spawn(deputy_tokio::handle_signals(
                    shutdown.clone(),
                    deputy_tokio::DEFAULT_SIGNALS,
                )?);
                let printer = tokio::spawn(print_transitions(shutdown));
                println!("signal-service: ready");
                let report = coordinator.run().await;
                printer.await?; // every transition printed before the exit line
                anyhow::Ok(report)
            })?
        }
        Runtime::Smol => {
            let coordinator = builder.build(deputy_smol::AsyncIoRuntime)?;
            add_hooks(&coordinator.handle(), options.hang)?;
            let shutdown = coordinator.handle();
            smol::spawn(deputy_smol::handle_signals(
                shutdown.clone(),
                deputy_smol::DEFAULT_SIGNALS,
            )?)
            .detach();
            let printer = smol::spawn(print_transitions(shutdown));
            println!("signal-service: ready");
            smol::block_on(async {
                let report = coordinator.run().await;
                printer.await; // every transition printed before the exit line
                report
            })
        }
    };
    println!("signal-service: exit code {}", report.exit_code);
    std::process::exit(report.exit_code);
}

fn add_hooks(shutdown: &Shutdown, hang: bool) -> anyhow::Result<()> {
    if hang {
        shutdown.hook("stop-accepting", "hangs", |_| {
            futures::future::pending::<()>()
        })?;
    }
    Ok(())
}

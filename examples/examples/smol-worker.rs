//! A job worker on smol that loses nothing when it is stopped: it takes jobs from a queue
//! directory (one file a job), processes each, and writes the result atomically. On SIGTERM
//! or SIGINT it stops taking jobs, finishes the one in hand, and leaves the rest queued.
//!
//! ```text
//! mkdir -p /tmp/q && for i in $(seq 1 20); do echo "job $i" > /tmp/q/$i.job; done
//! cargo run --example smol-worker -- --queue /tmp/q --job-ms 200    # Ctrl-C at any time
//! ```
//!
//! Layout under `--queue`: `*.job` waiting; `claimed/` the job in hand (claimed by an atomic
//! rename, so two workers never take the same job); `results/*.result` finished, each written
//! to a temporary file and renamed. A job left in `claimed/` by a worker that was killed
//! outright is put back in the queue at start-up, unless its result exists.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use deputy_core::{Phase, Shutdown, ShutdownCoordinator};
use deputy_smol::{AsyncIoRuntime, DEFAULT_SIGNALS, handle_signals};

#[derive(Debug, Parser)]
#[command(about = "a job worker that finishes the job in hand on shutdown")]
struct Options {
    /// The queue directory.
    #[arg(long)]
    queue: PathBuf,
    /// How long each job takes, in milliseconds.
    #[arg(long, default_value_t = 100)]
    job_ms: u64,
}

fn main() {
    if let Err(error) = run() {
        // One line for a person; a refused setting is no bug (no backtrace).
        eprintln!("smol-worker: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let options: Options = deputy_ipc::parse_args();
    let claimed = options.queue.join("claimed");
    let results = options.queue.join("results");
    fs::create_dir_all(&claimed).context("queue directory")?;
    fs::create_dir_all(&results).context("queue directory")?;
    recover(&options.queue, &claimed, &results)?;

    let coordinator = ShutdownCoordinator::builder()
        .grace_period(Duration::from_secs(30))
        .drain_delay(Duration::ZERO) // a worker has no endpoints to wait for
        .drain_timeout(Duration::from_secs(20))
        .without_default_phases()
        .phase(Phase::new("close").timeout(Duration::from_secs(1)))
        .build(AsyncIoRuntime)?;
    let shutdown = coordinator.handle();
    smol::spawn(handle_signals(shutdown.clone(), DEFAULT_SIGNALS)?).detach();
    println!("smol-worker: ready");

    let worker = smol::spawn(work(shutdown.clone(), options, claimed, results));
    let report = smol::block_on(async {
        let report = coordinator.run().await;
        worker.await?; // it has stopped taking jobs; let it print its last line

        anyhow::Ok(report)
    })?;
    println!("smol-worker: exit code {}", report.exit_code);
    std::process::exit(report.exit_code);
}

/// Takes jobs until shutdown is triggered; each job counts as in flight while it runs.
async fn work(
    shutdown: Shutdown,
    options: Options,
    claimed: PathBuf,
    results: PathBuf,
) -> anyhow::Result<()> {
    let draining = shutdown.draining_token();
    while !draining.is_cancelled() {
        let Some(job) = next_job(&options.queue)? else {
            // Nothing queued: wait a little, or for shutdown.
            let idle = async_io::Timer::after(Duration::from_millis(20));
            futures::future::select(std::pin::pin!(idle), draining.cancelled()).await;
            continue;
        };
        let name = job.file_name().context("job name")?.to_owned();
        let mine = claimed.join(&name);
        if fs::rename(&job, &mine).is_err() {
            continue; // another worker took it
        }
        // In flight until the result is written: the drain waits for it.
        let _in_flight = shutdown.guard();
        let input = fs::read(&mine)?;
        async_io::Timer::after(Duration::from_millis(options.job_ms)).await;
        let output: Vec<u8> = input.iter().rev().copied().collect();
        let result = results.join(Path::new(&name).with_extension("result"));
        let temporary = result.with_extension("tmp");
        fs::write(&temporary, output)?;
        fs::rename(&temporary, &result)?;
        fs::remove_file(&mine)?;
        println!("smol-worker: done {}", name.to_string_lossy());
    }
    Ok(())
}

fn next_job(queue: &Path) -> anyhow::Result<Option<PathBuf>> {
    let mut jobs: Vec<PathBuf> = fs::read_dir(queue)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "job"))
        .collect();
    jobs.sort();
    Ok(jobs.into_iter().next())
}

/// Puts back jobs a killed worker left claimed, and drops half-written results.
fn recover(queue: &Path, claimed: &Path, results: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(results)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "tmp") {
            fs::remove_file(path)?;
        }
    }
    for entry in fs::read_dir(claimed)? {
        let path = entry?.path();
        let name = path.file_name().context("job name")?;
        if results
            .join(Path::new(name).with_extension("result"))
            .exists()
        {
            fs::remove_file(&path)?;
        } else {
            fs::rename(&path, queue.join(name))?;
        }
    }
    Ok(())
}

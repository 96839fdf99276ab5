//! No job lost: a queue worked through by `smol-worker`, stopped with SIGTERM in the middle
//! of a job again and again, and restarted each time. At the end every job is done exactly
//! once, no result is partial, nothing is left claimed or queued.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use support::BOUND;

mod support;

const JOBS: usize = 40;

#[test]
fn sigterm_mid_job_with_restarts_loses_nothing_and_repeats_nothing() {
    let queue = tempfile::tempdir().unwrap();
    for i in 0..JOBS {
        std::fs::write(
            queue.path().join(format!("{i:03}.job")),
            format!("payload {i}"),
        )
        .unwrap();
    }

    let mut done: HashMap<String, usize> = HashMap::new();
    let mut runs = 0;
    while done.len() < JOBS {
        runs += 1;
        assert!(runs <= JOBS + 5, "no progress after {runs} runs");
        let mut child = Command::new(support::example("smol-worker"))
            .arg("--queue")
            .arg(queue.path())
            .args(["--job-ms", "40"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = support::lines(child.stdout.take().unwrap());
        assert_eq!(lines.recv_timeout(BOUND).unwrap(), "smol-worker: ready");
        // Let it finish a couple of jobs, then stop it while the next is in hand.
        let mut seen = 0;
        let mut exit_line = None;
        while seen < 2 {
            match lines.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => {
                    if let Some(job) = line.strip_prefix("smol-worker: done ") {
                        *done.entry(job.to_owned()).or_default() += 1;
                        seen += 1;
                    }
                }
                Err(_) => break, // the queue ran dry
            }
        }
        std::thread::sleep(Duration::from_millis(15)); // into the middle of the next job
        kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM).unwrap();
        while let Ok(line) = lines.recv_timeout(BOUND) {
            if let Some(job) = line.strip_prefix("smol-worker: done ") {
                *done.entry(job.to_owned()).or_default() += 1;
            } else if line.starts_with("smol-worker: exit code") {
                exit_line = Some(line);
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "worker run {runs} did not exit cleanly"
        );
        assert_eq!(exit_line.as_deref(), Some("smol-worker: exit code 0"));
        // The job in hand was finished, not left for the next run to recover.
        let claimed = std::fs::read_dir(queue.path().join("claimed"))
            .unwrap()
            .count();
        assert_eq!(claimed, 0, "run {runs} left its job in hand unfinished");
    }

    assert!(
        runs >= 3,
        "the worker was not stopped mid-queue often enough ({runs} runs)"
    );
    assert!(
        done.values().all(|count| *count == 1),
        "a job ran twice: {done:?}"
    );
    let results = queue.path().join("results");
    for i in 0..JOBS {
        let result = std::fs::read_to_string(results.join(format!("{i:03}.result"))).unwrap();
        let expected: String = format!("payload {i}").chars().rev().collect();
        assert_eq!(result, expected, "job {i}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(queue.path())
        .unwrap()
        .chain(std::fs::read_dir(queue.path().join("claimed")).unwrap())
        .chain(std::fs::read_dir(&results).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "result"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    println!("{JOBS} jobs in {runs} runs, each stopped by SIGTERM");
}

//! How long the preStop takes: `deputy terminate` against a service with no hooks and no
//! drain delay, from spawning the process to its exit, next to spawning `/bin/true` (the floor
//! of starting any process) and `deputy status`.
//!
//! Run with `cargo bench -p deputy-examples --bench terminate`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod support;

/// Starts ipc-service in `dir` and waits until it listens.
fn service(target: &Path, dir: &Path) -> Child {
    let mut child = Command::new(target.join("examples/ipc-service"))
        .args(["--drain-delay", "0s", "--ipc-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    child
}

fn prestop(c: &mut Criterion) {
    let target = support::target_dir(&["ipc-service"]);
    let dir = tempfile::tempdir().unwrap();
    let deputy = target.join("deputy");
    let mut group = c.benchmark_group("prestop");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("floor: /bin/true", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| support::timed(&mut Command::new("true")))
                .sum()
        })
    });
    group.bench_function("deputy terminate", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let mut child = service(&target, dir.path());
                    let took = support::timed(
                        Command::new(&deputy)
                            .arg("terminate")
                            .arg("--ipc-dir")
                            .arg(dir.path()),
                    );
                    assert!(child.wait().unwrap().success());
                    took
                })
                .sum()
        })
    });
    let mut child = service(&target, dir.path());
    group.bench_function("deputy status", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    support::timed(
                        Command::new(&deputy)
                            .arg("status")
                            .arg("--ipc-dir")
                            .arg(dir.path()),
                    )
                })
                .sum()
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    group.finish();
}

criterion_group!(benches, prestop);
criterion_main!(benches);

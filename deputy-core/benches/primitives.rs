//! deputy-core's primitives side by side with their peers, in one harness and one run:
//! tokio-util's `CancellationToken` and `TaskTracker`, and async-shutdown's `ShutdownManager`.
//!
//! Run with `cargo bench -p deputy-core --bench primitives`, then
//! `python3 scripts/bench_table.py` for the table of medians and ratios in BENCHMARKS.md.
//! Every group names its functions `deputy`, `tokio-util` and `async-shutdown`.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use futures::task::noop_waker;

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

fn is_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("is_cancelled");
    let deputy = deputy_core::CancellationToken::new();
    let _deputy_child = deputy.child();
    group.bench_function("deputy", |b| b.iter(|| black_box(&deputy).is_cancelled()));
    let tokio = tokio_util::sync::CancellationToken::new();
    let _tokio_child = tokio.child_token();
    group.bench_function("tokio-util", |b| {
        b.iter(|| black_box(&tokio).is_cancelled())
    });
    let manager = async_shutdown::ShutdownManager::<()>::new();
    group.bench_function("async-shutdown", |b| {
        b.iter(|| black_box(&manager).is_shutdown_triggered())
    });
    // The floor: a bare atomic load through one pointer, in the same loop.
    let flag = Arc::new(AtomicBool::new(false));
    group.bench_function("floor: one atomic load", |b| {
        b.iter(|| black_box(&flag).load(Ordering::Acquire))
    });
    group.finish();

    // The same check while another thread clones and drops the token, as request handlers
    // do: tokio-util takes the node's mutex for both.
    let mut group = c.benchmark_group("is_cancelled, token cloned on another thread");
    let other = deputy.clone();
    let bg = contend(move || drop(black_box(&other).clone()));
    group.bench_function("deputy", |b| b.iter(|| black_box(&deputy).is_cancelled()));
    drop(bg);
    let other = tokio.clone();
    let bg = contend(move || drop(black_box(&other).clone()));
    group.bench_function("tokio-util", |b| {
        b.iter(|| black_box(&tokio).is_cancelled())
    });
    drop(bg);
    let other = manager.clone();
    let bg = contend(move || drop(black_box(&other).clone()));
    group.bench_function("async-shutdown", |b| {
        b.iter(|| black_box(&manager).is_shutdown_triggered())
    });
    drop(bg);
    group.finish();
}

fn clone_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("token clone+drop");
    let deputy = deputy_core::CancellationToken::new();
    group.bench_function("deputy", |b| b.iter(|| drop(black_box(&deputy).clone())));
    let tokio = tokio_util::sync::CancellationToken::new();
    group.bench_function("tokio-util", |b| b.iter(|| drop(black_box(&tokio).clone())));
    let manager = async_shutdown::ShutdownManager::<()>::new();
    group.bench_function("async-shutdown", |b| {
        b.iter(|| drop(black_box(&manager).clone()))
    });
    group.finish();
}

fn child_drop(c: &mut Criterion) {
    // async-shutdown has no hierarchy, so it is not in this group.
    let mut group = c.benchmark_group("child create+drop");
    let deputy = deputy_core::CancellationToken::new();
    group.bench_function("deputy", |b| b.iter(|| drop(black_box(&deputy).child())));
    let tokio = tokio_util::sync::CancellationToken::new();
    group.bench_function("tokio-util", |b| {
        b.iter(|| drop(black_box(&tokio).child_token()))
    });
    group.finish();
}

/// Polls every future once, so each has a registered waker.
fn register<F: Future + Unpin>(futures: &mut [F]) {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    for future in futures {
        assert!(Pin::new(future).poll(&mut cx).is_pending());
    }
}

fn cancel_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel with waiters");
    for waiters in [1usize, 1_000, 100_000] {
        if waiters >= 100_000 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::new("deputy", waiters), &waiters, |b, &n| {
            b.iter_batched(
                || {
                    let token = deputy_core::CancellationToken::new();
                    let mut futures: Vec<_> = (0..n).map(|_| token.cancelled()).collect();
                    register(&mut futures);
                    (token, futures)
                },
                |(token, futures)| {
                    token.cancel();
                    (token, futures)
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("tokio-util", waiters),
            &waiters,
            |b, &n| {
                b.iter_batched(
                    || {
                        let token = tokio_util::sync::CancellationToken::new();
                        let mut futures: Vec<_> = (0..n)
                            .map(|_| Box::pin(token.clone().cancelled_owned()))
                            .collect();
                        register(&mut futures);
                        (token, futures)
                    },
                    |(token, futures)| {
                        token.cancel();
                        (token, futures)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("async-shutdown", waiters),
            &waiters,
            |b, &n| {
                b.iter_batched(
                    || {
                        let manager = async_shutdown::ShutdownManager::<()>::new();
                        let mut futures: Vec<_> = (0..n)
                            .map(|_| Box::pin(manager.wait_shutdown_triggered()))
                            .collect();
                        register(&mut futures);
                        (manager, futures)
                    },
                    |(manager, futures)| {
                        let _ = manager.trigger_shutdown(());
                        (manager, futures)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    group.finish();
}

/// Runs `work` on a second thread until the returned guard is dropped.
fn contend(work: impl Fn() + Send + 'static) -> impl Drop {
    struct Stop(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
            if let Some(thread) = self.1.take() {
                thread.join().unwrap();
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            for _ in 0..64 {
                work();
            }
        }
    });
    Stop(stop, Some(thread))
}

/// Benchmarks `work` under `name`, with a second thread doing the same work meanwhile when
/// `contended`. `work` owns its handle, so the clone on the other thread shares the counter.
fn bench_maybe_contended(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    contended: bool,
    work: impl Fn() + Clone + Send + 'static,
) {
    let _background = contended.then(|| contend(work.clone()));
    group.bench_function(name, |b| b.iter(&work));
}

/// A runtime on plain threads: the real clock, and a thread per sleep (the coordinator's
/// only sleep before a trigger is its clock's tick).
#[derive(Debug)]
struct Threads;

impl deputy_core::runtime::Runtime for Threads {
    fn now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> deputy_core::runtime::Sleep {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(std::time::Instant::now()));
            let _ = tx.send(());
        });
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// A coordinator whose `run()` a thread polls until the returned guard is dropped.
fn running_coordinator() -> (deputy_core::Shutdown, impl Drop) {
    struct Running(deputy_core::Shutdown, Option<std::thread::JoinHandle<()>>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.trigger("the benchmark is over");
            if let Some(thread) = self.1.take() {
                thread.join().unwrap();
            }
        }
    }
    let coordinator = deputy_core::ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .build(Threads)
        .unwrap();
    let shutdown = coordinator.handle();
    let thread = std::thread::spawn(move || drop(futures::executor::block_on(coordinator.run())));
    // Until the clock is kept (ten ticks at most).
    std::thread::sleep(Duration::from_millis(50));
    (shutdown.clone(), Running(shutdown, Some(thread)))
}

fn guards(c: &mut Criterion) {
    for contended in [false, true] {
        let name = if contended {
            "guard take+drop, 2 threads"
        } else {
            "guard take+drop, 1 thread"
        };
        let mut group = c.benchmark_group(name);
        let in_flight = deputy_core::InFlight::new();
        bench_maybe_contended(&mut group, "deputy", contended, move || {
            drop(black_box(&in_flight).guard())
        });
        // The coordinator's own guard, a named guard (what `deputy status` lists; one per
        // request in `DrainLayer`) and a long-lived connection's registration, on a
        // coordinator whose `run()` is being polled, as in a service.
        let (shutdown, _running) = running_coordinator();
        let named = shutdown.clone();
        let registry = shutdown.clone();
        bench_maybe_contended(
            &mut group,
            "deputy, Shutdown::guard",
            contended,
            move || drop(black_box(&shutdown).guard()),
        );
        bench_maybe_contended(&mut group, "deputy, named", contended, move || {
            drop(black_box(&named).guard_request("GET", "/export"))
        });
        bench_maybe_contended(&mut group, "deputy, connection", contended, move || {
            drop(black_box(&registry).connection())
        });
        let tracker = tokio_util::task::TaskTracker::new();
        bench_maybe_contended(&mut group, "tokio-util", contended, move || {
            drop(black_box(&tracker).token())
        });
        let manager = async_shutdown::ShutdownManager::<()>::new();
        bench_maybe_contended(&mut group, "async-shutdown", contended, move || {
            drop(black_box(&manager).delay_shutdown_token())
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = is_cancelled, clone_drop, child_drop, cancel_fan_out, guards
}
criterion_main!(benches);

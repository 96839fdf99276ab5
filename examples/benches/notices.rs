//! Handing out "time to move" notices to 10,000 long-lived connections over a disconnect
//! window, on tokio with two workers: how close each comes to its planned instant, and the
//! CPU it costs. Next to it, what one writes by hand without deputy: each connection's task
//! sleeps until an instant of its own, drawn at random in the window.
//!
//! - deputy's i-th notice is planned inside the i-th n-th of the window (stratified
//!   jitter); the i-th notice to arrive is measured against the end of that slice (a slice
//!   is 0.5 ms wide for 10,000 over 5 s).
//! - The hand-written sleeps are measured against their own instants.
//!
//! Run with `cargo bench -p deputy-examples --bench notices` (`-- --test`: 1,000
//! connections over 0.5 s, one round, as CI does).

use std::time::{Duration, Instant};

use deputy_core::ShutdownCoordinator;
use deputy_tokio::TokioRuntime;

/// What one round came to.
struct Round {
    /// How late each notice was, sorted.
    late: Vec<Duration>,
    /// The most any came early.
    early: Duration,
    /// Process CPU time (all threads) from the trigger to the last notice.
    cpu: Duration,
    window: Duration,
}

impl Round {
    fn line(&self, name: &str) {
        let at = |q: f64| self.late[((self.late.len() - 1) as f64 * q) as usize];
        println!(
            "{name:>12}: {} notices over {:?}; late by p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, early by at most {:.2} ms; CPU {:.1} ms ({:.2} % of a core over the window)",
            self.late.len(),
            self.window,
            ms(at(0.5)),
            ms(at(0.99)),
            ms(at(1.0)),
            ms(self.early),
            ms(self.cpu),
            100.0 * self.cpu.as_secs_f64() / self.window.as_secs_f64()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time of this process (all threads) so far.
fn cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// deputy: n registered connections, each task awaiting its notice.
async fn deputy(n: usize, window: Duration) -> Round {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .disconnect_window(window)
        .drain_timeout(window * 2)
        // Room for the default phases' timeouts (3 s each) too.
        .grace_period(window * 2 + Duration::from_secs(10))
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let connection = shutdown.connection();
            tokio::spawn(async move {
                connection.notice().await;
                Instant::now()
            })
        })
        .collect();
    let cpu = cpu_time();
    let start = Instant::now();
    shutdown.trigger("benchmark");
    let run = tokio::spawn(coordinator.run());
    let mut arrived = Vec::with_capacity(n);
    for task in tasks {
        arrived.push(task.await.unwrap());
    }
    let cpu = cpu_time() - cpu;
    run.await.unwrap();
    arrived.sort();
    let slice = window / n as u32;
    let mut late: Vec<_> = arrived
        .iter()
        .enumerate()
        .map(|(i, at)| at.saturating_duration_since(start + slice * (i as u32 + 1)))
        .collect();
    late.sort();
    let early = arrived
        .iter()
        .enumerate()
        .map(|(i, at)| (start + slice * i as u32).saturating_duration_since(*at))
        .max()
        .unwrap_or_default();
    Round {
        late,
        early,
        cpu,
        window,
    }
}

/// By hand: each task sleeps until its own random instant in the window.
async fn by_hand(n: usize, window: Duration) -> Round {
    let start = Instant::now() + Duration::from_millis(20);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let planned = start + window.mul_f64((seed >> 11) as f64 / (1u64 << 53) as f64);
            tokio::spawn(async move {
                tokio::time::sleep_until(planned.into()).await;
                Instant::now().saturating_duration_since(planned)
            })
        })
        .collect();
    let cpu = cpu_time();
    let mut late = Vec::with_capacity(n);
    for task in tasks {
        late.push(task.await.unwrap());
    }
    let cpu = cpu_time() - cpu;
    late.sort();
    Round {
        late,
        early: Duration::ZERO, // a sleep never ends early
        cpu,
        window,
    }
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let (n, window, rounds) = if quick {
        (1_000, Duration::from_millis(500), 1)
    } else {
        (10_000, Duration::from_secs(5), 3)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 1..=rounds {
        println!("round {round}");
        runtime.block_on(deputy(n, window)).line("deputy");
        runtime.block_on(by_hand(n, window)).line("by hand");
    }
}

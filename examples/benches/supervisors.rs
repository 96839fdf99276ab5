//! `deputy run` next to the init wrappers it replaces (tini, dumb-init, catatonit: Debian's
//! packages), in one run:
//!
//! - start-up: `X -- true` from spawn to exit, next to a bare `true`;
//! - signal to exit: SIGTERM to `X -- sleep 1000` (sleep dies of it), until X has exited;
//! - private memory of X while it supervises `sleep` (from /proc/<pid>/smaps_rollup), and the
//!   size of its binary: printed before the timings, not timed.
//!
//! `deputy run` is built as it ships into containers (the `dist` profile, static with musl,
//! or with glibc where the musl target is missing; also as a plain `cargo build --release`,
//! for comparison) and runs with its defaults (control socket included) except
//! `--drain-delay 0s`, since the peers have no drain delay. Its control directory is on tmpfs
//! (/dev/shm), as in the manifests (an `emptyDir` with `medium: Memory` on /run): on this
//! machine's ext4, closing and unlinking the socket and the pid file adds about 60 µs. A peer
//! that is not installed is left out with a line saying so (`apt-get install tini dumb-init
//! catatonit`). `async-io floor` is the example of that name: signalfd, async-io, kill and
//! exit, nothing else; the least a supervisor built like deputy's can take.
//!
//! Run with `cargo bench -p deputy-examples --bench supervisors`. To compare a change with
//! what came before in the same run, set `DEPUTY_BENCH_BASELINE` to the other build's
//! `deputy`: it is measured as "deputy run (baseline)".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

mod support;

/// A supervisor: its name and how to put it in front of a command.
#[derive(Clone)]
struct Wrapper {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
}

impl Wrapper {
    fn command(&self, program: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(&self.args).args(program);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }
}

/// The full path of `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

fn wrappers(deputy: &[(&'static str, PathBuf)], ipc_dir: &Path) -> Vec<Wrapper> {
    let mut all: Vec<Wrapper> = deputy
        .iter()
        .map(|(name, binary)| Wrapper {
            name,
            binary: binary.clone(),
            args: vec![
                "run".into(),
                "--drain-delay".into(),
                "0s".into(),
                "--ipc-dir".into(),
                ipc_dir.display().to_string(),
                "--".into(),
            ],
        })
        .collect();
    all.push(Wrapper {
        name: "async-io floor",
        binary: support::target_dir(&["async-io-floor"]).join("examples/async-io-floor"),
        args: vec!["--".into()],
    });
    for (name, args) in [
        ("catatonit", &["--"][..]),
        ("tini", &["-s", "--"]),
        ("tini-static", &["-s", "--"]),
        ("dumb-init", &[]),
    ] {
        match which(name) {
            Some(binary) => all.push(Wrapper {
                name,
                binary,
                args: args.iter().map(|a| a.to_string()).collect(),
            }),
            None => eprintln!("{name} is not installed: left out"),
        }
    }
    all
}

/// Starts `wrapper -- sleep 1000` and returns once sleep runs (its child has exec'd).
fn supervising_sleep(wrapper: &Wrapper) -> Child {
    let mut child = wrapper.command(&["sleep", "1000"]).spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeping = || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|grandchild| {
                std::fs::read_to_string(format!("/proc/{grandchild}/comm"))
                    .is_ok_and(|comm| comm.trim() == "sleep")
            })
    };
    while !sleeping() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not start sleep", wrapper.name);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    child
}

fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// Private_Clean + Private_Dirty of `pid`, and Private_Dirty alone, in KiB. The clean part
/// is mostly the pages of the binary that were read (nobody else maps them); the dirty part
/// is what the process wrote: heap, stacks, relocated data.
fn private_kib(pid: u32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let dirty = field("Private_Dirty:");
    (field("Private_Clean:") + dirty, dirty)
}

/// Prints each wrapper's binary size and private memory while supervising `sleep`.
fn footprint(wrappers: &[Wrapper]) {
    println!("supervisor              binary   private memory supervising sleep (dirty part)");
    for wrapper in wrappers {
        // A binary just written by the linker sits in the page cache as dirty until written
        // back, and its pages would count as the process's dirty memory: write it back.
        std::fs::File::open(&wrapper.binary)
            .and_then(|file| file.sync_all())
            .unwrap();
        let mut child = supervising_sleep(wrapper);
        // Let it settle into its wait.
        std::thread::sleep(Duration::from_millis(50));
        let (private, dirty) = private_kib(child.id());
        terminate(&child);
        child.wait().unwrap();
        let size = std::fs::metadata(&wrapper.binary).unwrap().len();
        println!(
            "{:<22} {:>6} KiB   {:>6} KiB ({dirty} KiB)",
            wrapper.name,
            size / 1024,
            private
        );
    }
}

fn supervisors(c: &mut Criterion) {
    let release = support::target_dir(&[]).join("deputy");
    let deputy = match support::static_deputy() {
        Some((shipped, libc)) => {
            println!("deputy run: the dist profile, static with {libc}");
            vec![("deputy run", shipped), ("deputy run (release)", release)]
        }
        None => {
            println!("deputy run: no static build links here; the plain release build only");
            vec![("deputy run", release)]
        }
    };
    // Before and after a change, in one run: DEPUTY_BENCH_BASELINE names another build of
    // deputy (say, the static build of the last release, or of main before the change).
    let mut deputy = deputy;
    if let Some(baseline) = std::env::var_os("DEPUTY_BENCH_BASELINE") {
        println!("deputy run (baseline): {}", baseline.to_string_lossy());
        deputy.push(("deputy run (baseline)", baseline.into()));
    }
    let ipc_dir = tempfile::Builder::new()
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap();
    let wrappers = wrappers(&deputy, ipc_dir.path());
    footprint(&wrappers);

    let mut group = c.benchmark_group("startup");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("true", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| support::timed(&mut Command::new("true")))
                .sum()
        })
    });
    for wrapper in &wrappers {
        group.bench_function(wrapper.name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| support::timed(&mut wrapper.command(&["true"])))
                    .sum()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("signal_to_exit");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    // On this project's VMs the first command of a group measures slower than it is (the
    // same build: 830 us first, 511 us third); a discarded first run takes that penalty.
    let warm_up = Wrapper {
        name: "warm-up (discard)",
        ..wrappers[0].clone()
    };
    for wrapper in std::iter::once(&warm_up).chain(&wrappers) {
        group.bench_function(wrapper.name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let mut child = supervising_sleep(wrapper);
                        let start = Instant::now();
                        terminate(&child);
                        let status = child.wait().unwrap();
                        let took = start.elapsed();
                        assert_eq!(status.code(), Some(143), "{}: {status}", wrapper.name);
                        took
                    })
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, supervisors);
criterion_main!(benches);

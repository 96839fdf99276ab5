//! Helpers shared by the end-to-end benchmarks.

#![allow(dead_code)] // each benchmark uses its own subset

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Builds `deputy` and the named examples with the release profile and returns the target
/// directory: `deputy` is in it, the examples under `examples/`.
pub(crate) fn target_dir(examples: &[&str]) -> PathBuf {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "deputy-ipc",
        "--bin",
        "deputy",
    ]);
    if !examples.is_empty() {
        command.args(["-p", "deputy-examples"]);
    }
    for example in examples {
        command.args(["--example", example]);
    }
    assert!(command.status().expect("cargo runs").success());
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// How long `command` takes from spawn to exit; it must succeed.
pub(crate) fn timed(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command.stdout(Stdio::null()).status().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?}: {status}");
    elapsed
}

/// Builds `deputy` as it is shipped into containers: the `dist` profile, static, in
/// `target/static`; returns the binary's path and how it was linked. Static with musl, as
/// README's "Installing deputy" says, if the musl target is installed; else static with
/// glibc (`-C target-feature=+crt-static`); `None` if neither links here.
pub(crate) fn static_deputy() -> Option<(PathBuf, &'static str)> {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().join("static");
    let arch = std::env::consts::ARCH;
    for (libc, rustflags) in [("musl", ""), ("gnu", "-C target-feature=+crt-static")] {
        let triple = format!("{arch}-unknown-linux-{libc}");
        let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .env("RUSTFLAGS", rustflags)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--quiet", "--profile", "dist", "--target", &triple])
            .args(["-p", "deputy-ipc", "--bin", "deputy"])
            .stderr(Stdio::null())
            .status()
            .expect("cargo runs")
            .success();
        if built {
            return Some((target.join(triple).join("dist").join("deputy"), libc));
        }
        eprintln!("cannot build deputy for {triple} (is its target installed?)");
    }
    None
}

//! Helpers shared by the end-to-end tests: building the binaries they run, and reading a
//! child's output line by line without blocking the test.

#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::Receiver;

/// Builds the `deputy` binary and the named examples (debug profile, like the tests) and
/// returns the target directory: `deputy` is in it, the examples under `examples/`.
pub(crate) fn build(examples: &[&str]) -> PathBuf {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args([
        "build",
        "--quiet",
        "-p",
        "deputy-ipc",
        "--bin",
        "deputy",
        "-p",
        "deputy-examples",
    ]);
    for example in examples {
        command.args(["--example", example]);
    }
    assert!(
        command.status().expect("cargo runs").success(),
        "building {examples:?} failed"
    );
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// Reads `output` on a thread; its lines arrive on the returned channel, which closes at EOF.
pub(crate) fn lines(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The pid, outside its namespace, of the program `unshare --fork` started as PID 1: the
/// only child of the unshare process `unshare_pid`.
pub(crate) fn host_pid(unshare_pid: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
            .expect("unshare is running");
    children
        .split_whitespace()
        .next()
        .expect("unshare has a child")
        .parse()
        .unwrap()
}

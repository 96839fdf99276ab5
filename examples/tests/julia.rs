//! K8sDeputy.jl's users, without Julia (there is none on these machines): a stand-in in
//! Python speaks its protocol (`graceful-terminator.<pid>.socket` in `$DEPUTY_IPC_DIR`, the
//! line `terminate`, no reply; `julia-entrypoint.pid`) and says whether it got `terminate`
//! or a signal. `deputy run` must stop it over its socket, never with a signal (on SIGTERM,
//! Julia prints a stack trace and dies), and `deputy terminate` must reach it as K8sDeputy.jl's
//! `graceful_terminate` does.

use std::path::Path;
use std::process::Command;

mod support;

use support::{Proc, deputy};

/// K8sDeputy.jl's `graceful_terminator`, as a Python program: `stand-in.py EXIT_CODE
/// [entrypoint]`. On `terminate` it exits with EXIT_CODE; on SIGTERM it says so and exits 99.
const STAND_IN: &str = r#"
import os, signal, socket, sys
directory = os.environ.get("DEPUTY_IPC_DIR", "/run")
path = f"{directory}/graceful-terminator.{os.getpid()}.socket"
if os.path.exists(path):
    os.remove(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
if "entrypoint" in sys.argv:
    with open(f"{directory}/julia-entrypoint.pid", "w") as f:
        f.write(str(os.getpid()))
def on_term(number, frame):
    print("stand-in: got signal", number, flush=True)
    sys.exit(99)
signal.signal(signal.SIGTERM, on_term)
print("stand-in: listening", os.getpid(), flush=True)
while True:
    connection, _ = server.accept()
    line = connection.makefile().readline().strip()
    connection.close()
    if line == "terminate":
        print("stand-in: got terminate", flush=True)
        os.remove(path)
        sys.exit(int(sys.argv[1]))
"#;

/// The stand-in written to `dir`, or `None` (said) when there is no python3.
fn stand_in(dir: &Path) -> Option<std::path::PathBuf> {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipped: needs python3 for the K8sDeputy.jl stand-in");
        return None;
    }
    let path = dir.join("stand-in.py");
    std::fs::write(&path, STAND_IN).unwrap();
    Some(path)
}

/// `deputy run` (control socket and the stand-in's socket in `ipc`) with `command`.
fn deputy_run(ipc: &Path, command: &[&str]) -> Proc {
    let mut run = Command::new(deputy());
    run.args(["run", "--drain-delay", "0s", "--ipc-dir"])
        .arg(ipc)
        .arg("--")
        .args(command);
    Proc::spawn(run)
}

/// Once the stand-in listens, SIGTERM to `deputy`; the stand-in must have got `terminate`
/// and no signal. Returns how deputy ended, and its stderr.
fn stop_and_check_terminate(mut deputy: Proc) -> (support::Ended, String) {
    deputy.expect_out("stand-in: listening");
    deputy.signal(rustix::process::Signal::TERM);
    let ended = deputy.finish();
    let (out, err) = (ended.out(), ended.err());
    assert!(out.contains("stand-in: got terminate"), "{out}\n{err}");
    assert!(!out.contains("got signal"), "{out}");
    (ended, err)
}

#[test]
fn deputy_run_stops_a_k8sdeputy_child_over_its_socket_not_with_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = stand_in(dir.path()) else {
        return;
    };
    let deputy = deputy_run(dir.path(), &["python3", script.to_str().unwrap(), "3"]);
    let (ended, err) = stop_and_check_terminate(deputy);
    // Its own exit code, passed on.
    assert_eq!(ended.code, 3, "{err}");
    assert!(err.contains("over its K8sDeputy.jl socket"), "{err}");
}

#[test]
fn deputy_run_reaches_a_k8sdeputy_grandchild_under_the_shell_its_docs_advise() {
    // K8sDeputy.jl's docs: `sh -c "julia entrypoint.jl; sleep 1"`, so Julia is not PID 1.
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = stand_in(dir.path()) else {
        return;
    };
    let shell = format!("python3 {} 3; sleep 0.1", script.display());
    let deputy = deputy_run(dir.path(), &["sh", "-c", &shell]);
    let (ended, err) = stop_and_check_terminate(deputy);
    assert_eq!(ended.code, 0, "the shell's own code: {err}");
}

#[test]
fn deputy_terminate_finds_a_julia_entrypoint_and_waits_for_it_to_exit() {
    let dir = tempfile::tempdir().unwrap();
    let Some(script) = stand_in(dir.path()) else {
        return;
    };
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .args(["5", "entrypoint"])
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut service = Proc::spawn(command);
    service.expect_out("stand-in: listening");
    // As the preStop would: no pid, only the control directory.
    let out = Command::new(deputy())
        .args(["terminate", "--timeout", "10s", "--ipc-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("exited"), "{stdout}");
    // It had exited by the time deputy returned.
    assert!(
        service.try_wait().is_some(),
        "deputy returned before the service exited"
    );
    let ended = service.finish();
    assert!(
        ended.out().contains("stand-in: got terminate"),
        "{}",
        ended.out()
    );
    assert_eq!(ended.code, 5);
}

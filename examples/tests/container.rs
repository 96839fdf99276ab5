//! The kubelet's steps through a real container runtime: podman (with runc) runs the images
//! `examples/container/build.sh` builds, read-only with a tmpfs on /run (the manifests'
//! emptyDir) and the host's network (all traffic to 127.0.0.1). Under load, the preStop runs
//! through `podman exec ... deputy terminate`, then `podman stop -t G` (STOPSIGNAL, then
//! SIGKILL at G), as the kubelet does. No request that was accepted may fail, the preStop
//! must exit 0, the container's exit code must be 0, and its logs must hold no escape
//! sequence and no panic.
//!
//! Without podman, each test says "skipped" and why (`examples/container/setup-podman.sh`
//! installs and configures it; CI runs it). The images are built again (incrementally) by
//! the first test that needs them, so they are never older than the code.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use support::{BOUND, free_port, http_status, text};

/// Whether podman can run containers here; if not, why.
fn podman() -> Result<(), String> {
    match Command::new("podman")
        .args(["info", "--format", "{{.Host.OCIRuntime.Name}}"])
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("podman info failed: {}", text(&out.stderr).trim())),
        Err(error) => Err(format!("no podman ({error})")),
    }
}

/// Runs `examples/container/build.sh` once per test binary, under a lock (nextest runs each
/// test in its own process).
fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("container/build.sh");
        let target = support::target_dir().parent().unwrap().join("static");
        let out = Command::new("flock")
            .arg(std::env::temp_dir().join("deputy-container-build.lock"))
            .arg(&script)
            .env("CARGO_TARGET_DIR", target)
            .output()
            .expect("flock runs");
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            script.display(),
            text(&out.stderr)
        );
    });
}

fn podman_cmd(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

/// A container, removed on drop.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d --read-only --tmpfs /run --network host -e ... IMAGE`.
    fn run(image: &str, env: &[(&str, String)]) -> Container {
        // Tests run at once in one process: a number of its own for each container.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "deputy-test-{}-{}-{}",
            image.rsplit('/').next().unwrap().replace(':', "-"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let _ = podman_cmd(&["rm", "-f", &name]);
        let mut command = Command::new("podman");
        command.args([
            "run",
            "-d",
            "--name",
            &name,
            "--read-only",
            "--tmpfs",
            "/run",
        ]);
        command.args(["--network", "host"]);
        for (key, value) in env {
            command.args(["-e", &format!("{key}={value}")]);
        }
        let out = command.arg(image).output().expect("podman runs");
        assert!(out.status.success(), "podman run: {}", text(&out.stderr));
        Container { name }
    }

    fn exit_code(&self) -> String {
        let out = podman_cmd(&["inspect", &self.name, "--format", "{{.State.ExitCode}}"]);
        text(&out.stdout).trim().to_owned()
    }

    fn logs(&self) -> String {
        let out = podman_cmd(&["logs", &self.name]);
        text(&out.stdout) + &text(&out.stderr)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_cmd(&["rm", "-f", &self.name]);
    }
}

/// Requests that were answered, and those accepted (connected and sent) but not answered.
#[derive(Debug, Default)]
struct Load {
    answered: AtomicUsize,
    failed: AtomicUsize,
    refused: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    /// `clients` threads sending `GET /work?ms=100` on new connections until `stop`.
    fn start(port: u16, clients: usize) -> (Arc<Load>, Vec<std::thread::JoinHandle<()>>) {
        let load = Arc::new(Load::default());
        let threads = (0..clients)
            .map(|_| {
                let load = load.clone();
                std::thread::spawn(move || {
                    while !load.stop.load(Ordering::Relaxed) {
                        load.one(port);
                    }
                })
            })
            .collect();
        (load, threads)
    }

    fn one(&self, port: u16) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
            return;
        };
        let _ = stream.set_read_timeout(Some(BOUND));
        let request = "GET /work?ms=100 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";
        let mut answer = Vec::new();
        let answered = stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_end(&mut answer).is_ok()
            && answer.starts_with(b"HTTP/1.1 200");
        let counter = if answered {
            &self.answered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The endpoints are gone 1 s into the drain delay: no new requests after that.
fn endpoints_gone(load: &Load, clients: Vec<std::thread::JoinHandle<()>>) {
    std::thread::sleep(Duration::from_secs(1));
    load.stop.store(true, Ordering::Relaxed);
    clients
        .into_iter()
        .for_each(|client| client.join().unwrap());
}

/// The preStop, `deputy terminate` through `podman exec`, in a thread of its own.
fn prestop(container: &Container) -> std::thread::JoinHandle<Output> {
    let name = container.name.clone();
    std::thread::spawn(move || podman_cmd(&["exec", &name, "/usr/local/bin/deputy", "terminate"]))
}

/// Waits (bounded) until `port`'s /health/ready answers 200.
fn wait_ready(port: u16, container: &Container) {
    let start = Instant::now();
    while http_status(port, "GET", "/health/ready") != 200 {
        assert!(
            start.elapsed() < BOUND,
            "never ready; logs:\n{}",
            container.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The kubelet's steps on `image`: load, the preStop through `podman exec`, endpoints gone 1 s
/// into it (the load stops), then `podman stop -t 20`. The ports and the drain delay are set
/// through the environment, as a manifest would (with `ready_port`, deputy run's readiness
/// port too).
fn kubelet_steps(image: &str, ready_port: bool) {
    if let Err(why) = podman() {
        eprintln!("skipped: {why} (examples/container/setup-podman.sh installs it)");
        return;
    }
    build_images();
    let (port, health) = (free_port(), free_port());
    let mut all = vec![
        ("PORT", port.to_string()),
        ("DEPUTY_HEALTH_CHECK_PORT", health.to_string()),
        ("DEPUTY_DRAIN_DELAY", "3s".to_owned()),
    ];
    if ready_port {
        all.push(("DEPUTY_READY_PORT", port.to_string()));
    }
    let container = Container::run(image, &all);
    wait_ready(health, &container);
    let (load, clients) = Load::start(port, 8);
    std::thread::sleep(Duration::from_secs(1));
    let prestop = prestop(&container);
    endpoints_gone(&load, clients);
    let prestop = prestop.join().unwrap();
    assert_eq!(
        prestop.status.code(),
        Some(0),
        "the preStop failed: {}{}",
        text(&prestop.stdout),
        text(&prestop.stderr)
    );
    let stop = podman_cmd(&["stop", "-t", "20", &container.name]);
    assert!(stop.status.success(), "podman stop: {}", text(&stop.stderr));
    let logs = container.logs();
    let (answered, failed) = (
        load.answered.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{image}: {answered} requests answered, {failed} failed, {} connections refused",
        load.refused.load(Ordering::Relaxed)
    );
    assert!(answered > 0, "no request went through; logs:\n{logs}");
    assert_eq!(failed, 0, "accepted requests failed; logs:\n{logs}");
    assert_eq!(container.exit_code(), "0", "logs:\n{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "an escape sequence in the logs:\n{logs}"
    );
    support::assert_no_panic(&logs);
}

#[test]
fn http_service_as_pid_1_goes_through_the_kubelets_steps_losing_nothing() {
    kubelet_steps("localhost/deputy/http-service:dev", false);
}

#[test]
fn plain_server_under_deputy_run_goes_through_the_kubelets_steps_losing_nothing() {
    kubelet_steps("localhost/deputy/plain-server:dev", true);
}

/// The pod of `examples/k8s/native-sidecar.yaml`: the application (http-service) behind its
/// sidecar (tcp-proxy under `deputy run`, drain delay zero), every request through the
/// sidecar, under load. `native`: the kubelet's order for a native sidecar, the
/// application's preStop and stop first, the sidecar's stop once it is gone; otherwise the
/// old layout, both regular containers, each with its preStop, stopped at once. Returns the
/// requests answered and those accepted but failed, once both containers are gone (within
/// the grace period).
fn sidecar_pod(native: bool) -> Option<(usize, usize)> {
    if let Err(why) = podman() {
        eprintln!("skipped: {why} (examples/container/setup-podman.sh installs it)");
        return None;
    }
    build_images();
    let (port, health) = (free_port(), free_port());
    let (proxy, proxy_health) = (free_port(), free_port());
    let app = Container::run(
        "localhost/deputy/http-service:dev",
        &[
            ("PORT", port.to_string()),
            ("DEPUTY_HEALTH_CHECK_PORT", health.to_string()),
            ("DEPUTY_DRAIN_DELAY", "2s".to_owned()),
        ],
    );
    let sidecar = Container::run(
        "localhost/deputy/tcp-proxy:dev",
        &[
            ("PORT", proxy.to_string()),
            ("UPSTREAM", format!("127.0.0.1:{port}")),
            ("DEPUTY_HEALTH_CHECK_PORT", proxy_health.to_string()),
            ("DEPUTY_READY_PORT", proxy.to_string()),
        ],
    );
    wait_ready(health, &app);
    wait_ready(proxy_health, &sidecar);
    let (load, clients) = Load::start(proxy, 8);
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let stop = |container: &Container| {
        let name = container.name.clone();
        std::thread::spawn(move || podman_cmd(&["stop", "-t", "20", &name]))
    };
    let app_prestop = prestop(&app);
    let sidecar_prestop = (!native).then(|| prestop(&sidecar));
    endpoints_gone(&load, clients);
    let app_prestop = app_prestop.join().unwrap();
    assert_eq!(
        app_prestop.status.code(),
        Some(0),
        "{}",
        text(&app_prestop.stderr)
    );
    if native {
        // Regular containers first; the sidecar once they are gone.
        assert!(stop(&app).join().unwrap().status.success());
        assert!(stop(&sidecar).join().unwrap().status.success());
    } else {
        let _ = sidecar_prestop.map(|p| p.join().unwrap());
        let (app_stop, sidecar_stop) = (stop(&app), stop(&sidecar));
        assert!(app_stop.join().unwrap().status.success());
        assert!(sidecar_stop.join().unwrap().status.success());
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(20), "the pod took {took:?}");
    let logs = app.logs() + &sidecar.logs();
    assert_eq!(app.exit_code(), "0", "logs:\n{logs}");
    assert_eq!(sidecar.exit_code(), "0", "logs:\n{logs}");
    support::assert_no_panic(&logs);
    let (answered, failed) = (
        load.answered.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    let refused = load.refused.load(Ordering::Relaxed);
    let layout = if native {
        "native sidecar"
    } else {
        "regular containers"
    };
    eprintln!(
        "{layout}: {answered} answered, {failed} failed, {refused} refused, pod gone in {took:?}"
    );
    Some((answered, failed + refused))
}

#[test]
fn a_native_sidecar_serves_the_application_through_its_whole_drain() {
    let Some((answered, failed)) = sidecar_pod(true) else {
        return;
    };
    assert!(answered > 0);
    assert_eq!(failed, 0, "requests through the sidecar failed");
}

/// The control: the same pod and settings as two regular containers, stopped at once (what
/// `examples/k8s/sidecar.yaml` does before Kubernetes 1.29), loses requests, so the test
/// above can fail.
#[test]
fn as_regular_containers_the_sidecar_goes_while_the_application_drains() {
    let Some((_, failed)) = sidecar_pod(false) else {
        return;
    };
    assert!(
        failed > 0,
        "no request failed with the sidecar stopped at once"
    );
}

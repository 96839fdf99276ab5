//! Serving while terminating (Kubernetes 1.28 and later, KEP-1669): a rollout with
//! `maxSurge: 0` deletes the only pod before its replacement is ready, so for a while every
//! endpoint is terminating, and kube-proxy sends new connections to the terminating ones
//! that still pass their readiness probe. With `--ready-while-draining` http-service stays
//! ready through its drain and serves them; without it, readiness is off at the trigger, no
//! endpoint is left, and requests fail until the new pod is ready.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::process::Signal as Sig;

mod support;

use support::endpoints::EndpointProxy;
use support::{Proc, example, free_port, http_status};

/// http-service with a 2 s drain delay; returns it, its address and its health port, once
/// it serves.
fn start_pod(dir: &Path, ready_while_draining: bool) -> (Proc, SocketAddr, u16) {
    let (port, health) = (free_port(), free_port());
    let mut args: Vec<OsString> = [
        "--port",
        &port.to_string(),
        "--health-port",
        &health.to_string(),
        "--drain-delay",
        "2s",
        "--drain-timeout",
        "2s",
        "--grace-period",
        "20s",
        "--ipc-dir",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    args.push(dir.into());
    if ready_while_draining {
        args.push("--ready-while-draining".into());
    }
    let mut pod = Proc::start(example("http-service"), args);
    let line = pod.next_out();
    assert!(
        line.contains("listening") || line.contains("serving"),
        "{line}"
    );
    (pod, SocketAddr::from(([127, 0, 0, 1], port)), health)
}

/// Waits (bounded) until `check` holds.
fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rollout: pod A serves alone; it is deleted (its endpoint terminating, SIGTERM), and
/// its replacement B starts a second later. Returns the requests sent and failed.
fn rollout_with_no_surge(ready_while_draining: bool) -> (u64, u64) {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy = EndpointProxy::start();
    let (pod_a, addr_a, health_a) = start_pod(dir_a.path(), ready_while_draining);
    let a = proxy.add(addr_a, health_a);
    until("pod A serving", || a.serving());
    let (sent, failed, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (sent, failed, stop, port) = (
                sent.clone(),
                failed.clone(),
                stop.clone(),
                proxy.addr.port(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if http_status(port, "GET", "/") != 200 {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The pod's deletion: its endpoint is terminating, and the kubelet sends SIGTERM.
    a.terminate();
    pod_a.signal(Sig::TERM);
    std::thread::sleep(Duration::from_secs(1));
    let (pod_b, addr_b, health_b) = start_pod(dir_b.path(), ready_while_draining);
    let b = proxy.add(addr_b, health_b);
    until("pod B serving", || b.serving());
    let ended = pod_a.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    pod_b.signal(Sig::TERM);
    assert_eq!(pod_b.finish().code, 0);
    (sent.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
}

#[test]
fn ready_while_draining_no_request_fails_when_every_endpoint_is_terminating() {
    let (sent, failed) = rollout_with_no_surge(true);
    eprintln!("--ready-while-draining: {sent} requests, {failed} failed");
    assert!(sent > 100, "{sent}");
    assert_eq!(failed, 0, "{failed} of {sent} failed");
}

/// The control: the same rollout with readiness off at the trigger loses requests, so the
/// test above can fail.
#[test]
fn readiness_off_at_the_trigger_fails_requests_when_every_endpoint_is_terminating() {
    let (sent, failed) = rollout_with_no_surge(false);
    eprintln!("readiness off at the trigger: {sent} requests, {failed} failed");
    assert!(failed > 10, "{failed} of {sent} failed");
}

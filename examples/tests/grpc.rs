//! grpc-service terminated as Kubernetes does, with a real gRPC client (tonic) on it:
//! streaming calls open, a unary call in flight, then the preStop.
//!
//! - The standard health service says SERVING before the trigger and NOT_SERVING after it
//!   (asked on a new connection, as a probe or a load balancer would).
//! - Every streaming call gets ticks, then ends with UNAVAILABLE and a "retry" message (what
//!   gRPC clients retry on another backend), not a reset.
//! - The unary call in flight completes.
//! - The pod exits 0.
//!
//! The same harness against `--baseline` (tonic's own graceful shutdown) must find the
//! failures: health still SERVING while draining, streams cut, a pod that does not end
//! cleanly.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

mod support;

use support::proxy::prestop;
use support::{BOUND, Proc, example, free_port, is_root_with_unshare};

/// The code generated from `proto/demo.proto` (by the package's build script).
mod demo {
    #![allow(clippy::all, unreachable_pub, missing_docs, dead_code)]
    tonic::include_proto!("deputy.demo.v1");
}

use demo::demo_client::DemoClient;
use demo::{TicksRequest, WorkRequest};

const STREAMS: usize = 10;

fn grpc_service(dir: &Path, as_pid_1: bool, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--health-port",
        &free_port().to_string(),
        "--drain-delay",
        "1s",
        "--disconnect-window",
        "1s",
        "--drain-timeout",
        "6s",
        "--grace-period",
        "16s",
        "--ipc-dir",
        dir.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect();
    let mut service = if as_pid_1 {
        Proc::start_as_pid_1(example("grpc-service"), args)
    } else {
        Proc::start(example("grpc-service"), args)
    };
    service.expect_out("grpc-service: serving");
    (service, port)
}

async fn channel(port: u16) -> Channel {
    Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(BOUND)
        .connect()
        .await
        .expect("a gRPC connection")
}

/// The whole server's health, on a connection of its own.
async fn health(port: u16) -> Result<ServingStatus, String> {
    let mut client = HealthClient::new(channel(port).await);
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match tokio::time::timeout(BOUND, client.check(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().status()),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

/// The whole server's health once it is NOT_SERVING, or as it is at the end of `within`.
async fn health_within(port: u16, within: Duration) -> Result<ServingStatus, String> {
    let deadline = Instant::now() + within;
    loop {
        let now = health(port).await;
        if matches!(now, Ok(ServingStatus::NotServing)) || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A streaming call to its end: the ticks it got, and how it ended. `first` hears of the
/// first tick (the stream is up).
async fn ticks(
    mut client: DemoClient<Channel>,
    first: tokio::sync::mpsc::UnboundedSender<()>,
) -> (u64, Result<(), tonic::Status>) {
    let call = client.ticks(TicksRequest { every_ms: 100 }).await;
    let mut stream = match call {
        Ok(response) => response.into_inner(),
        Err(status) => return (0, Err(status)),
    };
    let mut count = 0;
    loop {
        match tokio::time::timeout(BOUND, stream.message()).await {
            Ok(Ok(Some(_tick))) => {
                if count == 0 {
                    let _ = first.send(());
                }
                count += 1;
            }
            Ok(Ok(None)) => return (count, Ok(())),
            Ok(Err(status)) => return (count, Err(status)),
            Err(_) => {
                return (
                    count,
                    Err(tonic::Status::deadline_exceeded("no end within the bound")),
                );
            }
        }
    }
}

/// Everything that went wrong, one line each.
async fn termination(baseline: bool) -> Vec<String> {
    let as_pid_1 = is_root_with_unshare();
    let dir = tempfile::tempdir().unwrap();
    let extra: &[&str] = if baseline { &["--baseline"] } else { &[] };
    let (mut pod, port) = grpc_service(dir.path(), as_pid_1, extra);
    let mut problems = Vec::new();
    match health(port).await {
        Ok(ServingStatus::Serving) => {}
        other => problems.push(format!("health before the trigger: {other:?}")),
    }
    let client = DemoClient::new(channel(port).await);
    let mut worker = client.clone();
    let work = tokio::spawn(async move { worker.work(WorkRequest { ms: 2500 }).await });
    let (first, mut up) = tokio::sync::mpsc::unbounded_channel();
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| tokio::spawn(ticks(client.clone(), first.clone())))
        .collect();
    // Every stream is up (its first tick came) before the trigger; the unary call went
    // out first, on the same connection.
    for _ in 0..STREAMS {
        if tokio::time::timeout(BOUND, up.recv()).await.is_err() {
            problems.push("a stream had no tick before the trigger".to_owned());
            break;
        }
    }

    let trigger = Instant::now();
    let pod_pid = pod.pid();
    let dir_path = dir.path().to_owned();
    let kubelet = tokio::task::spawn_blocking(move || {
        let prestop = prestop(pod_pid, as_pid_1, &dir_path);
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pod_pid as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        prestop
    });
    // Within the drain delay (1 s), health must turn NOT_SERVING.
    match health_within(port, Duration::from_millis(900)).await {
        Ok(ServingStatus::NotServing) => {}
        other => problems.push(format!("health while draining: {other:?}, not NOT_SERVING")),
    }
    for (i, stream) in streams.into_iter().enumerate() {
        let (count, end) = stream.await.unwrap();
        let told_to_retry = matches!(&end, Err(status)
            if status.code() == tonic::Code::Unavailable && status.message().contains("retry"));
        if count == 0 || !told_to_retry {
            problems.push(format!(
                "stream {i}: {count} ticks, then {end:?}: not told to retry elsewhere"
            ));
        }
    }
    match work.await.unwrap() {
        Ok(reply) if reply.get_ref().message == "worked 2500 ms" => {}
        other => problems.push(format!("the unary call in flight: {other:?}")),
    }
    if let Err(why) = kubelet.await.unwrap() {
        problems.push(why);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = pod.wait_exit();
        (status, pod.finish())
    });
    let (status, ended) = status.await.unwrap();
    if !status.success() {
        problems.push(format!(
            "the pod exited with {status:?} after {:?}: {}",
            trigger.elapsed(),
            ended.out()
        ));
    }
    println!(
        "grpc-service{}: {} problems",
        if baseline { " --baseline" } else { "" },
        problems.len()
    );
    for problem in &problems {
        println!("  {problem}");
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_streams_are_told_to_retry_and_calls_in_flight_finish() {
    let problems = termination(false).await;
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_harness_against_tonic_alone_sees_serving_health_and_cut_streams() {
    let problems = termination(true).await;
    let count = |what: &str| problems.iter().filter(|p| p.contains(what)).count();
    assert!(count("health while draining") > 0, "{problems:#?}");
    assert!(count("not told to retry elsewhere") > 0, "{problems:#?}");
}

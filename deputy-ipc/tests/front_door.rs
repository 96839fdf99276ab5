//! The front door as a service uses it, on smol and on tokio: started, ready and started
//! on the probes, run to the end of a shutdown with the server's hook in the report; a
//! server that fails before the shutdown shuts the service down, exit code 1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use deputy_core::{HookOutcome, Outcome, ShutdownReport};
use deputy_ipc::{Deputy, Settings};

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status `GET path` gets on 127.0.0.1:`port`, 0 if nothing answers.
fn status(port: u16, path: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Quick settings: the health port given, the control socket in `dir`, no drain delay.
fn settings(dir: &std::path::Path, health: u16) -> Settings {
    let mut settings = Settings::default();
    settings.health_port = Some(health);
    settings.ipc_dir = Some(dir.to_owned());
    settings.drain_delay = Duration::ZERO;
    settings.health_linger = Duration::from_millis(100);
    settings
}

/// The hook line of the server.
fn server_line(report: &ShutdownReport) -> &HookOutcome {
    let phase = &report.phases[0];
    &phase
        .hooks
        .iter()
        .find(|h| h.name == "server")
        .unwrap()
        .outcome
}

#[test]
fn on_smol_a_service_starts_answers_the_probes_and_runs_to_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let health = free_port();
    let running = Deputy::new("smol-test", settings(dir.path(), health))
        .start(deputy_smol::AsyncIoRuntime)
        .unwrap();
    let shutdown = running.shutdown();
    assert_eq!(running.ipc_dir(), dir.path());
    // The server: serves until the drain is over, as deputy_tokio::serve does.
    let stopping = shutdown.stopping_token();
    let server = async move {
        stopping.cancelled().await;
        Ok::<(), String>(())
    };
    let run =
        std::thread::spawn(move || smol::block_on(running.run(server, std::future::pending())));
    let start = Instant::now();
    while status(health, "/health/started") != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status(health, "/health/ready"), 200);
    // The preStop's way in: the control socket.
    let socket = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "sock"))
        .expect("a control socket in the directory");
    assert!(socket.exists());
    shutdown.trigger("test");
    let report = run.join().unwrap();
    assert_eq!((report.outcome, report.exit_code), (Outcome::Clean, 0));
    assert_eq!(server_line(&report), &HookOutcome::Completed);
    // After the linger, the endpoints are gone.
    assert_eq!(status(health, "/health/live"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_tokio_a_server_that_fails_before_the_shutdown_shuts_the_service_down() {
    let dir = tempfile::tempdir().unwrap();
    let running = Deputy::new("tokio-test", settings(dir.path(), free_port()))
        .start(deputy_tokio::TokioRuntime)
        .unwrap();
    let server = tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err::<(), _>("accept failed")
    });
    let server = async move { server.await.expect("no panic") };
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        running.run(server, std::future::pending()),
    )
    .await
    .unwrap();
    assert_eq!(
        report.reason.to_string(),
        "the server failed: accept failed"
    );
    assert_eq!(
        server_line(&report),
        &HookOutcome::Failed("accept failed".into())
    );
    assert_eq!(report.exit_code, 1);
}

#[test]
fn a_setting_that_cannot_work_is_refused_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let error = Deputy::new("x", settings(dir.path(), 0))
        .start(deputy_smol::AsyncIoRuntime)
        .unwrap_err();
    assert!(error.to_string().contains("health port 0"), "{error}");
    let mut over_budget = settings(dir.path(), free_port());
    over_budget.grace_period = Duration::from_secs(1);
    let error = Deputy::new("x", over_budget)
        .start(deputy_smol::AsyncIoRuntime)
        .unwrap_err();
    assert!(
        error.to_string().contains("more than the grace period"),
        "{error}"
    );
}

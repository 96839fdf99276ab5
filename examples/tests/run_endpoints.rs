//! `deputy run`'s health port: `/shutdown` for an httpGet preStop with a token (and a token
//! too short refused), and `/metrics` when asked for.

use std::process::Command;

mod support;

use rustix::process::Signal as Sig;
use support::run::{assert_said, deputy_run_with_env, run_to_end};
use support::{Proc, deputy as deputy_bin, free_port, http_status};

const TOKEN: &str = "0123456789abcdef0123";

#[test]
fn with_a_token_the_health_port_serves_shutdown_for_an_httpget_prestop() {
    let health = free_port();
    let mut deputy = deputy_run_with_env(
        &[
            "--no-control-socket",
            "--drain-delay",
            "0s",
            "--health-port",
            &health.to_string(),
            "--",
            "sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
        &[("DEPUTY_SHUTDOWN_TOKEN", TOKEN)],
    );
    deputy.expect_out("ready");
    let shutdown = |token: &str| {
        support::http_request(
            health,
            "POST",
            "/shutdown?wait=10s",
            &[("x-deputy-token", token)],
        )
    };
    // A wrong token changes nothing.
    assert_eq!(shutdown("not-the-token-not-the-token").0, 403);
    assert_eq!(http_status(health, "GET", "/health/ready"), 200);
    // The right one: the answer comes when all is done (deputy waits to give it).
    let (status, body) = shutdown(TOKEN);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"type\":\"done\""), "{body}");
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 128 + 15, "{err}");
    assert_said(&err, &["sent SIGTERM to process"]);
}

#[test]
fn a_shutdown_token_too_short_to_be_a_secret_is_refused() {
    let health = free_port().to_string();
    let (code, _, err) = deputy_run_with_env(
        &["--health-port", &health, "--", "true"],
        &[("DEPUTY_SHUTDOWN_TOKEN", "short")],
    )
    .finish()
    .texts();
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["DEPUTY_SHUTDOWN_TOKEN", "at least 16"]);
}

#[test]
fn metrics_are_served_on_the_health_port_when_asked_for() {
    let health = free_port();
    for (args, env) in [
        (vec!["--metrics"], None),
        (vec![], Some(("DEPUTY_METRICS", "1"))),
    ] {
        let mut command = Command::new(deputy_bin());
        command
            .args([
                "run",
                "--no-control-socket",
                "--drain-delay",
                "0s",
                "--health-port",
            ])
            .arg(health.to_string())
            .args(&args)
            .args(["--", "sh", "-c", "echo started; exec sleep 1000"]);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let mut deputy = Proc::spawn(command);
        deputy.expect_out("started");
        let (status, body) = support::http_request(health, "GET", "/metrics", &[]);
        assert_eq!(status, 200, "{args:?} {env:?}: {body}");
        assert!(body.contains("deputy_state{state=\"running\"} 1"), "{body}");
        assert!(body.contains("deputy_ready 1"), "{body}");
        deputy.signal(Sig::TERM);
        assert_eq!(deputy.finish().code, 128 + 15);
    }
    let (code, _, err) = run_to_end(&["--metrics", "--", "true"]);
    assert_eq!(code, 2, "{err}");
    assert_said(&err, &["--metrics needs --health-port"]);
}

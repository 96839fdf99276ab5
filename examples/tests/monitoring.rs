//! examples/k8s/monitoring: the alerting rules pass `promtool check rules` and their unit
//! tests (`promtool test rules`), the dashboard's queries are valid PromQL, and every metric
//! the dashboard, the rules and their tests use is one http-service and `deputy run` serve,
//! scraped through a whole shutdown, its end read during the health server's linger.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use rustix::process::Signal as Sig;
use support::run::deputy_run;
use support::{BOUND, free_port, http_request, http_service_with_health, text};

/// A metric's name and the names of its labels, as served or as used.
type Metrics = BTreeMap<String, BTreeSet<String>>;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("k8s/monitoring")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(monitoring().join(name)).unwrap()
}

/// Whether promtool (Debian's prometheus package; CI installs it) is here, saying "skipped"
/// when not.
fn has_promtool() -> bool {
    let has = Command::new("promtool").arg("--version").output().is_ok();
    if !has {
        eprintln!("skipped: needs promtool (apt-get install prometheus)");
    }
    has
}

/// `promtool ARGS` in `dir`: it must succeed.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    if !has_promtool() {
        return;
    }
    let said = promtool(&monitoring(), &["check", "rules", "deputy-rules.yaml"]);
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&monitoring(), &["test", "rules", "deputy-rules.test.yaml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// Every query of the dashboard, Grafana's variables given values.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deputy-dashboard.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let queries: Vec<String> = panels
        .iter()
        .filter_map(|panel| panel["targets"].as_array())
        .flatten()
        .map(|target| target["expr"].as_str().expect("each target has an expr"))
        .map(|expr| {
            expr.replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$job", ".*")
        })
        .collect();
    assert!(queries.len() >= 15, "{queries:?}");
    queries
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    if !has_promtool() {
        return;
    }
    // promtool parses queries in rule files: each query becomes a recording rule.
    let rules: Vec<serde_json::Value> = dashboard_queries()
        .into_iter()
        .enumerate()
        .map(
            |(i, expr)| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}),
        )
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML.
    std::fs::write(dir.path().join("dashboard.yaml"), file.to_string()).unwrap();
    let said = promtool(dir.path(), &["check", "rules", "dashboard.yaml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The metrics a text in Prometheus' exposition or query format names: each `deputy_`
/// name with the labels written inside braces right after it (none for a bare name).
fn metrics_in(text: &str) -> Metrics {
    let mut found = Metrics::new();
    let mut rest = text;
    while let Some(at) = rest.find("deputy_") {
        let after = &rest[at..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let (name, tail) = after.split_at(len);
        let labels = found.entry(name.to_owned()).or_default();
        if let Some(inside) = tail.strip_prefix('{').and_then(|t| t.split_once('}')) {
            for pair in inside.0.split(',') {
                if let Some((label, _)) = pair.split_once(['=', '!']) {
                    labels.insert(label.trim().to_owned());
                }
            }
        }
        rest = tail;
    }
    found
}

/// What the dashboard, the rules and their tests use (comments left out: they name
/// families, such as `deputy_drain_*`).
fn used() -> Metrics {
    let mut used = Metrics::new();
    let yaml = ["deputy-rules.yaml", "deputy-rules.test.yaml"]
        .map(read)
        .join("\n");
    let code: String = yaml
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for text in dashboard_queries().iter().chain([&code]) {
        for (name, labels) in metrics_in(text) {
            used.entry(name).or_default().extend(labels);
        }
    }
    // Target labels, attached by the scrape, not served.
    for labels in used.values_mut() {
        labels.retain(|label| !["job", "instance"].contains(&label.as_str()));
    }
    assert!(used.len() >= 14, "{used:?}");
    used
}

/// Scrapes `/metrics` on `port` once, adding every metric served to `served`; returns the
/// text.
fn scrape(port: u16, served: &mut Metrics) -> String {
    let (status, body) = http_request(port, "GET", "/metrics", &[]);
    assert_eq!(status, 200, "{body}");
    for (name, labels) in metrics_in(&body) {
        served.entry(name).or_default().extend(labels);
    }
    body
}

/// Scrapes `/metrics` on `port` until the shutdown is done (bounded), keeping every metric
/// served on the way: while shutting down, and at Done.
fn scrape_through_the_end(port: u16, served: &mut Metrics) {
    let deadline = Instant::now() + BOUND;
    loop {
        let body = scrape(port, served);
        if body.contains("deputy_state{state=\"done\"} 1") {
            return;
        }
        assert!(Instant::now() < deadline, "not done: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails unless every metric `used` is `served` (by `what`), with every label it is used
/// with.
fn assert_served(used: &Metrics, served: &Metrics, what: &str) {
    for (name, labels) in used {
        let served_labels = served
            .get(name)
            .unwrap_or_else(|| panic!("{what} does not serve {name}; it serves {served:?}"));
        assert!(
            labels.is_subset(served_labels),
            "{what} serves {name} with {served_labels:?}, used with {labels:?}"
        );
    }
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_served_by_http_service() {
    let dir = tempfile::tempdir().unwrap();
    let (service, port, health) = http_service_with_health(
        dir.path(),
        &["--metrics", "--drain-delay", "1s", "--health-linger", "10s"],
        &[],
    );
    let mut served = Metrics::new();
    scrape(health, &mut served);
    service.signal(Sig::TERM);
    arrive_late(port);
    scrape_through_the_end(health, &mut served);
    let done_at = Instant::now();
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    // It lingered, so a scrape every few seconds reads the end.
    assert!(done_at.elapsed() > Duration::from_secs(5), "no linger");
    assert_served(&used(), &served, "http-service");
}

/// A request to `port` a moment after the trigger, in the drain delay: late traffic, for
/// `deputy_last_new_traffic_seconds` (served once some came).
fn arrive_late(port: u16) {
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = http_request(port, "GET", "/", &[]);
    assert_ne!(status, 0, "the listener is open through the drain delay");
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_served_by_deputy_run() {
    let dir = tempfile::tempdir().unwrap();
    let (health, port) = (free_port().to_string(), free_port());
    // A child that listens on `port` (deputy sees its connections) and answers nothing.
    let child = format!(
        "import socket, time\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         print('started', flush=True)\n\
         time.sleep(1000)"
    );
    let mut deputy = deputy_run(&[
        "--ipc-dir",
        dir.path().to_str().unwrap(),
        "--health-port",
        &health,
        "--ready-port",
        &port.to_string(),
        "--metrics",
        "--drain-delay",
        "1s",
        "--health-linger",
        "10s",
        "--",
        "python3",
        "-c",
        &child,
    ]);
    deputy.expect_out("started");
    let health: u16 = health.parse().unwrap();
    let mut served = Metrics::new();
    scrape(health, &mut served);
    deputy.signal(Sig::TERM);
    std::thread::sleep(Duration::from_millis(300));
    let late = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    scrape_through_the_end(health, &mut served);
    drop(late);
    let ended = deputy.finish();
    assert_eq!(ended.code, 128 + 15, "{}", ended.err());
    assert_served(&used(), &served, "deputy run");
}

/// A linger longer than what is left of the grace period is cut to it: the process exits
/// well before the kubelet's SIGKILL.
#[test]
fn the_linger_never_runs_past_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (service, _, health) = http_service_with_health(
        dir.path(),
        &[
            "--metrics",
            "--drain-delay",
            "0s",
            "--drain-timeout",
            "1s",
            "--grace-period",
            "10s",
            "--health-linger",
            "60s",
        ],
        &[],
    );
    let triggered = Instant::now();
    service.signal(Sig::TERM);
    // Done at once (nothing in flight), then the linger.
    scrape_through_the_end(health, &mut Metrics::new());
    // finish() waits at most BOUND (20 s); a linger of 60 s would fail it.
    let ended = service.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
    assert!(triggered.elapsed() < Duration::from_secs(15));
}

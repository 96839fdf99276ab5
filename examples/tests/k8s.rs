//! The Kubernetes manifests agree with what they run: http-service's defaults, or
//! `deputy run`'s options: probe paths and ports, the preStop, a termination grace period
//! longer than deputy's budget, and a writable /run under a read-only root.

use std::time::Duration;

use deputy_core::{Phase, ShutdownCoordinator};
use deputy_examples::http_service as defaults;
use serde::Deserialize;
use serde_yaml::Value;

mod support;

/// The YAML documents of `examples/k8s/<file>`.
fn documents(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("k8s")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect()
}

fn get<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(index) => &v[index],
            Err(_) => &v[*key],
        })
}

/// The first item of the YAML sequence `list` that `matches`.
fn find(list: &Value, matches: impl Fn(&Value) -> bool) -> Option<&Value> {
    list.as_sequence()?.iter().find(|item| matches(item))
}

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap()
}

#[test]
fn the_deployment_agrees_with_the_service() {
    a_front_door_deployment_agrees_with_its_service("deployment.yaml");
}

#[test]
fn the_axum_deployment_agrees_with_the_front_door() {
    a_front_door_deployment_agrees_with_its_service("axum-service.yaml");
}

/// A Deployment of a service on the front door (http-service, axum-service): its settings
/// are the front door's defaults (or fit the budget), its probes and preStop deputy's.
fn a_front_door_deployment_agrees_with_its_service(file: &str) {
    let docs = documents(file);
    let (pod, container) = pod_and_container(&docs);
    assert!(
        container.get("startupProbe").is_some(),
        "a startupProbe on /health/started"
    );

    // The service's own budget, from the manifest's environment or the defaults.
    let env = |name: &str, default: &str| -> String {
        env_of(container, name).unwrap_or(default).to_owned()
    };
    let grace = duration(&env("DEPUTY_GRACE_PERIOD", defaults::GRACE_PERIOD));
    let delay = duration(&env("DEPUTY_DRAIN_DELAY", defaults::DRAIN_DELAY));
    let timeout = duration(&env("DEPUTY_DRAIN_TIMEOUT", defaults::DRAIN_TIMEOUT));
    assert_eq!(grace, duration(defaults::GRACE_PERIOD));
    assert_eq!(delay, duration(defaults::DRAIN_DELAY));
    assert_eq!(timeout, duration(defaults::DRAIN_TIMEOUT));
    let health_port: u16 = env("DEPUTY_HEALTH_CHECK_PORT", "8081").parse().unwrap();
    assert_eq!(health_port, defaults::HEALTH_PORT);
    assert_eq!(env("DEPUTY_IPC_DIR", "/run"), "/run");

    // The plan fits the budget (build refuses it otherwise)...
    ShutdownCoordinator::builder()
        .grace_period(grace)
        .drain_delay(delay)
        .drain_timeout(timeout)
        .phase(
            Phase::new("stop-accepting")
                .timeout(Duration::from_secs(defaults::STOP_ACCEPTING_SECS)),
        )
        .build(deputy_core::ManualClock::new())
        .expect("the service's plan fits its grace period");
    // ...and the budget fits Kubernetes' grace period, with time left to exit.
    let k8s_grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(k8s_grace) >= grace + Duration::from_secs(2),
        "terminationGracePeriodSeconds {k8s_grace} leaves no time after the service's {grace:?}"
    );

    assert_probes_and_prestop(container, health_port);
    // The service port.
    let ports: Vec<_> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(ports.contains(&u64::from(defaults::PORT)) && ports.contains(&u64::from(health_port)));

    assert_run_is_writable(pod, container);
    assert_termination_message(container);
    assert_eq!(service_target_port(&docs), u64::from(defaults::PORT));
}

/// The pod spec and its first container, from the Deployment among `docs`.
fn pod_and_container(docs: &[Value]) -> (&Value, &Value) {
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = get(deployment, &["spec", "template", "spec"]);
    (pod, get(pod, &["containers", "0"]))
}

/// Probes on deputy's endpoints at `health_port`; the preStop is `deputy terminate`, with
/// no sleep and no shell.
fn assert_probes_and_prestop(container: &Value, health_port: u16) {
    assert_probes(container, health_port);
    let command: Vec<_> = get(container, &["lifecycle", "preStop", "exec", "command"])
        .as_sequence()
        .expect("an exec preStop")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command, ["deputy", "terminate"]);
}

/// Probes on deputy's endpoints at `health_port` (a start-up probe, if there is one, too).
fn assert_probes(container: &Value, health_port: u16) {
    let startup = container
        .get("startupProbe")
        .map(|_| ("startupProbe", "/health/started"));
    for (probe, path) in [
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ]
    .into_iter()
    .chain(startup)
    {
        assert_eq!(
            get(container, &[probe, "httpGet", "path"]).as_str(),
            Some(path)
        );
        assert_eq!(
            get(container, &[probe, "httpGet", "port"]).as_u64(),
            Some(u64::from(health_port))
        );
    }
}

/// The termination message where deputy writes it, the log's tail when it did not.
fn assert_termination_message(container: &Value) {
    assert_eq!(
        container["terminationMessagePath"].as_str(),
        Some(deputy_ipc::DEFAULT_TERMINATION_LOG)
    );
    assert_eq!(
        container["terminationMessagePolicy"].as_str(),
        Some("FallbackToLogsOnError")
    );
}

/// A read-only root, and /run an in-memory emptyDir for the control socket.
fn assert_run_is_writable(pod: &Value, container: &Value) {
    assert_eq!(
        get(container, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    let mount =
        find(&container["volumeMounts"], |m| m["mountPath"] == "/run").expect("/run mounted");
    // Its own directory of the volume: no other container's pid file or sockets.
    assert_eq!(
        mount["subPath"], container["name"],
        "subPath: the container's name"
    );
    let volume = find(&pod["volumes"], |v| v["name"] == mount["name"]).expect("the /run volume");
    assert_eq!(
        get(volume, &["emptyDir", "medium"]).as_str(),
        Some("Memory")
    );
}

/// The port the Service sends traffic to.
fn service_target_port(docs: &[Value]) -> u64 {
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("a Service");
    get(service, &["spec", "ports", "0", "targetPort"])
        .as_u64()
        .expect("a numeric targetPort")
}

#[test]
fn the_supervised_deployment_agrees_with_deputy_run() {
    let docs = documents("supervised.yaml");
    let (pod, container) = pod_and_container(&docs);
    assert!(
        container.get("startupProbe").is_some(),
        "a startupProbe on /health/started"
    );
    let strings = |key: &str| -> Vec<String> {
        container[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("no {key}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let command = strings("command");
    assert_eq!(command[..2], ["deputy", "run"]);
    assert_eq!(command.last().map(String::as_str), Some("--"));
    let option = |name: &str| -> Option<String> {
        command
            .iter()
            .find_map(|arg| arg.strip_prefix(&format!("--{name}=")).map(str::to_owned))
    };
    let grace = duration(&option("grace").unwrap_or_else(|| "25s".into()));
    let delay = duration(&option("drain-delay").unwrap_or_else(|| "5s".into()));
    let health_port: u16 = option("health-port")
        .expect("--health-port")
        .parse()
        .unwrap();
    assert!(delay < grace);
    // deputy's budget ends before the kubelet's SIGKILL, with time to kill, reap and exit.
    let k8s_grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        Duration::from_secs(k8s_grace) >= grace + Duration::from_secs(2),
        "terminationGracePeriodSeconds {k8s_grace} leaves no time after --grace {grace:?}"
    );
    assert_probes_and_prestop(container, health_port);
    assert_run_is_writable(pod, container);
    assert_termination_message(container);
    let args = strings("args");
    assert_eq!(args[0], "plain-server");
    let port: u64 = args[args.iter().position(|a| a == "--port").unwrap() + 1]
        .parse()
        .unwrap();
    assert_eq!(service_target_port(&docs), port);
    // Readiness waits for the port the Service sends traffic to.
    assert_eq!(option("ready-port"), Some(port.to_string()));

    // deputy accepts these very options: run them in front of `true` (with a free health
    // port and a temporary control directory, so the test needs neither root nor 8081).
    let target = support::target_dir();
    let dir = tempfile::tempdir().unwrap();
    let free = support::free_port();
    let options: Vec<String> = command[1..command.len() - 1]
        .iter()
        .map(|arg| match arg.strip_prefix("--health-port=") {
            Some(_) => format!("--health-port={free}"),
            None => arg.clone(),
        })
        .collect();
    let out = std::process::Command::new(target.join("deputy"))
        .args(&options)
        .arg("--ipc-dir")
        .arg(dir.path())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of environment variable `name` in `container`, if the manifest sets it.
fn env_of<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

#[test]
fn the_httpget_prestop_deployment_agrees_with_the_service_and_stops_it() {
    let docs = documents("http-prestop.yaml");
    let (pod, container) = pod_and_container(&docs);
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("a Secret");
    let token = get(secret, &["stringData", "token"]).as_str().unwrap();
    assert!(token.len() >= deputy_ipc::MIN_SHUTDOWN_TOKEN);

    // The token file is the Secret's key, where the Secret is mounted.
    let token_file = env_of(container, deputy_ipc::SHUTDOWN_TOKEN_FILE_ENV).expect("a token file");
    let volume = find(&pod["volumes"], |v| {
        get(v, &["secret", "secretName"]) == &secret["metadata"]["name"]
    })
    .expect("the Secret as a volume");
    let mount = find(&container["volumeMounts"], |m| m["name"] == volume["name"])
        .expect("the Secret's volume mounted");
    assert_eq!(
        token_file,
        format!("{}/token", mount["mountPath"].as_str().unwrap())
    );

    // The preStop: /shutdown on the health port, with the token, waiting at most the grace
    // period (within the pod's).
    let health_port: u16 = env_of(container, "DEPUTY_HEALTH_CHECK_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let prestop = get(container, &["lifecycle", "preStop", "httpGet"]);
    assert_eq!(prestop["port"].as_u64(), Some(u64::from(health_port)));
    let header = get(prestop, &["httpHeaders", "0"]);
    assert_eq!(
        header["name"].as_str(),
        Some(deputy_ipc::SHUTDOWN_TOKEN_HEADER)
    );
    assert_eq!(header["value"].as_str(), Some(token));
    let path = prestop["path"].as_str().unwrap();
    let wait = duration(
        path.strip_prefix("/shutdown?wait=")
            .expect("/shutdown?wait="),
    );
    let grace = duration(env_of(container, "DEPUTY_GRACE_PERIOD").unwrap());
    assert!(wait <= grace);
    let k8s_grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(Duration::from_secs(k8s_grace) >= grace + Duration::from_secs(2));
    assert_run_is_writable(pod, container);
    assert_termination_message(container);

    // And it works: http-service with the Secret's token in a file, then the kubelet's
    // request (a wrong token first, which must change nothing).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let port = support::free_port();
    let health = support::free_port();
    let mut command = std::process::Command::new(support::example("http-service"));
    command
        .args([
            "--port",
            &port.to_string(),
            "--health-port",
            &health.to_string(),
        ])
        .args(["--drain-delay", "0s", "--ipc-dir"])
        .arg(dir.path())
        .env(deputy_ipc::SHUTDOWN_TOKEN_FILE_ENV, &file);
    let mut service = support::Proc::spawn(command);
    service.expect_out("serving");
    let get_with = |token: &str| {
        support::http_request(
            health,
            "GET",
            path,
            &[(deputy_ipc::SHUTDOWN_TOKEN_HEADER, token)],
        )
    };
    assert_eq!(get_with("not-the-token-at-all").0, 403);
    assert_eq!(support::http_status(health, "GET", "/health/ready"), 200);
    let (status, body) = get_with(token);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"type\":\"done\"") && body.contains("\"outcome\":\"clean\""),
        "{body}"
    );
    assert_eq!(service.finish().code, 0);
}

/// Starts `deputy terminate --ipc-dir DIR` as a preStop would; it must succeed.
fn prestop_in(dir: &std::path::Path) {
    let out = std::process::Command::new(support::deputy())
        .args(["terminate", "--ipc-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn the_sidecar_pod_gives_each_container_its_own_directory_and_prestop() {
    let docs = documents("sidecar.yaml");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = get(deployment, &["spec", "template", "spec"]);
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 2);
    let mut ports = Vec::new();
    for container in containers {
        let health = get(container, &["readinessProbe", "httpGet", "port"])
            .as_u64()
            .unwrap();
        assert_probes_and_prestop(container, health as u16);
        assert_run_is_writable(pod, container);
        assert_termination_message(container);
        for port in container["ports"].as_sequence().unwrap() {
            ports.push(port["containerPort"].as_u64().unwrap());
        }
    }
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        ports.len(),
        "two containers on one port: {ports:?}"
    );

    // What the subPaths buy, with real processes: the app and the sidecar each in its own
    // directory; each preStop stops its own container and only that.
    let (app_dir, proxy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut app = support::Proc::start(
        support::example("http-service"),
        ["--port", &support::free_port().to_string(), "--health-port"]
            .into_iter()
            .map(str::to_owned)
            .chain([
                support::free_port().to_string(),
                "--drain-delay".into(),
                "0s".into(),
            ])
            .chain(["--ipc-dir".into(), app_dir.path().display().to_string()]),
    );
    app.expect_out("http-service: serving");
    let proxy_port = support::free_port().to_string();
    let mut proxy = support::Proc::start(
        support::deputy(),
        [
            "run",
            "--drain-delay",
            "0s",
            "--map-exit",
            "143",
            "--ipc-dir",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([proxy_dir.path().display().to_string(), "--".into()])
        .chain([support::example("plain-server").display().to_string()])
        .chain(["--port".into(), proxy_port]),
    );
    proxy.expect_out("plain-server: listening");
    prestop_in(app_dir.path());
    assert_eq!(app.wait_exit().code(), Some(0));
    assert!(
        proxy.try_wait().is_none(),
        "the app's preStop stopped the sidecar"
    );
    prestop_in(proxy_dir.path());
    assert_eq!(proxy.wait_exit().code(), Some(0));
}

#[test]
fn without_subpaths_the_pid_file_names_one_container_only() {
    // The failure the subPaths prevent: two deputy entrypoints in one directory. The pid
    // file can name one of them only (the first, which a second leaves it to while it
    // serves), so the other container's preStop, `deputy terminate` with no pid, would
    // reach the wrong process.
    let shared = tempfile::tempdir().unwrap();
    let start = || {
        let mut run = support::Proc::start(
            support::deputy(),
            ["run", "--drain-delay", "0s", "--ipc-dir"]
                .into_iter()
                .map(str::to_owned)
                .chain([shared.path().display().to_string()])
                .chain(["--", "sh", "-c", "echo started; exec sleep 1000"].map(str::to_owned)),
        );
        run.expect_out("started");
        run
    };
    let first = start();
    let second = start();
    let named = deputy_ipc::entrypoint_pid(shared.path());
    assert_eq!(
        named,
        Some(first.pid()),
        "the pid file names the first one only"
    );
    assert_ne!(named, Some(second.pid()));
}

#[test]
fn the_stream_service_deployment_fits_its_window_and_drain_in_the_grace_period() {
    let docs = documents("stream-service.yaml");
    let (pod, container) = pod_and_container(&docs);
    assert_long_lived_plan_fits(pod, container);
    let health_port = env_port(container, "DEPUTY_HEALTH_CHECK_PORT");
    assert_probes_and_prestop(container, health_port);
    assert_run_is_writable(pod, container);
    assert_termination_message(container);
    assert_eq!(
        service_target_port(&docs),
        u64::from(env_port(container, "PORT"))
    );
}

#[test]
fn the_grpc_deployment_probes_the_grpc_health_service_and_fits_its_grace_period() {
    let docs = documents("grpc-service.yaml");
    let (pod, container) = pod_and_container(&docs);
    assert_long_lived_plan_fits(pod, container);
    let port = env_port(container, "PORT");
    // Readiness through grpc.health.v1 on the service's own port (what deputy turns
    // NOT_SERVING at the trigger); liveness on deputy's HTTP endpoint.
    assert_eq!(
        get(container, &["readinessProbe", "grpc", "port"]).as_u64(),
        Some(u64::from(port))
    );
    let health_port = env_port(container, "DEPUTY_HEALTH_CHECK_PORT");
    assert_eq!(
        get(container, &["livenessProbe", "httpGet", "port"]).as_u64(),
        Some(u64::from(health_port))
    );
    let command = get(container, &["lifecycle", "preStop", "exec", "command"]);
    assert_eq!(command[0], "deputy");
    assert_eq!(command[1], "terminate");
    assert_run_is_writable(pod, container);
    assert_termination_message(container);
    assert_eq!(service_target_port(&docs), u64::from(port));
}

/// A port from the container's environment.
fn env_port(container: &Value, name: &str) -> u16 {
    env_of(container, name)
        .unwrap_or_else(|| panic!("{name} is set"))
        .parse()
        .unwrap()
}

/// The drain delay, then every long-lived client told to move within the window, then the
/// drain's wait for them and for the calls in flight: all within deputy's budget, which the
/// pod's grace period exceeds; and the plan as the service builds it is accepted.
fn assert_long_lived_plan_fits(pod: &Value, container: &Value) {
    let env = |name: &str| -> Duration {
        duration(env_of(container, name).unwrap_or_else(|| panic!("{name} is set")))
    };
    let grace = env("DEPUTY_GRACE_PERIOD");
    let delay = env("DEPUTY_DRAIN_DELAY");
    let window = env("DEPUTY_DISCONNECT_WINDOW");
    let timeout = env("DEPUTY_DRAIN_TIMEOUT");
    assert!(
        delay + window + timeout <= grace,
        "drain delay {delay:?} + window {window:?} + drain timeout {timeout:?} exceed the grace period {grace:?}"
    );
    // A window longer than the drain timeout, or a budget too small for the phases, is
    // refused.
    ShutdownCoordinator::builder()
        .grace_period(grace)
        .drain_delay(delay)
        .disconnect_window(window)
        .drain_timeout(timeout)
        .phase(
            Phase::new("stop-accepting")
                .timeout(Duration::from_secs(defaults::STOP_ACCEPTING_SECS)),
        )
        .build(deputy_core::ManualClock::new())
        .expect("the service's plan fits its grace period");
    let k8s_grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(k8s_grace) >= grace + Duration::from_secs(2),
        "terminationGracePeriodSeconds {k8s_grace} leaves no time after the service's {grace:?}"
    );
}

/// The header line `minimum Kubernetes: 1.N` of a manifest, if it has one.
fn minimum_kubernetes(file: &str) -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("k8s")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let at = text.find("minimum Kubernetes: ")? + "minimum Kubernetes: ".len();
    let version: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Some(version.trim_end_matches('.').to_owned())
}

/// The native `sleep` preStop is the drain delay: the library's own is zero, and the sleep
/// plus the service's budget fit the grace period with room for the exit.
#[test]
fn the_sleep_prestop_deployment_waits_once_and_fits_its_grace_period() {
    let docs = documents("sleep-prestop.yaml");
    let (pod, container) = pod_and_container(&docs);
    let sleep = get(container, &["lifecycle", "preStop", "sleep", "seconds"])
        .as_u64()
        .expect("a sleep preStop");
    assert!(
        get(container, &["lifecycle", "preStop", "exec"]).is_null(),
        "one preStop action"
    );
    assert_eq!(env_of(container, "DEPUTY_DRAIN_DELAY"), Some("0s"));
    let budget = duration(env_of(container, "DEPUTY_GRACE_PERIOD").unwrap());
    let grace = get(pod, &["terminationGracePeriodSeconds"])
        .as_u64()
        .unwrap();
    assert!(
        Duration::from_secs(sleep) + budget < Duration::from_secs(grace),
        "sleep {sleep}s + budget {budget:?} must fit in {grace}s"
    );
    assert_probes(container, env_port(container, "DEPUTY_HEALTH_CHECK_PORT"));
    assert_eq!(
        minimum_kubernetes("sleep-prestop.yaml").as_deref(),
        Some("1.34")
    );
}

/// The restart rules restart in place on the exit codes deputy gives a shutdown that cut
/// work off (timed out, abandoned, SIGKILL), and not on a clean one or a failed hook.
#[test]
fn the_restart_rules_follow_deputys_exit_codes() {
    let docs = documents("restart-rules.yaml");
    let container = &get(&docs[0], &["spec", "template", "spec", "containers"])[0];
    let rule = &get(container, &["restartPolicyRules"])[0];
    assert_eq!(rule["action"].as_str(), Some("Restart"));
    assert_eq!(rule["exitCodes"]["operator"].as_str(), Some("In"));
    let codes: Vec<i64> = rule["exitCodes"]["values"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let defaults = deputy_core::ExitCodes::default();
    let restarted = [
        defaults.timed_out,
        defaults.abandoned,
        128 + 9, // SIGKILL, as deputy run reports a child killed by it
    ];
    assert_eq!(codes, restarted.map(i64::from));
    assert!(!codes.contains(&i64::from(defaults.clean)));
    assert!(!codes.contains(&i64::from(defaults.failed)));
    assert_eq!(
        minimum_kubernetes("restart-rules.yaml").as_deref(),
        Some("1.35")
    );
}

/// The native sidecar: an init container with `restartPolicy: Always`, no preStop and no
/// drain delay (the kubelet stops it only once the application is gone), its own /run
/// directory, in front of the application's port; its `deputy run` command line, as written,
/// runs tcp-proxy and ends cleanly on the kubelet's SIGTERM.
#[test]
fn the_native_sidecar_pod_stops_its_sidecar_last_and_quickly() {
    let docs = documents("native-sidecar.yaml");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod = get(deployment, &["spec", "template", "spec"]);
    let sidecar = &pod["initContainers"][0];
    let app = &pod["containers"][0];
    assert_eq!(sidecar["restartPolicy"].as_str(), Some("Always"));
    assert!(
        sidecar["lifecycle"].is_null(),
        "a native sidecar needs no preStop"
    );
    assert_probes_and_prestop(app, env_port(app, "DEPUTY_HEALTH_CHECK_PORT"));
    assert_run_is_writable(pod, app);
    assert_run_is_writable(pod, sidecar);
    assert_ne!(
        get(sidecar, &["volumeMounts", "0", "subPath"]),
        get(app, &["volumeMounts", "0", "subPath"])
    );
    assert_eq!(
        minimum_kubernetes("native-sidecar.yaml").as_deref(),
        Some("1.29")
    );
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let (command, args) = (strings(&sidecar["command"]), strings(&sidecar["args"]));
    assert!(
        command.contains(&"--drain-delay=0s".to_owned()),
        "{command:?}"
    );
    // In front of the application: the Service's port is the sidecar's, its upstream the
    // application's.
    let app_port = get(app, &["args", "1"]).as_str().unwrap().to_owned();
    assert_eq!(args.last().unwrap(), &format!("127.0.0.1:{app_port}"));
    assert_eq!(
        service_target_port(&docs),
        get(sidecar, &["ports", "0", "containerPort"])
            .as_u64()
            .unwrap()
    );
    // The grace period covers the application's budget, then the sidecar's.
    let app_budget = duration(env_of(app, "DEPUTY_GRACE_PERIOD").unwrap());
    let grace_flag = command
        .iter()
        .find_map(|a| a.strip_prefix("--grace="))
        .unwrap();
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(app_budget + duration(grace_flag) < grace);

    // The command line as written (ports made free), then the kubelet's SIGTERM.
    let (proxy_port, health) = (support::free_port(), support::free_port());
    let mut line: Vec<String> = command[1..]
        .iter()
        .map(|a| match a.split_once('=') {
            Some(("--health-port", _)) => format!("--health-port={health}"),
            Some(("--ready-port", _)) => format!("--ready-port={proxy_port}"),
            _ => a.clone(),
        })
        .collect();
    line.push(support::example("tcp-proxy").display().to_string());
    line.extend(["--port".to_owned(), proxy_port.to_string()]);
    line.extend(args[3..].iter().cloned());
    let mut proxy = support::Proc::start(support::deputy(), line);
    proxy.expect_out("tcp-proxy: listening");
    proxy.signal(rustix::process::Signal::TERM);
    let ended = proxy.finish();
    assert_eq!(ended.code, 0, "{}", ended.err());
}

#[test]
fn the_grpc_tls_deployment_mounts_its_secret_where_the_service_reads_it_and_probes_over_http() {
    let docs = documents("grpc-tls.yaml");
    let (pod, container) = pod_and_container(&docs);
    assert_long_lived_plan_fits(pod, container);
    // The certificate and key where the Secret's volume is mounted, whole (files under a
    // subPath are never updated, so a renewal would not reach the service).
    let mount = find(get(container, &["volumeMounts"]), |mount| {
        get(mount, &["name"]).as_str() == Some("tls")
    })
    .expect("the tls volume is mounted");
    assert!(mount.get("subPath").is_none(), "{mount:?}");
    let at = get(mount, &["mountPath"]).as_str().unwrap();
    for (variable, file) in [
        ("DEPUTY_TLS_CERT", "tls.crt"),
        ("DEPUTY_TLS_KEY", "tls.key"),
    ] {
        assert_eq!(env_of(container, variable), Some(&*format!("{at}/{file}")));
    }
    let volume = find(get(pod, &["volumes"]), |volume| {
        get(volume, &["name"]).as_str() == Some("tls")
    })
    .unwrap();
    assert!(get(volume, &["secret", "secretName"]).as_str().is_some());
    // The kubelet's gRPC probe speaks no TLS: readiness and liveness on deputy's endpoints.
    let health_port = env_port(container, "DEPUTY_HEALTH_CHECK_PORT");
    assert!(container["readinessProbe"].get("grpc").is_none());
    assert_probes_and_prestop(container, health_port);
    assert_run_is_writable(pod, container);
    assert_termination_message(container);
    assert_eq!(
        service_target_port(&docs),
        u64::from(env_port(container, "PORT"))
    );
    // grpc-service takes these settings as written.
    let age = duration(env_of(container, "DEPUTY_MAX_CONNECTION_AGE").unwrap());
    assert_eq!(age, Duration::from_secs(300));
}

//! The Kubernetes manifests agree with http-service's defaults: probe paths and ports, the
//! preStop, a termination grace period longer than the service's budget, and a writable /run
//! under a read-only root.

use std::time::Duration;

use deputy_core::{Phase, ShutdownCoordinator};
use deputy_examples::http_service as defaults;
use serde::Deserialize;
use serde_yaml::Value;

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/deployment.yaml"))
        .unwrap();
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

fn duration(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap()
}

#[test]
fn the_deployment_agrees_with_the_service() {
    let docs = documents();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = get(deployment, &["spec", "template", "spec"]);
    let container = get(pod, &["containers", "0"]);

    // The service's own budget, from the manifest's environment or the defaults.
    let env = |name: &str, default: &str| -> String {
        container["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or(default)
            .to_owned()
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

    // Probes on deputy's endpoints.
    for (probe, path) in [
        ("readinessProbe", "/health/ready"),
        ("livenessProbe", "/health/live"),
    ] {
        assert_eq!(
            get(container, &[probe, "httpGet", "path"]).as_str(),
            Some(path)
        );
        assert_eq!(
            get(container, &[probe, "httpGet", "port"]).as_u64(),
            Some(u64::from(health_port))
        );
    }
    // The preStop is deputy terminate, no sleep, no shell.
    let command: Vec<_> = get(container, &["lifecycle", "preStop", "exec", "command"])
        .as_sequence()
        .expect("an exec preStop")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(command, ["deputy", "terminate"]);
    // The service port.
    let ports: Vec<_> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(ports.contains(&u64::from(defaults::PORT)) && ports.contains(&u64::from(health_port)));

    // Read-only root, and /run an in-memory emptyDir for the socket.
    assert_eq!(
        get(container, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/run")
        .expect("/run mounted");
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the /run volume");
    assert_eq!(
        get(volume, &["emptyDir", "medium"]).as_str(),
        Some("Memory")
    );

    // The Service sends traffic to the service port.
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("a Service");
    assert_eq!(
        get(service, &["spec", "ports", "0", "targetPort"]).as_u64(),
        Some(u64::from(defaults::PORT))
    );
}

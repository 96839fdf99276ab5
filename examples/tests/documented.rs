//! The documented commands and settings, as tests: every flag each binary's `--help` shows,
//! and every `DEPUTY_*` variable README.md and the `--help`s name, written as documented,
//! is accepted by each binary that documents it (it starts and does its work); and the
//! settings whose effect can be seen from outside have it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use support::{Proc, deputy, example, free_port, http_status, text};

/// The services whose `--help` is checked, and the line each prints once it serves.
const SERVICES: [(&str, &str); 5] = [
    ("http-service", "serving on"),
    ("axum-service", "serving on"),
    ("stream-service", "serving on"),
    ("grpc-service", "serving on"),
    ("ipc-service", "listening on"),
];

fn help(program: &Path, sub: Option<&str>) -> String {
    let out = Command::new(program)
        .args(sub)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{program:?} --help");
    text(&out.stdout)
}

/// The flags a `--help` lists: `--name` and whether it takes a value.
fn flags(help: &str) -> Vec<(String, bool)> {
    help.lines()
        // An option's own line (clap indents them by 2 or 6), not a line of prose or of
        // some option's help that names it.
        .filter_map(|line| {
            line.strip_prefix("      --")
                .or_else(|| line.strip_prefix("  -h, --"))
                .map(|rest| format!("--{rest}"))
        })
        .filter_map(|line: String| {
            let mut words = line.split_whitespace();
            let name = words.next()?.to_owned();
            let takes_value = words.next().is_some_and(|w| w.starts_with('<'));
            (name != "--help" && name != "--version").then_some((name, takes_value))
        })
        .collect()
}

/// Every `DEPUTY_X` named in `text` (not the bare prefix).
fn variables(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("DEPUTY_") && word.len() > "DEPUTY_".len())
        .map(str::to_owned)
        .collect()
}

/// What a test writes for a flag's value, as the docs' examples do.
fn sample(flag: &str, dir: &Path) -> String {
    let port = || free_port().to_string();
    match flag {
        "--grace" | "--grace-period" => "40s".into(),
        "--drain-delay" => "0s".into(),
        "--drain-delay-max" => "6s".into(),
        "--quiet-period" => "2s".into(),
        "--stop-signal" => "QUIT".into(),
        // DEPUTY_TRIGGER_SIGNALS is --trigger-signal's, a list.
        "--trigger-signal" | "--trigger-signals" => "TERM,INT,QUIT".into(),
        "--port" | "--health-port" | "--ready-port" => port(),
        "--ready-url" | "--stop-url" => format!("http://127.0.0.1:{}/", port()),
        "--map-exit" => "143".into(),
        "--ipc-dir" => dir.display().to_string(),
        "--stop-command" => "true".into(),
        "--hook-ms" => "10".into(),
        // Written by `tls_files`.
        "--tls-cert" => dir.join("tls.crt").display().to_string(),
        "--tls-key" => dir.join("tls.key").display().to_string(),
        _ => "3s".into(), // every other value these binaries take is a duration
    }
}

/// A certificate and its key in `dir`, where `sample` points `--tls-cert` and `--tls-key`.
fn tls_files(dir: &Path) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls.crt"), made.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), made.signing_key.serialize_pem()).unwrap();
}

/// What a service's flag needs beside it: the other half of the TLS pair.
fn service_companions(flag: &str, dir: &Path) -> Vec<String> {
    match flag {
        "--tls-cert" => vec!["--tls-key".into(), sample("--tls-key", dir)],
        "--tls-key" => vec!["--tls-cert".into(), sample("--tls-cert", dir)],
        _ => Vec::new(),
    }
}

/// What a flag of `deputy run` needs beside it (what `deputy run --help` says it needs).
fn companions(flag: &str) -> Vec<String> {
    let port = free_port().to_string();
    let words: &[&str] = match flag {
        "--watchdog" => &["--notify"],
        "--drain-delay-max" => &["--ready-port", &port],
        "--quiet-period" => &["--drain-delay-max", "6s", "--ready-port", &port],
        "--metrics" => &["--health-port", &port],
        _ => &[],
    };
    words.iter().map(|w| w.to_string()).collect()
}

/// `deputy run ARGS -- true`, with `env`: it must run the child and exit with its 0.
fn deputy_run_accepts(args: &[String], env: &[(String, String)], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(deputy());
    command
        .args(["run", "--ipc-dir"])
        .arg(dir.path())
        .args(args)
        .args(["--", "true"])
        .envs(env.iter().map(|(k, v)| (k, v)));
    let ended = Proc::spawn(command).finish();
    assert_eq!(ended.code, 0, "{what}: {}", ended.err());
}

/// The service `name` with `args` and `env`: it must start serving.
fn service_accepts(name: &str, ready: &str, args: &[String], env: &[(String, String)], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(example(name));
    let given = |flag: &str| args.iter().any(|a| a == flag);
    if name != "ipc-service" && !given("--port") {
        command.args(["--port", &free_port().to_string()]);
    }
    if !given("--health-port") {
        command.args(["--health-port", &free_port().to_string()]);
    }
    if !given("--ipc-dir") {
        command.arg("--ipc-dir").arg(dir.path());
    }
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    let mut service = Proc::spawn(command);
    eprintln!("checking {what}");
    let line = service.expect_out(ready);
    assert!(line.contains(ready), "{what}");
    // Killed on drop: starting is what this checks.
}

#[test]
fn every_flag_each_binary_documents_is_accepted_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let run_flags = flags(&help(&deputy(), Some("run")));
    assert!(run_flags.len() > 15, "{run_flags:?}");
    for (flag, takes_value) in run_flags {
        let mut args = companions(&flag);
        if flag != "--ipc-dir" {
            args.push(flag.clone());
            if takes_value {
                args.push(sample(&flag, dir.path()));
            }
            deputy_run_accepts(&args, &[], &format!("deputy run {args:?}"));
        }
    }
    tls_files(dir.path());
    for (name, ready) in SERVICES {
        for (flag, takes_value) in flags(&help(&example(name), None)) {
            let mut args = service_companions(&flag, dir.path());
            args.push(flag.clone());
            if takes_value {
                args.push(sample(&flag, dir.path()));
            }
            service_accepts(name, ready, &args, &[], &format!("{name} {args:?}"));
        }
    }
}

/// The value a test gives variable `name`, as the docs write it.
fn value_of(name: &str, dir: &Path, token_file: &Path) -> String {
    match name {
        "DEPUTY_IPC_DIR" => dir.display().to_string(),
        "DEPUTY_LOG_FORMAT" => "json".into(),
        "DEPUTY_TERMINATION_LOG" => dir.join("termination-log").display().to_string(),
        "DEPUTY_SHUTDOWN_TOKEN" => "sixteen-bytes-or-more".into(),
        "DEPUTY_SHUTDOWN_TOKEN_FILE" => token_file.display().to_string(),
        "DEPUTY_ENTRYPOINT" => "0".into(),
        "DEPUTY_METRICS"
        | "DEPUTY_NOTIFY"
        | "DEPUTY_GROUP"
        | "DEPUTY_NO_CONTROL_SOCKET"
        | "DEPUTY_NO_SUBREAPER"
        | "DEPUTY_RAISE_CHILD_NOFILE"
        | "DEPUTY_READY_WHILE_DRAINING" => "1".into(),
        _ => {
            // The option's own: DEPUTY_STOP_SIGNAL is --stop-signal's, and so on.
            let flag = match name {
                "DEPUTY_GRACE_PERIOD" => "--grace-period".to_owned(),
                "DEPUTY_HEALTH_CHECK_PORT" => "--health-port".to_owned(),
                _ => format!(
                    "--{}",
                    name["DEPUTY_".len()..].to_lowercase().replace('_', "-")
                ),
            };
            sample(&flag, dir)
        }
    }
}

/// What a variable of `deputy run` needs beside it, as variables.
fn variable_companions(name: &str) -> Vec<(String, String)> {
    let port = free_port().to_string();
    let pairs: &[(&str, &str)] = match name {
        "DEPUTY_WATCHDOG" => &[("DEPUTY_NOTIFY", "1")],
        "DEPUTY_DRAIN_DELAY_MAX" => &[("DEPUTY_READY_PORT", &port)],
        "DEPUTY_QUIET_PERIOD" => &[
            ("DEPUTY_DRAIN_DELAY_MAX", "6s"),
            ("DEPUTY_READY_PORT", &port),
        ],
        _ => &[],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_variable_the_docs_name_is_accepted_as_written() {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let run_help = help(&deputy(), Some("run"));
    // deputy sets these for the programs it starts; no binary reads them.
    let set_by_deputy = ["DEPUTY_CHILD_PID"];
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sixteen-bytes-or-more\n").unwrap();
    tls_files(dir.path());
    let for_deputy_run: BTreeSet<String> = variables(&readme)
        .union(&variables(&run_help))
        .filter(|name| !set_by_deputy.contains(&name.as_str()))
        .cloned()
        .collect();
    assert!(for_deputy_run.len() > 20, "{for_deputy_run:?}");
    for name in &for_deputy_run {
        let mut env = variable_companions(name);
        env.push((name.clone(), value_of(name, dir.path(), &token_file)));
        deputy_run_accepts(&[], &env, &format!("deputy run with {env:?}"));
    }
    for (service, ready) in SERVICES {
        for name in variables(&help(&example(service), None)) {
            let value = value_of(&name, dir.path(), &token_file);
            let mut env = vec![(name.clone(), value)];
            // The other half of the TLS pair.
            for (half, other) in [
                ("DEPUTY_TLS_CERT", "DEPUTY_TLS_KEY"),
                ("DEPUTY_TLS_KEY", "DEPUTY_TLS_CERT"),
            ] {
                if name == half {
                    env.push((other.into(), value_of(other, dir.path(), &token_file)));
                }
            }
            service_accepts(
                service,
                ready,
                &[],
                &env,
                &format!("{service} with {env:?}"),
            );
        }
    }
}

#[test]
fn documented_variables_take_effect_under_deputy_run() {
    let dir = tempfile::tempdir().unwrap();
    let health = free_port();
    let log = dir.path().join("termination-log");
    let mut command = Command::new(deputy());
    command
        .args(["run", "--drain-delay", "0s", "--", "sh", "-c"])
        .arg("echo ready; while :; do sleep 0.05; done")
        .env("DEPUTY_IPC_DIR", dir.path())
        .env("DEPUTY_HEALTH_CHECK_PORT", health.to_string())
        .env("DEPUTY_METRICS", "1")
        .env("DEPUTY_LOG_FORMAT", "json")
        .env("DEPUTY_TERMINATION_LOG", &log);
    let mut run = Proc::spawn(command);
    run.expect_out("ready");
    // DEPUTY_IPC_DIR: the control socket is there, and `deputy status` finds it.
    let status = Command::new(deputy())
        .arg("status")
        .env("DEPUTY_IPC_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{status:?}");
    // DEPUTY_HEALTH_CHECK_PORT and DEPUTY_METRICS: the endpoints answer there.
    assert_eq!(http_status(health, "GET", "/health/live"), 200);
    assert_eq!(http_status(health, "GET", "/metrics"), 200);
    run.signal(rustix::process::Signal::TERM);
    let ended = run.finish();
    // DEPUTY_LOG_FORMAT=json: every line of deputy's is a JSON object.
    for line in &ended.err {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON line: {line}"));
    }
    // DEPUTY_TERMINATION_LOG: the message is written there.
    let message = std::fs::read_to_string(&log).unwrap();
    assert!(
        message.contains("deputy run exits with code 143"),
        "{message}"
    );
}

/// The README's axum section shows `examples/examples/axum-service.rs` whole (its `//!`
/// header aside): a change to one is a change to the other.
#[test]
fn the_readmes_axum_section_is_axum_service_rs_whole() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let source = std::fs::read_to_string(root.join("examples/axum-service.rs")).unwrap();
    let code: Vec<&str> = source
        .lines()
        .filter(|line| !line.starts_with("//!"))
        .collect();
    let code = code.join("\n");
    assert!(
        readme.contains(code.trim_matches('\n')),
        "README.md's axum section is not examples/examples/axum-service.rs"
    );
}

//! `deputy run`'s arguments, read without clap on the common path.
//!
//! Building clap's parser costs 0.1 to 0.2 ms (the most with musl's allocator, in the static
//! build): a third of what `deputy run -- true` adds to a bare `true`, on every container
//! start. This reads the arguments an entrypoint gives; whatever it would not take exactly as
//! clap does (help, version, short or unknown options, a missing, empty or bad value, an
//! option given twice, a value that starts with `-`, an option's variable set in the
//! environment) makes it return `None`, and clap parses instead, with its messages. A property test checks that whenever this returns arguments,
//! clap returns the same.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use deputy_ipc::supervisor::{parse_mapping, parse_stop_signal as parse_signal};

use crate::cli::{
    DEFAULT_CLEANUP_TIMEOUT, DEFAULT_DRAIN_DELAY, DEFAULT_GRACE, DEFAULT_STOP_SIGNAL, RunArgs,
};

/// Reads the arguments after `run`; `None` means "let clap do it".
pub(crate) fn quick_parse(args: &[OsString]) -> Option<RunArgs> {
    // Options from the environment are clap's to read.
    if crate::cli::RUN_ENV
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        return None;
    }
    let mut parsed = defaults()?;
    let mut seen: Vec<&str> = Vec::new();
    let mut at = 0;
    while let Some(arg) = args.get(at) {
        if let Some(command) = command_from(args, at) {
            parsed.command = command;
            break;
        }
        let (name, inline) = split_option(arg)?;
        // clap refuses every option of these given twice, except --map-exit.
        if seen.contains(&name) && name != "map-exit" {
            return None;
        }
        seen.push(name);
        if let Some(flag) = flag(&mut parsed, name) {
            if inline.is_some() {
                return None;
            }
            *flag = true;
        } else {
            let value = match inline {
                Some(value) => value,
                None => {
                    at += 1;
                    args.get(at)?.to_str()?
                }
            };
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            set(&mut parsed, name, value)?;
        }
        at += 1;
    }
    (!parsed.command.is_empty()).then_some(parsed)
}

/// The options as clap defaults them.
fn defaults() -> Option<RunArgs> {
    Some(RunArgs {
        grace: duration(DEFAULT_GRACE)?,
        drain_delay: duration(DEFAULT_DRAIN_DELAY)?,
        drain_delay_max: None,
        quiet_period: None,
        stop_signal: parse_signal(DEFAULT_STOP_SIGNAL).ok()?,
        group: false,
        cleanup_timeout: duration(DEFAULT_CLEANUP_TIMEOUT)?,
        health_port: None,
        ready_port: None,
        ready_url: None,
        map_exit: Vec::new(),
        ipc_dir: None,
        no_control_socket: false,
        no_subreaper: false,
        raise_child_nofile: false,
        metrics: false,
        notify: false,
        watchdog: None,
        stop_command: None,
        stop_url: None,
        stop_timeout: None,
        command: Vec::new(),
    })
}

fn duration(text: &str) -> Option<std::time::Duration> {
    deputy_ipc::parse_duration(text).ok()
}

/// The command, if it starts at `at`: after a `--`, or at the first argument that is not an
/// option; it takes the rest as it is.
fn command_from(args: &[OsString], at: usize) -> Option<Vec<OsString>> {
    let bytes = args[at].as_bytes();
    if bytes == b"--" {
        Some(args[at + 1..].to_vec())
    } else if !bytes.starts_with(b"-") {
        Some(args[at..].to_vec())
    } else {
        None
    }
}

/// `--name=value` or `--name`: the name, and the value if inline.
fn split_option(arg: &OsString) -> Option<(&str, Option<&str>)> {
    let option = arg.to_str()?.strip_prefix("--")?;
    Some(match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    })
}

/// The flag named `name`, if it is one.
fn flag<'a>(parsed: &'a mut RunArgs, name: &str) -> Option<&'a mut bool> {
    match name {
        "group" => Some(&mut parsed.group),
        "no-control-socket" => Some(&mut parsed.no_control_socket),
        "no-subreaper" => Some(&mut parsed.no_subreaper),
        "raise-child-nofile" => Some(&mut parsed.raise_child_nofile),
        "metrics" => Some(&mut parsed.metrics),
        _ => None,
    }
}

/// Sets the option `name` to `value`; `None` if either is not one clap would take.
fn set(parsed: &mut RunArgs, name: &str, value: &str) -> Option<()> {
    match name {
        "grace" => parsed.grace = duration(value)?,
        "drain-delay" => parsed.drain_delay = duration(value)?,
        "drain-delay-max" => parsed.drain_delay_max = Some(duration(value)?),
        "quiet-period" => parsed.quiet_period = Some(duration(value)?),
        "cleanup-timeout" => parsed.cleanup_timeout = duration(value)?,
        "stop-signal" => parsed.stop_signal = parse_signal(value).ok()?,
        "health-port" => parsed.health_port = Some(value.parse().ok()?),
        "ready-port" => parsed.ready_port = Some(value.parse().ok()?),
        "map-exit" => parsed.map_exit.push(parse_mapping(value).ok()?),
        "ipc-dir" => parsed.ipc_dir = Some(PathBuf::from(value)),
        "stop-timeout" => parsed.stop_timeout = Some(duration(value)?),
        "stop-command" => parsed.stop_command = Some(value.to_owned()),
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use proptest::prelude::*;

    use super::*;

    /// `deputy run` as clap sees it.
    #[derive(Debug, Parser)]
    #[command(name = "run")]
    struct Clap {
        #[command(flatten)]
        args: RunArgs,
    }

    fn clap(args: &[OsString]) -> Option<RunArgs> {
        Clap::try_parse_from(std::iter::once(OsString::from("run")).chain(args.iter().cloned()))
            .ok()
            .map(|cli| cli.args)
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_usual_command_lines_take_the_quick_path_and_agree_with_clap() {
        for args in [
            &["--", "true"][..],
            &["true"],
            &["sleep", "--grace", "1s"],
            &[
                "--health-port=8081",
                "--drain-delay=5s",
                "--grace=25s",
                "--",
                "plain-server",
                "--port",
                "8080",
            ],
            &[
                "--grace",
                "1m 30s",
                "--stop-signal",
                "QUIT",
                "--group",
                "--map-exit",
                "143",
                "--map-exit=1=0",
                "--ipc-dir",
                "/tmp",
                "--no-subreaper",
                "--no-control-socket",
                "--cleanup-timeout",
                "500ms",
                "--ready-port=8080",
                "--stop-timeout=10s",
                "--stop-command",
                "nginx -s quit",
                "--",
                "sh",
                "-c",
                "exit 3",
            ],
        ] {
            let args = os(args);
            let quick = quick_parse(&args);
            assert!(quick.is_some(), "{args:?} missed the quick path");
            assert_eq!(quick, clap(&args), "{args:?}");
        }
    }

    #[test]
    fn what_it_does_not_take_is_left_to_clap() {
        for args in [
            &["--help"][..],
            &["-h", "--", "true"],
            &["--version"],
            &["--grace"],
            &["--grace", "--", "true"],
            &["--grace=", "--", "true"],
            &["--grace", "10", "--", "true"],
            &["--grace", "1s", "--grace", "2s", "--", "true"],
            &["--group=yes", "--", "true"],
            &["--nope", "--", "true"],
            &["--stop-signal", "KILL", "--", "true"],
            &["--map-exit", "-1", "--", "true"],
            &["--"],
            &[],
        ] {
            assert_eq!(quick_parse(&os(args)), None, "{args:?}");
        }
    }

    /// One option, mostly valid: a flag, or a value option with a value (inline or apart).
    fn option() -> impl Strategy<Value = Vec<String>> {
        let flag = prop::sample::select(vec![
            "--group",
            "--no-control-socket",
            "--no-subreaper",
            "--raise-child-nofile",
            "--metrics",
            "--group=1",
            "--nope",
            "-h",
            "--help",
            "-",
        ])
        .prop_map(|flag| vec![flag.to_owned()]);
        let value = (
            prop::sample::select(vec![
                "--grace",
                "--drain-delay",
                "--cleanup-timeout",
                "--stop-signal",
                "--health-port",
                "--ready-port",
                "--map-exit",
                "--ipc-dir",
                "--stop-timeout",
                "--stop-command",
                "--stop-url",
                "--drain-delay-max",
                "--quiet-period",
            ]),
            prop::sample::select(vec![
                "1s", "25s", "1500ms", "1m 30s", "2h", "TERM", "sigquit", "15", "3", "8081",
                "08081", "+80", "143", "1=0", "0=7", "/tmp", "a b", // mostly fine somewhere
                "", "10", "x", "-1", "KILL", "70000", "256", "3=300", "--", // bad
            ]),
            any::<bool>(),
        )
            .prop_map(|(name, value, inline)| {
                if inline {
                    vec![format!("{name}={value}")]
                } else {
                    vec![name.to_owned(), value.to_owned()]
                }
            });
        prop_oneof![1 => flag, 4 => value]
    }

    /// Options, then perhaps `--`, then a command (perhaps empty, perhaps with options).
    fn command_line() -> impl Strategy<Value = Vec<OsString>> {
        (
            prop::collection::vec(option(), 0..6),
            any::<bool>(),
            prop::collection::vec(
                prop::sample::select(vec!["true", "sh", "-c", "--grace", "--", "-", "x=1"]),
                0..4,
            ),
        )
            .prop_map(|(options, separator, command)| {
                options
                    .into_iter()
                    .flatten()
                    .chain(separator.then(|| "--".to_owned()))
                    .chain(command.into_iter().map(str::to_owned))
                    .map(OsString::from)
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn whenever_it_answers_clap_answers_the_same(args in command_line()) {
            if let Some(quick) = quick_parse(&args) {
                prop_assert_eq!(Some(quick), clap(&args), "{:?}", args);
            }
        }
    }
}

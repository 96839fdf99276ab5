//! How to supervise a program: [`Config`], `deputy run`'s defaults (written here once) and
//! the checks that refuse what no supervisor could run with.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{AnySignal, RunError};

/// How to supervise a program: [`Config::new`] gives `deputy run`'s defaults.
///
/// ```
/// use std::time::Duration;
/// use deputy_ipc::supervisor::{AnySignal, Config};
///
/// let config = Config::new(["nginx", "-g", "daemon off;"]);
/// assert_eq!(config.grace, Duration::from_secs(25));
/// assert_eq!(config.drain_delay, Duration::from_secs(5));
/// assert_eq!(config.stop_signal, AnySignal::TERM);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The whole shutdown budget, from the first signal to SIGKILL. Default 25 s: 5 s short
    /// of Kubernetes' default terminationGracePeriodSeconds, for deputy to kill, reap and
    /// exit before the kubelet's SIGKILL.
    pub grace: Duration,
    /// How long the child keeps serving after the first signal, readiness off, before it is
    /// asked to stop. Default 5 s.
    pub drain_delay: Duration,
    /// The signal that asks the child to stop when it has no control socket. Default TERM.
    pub stop_signal: AnySignal,
    /// The signals that start the shutdown (and escalate it: each one counts). Default TERM
    /// and INT; add the pod's `lifecycle.stopSignal` or the image's `STOPSIGNAL` (QUIT for
    /// nginx) so that it drains too, instead of going to the child at once. Every other
    /// signal is forwarded to the child.
    pub trigger_signals: Vec<AnySignal>,
    /// Keep `/health/ready` on through the drain delay, off only when the child is asked to
    /// stop: a terminating pod stays `serving` in its EndpointSlices, for kube-proxy's
    /// fallback when no ready endpoint is left (Kubernetes 1.28 and later). Default off:
    /// readiness turns off at the first signal.
    pub ready_while_draining: bool,
    /// Send the stop signal and forwarded signals to the child's process group.
    pub group: bool,
    /// After the child exits, how long its leftovers get between SIGTERM and SIGKILL.
    /// Default 2 s.
    pub cleanup_timeout: Duration,
    /// Serve /health/live and /health/ready on this port (all addresses).
    pub health_port: Option<u16>,
    /// Ready only while the child accepts TCP connections on this port of 127.0.0.1.
    pub ready_port: Option<u16>,
    /// Ready only while `GET` on this `http://` URL (the child's own, on this machine)
    /// answers 2xx; more precise than `ready_port`, and exclusive with it.
    pub ready_url: Option<String>,
    /// Exit code mappings, FROM to TO, like tini's `-e`.
    pub map_exit: Vec<(i32, i32)>,
    /// The control directory (default: `$DEPUTY_IPC_DIR`, else /run).
    pub ipc_dir: Option<PathBuf>,
    /// Serve a control socket, so `deputy terminate` reaches the supervisor. Default true.
    pub control_socket: bool,
    /// When not PID 1, become a child subreaper. Default true.
    pub subreaper: bool,
    /// Start the child with the raised open-files limit too. By default deputy raises only
    /// its own soft RLIMIT_NOFILE to the hard limit (after starting the child), and the
    /// child gets the limit deputy was given, as Go does for the programs it execs.
    pub raise_child_nofile: bool,
    /// Serve `/shutdown` on the health port, for requests with this token (see
    /// [`shutdown_token_from_env`](crate::shutdown_token_from_env)); needs `health_port`.
    pub shutdown_token: Option<String>,
    /// Make the drain delay measure itself: `drain_delay` becomes its minimum, and it ends a
    /// `quiet_period` after the last new connection to the child's port (`ready_port`, or
    /// `ready_url`'s), at this at the latest. Needs one of those two.
    pub drain_delay_max: Option<Duration>,
    /// With `drain_delay_max`: how long without a new connection ends the drain delay.
    /// Default 1 s.
    pub quiet_period: Duration,
    /// Serve `/metrics` on the health port (Prometheus' text format); needs `health_port`.
    pub metrics: bool,
    /// How long the health endpoints keep answering after the shutdown is done (see
    /// [`HealthServer::linger`](crate::HealthServer::linger)). Default 1 s.
    pub health_linger: Duration,
    /// Speak systemd's notify protocol: the child gets `NOTIFY_SOCKET`, readiness waits for
    /// its `READY=1`, `STATUS=` shows in `deputy status` (see `--notify` in `deputy run
    /// --help`). Exclusive with `ready_port` and `ready_url`.
    pub notify: bool,
    /// With `notify`: the child gets `WATCHDOG_USEC`, and liveness fails when this passes
    /// (from its `READY=1` on) without a `WATCHDOG=1`.
    pub watchdog: Option<Duration>,
    /// Ask the child to stop by running this command line instead (`nginx -s quit`): split
    /// into words as a shell would, run without a shell, with `DEPUTY_CHILD_PID` set. If it
    /// fails, the stop signal is sent. Exclusive with `stop_url`.
    pub stop_command: Option<String>,
    /// Ask the child to stop with a `POST` to this `http://` URL of its own (Envoy's
    /// `/quitquitquit`, Spring's `/actuator/shutdown`); unless it answers 2xx, the stop
    /// signal is sent.
    pub stop_url: Option<String>,
    /// SIGKILL the child this long after it was asked to stop, unless it asks for more
    /// (systemd's `EXTEND_TIMEOUT_USEC`, with `notify`); the grace period bounds it all.
    /// Default: none, the grace period alone.
    pub stop_timeout: Option<Duration>,
    /// Environment variables the child does not get: those deputy took its settings from
    /// (`deputy run` lists the ones set among its options' variables), so that a child
    /// that reads the same names (a service on the deputy library, K8sDeputy.jl) runs no
    /// second drain delay. With `health_port`, the child gets `DEPUTY_HEALTH_CHECK_PORT=off`
    /// instead, so one on the deputy library serves no health endpoints of its own.
    pub withheld_env: Vec<OsString>,
    /// The program and its arguments.
    pub command: Vec<OsString>,
}

impl Config {
    /// `deputy run`'s defaults for `command`.
    pub fn new<I: IntoIterator<Item = S>, S: Into<OsString>>(command: I) -> Config {
        Config {
            grace: Duration::from_secs(25),
            drain_delay: Duration::from_secs(5),
            stop_signal: AnySignal::TERM,
            trigger_signals: vec![AnySignal::TERM, AnySignal::INT],
            ready_while_draining: false,
            group: false,
            cleanup_timeout: Duration::from_secs(2),
            health_port: None,
            ready_port: None,
            ready_url: None,
            map_exit: Vec::new(),
            ipc_dir: None,
            control_socket: true,
            subreaper: true,
            raise_child_nofile: false,
            shutdown_token: None,
            drain_delay_max: None,
            quiet_period: Duration::from_secs(1),
            metrics: false,
            health_linger: crate::DEFAULT_HEALTH_LINGER,
            notify: false,
            watchdog: None,
            stop_command: None,
            stop_url: None,
            stop_timeout: None,
            withheld_env: Vec::new(),
            command: command.into_iter().map(Into::into).collect(),
        }
    }

    /// Checks what no supervisor could run with.
    pub(super) fn check(&self) -> Result<(), RunError> {
        self.check_values()?;
        let ready = self.ready_port.is_some() || self.ready_url.is_some();
        let refusals = [
            (self.command.is_empty(), "no command to run"),
            (
                self.ready_port.is_some() && self.ready_url.is_some(),
                "give --ready-port or --ready-url, not both",
            ),
            (
                self.notify && ready,
                "with --notify, readiness is the child's READY=1: give no --ready-port or --ready-url",
            ),
            (
                self.watchdog.is_some() && !self.notify,
                "--watchdog needs --notify: the child feeds it with WATCHDOG=1",
            ),
            (
                self.stop_command.is_some() && self.stop_url.is_some(),
                "give --stop-command or --stop-url, not both",
            ),
            (
                self.drain_delay_max.is_some() && !ready,
                "--drain-delay-max needs --ready-port or --ready-url: deputy watches new \
                 connections to the child's port",
            ),
            (
                self.drain_delay_max
                    .is_some_and(|max| max < self.drain_delay),
                "--drain-delay-max must not be shorter than --drain-delay (its minimum)",
            ),
            (
                self.metrics && self.health_port.is_none(),
                "--metrics needs --health-port: /metrics is served there",
            ),
            (
                self.shutdown_token.is_some() && self.health_port.is_none(),
                "a /shutdown token needs --health-port: the endpoint is served there",
            ),
        ];
        refuse(&refusals)?;
        self.check_mappings()?;
        let (option, delay) = match self.drain_delay_max {
            Some(max) => ("--drain-delay-max", max),
            None => ("--drain-delay", self.drain_delay),
        };
        if delay >= self.grace {
            return Err(RunError::Usage(format!(
                "{option} ({}) must be shorter than --grace ({}): the child needs time to stop",
                humantime::format_duration(delay),
                humantime::format_duration(self.grace)
            )));
        }
        Ok(())
    }

    /// Refuses values no setting can mean: a zero duration or port, a duration too long.
    fn check_values(&self) -> Result<(), RunError> {
        let zero = |duration: Option<Duration>| duration.is_some_and(|d| d.is_zero());
        refuse(&[
            (self.grace.is_zero(), "--grace must be more than 0s"),
            (zero(self.watchdog), "--watchdog must be more than 0s"),
            (
                zero(self.stop_timeout),
                "--stop-timeout must be more than 0s",
            ),
            (
                self.quiet_period.is_zero(),
                "--quiet-period must be more than 0s",
            ),
            (
                self.health_port == Some(0),
                "--health-port 0 would serve on a port nobody knows: give the port the \
                 probes use (8081 by default in the manifests)",
            ),
            (
                self.ready_port == Some(0),
                "--ready-port 0 is no port: give the port the child listens on",
            ),
        ])?;
        if let Some(error) = self
            .trigger_signals
            .iter()
            .find_map(|signal| super::parse_trigger_signal(&signal.number().to_string()).err())
        {
            return Err(RunError::Usage(format!("--trigger-signal: {error}")));
        }
        self.check_lengths()
    }

    /// Refuses a duration past [`deputy_core::MAX_DURATION`] (a deadline computed from it
    /// could overflow at the first signal), naming its option.
    fn check_lengths(&self) -> Result<(), RunError> {
        let durations = [
            ("--grace", Some(self.grace)),
            ("--drain-delay", Some(self.drain_delay)),
            ("--drain-delay-max", self.drain_delay_max),
            ("--quiet-period", Some(self.quiet_period)),
            ("--cleanup-timeout", Some(self.cleanup_timeout)),
            ("--watchdog", self.watchdog),
            ("--stop-timeout", self.stop_timeout),
        ];
        match durations
            .iter()
            .find(|(_, value)| value.is_some_and(|d| d > deputy_core::MAX_DURATION))
        {
            Some((option, _)) => Err(RunError::Usage(format!(
                "{option} is longer than the longest duration deputy takes (100 years)"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses two `--map-exit` of the same code to different codes (which one would win
    /// is not for deputy to guess).
    fn check_mappings(&self) -> Result<(), RunError> {
        for (i, (from, to)) in self.map_exit.iter().enumerate() {
            if let Some((_, other)) = self.map_exit[..i]
                .iter()
                .find(|(earlier, other)| earlier == from && other != to)
            {
                return Err(RunError::Usage(format!(
                    "--map-exit maps {from} twice, to {other} and to {to}: give one"
                )));
            }
        }
        Ok(())
    }

    /// The exit code deputy passes on for the child's `code`.
    pub(super) fn map(&self, code: i32) -> i32 {
        mapped(&self.map_exit, code)
    }
}

/// The first refusal whose condition holds, as a usage error.
fn refuse(refusals: &[(bool, &str)]) -> Result<(), RunError> {
    match refusals.iter().find(|(refused, _)| *refused) {
        Some((_, why)) => Err(RunError::Usage((*why).to_owned())),
        None => Ok(()),
    }
}

/// The child's exit `code` after `--map-exit`'s table (FROM becomes TO).
pub(super) fn mapped(map_exit: &[(i32, i32)], code: i32) -> i32 {
    map_exit
        .iter()
        .find(|(from, _)| *from == code)
        .map_or(code, |(_, to)| *to)
}

/// Parses an exit code mapping as `deputy run --map-exit` takes it: `FROM=TO`, or `FROM`
/// (to 0), each 0 to 255.
///
/// # Errors
///
/// A sentence for a person if either side is not an exit code.
pub fn parse_mapping(text: &str) -> Result<(i32, i32), String> {
    let code = |part: &str| {
        part.trim()
            .parse::<u8>()
            .map(i32::from)
            .map_err(|_| format!("`{part}` is not an exit code (0 to 255)"))
    };
    match text.split_once('=') {
        Some((from, to)) => Ok((code(from)?, code(to)?)),
        None => Ok((code(text)?, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mappings_default_to_zero_and_stay_in_range() {
        assert_eq!(parse_mapping("143"), Ok((143, 0)));
        assert_eq!(parse_mapping("1=2"), Ok((1, 2)));
        assert!(parse_mapping("256").is_err());
        assert!(parse_mapping("1=-1").is_err());
        assert!(parse_mapping("x=1").is_err());
    }
}

//! The command line, as clap reads it. `deputy run`'s defaults are `Config::new`'s, written
//! there once and shown in `--help` from it (see [`command`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use deputy_ipc::supervisor::{self, AnySignal, Config};

/// Exit codes, listed in `--help`.
pub(crate) mod code {
    pub(crate) const CLEAN: u8 = 0;
    pub(crate) const FAILURES: u8 = 1;
    pub(crate) const NO_TARGET: u8 = 3;
    pub(crate) const REFUSED: u8 = 4;
    pub(crate) const TIMED_OUT: u8 = 5;
    pub(crate) const ERROR: u8 = 6;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  done cleanly (terminate), or answered (status, terminate --no-wait)
  1  done, with failures: a hook failed or timed out, or shutdown was abandoned; or the
     target exited before its shutdown was done (killed, crashed: outcome unknown)
  2  bad command line
  3  no such target: no pid file, no control socket, or no such process
  4  refused: the target belongs to another user
  5  timed out (--timeout) before the target was done
  6  any other error (connection, protocol)";

#[derive(Debug, Parser)]
#[command(name = "deputy", version, about = "Graceful shutdown for services: terminate, status, run", after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Ask the service to shut down gracefully; wait until it is done (the preStop command).
    /// A Julia service with K8sDeputy.jl's graceful_terminator (julia-entrypoint.pid, no
    /// deputy socket) is sent `terminate` on its socket and waited for until it exits.
    #[command(after_help = EXIT_CODES)]
    Terminate {
        #[command(flatten)]
        target: Target,
        /// Give up after this long (like `30s` or `1500ms`); default: wait until done.
        #[arg(long, value_parser = deputy_ipc::parse_duration)]
        timeout: Option<Duration>,
        /// Return as soon as the request is accepted.
        #[arg(long)]
        no_wait: bool,
        /// Why, for the service's logs.
        #[arg(long, default_value = "deputy terminate")]
        reason: String,
        /// Print the service's JSON lines instead of lines for a person.
        #[arg(long)]
        json: bool,
    },
    /// Run a program under a supervisor: PID 1 duties, drain delay, graceful stop, escalation.
    #[command(after_help = RUN_HELP)]
    Run(Box<RunArgs>),
    /// Print the service's state, readiness and work in flight.
    #[command(after_help = EXIT_CODES)]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of a line for a person.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The service's pid (default: the one in deputy-entrypoint.pid in the control directory).
    #[arg(long)]
    pub(crate) pid: Option<u32>,
    /// Where the control sockets are (default: $DEPUTY_IPC_DIR, else /run).
    #[arg(long, value_name = "DIR")]
    pub(crate) ipc_dir: Option<PathBuf>,
}

pub(crate) const RUN_HELP: &str = "\
On SIGTERM or SIGINT (the --trigger-signal list; or `deputy terminate`): readiness turns off
(--health-port), the child keeps serving for --drain-delay, then it is asked to stop: its
own way if one is given (--stop-command, --stop-url; if that fails, --stop-signal), else
over its deputy control socket if it serves one (else over its descendants' sockets, for a service under `sh -c`),
else over K8sDeputy.jl's graceful-terminator.<pid>.socket (the line `terminate`, for a Julia
service that calls graceful_terminator: Julia dies with a stack trace on SIGTERM), else with
--stop-signal. If it is still running after --stop-timeout, or when --grace (counted from
the first signal) is over, its process group and every descendant get SIGKILL. A second
signal skips the drain delay; a third kills at once. Every other signal deputy can catch
(SIGHUP, SIGQUIT, SIGUSR1, SIGWINCH, SIGPWR, SIGTSTP, SIGRTMIN+3, ...) is forwarded to the
child as it comes: no signal stops, kills or orphans deputy while the child runs.

Examples:
  deputy run --health-port 8081 --ready-url http://127.0.0.1:8080/healthz -- python3 app.py
  deputy run --stop-command 'nginx -s quit' -- nginx -g 'daemon off;'
  deputy run --notify --watchdog 30s --health-port 8081 -- ./daemon   (calls sd_notify)
  deputy run -- julia entrypoint.jl   (K8sDeputy.jl's graceful_terminator: no sh -c needed)

Images whose STOPSIGNAL is SIGQUIT (nginx), or pods whose lifecycle.stopSignal is: add it to
the trigger signals and stop the child with it, so the drain delay runs before nginx gets
its QUIT: --trigger-signal TERM,INT,QUIT --stop-signal QUIT.

Every option can also be set from the environment, by the DEPUTY_ name its help shows
(DEPUTY_HEALTH_CHECK_PORT, DEPUTY_DRAIN_DELAY and DEPUTY_GRACE_PERIOD are the names services
that use the deputy library read, and K8sDeputy.jl's); the command line wins. deputy takes
those variables for itself: the child does not see them (nor DEPUTY_METRICS when deputy
serves /metrics), so a child that uses deputy too does not run a second drain delay; with
--health-port, the child gets DEPUTY_HEALTH_CHECK_PORT=off, so one that uses deputy serves
no health endpoints of its own (deputy's are the probes'). To give the child a value of its
own, set it in the command:
  deputy run --health-port 8081 -- env DEPUTY_HEALTH_CHECK_PORT=8082 julia app.jl

The child runs in its own process group, with an empty signal mask and default signal
dispositions, deputy's stdin/stdout/stderr and environment (but for the variables above;
plus DEPUTY_ENTRYPOINT=0, so a child that uses deputy leaves the entrypoint pid file to the
supervisor, and DEPUTY_IPC_DIR when --ipc-dir is given). At a terminal (docker run -it) the child's group gets the
terminal's foreground, as with tini: Ctrl-C then goes to the child itself. deputy reaps every
zombie: as PID 1, and otherwise as a child subreaper (unless --no-subreaper).

With --health-port and DEPUTY_SHUTDOWN_TOKEN_FILE (a file holding a token of 16 bytes or
more, such as a mounted Secret) or DEPUTY_SHUTDOWN_TOKEN set, the health port also serves
/shutdown for an httpGet preStop: a request with the header `x-deputy-token: TOKEN` starts
the shutdown and answers when it is done (`?wait=10s` bounds the wait). With --health-port,
deputy exits a second after the shutdown is done, so that answer and the probes see the end.

Exit code: the child's, or 128+N when signal N killed it (after --map-exit). deputy's own:
  2    bad command line
  125  deputy could not set up (health port, signals) or start the child
  126  the command cannot be executed
  127  the command was not found";

/// The environment variables `deputy run`'s options are also read from (each `--help` lists
/// its own). deputy takes them for itself: the child does not see those that are set (see
/// `RUN_ABOUT`).
pub(crate) const RUN_ENV: [&str; 22] = [
    "DEPUTY_GRACE_PERIOD",
    "DEPUTY_DRAIN_DELAY",
    "DEPUTY_STOP_SIGNAL",
    "DEPUTY_DRAIN_DELAY_MAX",
    "DEPUTY_QUIET_PERIOD",
    "DEPUTY_GROUP",
    "DEPUTY_CLEANUP_TIMEOUT",
    "DEPUTY_HEALTH_CHECK_PORT",
    "DEPUTY_READY_PORT",
    "DEPUTY_READY_URL",
    "DEPUTY_MAP_EXIT",
    "DEPUTY_NO_CONTROL_SOCKET",
    "DEPUTY_NO_SUBREAPER",
    "DEPUTY_NOTIFY",
    "DEPUTY_WATCHDOG",
    "DEPUTY_STOP_COMMAND",
    "DEPUTY_STOP_URL",
    "DEPUTY_STOP_TIMEOUT",
    "DEPUTY_RAISE_CHILD_NOFILE",
    "DEPUTY_TRIGGER_SIGNALS",
    "DEPUTY_READY_WHILE_DRAINING",
    "DEPUTY_HEALTH_LINGER",
];

/// The options of `deputy run`.
#[derive(Debug, PartialEq, Args)]
pub(crate) struct RunArgs {
    /// The whole shutdown budget, from the first signal to SIGKILL: drain delay, stop,
    /// cleanup. The default leaves 5 s of Kubernetes' default terminationGracePeriodSeconds
    /// (30 s) for deputy to kill, reap and exit before the kubelet's SIGKILL. For example
    /// `--grace 55s` with terminationGracePeriodSeconds: 60.
    #[arg(long, env = "DEPUTY_GRACE_PERIOD", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) grace: Option<Duration>,
    /// How long the child keeps serving after the first signal, readiness off, before it is
    /// asked to stop: the time endpoints take to stop sending traffic. For example
    /// `--drain-delay 10s`, or `0s` outside Kubernetes.
    #[arg(long, env = "DEPUTY_DRAIN_DELAY", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) drain_delay: Option<Duration>,
    /// The signal that asks the child to stop when it has no deputy control socket (a name
    /// like TERM, SIGQUIT, RTMIN+3, or a number from 1 to 64). For example `--stop-signal
    /// QUIT` for nginx, `--stop-signal RTMIN+3` for systemd.
    #[arg(long, env = "DEPUTY_STOP_SIGNAL", value_name = "SIGNAL", value_parser = supervisor::parse_stop_signal)]
    pub(crate) stop_signal: Option<AnySignal>,
    /// A signal that starts the shutdown (repeat it, or give a comma-separated list); every
    /// other signal goes to the child. Add the pod's `lifecycle.stopSignal` or the image's
    /// STOPSIGNAL, and the child never gets it (it is stopped its own way, after the drain
    /// delay). For example `--trigger-signal TERM,INT,QUIT` for nginx's SIGQUIT.
    #[arg(
        long,
        env = "DEPUTY_TRIGGER_SIGNALS",
        value_name = "SIGNAL",
        value_delimiter = ',',
        value_parser = supervisor::parse_trigger_signal
    )]
    pub(crate) trigger_signal: Vec<AnySignal>,
    /// Keep /health/ready on through the drain delay, off only when the child is asked to
    /// stop, so that a terminating pod keeps serving what kube-proxy sends it when no ready
    /// endpoint is left (one replica, maxSurge 0, externalTrafficPolicy Local). Without it,
    /// readiness turns off at the first signal.
    #[arg(long, env = "DEPUTY_READY_WHILE_DRAINING", value_parser = deputy_ipc::parse_bool)]
    pub(crate) ready_while_draining: bool,
    /// Make the drain delay measure itself: --drain-delay becomes its minimum, and it ends
    /// once no new connection to the child's port (--ready-port or --ready-url's) has come
    /// for --quiet-period, at this at the latest. deputy sees connections, not requests: a
    /// client that keeps its connection open is not new traffic. Not for a service with rare
    /// traffic. For example `--ready-port 8080 --drain-delay 2s --drain-delay-max 15s`.
    #[arg(long, env = "DEPUTY_DRAIN_DELAY_MAX", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) drain_delay_max: Option<Duration>,
    /// With --drain-delay-max: how long without a new connection ends the drain delay. For
    /// example `--quiet-period 2s`. Default 1s; refused without --drain-delay-max.
    #[arg(long, env = "DEPUTY_QUIET_PERIOD", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) quiet_period: Option<Duration>,
    /// Send the stop signal and forwarded signals to the child's whole process group, not
    /// only to the child: for a shell script whose workers should all get them
    /// (`--group -- sh run.sh`).
    #[arg(long, env = "DEPUTY_GROUP", value_parser = deputy_ipc::parse_bool)]
    pub(crate) group: bool,
    /// After the child exits, how long the descendants it left get between SIGTERM and
    /// SIGKILL. For example `--cleanup-timeout 500ms`.
    #[arg(long, env = "DEPUTY_CLEANUP_TIMEOUT", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) cleanup_timeout: Option<Duration>,
    /// Serve /health/live and /health/ready on this port (all addresses): ready while
    /// running (see --ready-port), not ready from the first signal on. For example
    /// `--health-port 8081`, with the pod's probes on /health/ready and /health/live.
    #[arg(long, env = "DEPUTY_HEALTH_CHECK_PORT", value_name = "PORT")]
    pub(crate) health_port: Option<u16>,
    /// Ready only while the child accepts TCP connections on this port of 127.0.0.1 (checked
    /// every 200 ms until it does, then every second), so a pod gets no traffic before the
    /// child listens. Without it, ready from the start. For example `--ready-port 8080`.
    #[arg(long, env = "DEPUTY_READY_PORT", value_name = "PORT")]
    pub(crate) ready_port: Option<u16>,
    /// Ready only while GET on this URL of the child's answers 2xx, checked like
    /// --ready-port: more precise (a port can accept before the program is ready). For
    /// example `--ready-url http://127.0.0.1:8080/healthz`.
    #[arg(
        long,
        env = "DEPUTY_READY_URL",
        value_name = "URL",
        conflicts_with = "ready_port"
    )]
    pub(crate) ready_url: Option<String>,
    /// Map the child's exit code FROM to TO (default 0), like tini's -e; repeat it for more
    /// codes. For example `--map-exit 143` makes a child killed by SIGTERM count as success.
    #[arg(long = "map-exit", env = "DEPUTY_MAP_EXIT", value_delimiter = ',', value_name = "FROM[=TO]", value_parser = supervisor::parse_mapping)]
    pub(crate) map_exit: Vec<(i32, i32)>,
    /// Where to put the control socket, and where the child's is looked for (default:
    /// $DEPUTY_IPC_DIR, else /run). For example `--ipc-dir /tmp` where /run is not
    /// writable.
    #[arg(long, value_name = "DIR")]
    pub(crate) ipc_dir: Option<PathBuf>,
    /// Do not serve a control socket (`deputy terminate` then cannot reach this process):
    /// for a read-only filesystem with no tmpfs to put it on.
    #[arg(long, env = "DEPUTY_NO_CONTROL_SOCKET", value_parser = deputy_ipc::parse_bool)]
    pub(crate) no_control_socket: bool,
    /// When not PID 1, do not become a child subreaper: orphaned descendants then go to
    /// PID 1 instead of being reaped and cleaned up by deputy (for deputy under a shell that
    /// expects to reap them itself).
    #[arg(long, env = "DEPUTY_NO_SUBREAPER", value_parser = deputy_ipc::parse_bool)]
    pub(crate) no_subreaper: bool,
    /// Serve /metrics on --health-port: the shutdown in Prometheus' text format (state,
    /// work in flight, triggers, propagation, each phase's duration and outcome). Also
    /// DEPUTY_METRICS=1. For example `--health-port 8081 --metrics`.
    #[arg(long)]
    pub(crate) metrics: bool,
    /// Keep the health endpoints (and /metrics) answering this long after the child has
    /// exited and the shutdown is done, so Prometheus scrapes its end: set it to the scrape
    /// interval. Never past --grace-period. Default 1s. For example `--metrics
    /// --health-linger 15s`.
    #[arg(long, env = "DEPUTY_HEALTH_LINGER", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) health_linger: Option<Duration>,
    /// Speak systemd's notify protocol: the child gets NOTIFY_SOCKET and sends READY=1 when
    /// it is ready (readiness is off until then), STATUS=... (shown by `deputy status`),
    /// STOPPING=1, RELOADING=1, WATCHDOG=1, EXTEND_TIMEOUT_USEC=n. For a daemon that
    /// already calls sd_notify, or `systemd-notify --ready` in a script. Exclusive with
    /// --ready-port and --ready-url.
    #[arg(long, env = "DEPUTY_NOTIFY", value_parser = deputy_ipc::parse_bool, conflicts_with_all = ["ready_port", "ready_url"])]
    pub(crate) notify: bool,
    /// With --notify: give the child WATCHDOG_USEC, and fail /health/live when this passes
    /// without a WATCHDOG=1 (from its READY=1 on), so the kubelet restarts a hung child.
    /// For example `--notify --watchdog 30s`.
    #[arg(long, env = "DEPUTY_WATCHDOG", value_name = "DURATION", requires = "notify", value_parser = deputy_ipc::parse_duration)]
    pub(crate) watchdog: Option<Duration>,
    /// Ask the child to stop by running this command instead of sending a signal, then wait
    /// for the child to exit. Split into words as a shell would, run without a shell (write
    /// `sh -c '...'` for one), with DEPUTY_CHILD_PID set. If it fails or runs over 10 s, the
    /// stop signal is sent. For example `--stop-command 'nginx -s quit'`.
    #[arg(long, env = "DEPUTY_STOP_COMMAND", value_name = "COMMAND")]
    pub(crate) stop_command: Option<String>,
    /// Ask the child to stop with a POST to this URL of its own, then wait for it to exit;
    /// unless it answers 2xx within 10 s, the stop signal is sent. For example
    /// `--stop-url http://127.0.0.1:15000/quitquitquit` (Envoy).
    #[arg(
        long,
        env = "DEPUTY_STOP_URL",
        value_name = "URL",
        conflicts_with = "stop_command"
    )]
    pub(crate) stop_url: Option<String>,
    /// SIGKILL the child (its process group and descendants) if it has not exited this long
    /// after it was asked to stop, unless it asks for more with EXTEND_TIMEOUT_USEC
    /// (--notify); --grace still bounds the whole shutdown. Default: --grace alone. For
    /// example `--stop-timeout 10s`.
    #[arg(long, env = "DEPUTY_STOP_TIMEOUT", value_name = "DURATION", value_parser = deputy_ipc::parse_duration)]
    pub(crate) stop_timeout: Option<Duration>,
    /// Start the child with the raised open-files limit too. deputy raises its own soft
    /// RLIMIT_NOFILE to the hard limit (as Go does) after starting the child, which keeps the
    /// limit deputy was given. For a child that needs many connections and does not raise
    /// the limit itself (most runtimes other than Go and Java).
    #[arg(long, env = "DEPUTY_RAISE_CHILD_NOFILE", value_parser = deputy_ipc::parse_bool)]
    pub(crate) raise_child_nofile: bool,
    /// The program to run and its arguments.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub(crate) command: Vec<OsString>,
}

/// The command line's grammar, with `deputy run`'s defaults shown in its `--help` as
/// `Config::new` has them (the one place they are written). Not --quiet-period's: given at
/// all, it must come with --drain-delay-max, so its absence must be seen; its help names the
/// default, and a test holds the two together.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    let defaults = Config::new(Vec::<OsString>::new());
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let shown = [
        ("grace", duration(defaults.grace)),
        ("drain_delay", duration(defaults.drain_delay)),
        ("cleanup_timeout", duration(defaults.cleanup_timeout)),
        ("stop_signal", defaults.stop_signal.to_string()),
        ("trigger_signal", {
            let names: Vec<String> = defaults
                .trigger_signals
                .iter()
                .map(|s| s.to_string())
                .collect();
            names.join(",")
        }),
    ];
    Cli::command().mut_subcommand("run", |mut run| {
        for (id, value) in shown {
            run = run.mut_arg(id, |arg| arg.default_value(value));
        }
        run
    })
}

impl RunArgs {
    /// What the supervisor runs with.
    pub(crate) fn into_config(self) -> Config {
        // Config::new holds the defaults; an option given replaces its default.
        let mut config = Config::new(self.command);
        let defaults = config.clone();
        config.grace = self.grace.unwrap_or(defaults.grace);
        config.drain_delay = self.drain_delay.unwrap_or(defaults.drain_delay);
        config.drain_delay_max = self.drain_delay_max;
        config.quiet_period = self.quiet_period.unwrap_or(defaults.quiet_period);
        config.stop_signal = self.stop_signal.unwrap_or(defaults.stop_signal);
        config.ready_while_draining = self.ready_while_draining;
        if !self.trigger_signal.is_empty() {
            config.trigger_signals = self.trigger_signal;
        }
        config.group = self.group;
        config.cleanup_timeout = self.cleanup_timeout.unwrap_or(defaults.cleanup_timeout);
        config.health_port = self.health_port;
        config.ready_port = self.ready_port;
        config.ready_url = self.ready_url;
        config.map_exit = self.map_exit;
        config.ipc_dir = self.ipc_dir;
        config.control_socket = !self.no_control_socket;
        config.subreaper = !self.no_subreaper;
        config.raise_child_nofile = self.raise_child_nofile;
        config.metrics = self.metrics;
        config.health_linger = self.health_linger.unwrap_or(defaults.health_linger);
        config.notify = self.notify;
        config.watchdog = self.watchdog;
        config.stop_command = self.stop_command;
        config.stop_url = self.stop_url;
        config.stop_timeout = self.stop_timeout;
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_run_option_with_a_value_shows_an_example() {
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        for arg in run.get_arguments() {
            let takes_value = arg.get_action().takes_values() && arg.get_long().is_some();
            let help = arg.get_long_help().or(arg.get_help()).unwrap().to_string();
            assert!(
                !takes_value || help.contains("For example"),
                "--{} has no example: {help}",
                arg.get_long().unwrap_or_default()
            );
        }
    }

    #[test]
    fn every_run_option_has_its_variable_and_the_list_is_complete() {
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        let mut named: Vec<String> = run
            .get_arguments()
            // --ipc-dir's default is $DEPUTY_IPC_DIR already; --metrics reads DEPUTY_METRICS
            // itself (only where there is a health port to serve it on).
            .filter(|arg| {
                arg.get_long()
                    .is_some_and(|long| !["ipc-dir", "metrics", "help"].contains(&long))
            })
            .map(|arg| {
                let env = arg.get_env().unwrap_or_else(|| {
                    panic!("--{} has no variable", arg.get_long().unwrap_or_default())
                });
                env.to_string_lossy().into_owned()
            })
            .collect();
        named.sort();
        let mut listed: Vec<String> = RUN_ENV.iter().map(|name| (*name).to_owned()).collect();
        listed.sort();
        assert_eq!(named, listed);
    }

    #[test]
    fn run_help_shows_the_supervisors_defaults() {
        let mut command = command();
        let help = command
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for shown in [
            "[default: 25s]",
            "[default: 5s]",
            "[default: 2s]",
            "[default: SIGTERM]",
        ] {
            assert!(help.contains(shown), "no {shown} in {help}");
        }
        let quiet = humantime::format_duration(Config::new(["true"]).quiet_period);
        assert!(help.contains(&format!("Default {quiet};")), "{help}");
        let matches = command.get_matches_from(["deputy", "run", "--", "true"]);
        let Command::Run(args) = <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
            .unwrap()
            .command
        else {
            panic!("not run");
        };
        assert_eq!(args.into_config(), Config::new(["true"]));
    }

    #[test]
    fn run_defaults_are_the_supervisors() {
        let Command::Run(args) = Cli::parse_from(["deputy", "run", "--", "true"]).command else {
            panic!("not run");
        };
        assert_eq!(args.into_config(), Config::new(["true"]));
    }
}

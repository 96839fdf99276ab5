//! The run script: from the checks to the exit code, and each part it sets up (the plan,
//! the servers, the stop plan, the child's environment).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use deputy_core::{ExitCodes, Phase, Shutdown, ShutdownCoordinator};

use super::background::Supervisor;
use super::child::{self, Child};
use super::config::{self, Config};
use super::event_loop::{EventLoop, LoopRuntime};
use super::local_url::LocalUrl;
use super::notify::NotifySocket;
use super::readiness::ReadyCheck;
use super::signals::Signals;
use super::stop;
use super::stop_plan::{StopPlan, StopWay};
use super::termination_file::{record_termination, settle_the_way_out};
use super::{RunError, log, say_warn};
use crate::{ControlServer, HealthServer, ServerConfig};

/// Runs `config.command` under the supervisor until it and its descendants are gone;
/// returns the exit code to exit with (the child's, mapped).
///
/// Call it from `main`, before any other thread starts: the signal mask it sets must be
/// inherited by every thread.
///
/// # Errors
///
/// A [`RunError`] if the configuration is unusable or the child cannot be started; its
/// [`exit_code`](RunError::exit_code) is the one to exit with.
pub fn run(config: Config) -> Result<i32, RunError> {
    supervise(config, |code| code)
}

/// [`run`], then the end of the process: once the child and its descendants are gone and
/// deputy's files are cleaned up (the control socket, the pid file, the termination
/// message), the process exits with the exit code there, without freeing what it holds.
/// Returns only if the supervisor could not start, with the error to report.
///
/// This is `deputy run`'s way out: freeing the supervisor's state (a dozen unmaps and
/// closes, which the kernel does anyway at exit) came after the child's death and before
/// the exit, where it cost about 75 µs on the way from the stop signal to exit (see
/// BENCHMARKS.md, "signal to exit").
///
/// # Examples
///
/// ```no_run
/// use deputy_ipc::supervisor::{self, Config};
///
/// let error = supervisor::run_then_exit(Config::new(["python3", "app.py"]));
/// eprintln!("deputy: {error}");
/// std::process::exit(error.exit_code());
/// ```
pub fn run_then_exit(config: Config) -> RunError {
    match supervise(config, |code| exit_now(code)) {
        Ok(code) => exit_now(code),
        Err(error) => error,
    }
}

/// Ends the process with `code` at once: stdout flushed (stderr has no buffer), no
/// destructors, no `atexit` handlers (deputy registers none).
#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` takes no pointer and never returns; skipping destructors is its point,
    // and nothing this process holds needs one to run (the kernel closes and unmaps).
    unsafe { nix::libc::_exit(code) }
}

/// [`run`]'s body; `end` gets the exit code once everything is cleaned up, while the
/// supervisor's state is still held (its value is what `run` returns).
fn supervise(config: Config, end: impl FnOnce(i32) -> i32) -> Result<i32, RunError> {
    config.check()?;
    let (termination_log, message_before) = settle_the_way_out();
    let _ = log::format();
    let signals = take_process_duties(&config)?;
    let event_loop =
        EventLoop::new().map_err(|e| RunError::Setup(format!("cannot set up events: {e}")))?;
    let supervisor = start(&config, &event_loop)?;
    let (shutdown, child) = (supervisor.shutdown.clone(), supervisor.child.clone());
    let ran = event_loop.block_on(
        signals.fd(),
        || signals.handle(&shutdown, &child),
        supervisor.drive(),
    );
    if let Err(error) = ran {
        child.kill_all();
        return Err(RunError::Setup(format!("cannot wait for events: {error}")));
    }
    let exit = config.map(child.exit_code().unwrap_or(128 + 9));
    if let Some(path) = &termination_log {
        record_termination(path, &child, &shutdown, exit, message_before);
    }
    Ok(end(exit))
}

/// Sets everything up and starts the child: the plan, the servers, the stop plan, readiness
/// and the notify socket, the control socket (before the child, so that it and the pid file
/// exist once the child runs), then the child and its stop hook.
fn start(config: &Config, event_loop: &EventLoop) -> Result<Supervisor, RunError> {
    let coordinator = plan(config, event_loop)?;
    let shutdown = coordinator.handle();
    let health = health_server(&shutdown, config)?;
    let stop = stop_plan(config)?;
    let readiness = readiness_check(config)?;
    let notify = notify_socket(config, &stop.ipc_dir)?;
    // Binding is a few system calls; async-io's reactor and thread start later.
    let control = config
        .control_socket
        .then(|| control_server(&shutdown, &stop))
        .flatten();
    let mut env = child_env(config);
    env.extend(notify.iter().flat_map(NotifySocket::env));
    let child = Arc::new(Child::spawn(
        &config.command,
        (&env, &config.withheld_env),
        stop,
    )?);
    // After the start, so the child keeps the limit deputy was given (unless told
    // otherwise): a flood of connections to the health port or the control socket should
    // not find deputy at a soft limit of 1,024 descriptors.
    if !config.raise_child_nofile {
        raise_nofile_limit();
    }
    if readiness.is_none() && notify.is_none() {
        shutdown.ready();
    }
    hook_child_stop(&coordinator, child.clone(), config.map_exit.clone());
    Ok(Supervisor {
        coordinator,
        shutdown,
        control,
        health,
        child,
        grace: config.grace,
        drain_delay: config.drain_delay,
        readiness,
        notify,
        event_loop: event_loop.clone(),
    })
}

/// The process's own duties, before any thread exists (every thread inherits the blocked
/// signal mask): signals blocked for the signalfd, a subreaper when not PID 1, and the
/// descriptor limit raised now when the child is to have it too.
fn take_process_duties(config: &Config) -> Result<Signals, RunError> {
    let signals = Signals::block(&config.trigger_signals)
        .map_err(|e| RunError::Setup(format!("cannot set up signals: {e}")))?;
    if std::process::id() != 1
        && config.subreaper
        && let Err(error) = nix::sys::prctl::set_child_subreaper(true)
    {
        say_warn!("cannot become a child subreaper ({error}); orphans will go to PID 1");
    }
    if config.raise_child_nofile {
        raise_nofile_limit();
    }
    Ok(signals)
}

/// The stop-child phase's hook: ask the child to stop its way, then clean up its sockets.
/// The child's exit code, mapped, is what deputy exits with: the report says so too, so that
/// `deputy terminate` and `/shutdown` tell the same code as the termination message.
fn hook_child_stop(
    coordinator: &deputy_core::ShutdownCoordinator,
    child: Arc<Child>,
    map_exit: Vec<(i32, i32)>,
) {
    let shutdown = coordinator.handle();
    coordinator
        .hook(child::PHASE, "child", move |_ctx| async move {
            stop::stop(&child).await;
            if let Some(code) = child.exit_code() {
                shutdown.set_exit_code(config::mapped(&map_exit, code));
            }
            child.clean_up().await;
        })
        .expect("the plan has the stop-child phase");
}

/// The coordinator: one phase, `stop-child`, bounded by the grace period.
fn plan(config: &Config, event_loop: &EventLoop) -> Result<ShutdownCoordinator, RunError> {
    let builder = ShutdownCoordinator::builder()
        .grace_period(config.grace)
        .drain_delay(config.drain_delay)
        .quiet_period(config.quiet_period);
    let builder = match config.drain_delay_max {
        Some(max) => builder.drain_delay_max(max),
        None => builder,
    };
    // Abandoned (the grace period over, a third signal), the child gets SIGKILL: deputy
    // then exits with what that maps to, and the report says so from the start.
    let codes = ExitCodes {
        abandoned: config.map(128 + 9),
        ..ExitCodes::default()
    };
    let readiness = if config.ready_while_draining {
        deputy_core::Readiness::UntilListenerCloses
    } else {
        deputy_core::Readiness::OffAtTrigger
    };
    builder
        .exit_codes(codes)
        .readiness(readiness)
        .without_default_phases()
        .phase(Phase::new(child::PHASE).timeout(config.grace))
        // The phase may use the whole grace period when a second signal skipped the delay;
        // the grace period still bounds the whole shutdown.
        .allow_over_budget()
        .build(LoopRuntime(event_loop.clone()))
        .map_err(|e| RunError::Setup(e.to_string()))
}

fn health_server(shutdown: &Shutdown, config: &Config) -> Result<Option<HealthServer>, RunError> {
    let Some(port) = config.health_port else {
        return Ok(None);
    };
    let server = HealthServer::bind(shutdown, SocketAddr::from(([0, 0, 0, 0], port)))
        .map_err(|e| RunError::Setup(e.to_string()))?
        .linger(config.health_linger);
    let server = if config.metrics {
        server.with_metrics()
    } else {
        server
    };
    Ok(Some(match &config.shutdown_token {
        Some(token) => server.with_shutdown_endpoint(token.clone()),
        None => server,
    }))
}

/// How readiness is told, if not from the start.
fn readiness_check(config: &Config) -> Result<Option<ReadyCheck>, RunError> {
    if let Some(url) = &config.ready_url {
        return LocalUrl::parse("--ready-url", url)
            .map(|url| Some(ReadyCheck::Url(url)))
            .map_err(RunError::Usage);
    }
    Ok(config.ready_port.map(ReadyCheck::Port))
}

/// How the child is to be stopped.
fn stop_plan(config: &Config) -> Result<StopPlan, RunError> {
    Ok(StopPlan {
        signal: config.stop_signal,
        group: config.group,
        ipc_dir: config.ipc_dir.clone().unwrap_or_else(crate::ipc_dir),
        cleanup_timeout: config.cleanup_timeout,
        way: stop_way(config)?,
        timeout: config.stop_timeout,
    })
}

/// With `--notify`, the socket the child's messages come to, in the control directory.
fn notify_socket(config: &Config, dir: &Path) -> Result<Option<NotifySocket>, RunError> {
    if !config.notify {
        return Ok(None);
    }
    NotifySocket::bind(dir, config.watchdog)
        .map(Some)
        .map_err(|e| {
            RunError::Setup(format!(
                "cannot bind the notify socket in {}: {e}",
                dir.display()
            ))
        })
}

/// The child's own way to be asked to stop, if one is given.
fn stop_way(config: &Config) -> Result<Option<StopWay>, RunError> {
    if let Some(text) = &config.stop_command {
        let words = shell_words::split(text)
            .map_err(|e| RunError::Usage(format!("--stop-command `{text}`: {e}")))?;
        if words.is_empty() {
            return Err(RunError::Usage("--stop-command is empty".into()));
        }
        return Ok(Some(StopWay::Command(
            words.into_iter().map(OsString::from).collect(),
        )));
    }
    config
        .stop_url
        .as_ref()
        .map(|url| LocalUrl::parse("--stop-url", url).map(StopWay::Url))
        .transpose()
        .map_err(RunError::Usage)
}

/// [`crate::raise_nofile_limit`], said if it fails (deputy goes on with the limit it has).
fn raise_nofile_limit() {
    if let Err(error) = crate::raise_nofile_limit() {
        say_warn!("cannot raise the open-files limit: {error}");
    }
}

/// The supervisor's own control socket, and the pid file too, unless DEPUTY_ENTRYPOINT=0
/// says deputy runs under another supervisor (say, another `deputy run`), which keeps it.
fn control_server(shutdown: &Shutdown, stop: &StopPlan) -> Option<ControlServer> {
    match ControlServer::bind(shutdown, ServerConfig::default().dir(&stop.ipc_dir)) {
        Ok(server) => Some(server),
        Err(error) => {
            say_warn!("no control socket, `deputy terminate` will not find this process: {error}");
            None
        }
    }
}

/// What the child gets on top of deputy's environment.
fn child_env(config: &Config) -> Vec<(OsString, OsString)> {
    let mut env = vec![(crate::ENTRYPOINT_ENV.into(), "0".into())];
    // deputy serves the health endpoints: a child that uses deputy too must not try the
    // same port (its default is deputy's usual one), nor serve any the probes never see.
    if config.health_port.is_some() {
        env.push((
            crate::HEALTH_CHECK_PORT_ENV.into(),
            crate::HEALTH_CHECK_OFF.into(),
        ));
    }
    if let Some(dir) = &config.ipc_dir {
        env.push((crate::IPC_DIR_ENV.into(), dir.clone().into_os_string()));
    }
    env
}

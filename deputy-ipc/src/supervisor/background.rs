//! Everything the supervisor runs once the child is started: the shutdown, the control
//! socket and health servers, readiness, the notify socket, and the line that says the
//! shutdown started.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use deputy_core::{Ending, Shutdown, ShutdownCoordinator};
use futures::future::{join, select};

use super::child::Child;
use super::event_loop::{EventLoop, LoopListener};
use super::notify::NotifySocket;
use super::readiness::{self, ReadyCheck};
use super::{say, say_warn, traffic};
use crate::{ControlServer, HealthServer};

/// Everything the supervisor runs, once the child is started.
pub(super) struct Supervisor {
    pub(super) coordinator: ShutdownCoordinator,
    pub(super) shutdown: Shutdown,
    pub(super) control: Option<ControlServer>,
    pub(super) health: Option<HealthServer>,
    pub(super) child: Arc<Child>,
    pub(super) grace: Duration,
    pub(super) drain_delay: Duration,
    pub(super) readiness: Option<ReadyCheck>,
    pub(super) notify: Option<NotifySocket>,
    pub(super) event_loop: EventLoop,
}

impl Supervisor {
    /// Runs the signal loop, the servers and the shutdown until the child and its
    /// descendants are gone and the control socket's clients have hung up.
    pub(super) async fn drive(self) {
        let Supervisor {
            coordinator,
            shutdown,
            control,
            health,
            child,
            grace,
            drain_delay,
            readiness,
            notify,
            event_loop,
        } = self;
        let background = background(
            &shutdown,
            &child,
            readiness.as_ref(),
            notify.as_ref(),
            (grace, drain_delay),
        );
        let supervise = async {
            let report = coordinator.run().await;
            if !child.is_done() {
                // After a third signal, that signal's line already said it.
                if report.ending != Ending::Abandoned {
                    say_warn!(
                        "the grace period of {} is over: killing process group {}",
                        humantime::format_duration(grace),
                        child.pid()
                    );
                }
                child.kill_all_and_wait().await;
            }
        };
        // Both end once shutdown is done and their clients have what they waited for: the
        // control socket's `deputy terminate`, and the health port's `/shutdown` (it lingers
        // a second after Done, so that an httpGet preStop gets its answer).
        let servers = async {
            let control = async {
                if let Some(control) = control {
                    control
                        .run_with(|listener| LoopListener::new(&event_loop, listener))
                        .await;
                }
            };
            let health = async {
                if let Some(health) = health {
                    health.run().await;
                }
            };
            join(control, health).await
        };
        let _ = select(pin!(join(supervise, servers)), pin!(background)).await;
    }
}

/// What runs beside the shutdown, to the end: readiness and the child's
/// traffic, the notify socket, and the line that says the shutdown started. Never returns.
async fn background(
    shutdown: &Shutdown,
    child: &Child,
    readiness: Option<&ReadyCheck>,
    notify: Option<&NotifySocket>,
    (grace, drain_delay): (Duration, Duration),
) {
    let readiness = async {
        if let Some(check) = readiness {
            // New connections to the child's port while draining: the report's propagation,
            // and what an adaptive drain delay waits out.
            join(
                readiness::follow(shutdown, check),
                traffic::watch(shutdown, check.port()),
            )
            .await;
        }
    };
    let notify = async {
        if let Some(notify) = notify {
            notify.serve(shutdown, child, grace).await;
        }
    };
    let _ = join(
        join(readiness, notify),
        announce(shutdown, child, drain_delay),
    )
    .await;
    std::future::pending::<()>().await;
}

/// Says when and why shutdown starts, whatever started it (a signal, `deputy terminate`,
/// `/shutdown`).
async fn announce(shutdown: &Shutdown, child: &Child, delay: Duration) {
    shutdown.draining_token().cancelled().await;
    if child.exit_code().is_some() {
        return; // the child's own exit started it, and that was said
    }
    let why = shutdown
        .reason()
        .map_or_else(|| "shutdown".to_owned(), |reason| reason.to_string());
    let readiness = match shutdown.readiness() {
        deputy_core::Readiness::OffAtTrigger => "readiness off",
        _ => "ready until the drain is over",
    };
    if delay.is_zero() {
        say!("{why}: {readiness}, stopping process {}", child.pid());
    } else {
        say!(
            "{why}: {readiness}, stopping process {} in {}",
            child.pid(),
            humantime::format_duration(delay)
        );
    }
}

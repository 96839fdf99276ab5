//! Readiness from the child itself: its port accepting connections (`--ready-port`), or a URL
//! of its answering 2xx (`--ready-url`).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use async_io::Async;
use deputy_core::Shutdown;
use hyper::Method;

use super::local_url::LocalUrl;
use super::say;
use crate::timeout::within;

/// How the supervisor tells whether the child is ready.
#[derive(Debug, Clone)]
pub(super) enum ReadyCheck {
    /// It accepts TCP connections on this port of 127.0.0.1.
    Port(u16),
    /// `GET` on this URL answers 2xx.
    Url(LocalUrl),
}

impl ReadyCheck {
    /// The child's port it checks.
    pub(super) fn port(&self) -> u16 {
        match self {
            ReadyCheck::Port(port) => *port,
            ReadyCheck::Url(url) => url.port(),
        }
    }

    /// One check, bounded to a second.
    async fn probe(&self) -> bool {
        match self {
            ReadyCheck::Port(port) => {
                let connect =
                    Async::<TcpStream>::connect(SocketAddr::from(([127, 0, 0, 1], *port)));
                matches!(within(Duration::from_secs(1), connect).await, Some(Ok(_)))
            }
            ReadyCheck::Url(url) => within(Duration::from_secs(1), url.request(Method::GET))
                .await
                .is_some_and(|answer| answer.is_ok_and(|status| status.is_success())),
        }
    }

    fn describe(&self, ready: bool) -> String {
        match (self, ready) {
            (ReadyCheck::Port(port), true) => {
                format!("the child accepts connections on port {port}")
            }
            (ReadyCheck::Port(port), false) => {
                format!("the child refuses connections on port {port}")
            }
            (ReadyCheck::Url(url), true) => format!("{} answers 2xx", url.as_str()),
            (ReadyCheck::Url(url), false) => format!("{} does not answer 2xx", url.as_str()),
        }
    }
}

/// Readiness follows `check`: every 200 ms until the child is ready, then every second,
/// until readiness is off for good: from the trigger on, or (`--ready-while-draining`) once
/// the drain is over.
pub(super) async fn follow(shutdown: &Shutdown, check: &ReadyCheck) {
    let draining = match shutdown.readiness() {
        deputy_core::Readiness::OffAtTrigger => shutdown.draining_token(),
        _ => shutdown.stopping_token(),
    };
    let mut was_ready = false;
    while !draining.is_cancelled() {
        let ready = check.probe().await;
        if ready != was_ready {
            if ready {
                shutdown.ready();
                say!("ready: {}", check.describe(true));
            } else {
                shutdown.not_ready();
                say!("not ready: {}", check.describe(false));
            }
            was_ready = ready;
        }
        let every = if ready { 1000 } else { 200 };
        let _ = within(Duration::from_millis(every), draining.cancelled()).await;
    }
}

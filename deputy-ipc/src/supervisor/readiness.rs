//! Readiness from the child's port, for `--ready-port`.

use std::net::SocketAddr;
use std::time::Duration;

use deputy_core::Shutdown;

use super::say;
use crate::timeout::within;

/// Readiness follows whether the child accepts connections on `port`: checked every 200 ms
/// until it does, then every second, until shutdown starts (which turns readiness off for
/// good).
pub(super) async fn follow(shutdown: &Shutdown, port: u16) {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let draining = shutdown.draining_token();
    let mut was_ready = false;
    while !draining.is_cancelled() {
        let connect = async_io::Async::<std::net::TcpStream>::connect(address);
        let ready = matches!(within(Duration::from_secs(1), connect).await, Some(Ok(_)));
        if ready != was_ready {
            if ready {
                shutdown.ready();
                say!("ready: the child accepts connections on port {port}");
            } else {
                shutdown.not_ready();
                say!("not ready: the child refuses connections on port {port}");
            }
            was_ready = ready;
        }
        let every = if ready { 1000 } else { 200 };
        let _ = within(Duration::from_millis(every), draining.cancelled()).await;
    }
}

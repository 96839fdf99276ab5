//! What `deputy run` can see of its child's traffic: new TCP connections to the child's port,
//! from the kernel's table of the network namespace's sockets (/proc/net/tcp and tcp6, which
//! in a pod are the pod's). Watched from the trigger to the end of the drain, every 100 ms, so
//! that the adaptive drain delay (`--drain-delay-max`) and the propagation in the report see
//! the last new connection. A connection is known by its peer's address and port, in any state
//! but listening: one opened and closed between two looks is still there, in TIME_WAIT (for a
//! minute). The requests on a kept-alive connection are not seen at all (only the library sees
//! requests).

use std::collections::HashSet;
use std::time::Duration;

use deputy_core::{Arrival, Shutdown, State};

use crate::timeout::within;

/// How often the socket table is read while draining.
const EVERY: Duration = Duration::from_millis(100);

/// Notes a new connection to `port` whenever one appears, from the trigger until the drain
/// is over.
pub(super) async fn watch(shutdown: &Shutdown, port: u16) {
    shutdown.watch_arrivals();
    shutdown.draining_token().cancelled().await;
    let stopping = shutdown.stopping_token();
    let mut seen = connections(port);
    while shutdown.state() == State::Draining {
        let _ = within(EVERY, stopping.cancelled()).await;
        let now = connections(port);
        if now.iter().any(|socket| !seen.contains(socket)) {
            shutdown.arrived(Arrival::Connection);
        }
        seen = now;
    }
}

/// The peers (address and port, as the table writes them) of the connections to local port
/// `port`.
fn connections(port: u16) -> HashSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| connection_to(line, port))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The peer of the connection a table line describes, if it is one on local port `port`. A
/// line: `sl local_address rem_address st ...`, addresses as `HEXIP:HEXPORT`, state `0A` for
/// a listening socket (not a connection).
fn connection_to(line: &str, port: u16) -> Option<String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local_port = fields.get(1)?.rsplit_once(':')?.1;
    if u16::from_str_radix(local_port, 16).ok()? != port || *fields.get(3)? == "0A" {
        return None;
    }
    Some((*fields.get(2)?).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lines_are_read_by_port_and_state() {
        let listening = "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1602 1 0000 100 0 0 10 0";
        let established = "   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4711 1 0000 20 4 30 10 -1";
        let other_port = "   2: 0100007F:1F91 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4712 1 0000 20 4 30 10 -1";
        let time_wait = "   3: 0100007F:1F90 0100007F:D2F1 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000";
        assert_eq!(connection_to(listening, 8080), None);
        assert_eq!(
            connection_to(established, 8080).as_deref(),
            Some("0100007F:D2F0")
        );
        assert_eq!(
            connection_to(time_wait, 8080).as_deref(),
            Some("0100007F:D2F1")
        );
        assert_eq!(connection_to(other_port, 8080), None);
        assert_eq!(connection_to("garbage", 8080), None);
    }
}

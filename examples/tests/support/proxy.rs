//! Kubernetes' side of a rolling termination: a round-robin TCP proxy standing in for
//! kube-proxy (backends come and go, open connections keep flowing), and the preStop hook.

use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::deputy;

/// Round-robin TCP proxy; backends can be removed, existing connections keep flowing.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Proxy {
    pub(crate) fn start(backends: Vec<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(Mutex::new(backends));
        let list = backends.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let backend = {
                    let list = list.lock().unwrap();
                    next += 1;
                    list[next % list.len()]
                };
                let Ok(server) = TcpStream::connect(backend) else {
                    let _ = client.shutdown(NetShutdown::Both);
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { addr, backends }
    }

    pub(crate) fn remove(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().retain(|b| *b != backend);
    }

    /// Adds `backend` to the rotation.
    pub(crate) fn add(&self, backend: SocketAddr) {
        self.backends.lock().unwrap().push(backend);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(NetShutdown::Write);
    });
}

/// The preStop hook: `deputy terminate`, inside the pod's PID namespace when it has one.
/// Err: its exit code and what it said.
pub(crate) fn prestop(pod_pid: u32, as_pid_1: bool, dir: &Path) -> Result<(), String> {
    let mut prestop = if as_pid_1 {
        let mut c = Command::new("nsenter");
        c.args(["--target", &pod_pid.to_string(), "--pid", "--"])
            .arg(deputy());
        c
    } else {
        Command::new(deputy())
    };
    let out = prestop
        .arg("terminate")
        .arg("--ipc-dir")
        .arg(dir)
        .output()
        .unwrap();
    match out.status.code() {
        Some(0) => Ok(()),
        code => Err(format!(
            "preStop exited {code:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

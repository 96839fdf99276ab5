//! Kubernetes' endpoints since 1.28 (KEP-1669), and kube-proxy's choice among them: each
//! endpoint has its conditions (`serving` follows its pod's readiness probe, `terminating` is
//! set when the pod is deleted, `ready` is serving and not terminating), and a new connection
//! goes to a ready endpoint if there is one, else to a serving terminating one, else nowhere
//! (the client's connection is closed: a failed request).

use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http_status;

/// One pod's endpoint: its address, its health port, and its conditions.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    health: u16,
    serving: AtomicBool,
    terminating: AtomicBool,
}

impl Endpoint {
    fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && !self.terminating.load(Ordering::SeqCst)
    }

    fn serving_while_terminating(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && self.terminating.load(Ordering::SeqCst)
    }

    /// The pod is being deleted.
    pub(crate) fn terminate(&self) {
        self.terminating.store(true, Ordering::SeqCst);
    }

    /// Whether the last readiness probe passed.
    pub(crate) fn serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }
}

/// A TCP proxy that picks an endpoint for each new connection as kube-proxy does, with a
/// readiness probe of every endpoint every 100 ms (the kubelet's, at its fastest).
pub(crate) struct EndpointProxy {
    pub(crate) addr: SocketAddr,
    endpoints: Arc<Mutex<Vec<Arc<Endpoint>>>>,
}

impl EndpointProxy {
    pub(crate) fn start() -> EndpointProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoints: Arc<Mutex<Vec<Arc<Endpoint>>>> = Arc::default();
        let list = endpoints.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                next += 1;
                let chosen = choose(&list.lock().unwrap(), next);
                let server = chosen.and_then(|addr| TcpStream::connect(addr).ok());
                let Some(server) = server else {
                    // No endpoint to send it to: the connection is refused.
                    let _ = client.shutdown(NetShutdown::Both);
                    continue;
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        let probed = endpoints.clone();
        std::thread::spawn(move || {
            loop {
                let list: Vec<Arc<Endpoint>> = probed.lock().unwrap().clone();
                for endpoint in list {
                    let ok = http_status(endpoint.health, "GET", "/health/ready") == 200;
                    endpoint.serving.store(ok, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        EndpointProxy { addr, endpoints }
    }

    /// Adds a pod's endpoint, not serving until its first probe passes.
    pub(crate) fn add(&self, addr: SocketAddr, health: u16) -> Arc<Endpoint> {
        let endpoint = Arc::new(Endpoint {
            addr,
            health,
            serving: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
        });
        self.endpoints.lock().unwrap().push(endpoint.clone());
        endpoint
    }
}

/// kube-proxy's choice (KEP-1669): ready endpoints first, else serving terminating ones.
fn choose(endpoints: &[Arc<Endpoint>], next: usize) -> Option<SocketAddr> {
    let pick = |filter: fn(&Endpoint) -> bool| {
        let candidates: Vec<&Arc<Endpoint>> = endpoints.iter().filter(|e| filter(e)).collect();
        (!candidates.is_empty()).then(|| candidates[next % candidates.len()].addr)
    };
    pick(Endpoint::ready).or_else(|| pick(Endpoint::serving_while_terminating))
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(NetShutdown::Write);
    });
}

//! A TCP proxy that knows nothing of graceful shutdown: std only, a thread per direction of
//! each connection, no signal handling (SIGTERM kills it and every connection through it).
//! It stands in for a sidecar the application needs while it drains: an auth proxy in front
//! of it, a mesh's proxy, a database proxy.
//!
//! ```text
//! cargo run --example tcp-proxy -- --port 9090 --upstream 127.0.0.1:8080
//! ```
//!
//! Options: `--port N` (default `$PORT`, else 9090) and `--upstream HOST:PORT` (default
//! `$UPSTREAM`). It prints one line when it listens: `tcp-proxy: listening on <address>`.
//! `examples/k8s/native-sidecar.yaml` runs it under `deputy run` as a native sidecar.

use std::net::{Shutdown, TcpListener, TcpStream};

const USAGE: &str = "usage: tcp-proxy [--port N] --upstream HOST:PORT   (or $PORT, $UPSTREAM)";

fn main() {
    let (port, upstream) = options();
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|error| {
        eprintln!("tcp-proxy: cannot listen on port {port}: {error}");
        std::process::exit(1);
    });
    println!("tcp-proxy: listening on {}", listener.local_addr().unwrap());
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        match TcpStream::connect(&upstream) {
            Ok(server) => {
                let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                pipe(client_copy, server_copy);
                pipe(server, client);
            }
            Err(error) => {
                eprintln!("tcp-proxy: {upstream}: {error}");
                let _ = client.shutdown(Shutdown::Both);
            }
        }
    }
}

/// `--port` and `--upstream`, from the command line or the environment.
fn options() -> (u16, String) {
    let mut port = std::env::var("PORT").ok();
    let mut upstream = std::env::var("UPSTREAM").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--port", Some(value)) => port = Some(value),
            ("--upstream", Some(value)) => upstream = Some(value),
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(if arg == "--help" || arg == "-h" { 0 } else { 2 });
            }
        }
    }
    let port = port
        .as_deref()
        .unwrap_or("9090")
        .parse::<u16>()
        .unwrap_or_else(|_| {
            eprintln!("tcp-proxy: the port is not a number\n{USAGE}");
            std::process::exit(2);
        });
    let Some(upstream) = upstream else {
        eprintln!("tcp-proxy: no upstream\n{USAGE}");
        std::process::exit(2);
    };
    (port, upstream)
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing half.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

//! A service that knows nothing of graceful shutdown: std only, no signal handling, a thread
//! per connection, one request per connection. SIGTERM kills it on the spot, whatever it was
//! doing. This is the kind of program `deputy run` is for:
//!
//! ```text
//! cargo build --release -p deputy-ipc --bin deputy -p deputy-examples --example plain-server
//! target/release/deputy run --drain-delay 2s --health-port 8081 -- target/release/examples/plain-server
//! ```
//!
//! After a SIGTERM to deputy (`pkill -TERM -x deputy` from another terminal, as the kubelet
//! would; Ctrl-C at deputy's terminal goes to plain-server itself, which dies on the spot),
//! readiness is off on :8081 while plain-server goes on answering on :8080 for the drain
//! delay; then deputy sends it SIGTERM.
//!
//! Options: `--port N` (default `$PORT`, else 8080; 0 for any free port). It prints one line when it
//! listens: `plain-server: listening on <address>, pid <pid>`. `GET /work?ms=N` answers after
//! N milliseconds (a slow request); any other request at once.

use std::io::{BufRead, BufReader, Write};

const USAGE: &str = "usage: plain-server [--port N]   (default $PORT, else 8080; 0: any free port)";
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = match std::env::var("PORT") {
        Ok(text) => text.parse::<u16>().unwrap_or_else(|_| {
            eprintln!("plain-server: PORT={text} is not a port");
            std::process::exit(2);
        }),
        Err(_) => deputy_examples::http_service::PORT,
    };
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            return Ok(());
        }
        match (arg.as_str(), args.next().map(|p| p.parse::<u16>())) {
            ("--port", Some(Ok(value))) => port = value,
            _ => {
                eprintln!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|error| {
        eprintln!("plain-server: cannot listen on port {port}: {error}");
        std::process::exit(1);
    });
    println!(
        "plain-server: listening on {}, pid {}",
        listener.local_addr()?,
        std::process::id()
    );
    for stream in listener.incoming().flatten() {
        // A bad client must not stop the server: its thread's error goes nowhere.
        std::thread::spawn(move || answer(stream));
    }
    Ok(())
}

/// Reads the request head and answers `hello` (after a while, for `/work?ms=N`), closing the
/// connection.
fn answer(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 && line != "\r\n" && line != "\n" {
        line.clear();
    }
    let work = request
        .split_whitespace()
        .nth(1)
        .and_then(|path| path.strip_prefix("/work?ms="))
        .and_then(|ms| ms.parse().ok());
    if let Some(ms) = work {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    (&stream).write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nhello\n")
}

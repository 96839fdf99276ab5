//! Fuzzes the control protocol's request decoder: it must never panic, and whatever it
//! accepts must encode to a line that decodes to the same request.
//!
//! Run with `cargo +nightly fuzz run decode_request -- -max_total_time=60` from `fuzz/`'s
//! parent directory (needs `cargo install cargo-fuzz`).

#![no_main]

use deputy_ipc::protocol::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = Request::decode(data) {
        let line = request.encode();
        assert_eq!(Request::decode(line.trim_end().as_bytes()), Ok(request));
    }
});

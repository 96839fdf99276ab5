//! Runnable deputy services (in `examples/`) and the end-to-end tests that drive them (in
//! `tests/`). Nothing here is published; the library is empty on purpose.
//!
//! Run the demo with `cargo run --example demo`.

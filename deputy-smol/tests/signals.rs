//! `handle_signals` on smol takes signal numbers, as deputy-tokio's does.

use std::time::Duration;

use deputy_core::{ShutdownCoordinator, State};
use deputy_smol::{AsyncIoRuntime, DEFAULT_SIGNALS, handle_signals};

#[test]
fn a_number_async_signal_cannot_handle_is_refused_by_name() {
    let coordinator = ShutdownCoordinator::builder()
        .build(AsyncIoRuntime)
        .unwrap();
    // SIGRTMIN + 1: a real-time signal, which async-signal has no variant for.
    let error = handle_signals(coordinator.handle(), [35])
        .err()
        .expect("refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("signal 35"), "{error}");
}

/// A signal added to the defaults by number (SIGUSR2, 12, here; a pod's `stopSignal`
/// in practice) starts the shutdown.
#[test]
fn a_signal_added_by_number_triggers() {
    let coordinator = ShutdownCoordinator::builder()
        .build(AsyncIoRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let signals = DEFAULT_SIGNALS.into_iter().chain([12]);
    smol::spawn(handle_signals(shutdown.clone(), signals).unwrap()).detach();
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::USR2)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while shutdown.state() == State::Running && std::time::Instant::now() < deadline {
        smol::block_on(smol::Timer::after(Duration::from_millis(10)));
    }
    assert_eq!(shutdown.state(), State::Draining);
}

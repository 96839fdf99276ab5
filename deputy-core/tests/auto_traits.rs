//! Every public type is `Send + Sync` (but `VitalTask`, a future to spawn: `Send`) (handles are shared across threads and tasks), and the
//! futures and guards are `Unpin` where users would expect to poll them by `&mut`.

fn send_sync<T: Send + Sync>() {}
fn send_sync_unpin<T: Send + Sync + Unpin>() {}

#[test]
fn public_types_are_send_and_sync() {
    use deputy_core::*;
    send_sync_unpin::<CancellationToken>();
    send_sync_unpin::<Cancelled>();
    send_sync_unpin::<DropGuard>();
    send_sync_unpin::<InFlight>();
    send_sync_unpin::<DrainGuard>();
    send_sync_unpin::<Drained>();
    send_sync_unpin::<Track<std::future::Ready<()>>>();
    send_sync_unpin::<Shutdown>();
    send_sync_unpin::<ShutdownCoordinator>();
    send_sync_unpin::<Transitions>();
    send_sync_unpin::<Done>();
    send_sync_unpin::<ShutdownReport>();
    send_sync_unpin::<HookContext>();
    send_sync_unpin::<ManualClock>();
    send_sync_unpin::<Builder>();
    send_sync_unpin::<state::Machine>();
    send_sync::<BuildError>();
    send_sync::<HookError>();
    send_sync::<Reason>();
    send_sync::<Status>();
    send_sync_unpin::<TaskGroup>();
    // A future to spawn, holding the task's future: Send (for tokio::spawn), not Sync, as
    // the task's own future need not be.
    fn send_unpin<T: Send + Unpin>() {}
    send_unpin::<VitalTask>();
}

#[test]
fn the_run_future_is_send() {
    // So it can be spawned on a multi-threaded runtime.
    fn send<T: Send>(_: &T) {}
    let coordinator = deputy_core::ShutdownCoordinator::builder()
        .build(deputy_core::ManualClock::new())
        .unwrap();
    let shutdown = coordinator.handle();
    send(&coordinator.run());
    send(&shutdown.done());
}

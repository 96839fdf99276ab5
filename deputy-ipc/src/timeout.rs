//! The one race of a future against a timer in this crate (async-io's timer, so it works
//! under any executor).

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::future::{Either, select};

/// `future`'s output, or `None` if `timeout` passes first.
pub(crate) async fn within<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    until(Instant::now() + timeout, future).await
}

/// `future`'s output, or `None` if `deadline` passes first.
pub(crate) async fn until<F: Future>(deadline: Instant, future: F) -> Option<F::Output> {
    match select(pin!(future), Timer::at(deadline)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

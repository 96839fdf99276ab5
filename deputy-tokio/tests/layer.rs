//! The drain layer: a guard per request for as long as the response takes, and
//! `Connection: close` from the first trigger on.

use std::convert::Infallible;
use std::time::Duration;

use deputy_core::{ShutdownCoordinator, State};
use deputy_tokio::{DrainLayer, TokioRuntime};
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn a_slow_request_holds_the_drain_open_and_late_ones_are_served() {
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::from_secs(1))
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let service = DrainLayer::new(shutdown.clone()).layer(tower::service_fn(
        |request: http::Request<u64>| async move {
            tokio::time::sleep(Duration::from_millis(*request.body())).await;
            Ok::<_, Infallible>(http::Response::new(()))
        },
    ));
    let run = tokio::spawn(coordinator.run());

    let slow = tokio::spawn(service.clone().oneshot(http::Request::new(5_000)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(shutdown.in_flight(), 1);
    shutdown.trigger("deploy");
    // A request arriving while draining is served, told to close its connection.
    let late = service
        .clone()
        .oneshot(http::Request::new(10))
        .await
        .unwrap();
    assert_eq!(late.headers()["connection"], "close");
    drop(late); // sent: its body (none) is over
    // It is the last new request after the trigger: the report's propagation.
    let late_at = shutdown.status().propagation.last_request;
    assert!(
        late_at.is_some_and(|at| at < Duration::from_secs(1)),
        "{late_at:?}"
    );
    // Past the drain delay, the slow request still holds the drain open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shutdown.state(), State::Draining);
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.headers()["connection"], "close");
    drop(slow);
    let report = run.await.unwrap();
    assert_eq!(report.drain.in_flight_at_end, 0);
    assert_eq!(report.drain.propagation.last_request, late_at);
    assert_eq!(report.exit_code, 0);
}

#[tokio::test]
async fn responses_before_the_trigger_keep_the_connection() {
    let coordinator = ShutdownCoordinator::builder().build(TokioRuntime).unwrap();
    let mut service = DrainLayer::new(coordinator.handle()).layer(tower::service_fn(
        |_: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) },
    ));
    let response = service
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    assert!(response.headers().get("connection").is_none());
    // In flight until the body is sent (here: dropped).
    assert_eq!(coordinator.handle().in_flight(), 1);
    drop(response);
    assert_eq!(coordinator.handle().in_flight(), 0);
    // Before the trigger, requests are not propagation.
    assert_eq!(coordinator.handle().status().propagation.last_request, None);
}

/// A body of `chunks` chunks, one every second.
fn ticking(
    chunks: u32,
) -> http_body_util::StreamBody<
    impl futures::Stream<Item = Result<http_body::Frame<bytes::Bytes>, Infallible>>,
> {
    http_body_util::StreamBody::new(futures::stream::unfold(0, move |sent| async move {
        if sent == chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((
            Ok(http_body::Frame::data(bytes::Bytes::from("tick\n"))),
            sent + 1,
        ))
    }))
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_holds_the_drain_until_its_last_byte() {
    use http_body_util::BodyExt;
    let coordinator = ShutdownCoordinator::builder()
        .drain_delay(Duration::ZERO)
        .drain_timeout(Duration::from_secs(10))
        .build(TokioRuntime)
        .unwrap();
    let shutdown = coordinator.handle();
    let service =
        DrainLayer::new(shutdown.clone()).layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(ticking(4)))
        }));
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    // The headers are out; the body has 4 s to go.
    assert_eq!(shutdown.in_flight(), 1);
    shutdown.trigger("deploy");
    let run = tokio::spawn(coordinator.run());
    let reader = tokio::spawn(async move { response.into_body().collect().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        shutdown.state(),
        State::Draining,
        "the stream still holds the drain"
    );
    assert_eq!(reader.await.unwrap().to_bytes().len(), 4 * 5);
    let report = run.await.unwrap();
    assert_eq!(report.drain.in_flight_at_end, 0);
    assert!(
        report.drain.duration >= Duration::from_secs(4),
        "{:?}",
        report.drain.duration
    );
    assert!(
        report.drain.duration < Duration::from_secs(10),
        "{:?}",
        report.drain.duration
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_halfway_ends_its_request() {
    use http_body_util::BodyExt;
    let coordinator = ShutdownCoordinator::builder().build(TokioRuntime).unwrap();
    let shutdown = coordinator.handle();
    let service =
        DrainLayer::new(shutdown.clone()).layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(ticking(10)))
        }));
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    let mut body = Box::pin(response.into_body());
    assert!(body.frame().await.is_some());
    assert_eq!(shutdown.in_flight(), 1);
    drop(body); // the client went away
    assert_eq!(shutdown.in_flight(), 0);
}

#[tokio::test]
async fn http2_responses_never_carry_a_connection_header() {
    // RFC 9113, 8.2.2: a connection-specific header makes an HTTP/2 message malformed; an
    // HTTP/2 connection is told to go with GOAWAY instead (deputy_tokio::serve).
    let coordinator = ShutdownCoordinator::builder().build(TokioRuntime).unwrap();
    let shutdown = coordinator.handle();
    let service =
        DrainLayer::new(shutdown.clone()).layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(()))
        }));
    shutdown.trigger("deploy");
    let mut request = http::Request::new(());
    *request.version_mut() = http::Version::HTTP_2;
    let response = service.clone().oneshot(request).await.unwrap();
    assert!(response.headers().get("connection").is_none());
    // The same request in HTTP/1.1 is asked to close.
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(response.headers()["connection"], "close");
}

//! The request decoder: never panics, round-trips, and refuses bad input with the right code.

use deputy_ipc::protocol::{MAX_LINE, MAX_REASON, ProtocolError, Request, Response};
use proptest::prelude::*;

const CODES: [&str; 5] = [
    "line_too_long",
    "invalid_json",
    "unsupported_version",
    "unknown_op",
    "invalid_field",
];

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Status),
        (proptest::option::of(".{0,200}"), any::<bool>())
            .prop_map(|(reason, wait)| Request::Terminate { reason, wait }),
    ]
}

fn check_error(error: &ProtocolError) {
    assert!(
        CODES.contains(&error.code().as_str()),
        "unknown code {}",
        error.code()
    );
    let message = error.to_string();
    assert!(!message.is_empty() && !message.ends_with('.'));
    assert!(message.chars().next().unwrap().is_lowercase(), "{message}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(error) = Request::decode(&bytes) {
            check_error(&error);
        }
    }

    #[test]
    fn json_shaped_noise_never_panics(line in r#"\{("[a-z]{0,6}":(-?[0-9]{1,20}(\.[0-9])?|"[a-z]{0,9}"|true|false|null|\[\]|\{\}),?){0,5}\}"#) {
        if let Err(error) = Request::decode(line.as_bytes()) {
            check_error(&error);
        }
    }

    #[test]
    fn requests_round_trip(request in request()) {
        let line = request.encode();
        prop_assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        prop_assert_eq!(Request::decode(line.trim_end_matches('\n').as_bytes()), Ok(request));
    }

    #[test]
    fn responses_round_trip(state in prop::sample::select(deputy_core::State::ALL.to_vec()), in_flight in any::<u64>(), ready in any::<bool>(), message in prop::option::of(".*")) {
        let response = Response::Status { state, phase: None, in_flight, ready, live: !ready, elapsed_ms: 5, message, last_connection_ms: None, last_request_ms: Some(in_flight / 2), unmeasured: ready, oldest: vec![deputy_ipc::protocol::InFlightSummary { name: "GET /".into(), count: 2, age_ms: in_flight / 3 }] };
        let line = response.encode();
        prop_assert_eq!(line.matches('\n').count(), 1);
        prop_assert_eq!(Response::decode(line.as_bytes()), Ok(response));
    }
}

#[test]
fn an_overlong_line_is_refused_before_parsing() {
    let mut line = br#"{"v":1,"op":"status","pad":""#.to_vec();
    line.resize(MAX_LINE + 1, b'x');
    assert_eq!(Request::decode(&line), Err(ProtocolError::TooLong));
    // Exactly at the limit is still parsed.
    line.truncate(MAX_LINE - 2);
    line.extend_from_slice(b"\"}");
    assert_eq!(Request::decode(&line), Ok(Request::Status));
}

#[test]
fn each_kind_of_bad_input_gets_its_code() {
    let cases: [(&[u8], &str); 9] = [
        (b"", "invalid_json"),
        (b"terminate", "invalid_json"),
        (b"[1,2]", "invalid_json"),
        (br#"{"op":"status"}"#, "unsupported_version"),
        (br#"{"v":"1","op":"status"}"#, "unsupported_version"),
        (br#"{"v":1}"#, "unknown_op"),
        (br#"{"v":1,"op":"reboot"}"#, "unknown_op"),
        (br#"{"v":1,"op":"terminate","wait":"yes"}"#, "invalid_field"),
        (br#"{"v":1,"op":"terminate","reason":7}"#, "invalid_field"),
    ];
    for (line, code) in cases {
        let error = Request::decode(line).unwrap_err();
        assert_eq!(
            error.code().as_str(),
            code,
            "{}",
            String::from_utf8_lossy(line)
        );
        check_error(&error);
    }
}

#[test]
fn unknown_fields_are_ignored_and_defaults_apply() {
    assert_eq!(
        Request::decode(br#"{"v":1,"op":"terminate","future":{"x":1}}"#),
        Ok(Request::Terminate {
            reason: None,
            wait: true
        })
    );
    assert_eq!(
        Request::decode(b"{\"v\":1,\"op\":\"status\"}\r"),
        Ok(Request::Status)
    );
}

#[test]
fn a_long_reason_is_cut_at_a_character_boundary() {
    let reason = "é".repeat(MAX_REASON);
    let line = Request::Terminate {
        reason: Some(reason),
        wait: false,
    }
    .encode();
    let Ok(Request::Terminate {
        reason: Some(kept), ..
    }) = Request::decode(line.trim_end().as_bytes())
    else {
        panic!("not decoded");
    };
    assert!(kept.len() <= MAX_REASON && kept.len() >= MAX_REASON - 1);
    assert!(kept.chars().all(|c| c == 'é'));
}

/// Lines as version 1 servers and clients have written them since the first release (when
/// the enums inside were strings): each decodes to the typed response and encodes back to
/// the very same bytes, so old clients read new servers and new clients read old ones.
const RECORDED_V1: [&str; 8] = [
    r#"{"type":"progress","state":"draining","phase":null,"in_flight":3,"elapsed_ms":12}"#,
    r#"{"type":"progress","state":"stopping","phase":"flush","in_flight":0,"elapsed_ms":5012}"#,
    r#"{"type":"done","outcome":"timed out","exit_code":2,"reason":"SIGTERM","duration_ms":9000,"phases":[{"name":"flush","outcome":"timed out","duration_ms":3000},{"name":"close","outcome":"completed","duration_ms":1}]}"#,
    r#"{"type":"status","state":"running","phase":null,"in_flight":0,"ready":true,"live":true,"elapsed_ms":0}"#,
    r#"{"type":"accepted","started":false}"#,
    r#"{"type":"error","code":"refused","message":"only the same user or root may control this process"}"#,
    r#"{"type":"error","code":"unknown_op","message":"unknown op `x` (expected `terminate` or `status`)"}"#,
    r#"{"type":"error","code":"timeout","message":"no request line within 5s"}"#,
];

#[test]
fn recorded_version_1_lines_read_as_typed_responses_and_write_back_unchanged() {
    use deputy_core::{Outcome, PhaseOutcome, State};
    use deputy_ipc::protocol::ErrorCode;

    let decoded: Vec<Response> = RECORDED_V1
        .iter()
        .map(|line| Response::decode(line.as_bytes()).unwrap())
        .collect();
    for (line, response) in RECORDED_V1.iter().zip(&decoded) {
        assert_eq!(response.encode(), format!("{line}\n"));
    }
    assert!(matches!(
        decoded[0],
        Response::Progress {
            state: State::Draining,
            ..
        }
    ));
    match &decoded[2] {
        Response::Done {
            outcome, phases, ..
        } => {
            assert_eq!(*outcome, Outcome::TimedOut);
            assert_eq!(phases[0].outcome, PhaseOutcome::TimedOut);
            assert_eq!(phases[1].outcome, PhaseOutcome::Completed);
        }
        other => panic!("{other:?}"),
    }
    let codes: Vec<_> = decoded[5..]
        .iter()
        .map(|r| match r {
            Response::Error { code, .. } => *code,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        codes,
        [ErrorCode::Refused, ErrorCode::UnknownOp, ErrorCode::Timeout]
    );
}

#[test]
fn recorded_version_1_requests_are_what_clients_still_send() {
    assert_eq!(
        Request::Terminate {
            reason: Some("preStop".into()),
            wait: true
        }
        .encode(),
        "{\"op\":\"terminate\",\"reason\":\"preStop\",\"v\":1,\"wait\":true}\n"
    );
    assert_eq!(Request::Status.encode(), "{\"op\":\"status\",\"v\":1}\n");
}

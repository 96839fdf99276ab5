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
        CODES.contains(&error.code()),
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
    fn responses_round_trip(state in "[a-z]{1,10}", in_flight in any::<u64>(), ready in any::<bool>()) {
        let response = Response::Status { state, phase: None, in_flight, ready, live: !ready, elapsed_ms: 5 };
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
        assert_eq!(error.code(), code, "{}", String::from_utf8_lossy(line));
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

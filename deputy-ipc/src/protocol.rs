//! The control protocol, version 1: one JSON object per line, each way.
//!
//! A client sends one request line; the server answers with one or more response lines.
//!
//! | request | answer |
//! |---|---|
//! | `{"v":1,"op":"status"}` | one `status` line |
//! | `{"v":1,"op":"terminate","reason":"preStop","wait":true}` | a `progress` line per transition, then `done` |
//! | `{"v":1,"op":"terminate","wait":false}` | one `accepted` line |
//!
//! Unknown fields are ignored (so newer clients can add optional ones); an unknown `op` or
//! version, invalid JSON, or a line longer than [`MAX_LINE`] gets an `error` line whose `code`
//! says which. The decoder never panics, whatever the bytes (property-tested, and fuzzed by
//! `fuzz/fuzz_targets/decode_request.rs`).

use std::fmt;

use deputy_core::{Outcome, PhaseOutcome, ShutdownReport, State, Status, Transition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks.
pub const VERSION: u64 = 1;

/// The longest request line accepted, newline excluded: 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// The longest `reason` kept; longer ones are cut (at a character boundary).
pub const MAX_REASON: usize = 1024;

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Start shutting down; with `wait`, stream progress until done.
    Terminate {
        /// Why, as the client tells it (at most [`MAX_REASON`] bytes).
        reason: Option<String>,
        /// Stream progress until `Done` (default), or answer at once.
        wait: bool,
    },
    /// Report the current state.
    Status,
}

/// Why a request line was refused. Its [`code`](Self::code) goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The line is longer than [`MAX_LINE`].
    TooLong,
    /// The line is not one JSON object.
    InvalidJson(String),
    /// The `v` field is missing or not a version this server speaks.
    UnsupportedVersion(Option<String>),
    /// The `op` field is missing or names no operation.
    UnknownOp(Option<String>),
    /// A field has the wrong type.
    InvalidField(&'static str),
}

impl ProtocolError {
    /// The code that goes on the wire for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooLong => ErrorCode::LineTooLong,
            ProtocolError::InvalidJson(_) => ErrorCode::InvalidJson,
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtocolError::UnknownOp(_) => ErrorCode::UnknownOp,
            ProtocolError::InvalidField(_) => ErrorCode::InvalidField,
        }
    }
}

/// Why the server refused a request: the `code` of an [`Response::Error`], short, stable
/// and machine-readable.
///
/// ```
/// use deputy_ipc::protocol::ErrorCode;
///
/// assert_eq!(ErrorCode::Refused.as_str(), "refused");
/// assert_eq!(serde_json::to_string(&ErrorCode::LineTooLong).unwrap(), "\"line_too_long\"");
/// // A code from a newer server reads as `Other`.
/// assert_eq!(serde_json::from_str::<ErrorCode>("\"new_code\"").unwrap(), ErrorCode::Other);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request line is longer than [`MAX_LINE`].
    LineTooLong,
    /// The request line is not one JSON object.
    InvalidJson,
    /// The `v` field is missing or names a version the server does not speak.
    UnsupportedVersion,
    /// The `op` field is missing or names no operation.
    UnknownOp,
    /// A field has the wrong type.
    InvalidField,
    /// The peer belongs to another user (and is not root).
    Refused,
    /// The client sent no complete request line in time.
    Timeout,
    /// A code this version does not know (from a newer server).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it is on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::Refused => "refused",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::TooLong => write!(f, "request line longer than {MAX_LINE} bytes"),
            ProtocolError::InvalidJson(e) => write!(f, "request is not a JSON object: {e}"),
            ProtocolError::UnsupportedVersion(Some(v)) => {
                write!(
                    f,
                    "protocol version {v} is not supported (this server speaks {VERSION})"
                )
            }
            ProtocolError::UnsupportedVersion(None) => {
                write!(
                    f,
                    "request has no protocol version `v` (this server speaks {VERSION})"
                )
            }
            ProtocolError::UnknownOp(Some(op)) => {
                write!(f, "unknown op `{op}` (expected `terminate` or `status`)")
            }
            ProtocolError::UnknownOp(None) => {
                f.write_str("request has no `op` (expected `terminate` or `status`)")
            }
            ProtocolError::InvalidField(name) => write!(f, "field `{name}` has the wrong type"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl Request {
    /// Decodes one request line (without its newline; a trailing `\r` is tolerated).
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] saying what is wrong with the line.
    ///
    /// ```
    /// use deputy_ipc::protocol::{ProtocolError, Request};
    ///
    /// assert_eq!(Request::decode(br#"{"v":1,"op":"status"}"#), Ok(Request::Status));
    /// assert_eq!(
    ///     Request::decode(br#"{"v":1,"op":"terminate","reason":"preStop"}"#),
    ///     Ok(Request::Terminate { reason: Some("preStop".into()), wait: true })
    /// );
    /// assert_eq!(
    ///     Request::decode(br#"{"v":2,"op":"status"}"#).unwrap_err().code(),
    ///     deputy_ipc::protocol::ErrorCode::UnsupportedVersion
    /// );
    /// assert!(matches!(Request::decode(b"terminate"), Err(ProtocolError::InvalidJson(_))));
    /// ```
    pub fn decode(line: &[u8]) -> Result<Request, ProtocolError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err(ProtocolError::TooLong);
        }
        let value: Value =
            serde_json::from_slice(line).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(ProtocolError::InvalidJson("not an object".into()));
        };
        match fields.get("v") {
            Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
            Some(other) => return Err(ProtocolError::UnsupportedVersion(Some(short(other)))),
            None => return Err(ProtocolError::UnsupportedVersion(None)),
        }
        let op = match fields.get("op") {
            Some(Value::String(op)) => op.as_str(),
            Some(other) => return Err(ProtocolError::UnknownOp(Some(short(other)))),
            None => return Err(ProtocolError::UnknownOp(None)),
        };
        match op {
            "status" => Ok(Request::Status),
            "terminate" => {
                let reason = match fields.get("reason") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => Some(truncate(text, MAX_REASON).to_owned()),
                    Some(_) => return Err(ProtocolError::InvalidField("reason")),
                };
                let wait = match fields.get("wait") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(wait)) => *wait,
                    Some(_) => return Err(ProtocolError::InvalidField("wait")),
                };
                Ok(Request::Terminate { reason, wait })
            }
            other => Err(ProtocolError::UnknownOp(Some(
                truncate(other, 64).to_owned(),
            ))),
        }
    }

    /// Encodes the request as one line, newline included.
    ///
    /// ```
    /// use deputy_ipc::protocol::Request;
    ///
    /// let line = Request::Status.encode();
    /// assert_eq!(line, "{\"op\":\"status\",\"v\":1}\n");
    /// assert_eq!(Request::decode(line.trim_end().as_bytes()), Ok(Request::Status));
    /// ```
    pub fn encode(&self) -> String {
        let value = match self {
            Request::Status => serde_json::json!({ "v": VERSION, "op": "status" }),
            Request::Terminate { reason, wait } => {
                serde_json::json!({ "v": VERSION, "op": "terminate", "reason": reason, "wait": wait })
            }
        };
        let mut line = value.to_string();
        line.push('\n');
        line
    }
}

/// A value shown back in an error, cut short.
fn short(value: &Value) -> String {
    truncate(&value.to_string(), 64).to_owned()
}

/// `text`, or as much of its start as fits in `max` bytes without cutting a character.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One phase in a [`Response::Done`] summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSummary {
    /// The phase's name.
    pub name: String,
    /// Its outcome.
    pub outcome: PhaseOutcome,
    /// How long it ran, in milliseconds.
    pub duration_ms: u64,
}

/// Named work in flight of one name, in a `status` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightSummary {
    /// The guards' name (`GET /export`).
    pub name: String,
    /// How many of that name are in flight.
    pub count: u64,
    /// Milliseconds the oldest of them has been in flight.
    pub age_ms: u64,
}

/// A response line.
///
/// The enums in it (state, outcome, error code) are the crate's types on the wire under
/// their lower-case names (`"timed out"` for a timeout), as in version 1 from the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// A state entered or a phase started.
    Progress {
        /// The state entered (`draining`, `stopping`, `done`).
        state: State,
        /// The phase started, while stopping.
        phase: Option<String>,
        /// Work in flight.
        in_flight: u64,
        /// Milliseconds since the first trigger.
        elapsed_ms: u64,
    },
    /// Shutdown is done: the report in short.
    Done {
        /// How it went.
        outcome: Outcome,
        /// The exit code the service will use.
        exit_code: i32,
        /// The reason of the first trigger.
        reason: String,
        /// Milliseconds from the first trigger to done.
        duration_ms: u64,
        /// Every phase, in order.
        phases: Vec<PhaseSummary>,
    },
    /// Answer to `status`.
    Status {
        /// The state.
        state: State,
        /// The phase running, while stopping.
        phase: Option<String>,
        /// Work in flight.
        in_flight: u64,
        /// Readiness.
        ready: bool,
        /// Liveness.
        live: bool,
        /// Milliseconds since the first trigger (0 before).
        elapsed_ms: u64,
        /// What the service last said it is doing (systemd's `STATUS=` under `deputy run
        /// --notify`); absent when it said nothing. Added in 0.2, within version 1: older
        /// peers ignore it, and it decodes as `None` from them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Milliseconds from the trigger to the last new connection, if one came after it
        /// (added in 0.2, as `message`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_connection_ms: Option<u64>,
        /// Milliseconds from the trigger to the last new request, if one came after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_request_ms: Option<u64>,
        /// Nothing reports the service's new traffic, so the two above say nothing (added
        /// in 0.3, sent only when true; older peers measured or did not say).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unmeasured: bool,
        /// The oldest named work in flight, by name, oldest first (added in 0.2).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        oldest: Vec<InFlightSummary>,
    },
    /// Answer to `terminate` without `wait`.
    Accepted {
        /// Whether this request started shutdown (false: it was already under way).
        started: bool,
    },
    /// The request was refused.
    Error {
        /// Why, for a program.
        code: ErrorCode,
        /// A sentence for a person.
        message: String,
    },
}

impl Response {
    /// Encodes the response as one line, newline included.
    ///
    /// ```
    /// use deputy_ipc::protocol::Response;
    ///
    /// let line = Response::Accepted { started: true }.encode();
    /// assert_eq!(line, "{\"type\":\"accepted\",\"started\":true}\n");
    /// assert_eq!(Response::decode(line.as_bytes()).unwrap(), Response::Accepted { started: true });
    /// ```
    pub fn encode(&self) -> String {
        let mut line = serde_json::to_string(self).expect("responses always serialize");
        line.push('\n');
        line
    }

    /// Decodes a response line (the client side); a trailing newline is allowed.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::InvalidJson`] if the line is not a response this crate knows.
    pub fn decode(line: &[u8]) -> Result<Response, ProtocolError> {
        serde_json::from_slice(line).map_err(|e| ProtocolError::InvalidJson(e.to_string()))
    }

    /// The error response for a refused request line.
    pub fn error(error: &ProtocolError) -> Response {
        Response::Error {
            code: error.code(),
            message: error.to_string(),
        }
    }

    /// The answer to `status`: a snapshot of the shutdown.
    ///
    /// ```
    /// use deputy_core::{ManualClock, ShutdownCoordinator, State};
    /// use deputy_ipc::protocol::Response;
    ///
    /// let coordinator = ShutdownCoordinator::builder().build(ManualClock::new()).unwrap();
    /// let status = Response::status(&coordinator.handle().status());
    /// assert!(matches!(status, Response::Status { state: State::Running, elapsed_ms: 0, .. }));
    /// ```
    pub fn status(status: &Status) -> Response {
        Response::Status {
            state: status.state,
            phase: status.phase.clone(),
            in_flight: status.in_flight as u64,
            ready: status.ready,
            live: status.live,
            elapsed_ms: millis(status.elapsed),
            message: status.message.clone(),
            last_connection_ms: status.propagation.last_connection.map(millis),
            last_request_ms: status.propagation.last_request.map(millis),
            unmeasured: !status.propagation.measured,
            oldest: status
                .stragglers
                .iter()
                .map(|straggler| InFlightSummary {
                    name: straggler.name.clone(),
                    count: straggler.count as u64,
                    age_ms: millis(straggler.age),
                })
                .collect(),
        }
    }

    /// A `progress` line for a transition, with the work in flight now.
    pub fn progress(transition: &Transition, in_flight: usize) -> Response {
        Response::Progress {
            state: transition.state,
            phase: transition.phase.clone(),
            in_flight: in_flight as u64,
            elapsed_ms: millis(transition.at),
        }
    }

    /// The `done` line: the report in short.
    pub fn done(report: &ShutdownReport) -> Response {
        Response::Done {
            outcome: report.outcome,
            exit_code: report.exit_code,
            reason: report.reason.to_string(),
            duration_ms: millis(report.duration),
            phases: report
                .phases
                .iter()
                .map(|phase| PhaseSummary {
                    name: phase.name.clone(),
                    outcome: phase.outcome,
                    duration_ms: millis(phase.duration),
                })
                .collect(),
        }
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

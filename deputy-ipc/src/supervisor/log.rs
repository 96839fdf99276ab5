//! deputy's own lines on stderr: for a person, or JSON lines with `DEPUTY_LOG_FORMAT=json`,
//! at the level each line is (INFO, WARN, ERROR).

use std::time::SystemTime;

/// Prints one of deputy's lines on stderr (see [`say_line`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

/// [`say!`] for something that went wrong and deputy works around (a kill, a fallback):
/// `"level":"WARN"` in JSON lines.
macro_rules! say_warn {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line_at(tracing::Level::WARN, format_args!($($arg)*))
    };
}
pub(crate) use say_warn;

/// [`say!`] for something deputy could not do: `"level":"ERROR"` in JSON lines.
macro_rules! say_error {
    ($($arg:tt)*) => {
        $crate::supervisor::say_line_at(tracing::Level::ERROR, format_args!($($arg)*))
    };
}
pub(crate) use say_error;

/// Writes one of `deputy run`'s lines on stderr, in one write (stderr is unbuffered: the line
/// cannot be split by the child's output, and it costs one system call): `deputy: ...` for a
/// person, or with `DEPUTY_LOG_FORMAT=json` one JSON object in tracing-subscriber's layout
/// (`timestamp`, `level`, `fields.message`, `target`), as the examples' logs. Never panics
/// (stderr may be closed).
pub fn say_line(message: std::fmt::Arguments<'_>) {
    say_line_at(tracing::Level::INFO, message);
}

/// [`say_line`] at `level`: the same text for a person; in JSON lines, the `level` field
/// says it (`WARN` for a kill or a fallback, `ERROR` for what deputy could not do).
pub fn say_line_at(level: tracing::Level, message: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let line = match format() {
        crate::LogFormat::Json => {
            let mut line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
                "level": level.as_str(),
                "fields": { "message": message.to_string() },
                "target": "deputy",
            })
            .to_string();
            line.push('\n');
            line
        }
        _ => format!("deputy: {message}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The format of deputy's lines, decided once (`run` decides it before the child starts,
/// so that the first line said on the way to exit does not pay for the terminal check).
pub(super) fn format() -> &'static crate::LogFormat {
    static FORMAT: std::sync::OnceLock<crate::LogFormat> = std::sync::OnceLock::new();
    FORMAT.get_or_init(crate::LogFormat::from_env)
}

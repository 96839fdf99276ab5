//! How logs should look where they go: colour only for a person at a terminal (and never
//! with `NO_COLOR`), one JSON object per line with `DEPUTY_LOG_FORMAT=json` for a cluster's
//! log pipeline. The examples configure `tracing-subscriber` from it; `deputy run` writes its
//! own lines by it.

use std::io::IsTerminal;

/// The environment variable that picks the log format: `text` (the default) or `json`.
pub const LOG_FORMAT_ENV: &str = "DEPUTY_LOG_FORMAT";

/// How to write log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Lines for a person; coloured only if `colour`.
    Text {
        /// Whether to use ANSI colours.
        colour: bool,
    },
    /// One JSON object per line (tracing-subscriber's `json` layout: `timestamp`, `level`,
    /// `fields.message`, `target`).
    Json,
}

impl LogFormat {
    /// From `DEPUTY_LOG_FORMAT`, `NO_COLOR` and whether stderr is a terminal. An unknown
    /// format is said on stderr and gives text.
    pub fn from_env() -> LogFormat {
        let format = std::env::var(LOG_FORMAT_ENV).unwrap_or_default();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        LogFormat::decide(&format, no_color, std::io::stderr().is_terminal()).unwrap_or_else(
            |error| {
                eprintln!("deputy: {error}; writing text");
                LogFormat::decide("", no_color, std::io::stderr().is_terminal())
                    .expect("text is a format")
            },
        )
    }

    /// The format for a `DEPUTY_LOG_FORMAT` value, `NO_COLOR` set (and not empty) or not,
    /// and stderr a terminal or not.
    ///
    /// ```
    /// use deputy_ipc::LogFormat;
    ///
    /// assert_eq!(LogFormat::decide("", false, true), Ok(LogFormat::Text { colour: true }));
    /// assert_eq!(LogFormat::decide("text", false, false), Ok(LogFormat::Text { colour: false }));
    /// assert_eq!(LogFormat::decide("", true, true), Ok(LogFormat::Text { colour: false }));
    /// assert_eq!(LogFormat::decide("JSON", false, true), Ok(LogFormat::Json));
    /// assert!(LogFormat::decide("xml", false, true).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// A sentence naming the value, if it is not `text` or `json`.
    pub fn decide(format: &str, no_color: bool, terminal: bool) -> Result<LogFormat, String> {
        match format.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text {
                colour: terminal && !no_color,
            }),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{LOG_FORMAT_ENV}={other} is not a log format (text or json)"
            )),
        }
    }
}

/// Logs to stderr through `tracing` (tracing-subscriber), at `RUST_LOG`'s level, else
/// `default` (`"info"`, `"warn"`), so stdout stays for the lines meant for a person: in
/// colour only at a terminal without `NO_COLOR`, one JSON object per line with
/// `DEPUTY_LOG_FORMAT=json` (see [`LogFormat::from_env`]). Call it once, first thing in
/// `main`; a second call (or another global subscriber) leaves the first in place.
///
/// ```
/// deputy_ipc::init_logs("info");
/// tracing::info!("logged as the cluster expects");
/// ```
#[cfg(feature = "logs")]
pub fn init_logs(default: &str) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match LogFormat::from_env() {
        LogFormat::Json => logs.json().try_init(),
        LogFormat::Text { colour } => logs.with_ansi(colour).try_init(),
    };
}

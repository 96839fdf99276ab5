//! Settings as people write them: the one grammar of a yes-or-no value and of a duration,
//! for flags and `DEPUTY_*` variables alike.

use std::time::Duration;

use deputy_core::MAX_DURATION;

/// Reads a duration as people write it (`500ms`, `30s`, `1m 30s`, `2h`): humantime's
/// grammar, up to [`MAX_DURATION`] (100 years), so that no deadline computed from it can
/// overflow.
///
/// # Errors
///
/// A sentence for a person: what humantime could not read, or a duration over the limit.
///
/// ```
/// use std::time::Duration;
/// use deputy_ipc::parse_duration;
///
/// assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
/// assert!(parse_duration("18446744073709551615s").unwrap_err().contains("longer than"));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|error| error.to_string())?;
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is longer than the longest duration deputy takes (100 years)"
        ));
    }
    Ok(duration)
}

/// Reads a yes-or-no setting as people write it: `1`/`0`, `true`/`false`, `yes`/`no`,
/// `on`/`off`, in any case, with spaces around ignored. Every boolean `DEPUTY_*` variable
/// (`DEPUTY_METRICS=1`, `DEPUTY_NOTIFY=yes`, `DEPUTY_GROUP=on`) and flag value goes through
/// it.
///
/// # Errors
///
/// A sentence for a person naming what it refused.
///
/// ```
/// use deputy_ipc::parse_bool;
///
/// assert_eq!(parse_bool("1"), Ok(true));
/// assert_eq!(parse_bool("Yes"), Ok(true));
/// assert_eq!(parse_bool("OFF"), Ok(false));
/// assert_eq!(
///     parse_bool("maybe").unwrap_err(),
///     "`maybe` is not a yes or no (write 1 or 0, true or false, yes or no, on or off)"
/// );
/// ```
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "`{text}` is not a yes or no (write 1 or 0, true or false, yes or no, on or off)"
        )),
    }
}

/// The yes-or-no variable `name`: `None` if unset or empty, else what [`parse_bool`] makes
/// of it.
///
/// # Errors
///
/// What [`parse_bool`] refused, with the variable's name: `DEPUTY_METRICS: ...`.
///
/// ```
/// // SAFETY: a doctest is a program of its own, with one thread.
/// unsafe { std::env::set_var("DEPUTY_DOC_FLAG", "on") };
/// assert_eq!(deputy_ipc::bool_from_env("DEPUTY_DOC_FLAG"), Ok(Some(true)));
/// assert_eq!(deputy_ipc::bool_from_env("DEPUTY_DOC_UNSET"), Ok(None));
/// ```
pub fn bool_from_env(name: &str) -> Result<Option<bool>, String> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => parse_bool(&value)
            .map(Some)
            .map_err(|why| format!("{name}: {why}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{name}: the value is not valid UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_up_to_the_limit() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("36500days"), Ok(MAX_DURATION));
        for refused in [
            "18446744073709551615s",
            "300000000000y",
            "101y",
            "",
            "5",
            "-1s",
        ] {
            assert!(parse_duration(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn every_spelling_of_yes_and_no_in_any_case() {
        for yes in ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " 1 "] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "FALSE", "no", "No", "off", "OFF"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for neither in ["", "2", "y", "n", "t", "truee", "enabled", "-1"] {
            assert!(parse_bool(neither).is_err(), "{neither}");
        }
    }
}

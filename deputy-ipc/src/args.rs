//! Command lines read with clap, errors naming what the person wrote: a bad value that came
//! from an option's `DEPUTY_` variable is reported as that variable, not as the flag.

use clap::Parser;
use clap::error::{ContextKind, ContextValue};

/// Parses the process's arguments as `T` (clap's derive), exiting as clap does on `--help`
/// or an error; a bad value from an option's `DEPUTY_` variable is reported as the
/// variable: `invalid value 'xyz' for DEPUTY_GRACE_PERIOD (--grace)`, where clap alone says
/// `for '--grace <DURATION>'`, a flag the person never wrote.
///
/// ```no_run
/// #[derive(clap::Parser)]
/// struct Options {
///     #[arg(long, env = "DEPUTY_DRAIN_DELAY", value_parser = deputy_ipc::parse_duration)]
///     drain_delay: std::time::Duration,
/// }
/// let options: Options = deputy_ipc::parse_args();
/// ```
pub fn parse_args<T: Parser>() -> T {
    parse_args_from(T::command())
}

/// [`parse_args`] with `command` as the grammar: `T`'s own, changed at run time (defaults
/// shown in `--help` from where they are written, say).
pub fn parse_args_from<T: clap::FromArgMatches>(command: clap::Command) -> T {
    let mut command = command;
    let matches = command
        .try_get_matches_from_mut(std::env::args_os())
        .unwrap_or_else(|error| name_the_variable(error, &command).exit());
    T::from_arg_matches(&matches).unwrap_or_else(|error| name_the_variable(error, &command).exit())
}

/// `error`, with the variable named when the bad value came from one (see [`parse_args`]).
fn name_the_variable(error: clap::Error, command: &clap::Command) -> clap::Error {
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let long = shown.split_whitespace().next().unwrap_or_default();
    let given_as_flag =
        std::env::args().any(|arg| arg == long || arg.starts_with(&format!("{long}=")));
    let variable = std::iter::once(command)
        .chain(command.get_subcommands())
        .flat_map(|command| command.get_arguments())
        .find(|arg| {
            arg.get_long()
                .is_some_and(|name| format!("--{name}") == long)
        })
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str())
        .filter(|env| !given_as_flag && std::env::var_os(env).is_some());
    match variable {
        Some(variable) => {
            let text = error.render().to_string().replace(
                &format!("for '{shown}'"),
                &format!("for {variable} ({long})"),
            );
            clap::Error::raw(error.kind(), text.trim_start_matches("error: "))
        }
        None => error,
    }
}

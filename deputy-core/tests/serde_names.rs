//! With the `serde` feature, the public enums serialize under the names `as_str` gives, which
//! are the names deputy-ipc's wire protocol (version 1) has always used.

#![cfg(feature = "serde")]

use deputy_core::{Outcome, PhaseOutcome, State};

fn name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn serde_names_are_the_as_str_names_and_read_back() {
    for state in State::ALL {
        assert_eq!(name(state), state.as_str());
        let back: State = serde_json::from_str(&format!("\"{}\"", state.as_str())).unwrap();
        assert_eq!(back, state);
    }
    for outcome in [
        Outcome::Clean,
        Outcome::Failed,
        Outcome::TimedOut,
        Outcome::Abandoned,
    ] {
        assert_eq!(name(outcome), outcome.as_str());
    }
    for outcome in [
        PhaseOutcome::Completed,
        PhaseOutcome::Failed,
        PhaseOutcome::TimedOut,
        PhaseOutcome::Abandoned,
    ] {
        assert_eq!(name(outcome), outcome.as_str());
    }
}

//! Property tests of the pure state machine: arbitrary event sequences on plans of 0..6
//! phases. Each property's name states the invariant it checks.

use deputy_core::state::{DrainOutcome, Ending, Event, Machine, PhaseOutcome, Rejection};
use deputy_core::{Reason, State};
use proptest::prelude::*;

fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        (1..32i32).prop_map(Reason::Signal),
        Just(Reason::Ipc),
        Just(Reason::Http),
        "[a-z]{0,8}".prop_map(Reason::Programmatic),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        reason().prop_map(Event::Trigger),
        Just(Event::DrainDelayElapsed),
        Just(Event::InFlightZero),
        Just(Event::DrainTimedOut),
        prop_oneof![
            Just(PhaseOutcome::Completed),
            Just(PhaseOutcome::Failed),
            Just(PhaseOutcome::TimedOut),
            Just(PhaseOutcome::Abandoned),
        ]
        .prop_map(Event::PhaseFinished),
        Just(Event::Force),
        Just(Event::Abandon),
        Just(Event::BudgetExhausted),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, Vec<Event>)> {
    (0..6usize, prop::collection::vec(event(), 0..40))
}

/// Runs the events, returning every machine seen (the start included).
fn walk(phases: usize, events: &[Event]) -> Vec<Machine> {
    let mut machine = Machine::new(phases);
    let mut seen = vec![machine.clone()];
    for event in events {
        let _ = machine.apply(event.clone());
        seen.push(machine.clone());
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn state_never_moves_backwards((phases, events) in scenario()) {
        let seen = walk(phases, &events);
        for pair in seen.windows(2) {
            prop_assert!(pair[0].state() <= pair[1].state());
        }
    }

    #[test]
    fn done_is_terminal_and_rejects_everything((phases, events) in scenario(), extra in prop::collection::vec(event(), 1..10)) {
        let mut machine = walk(phases, &events).pop().unwrap();
        if machine.state() != State::Done {
            let _ = machine.apply(Event::Trigger(Reason::Ipc));
            machine.apply(Event::Abandon).unwrap();
        }
        let before = machine.clone();
        for event in extra {
            prop_assert_eq!(machine.apply(event), Err(Rejection::Done));
            prop_assert_eq!(&machine, &before);
        }
    }

    #[test]
    fn a_rejected_event_leaves_the_machine_unchanged((phases, events) in scenario()) {
        let mut machine = Machine::new(phases);
        for event in events {
            let before = machine.clone();
            match machine.next(event.clone()) {
                Ok(next) => {
                    prop_assert_eq!(machine.apply(event), Ok(deputy_core::state::Step { from: before.state(), to: next.state() }));
                    prop_assert_eq!(&machine, &next);
                }
                Err(rejection) => {
                    prop_assert_eq!(machine.apply(event), Err(rejection));
                    prop_assert_eq!(&machine, &before);
                }
            }
        }
    }

    #[test]
    fn readiness_is_false_from_draining_on((phases, events) in scenario()) {
        for machine in walk(phases, &events) {
            prop_assert_eq!(machine.is_ready(true), machine.state() == State::Running);
            prop_assert!(!machine.is_ready(false));
        }
    }

    #[test]
    fn liveness_is_false_only_in_done((phases, events) in scenario()) {
        for machine in walk(phases, &events) {
            prop_assert_eq!(machine.is_live(), machine.state() != State::Done);
        }
    }

    #[test]
    fn done_accounts_for_every_phase_even_when_forced((phases, events) in scenario()) {
        for machine in walk(phases, &events) {
            prop_assert_eq!(machine.phases().len(), phases);
            if machine.state() == State::Done {
                prop_assert!(machine.phases().iter().all(Option::is_some), "{:?}", machine);
                prop_assert!(machine.drain().is_some());
                prop_assert!(machine.ending().is_some());
                prop_assert!(machine.reason().is_some());
            }
        }
    }

    #[test]
    fn phases_finish_in_order_and_only_while_stopping((phases, events) in scenario()) {
        for pair in walk(phases, &events).windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let finished = |m: &Machine| m.phases().iter().take_while(|p| p.is_some()).count();
            // Outcomes are a prefix: no phase finishes before the ones ahead of it.
            prop_assert_eq!(finished(after), after.phases().iter().filter(|p| p.is_some()).count());
            if finished(after) > finished(before) && after.ending() != Some(Ending::Abandoned) && after.ending() != Some(Ending::BudgetExhausted) {
                prop_assert_eq!(before.state(), State::Stopping);
            }
        }
    }

    #[test]
    fn the_drain_ends_normally_only_after_the_delay((phases, events) in scenario()) {
        for machine in walk(phases, &events) {
            if matches!(machine.drain(), Some(DrainOutcome::Drained | DrainOutcome::TimedOut)) {
                prop_assert!(machine.drain_delay_elapsed());
            }
        }
    }

    #[test]
    fn under_a_budget_every_sequence_reaches_done((phases, events) in scenario()) {
        // The coordinator always feeds BudgetExhausted at the end of the grace period; from
        // any state reached after a trigger it ends in Done.
        let mut machine = walk(phases, &events).pop().unwrap();
        let _ = machine.apply(Event::Trigger(Reason::Ipc));
        let _ = machine.apply(Event::BudgetExhausted);
        prop_assert_eq!(machine.state(), State::Done);
    }

    #[test]
    fn following_the_plan_always_reaches_done_cleanly(phases in 0..6usize, reason in reason()) {
        let mut machine = Machine::new(phases);
        machine.apply(Event::Trigger(reason.clone())).unwrap();
        machine.apply(Event::DrainDelayElapsed).unwrap();
        machine.apply(Event::InFlightZero).unwrap();
        for _ in 0..phases {
            prop_assert_eq!(machine.state(), State::Stopping);
            machine.apply(Event::PhaseFinished(PhaseOutcome::Completed)).unwrap();
        }
        prop_assert_eq!(machine.state(), State::Done);
        prop_assert_eq!(machine.ending(), Some(Ending::Finished));
        prop_assert_eq!(machine.reason(), Some(&reason));
        prop_assert!(machine.phases().iter().all(|p| *p == Some(PhaseOutcome::Completed)));
    }

    #[test]
    fn the_first_trigger_reason_is_kept((phases, events) in scenario()) {
        let first = events.iter().find_map(|e| match e { Event::Trigger(r) => Some(r.clone()), _ => None });
        let machine = walk(phases, &events).pop().unwrap();
        prop_assert_eq!(machine.reason(), first.as_ref());
    }
}

#[test]
fn force_skips_the_drain_but_not_the_phases() {
    let mut machine = Machine::new(2);
    machine.apply(Event::Trigger(Reason::Signal(2))).unwrap();
    machine.apply(Event::Force).unwrap();
    assert_eq!(machine.state(), State::Stopping);
    assert_eq!(machine.drain(), Some(DrainOutcome::Forced));
    assert_eq!(machine.current_phase(), Some(0));
    assert_eq!(machine.apply(Event::Force), Err(Rejection::NotDraining));
}

#[test]
fn events_before_a_trigger_are_rejected() {
    let mut machine = Machine::new(1);
    for event in [
        Event::DrainDelayElapsed,
        Event::InFlightZero,
        Event::DrainTimedOut,
        Event::Force,
        Event::Abandon,
        Event::BudgetExhausted,
        Event::PhaseFinished(PhaseOutcome::Completed),
    ] {
        assert_eq!(machine.apply(event), Err(Rejection::NotTriggered));
    }
    assert_eq!(machine.state(), State::Running);
}

#[test]
fn zero_in_flight_before_the_delay_does_not_end_the_drain() {
    let mut machine = Machine::new(0);
    machine.apply(Event::Trigger(Reason::Ipc)).unwrap();
    assert_eq!(
        machine.apply(Event::InFlightZero),
        Err(Rejection::DrainDelayPending)
    );
    assert_eq!(machine.state(), State::Draining);
}

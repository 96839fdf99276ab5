//! `deputy run` reaps and cleans up: zombies as PID 1, orphans as a subreaper, and the
//! descendants a child leaves behind (SIGTERM, then SIGKILL), with or without its own /proc.

use std::process::Command;

mod support;

use support::run::{assert_said, deputy_run, deputy_run_as_pid_1, exists};
use support::{Proc, can_unshare, deputy as deputy_bin, text};

/// Counts zombies in this PID namespace (its /proc); the child of deputy prints it.
const ORPHANS_THEN_COUNT_ZOMBIES: &str = "\
for i in 1 2 3 4 5; do (sleep 0.05 &); done
sleep 0.5
z=0
for f in /proc/[0-9]*/stat; do
  set -- $(cat $f 2>/dev/null | sed 's/.*) //'); [ \"$1\" = Z ] && z=$((z+1))
done
echo zombies=$z";

#[test]
fn as_pid_1_the_zombies_of_a_double_forking_child_are_reaped() {
    if !can_unshare() {
        return;
    }
    // The measure can see zombies: with a PID 1 that never waits (sleep), the orphans stay.
    let control = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c"])
        .arg(format!(
            "sh -c '{}' & exec sleep 1",
            ORPHANS_THEN_COUNT_ZOMBIES.replace('\'', "'\\''")
        ))
        .output()
        .unwrap();
    assert!(
        text(&control.stdout).contains("zombies=5"),
        "control: {}",
        text(&control.stdout)
    );

    let mut deputy = deputy_run_as_pid_1(&[
        "--no-control-socket",
        "--",
        "sh",
        "-c",
        ORPHANS_THEN_COUNT_ZOMBIES,
    ]);
    let line = deputy.expect_out("zombies=");
    assert_eq!(line, "zombies=0");
    assert_eq!(deputy.finish().code, 0);
}

#[test]
fn as_a_subreaper_orphans_are_reaped() {
    // Not PID 1: the orphans come to deputy (a child subreaper), which reaps them. The child
    // counts the zombies whose parent is deputy ($PPID).
    let script = "\
for i in 1 2 3 4 5; do (sleep 0.05 &); done
sleep 0.5
z=0
for f in /proc/[0-9]*/stat; do
  set -- $(cat $f 2>/dev/null | sed 's/.*) //'); [ \"$1\" = Z ] && [ \"$2\" = $PPID ] && z=$((z+1))
done
echo zombies=$z";
    let mut deputy = deputy_run(&["--no-control-socket", "--", "sh", "-c", script]);
    assert_eq!(deputy.expect_out("zombies="), "zombies=0");
    assert_eq!(deputy.finish().code, 0);
}

/// Leaves two descendants: one that dies on SIGTERM, one that ignores it (it inherits the
/// ignore, so no signal can come before it is set); prints their pids.
const LEAVES_TWO: &str = "\
sleep 1000 & echo $!
trap '' TERM
sleep 1001 & echo $!
exit 0";

#[test]
fn descendants_left_behind_get_term_then_kill() {
    let mut deputy = deputy_run(&[
        "--no-control-socket",
        "--cleanup-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        LEAVES_TWO,
    ]);
    let first: u32 = deputy.expect_out("").parse().unwrap();
    let second: u32 = deputy.expect_out("").parse().unwrap();
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "2 processes left behind by process",
            "1 process still running after 500ms: sending SIGKILL",
        ],
    );
    assert!(
        !exists(first) && !exists(second),
        "{first} or {second} is still there"
    );
}

#[test]
fn as_pid_1_descendants_left_behind_get_term_then_kill() {
    if !can_unshare() {
        return;
    }
    let deputy = deputy_run_as_pid_1(&[
        "--no-control-socket",
        "--cleanup-timeout",
        "500ms",
        "--",
        "sh",
        "-c",
        LEAVES_TWO,
    ]);
    let (code, _, err) = deputy.finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "2 processes left behind by process 2",
            "1 process still running after 500ms",
        ],
    );
}

#[test]
fn as_pid_1_without_its_own_proc_leftovers_are_reached_through_the_group() {
    if !can_unshare() {
        return;
    }
    // `unshare --pid` without `--mount-proc`: /proc shows the outer namespace, whose pids
    // would name the wrong processes. deputy falls back to the child's process group.
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child"])
        .arg(deputy_bin())
        .args(["run", "--no-control-socket", "--cleanup-timeout", "300ms"])
        .args(["--", "sh", "-c", LEAVES_TWO]);
    let (code, _, err) = Proc::spawn_unshare(command).finish().texts();
    assert_eq!(code, 0, "{err}");
    assert_said(
        &err,
        &[
            "SIGTERM to its process group",
            "still running after 300ms: sending SIGKILL",
        ],
    );
}

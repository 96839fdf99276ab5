//! What `deputy run`'s child gets: a clean signal state, its own process group, deputy's
//! stdio and environment, and at a terminal the foreground.

use std::process::{Command, Stdio};

mod support;

use support::{Proc, deputy as deputy_bin, text};

/// The signal mask, ignored signals and process group a program sees, from its
/// /proc/self/status and stat.
const SHOW_SIGNAL_STATE: &str = "grep -E '^Sig(Blk|Ign)' /proc/self/status; \
     echo pgrp=$(cut -d' ' -f5 /proc/$$/stat) pid=$$";

#[test]
fn the_child_gets_a_clean_signal_state_its_own_group_and_deputys_stdio_and_environment() {
    // A parent that ignores SIGHUP and SIGUSR2 (nohup, some shells): the ignore survives
    // exec, as the control shows, and deputy must not pass it on.
    let control = Command::new("sh")
        .args([
            "-c",
            "trap '' HUP USR2; exec sh -c \"$1\"",
            "sh",
            SHOW_SIGNAL_STATE,
        ])
        .output()
        .unwrap();
    assert!(
        !text(&control.stdout).contains("SigIgn:\t0000000000000000"),
        "control: {}",
        text(&control.stdout)
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' HUP USR2; exec \"$0\" run --no-control-socket -- sh -c \"$1\"")
        .arg(deputy_bin())
        .arg(SHOW_SIGNAL_STATE)
        .output()
        .unwrap();
    let out = text(&out.stdout);
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
    let ids: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("pgrp="))
        .unwrap()
        .split(' ')
        .map(|part| part.split('=').nth(1).unwrap())
        .collect();
    assert_eq!(
        ids[0], ids[1],
        "the child does not lead its own process group: {out}"
    );

    // stdin, stdout and the environment pass through; deputy's own lines go to stderr.
    let mut child = Command::new(deputy_bin())
        .args(["run", "--no-control-socket", "--", "sh", "-c"])
        .arg("cat; echo \"FOO=$FOO ENTRYPOINT=$DEPUTY_ENTRYPOINT\"; exit 7")
        .env("FOO", "bar")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from stdin\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        text(&output.stdout),
        "from stdin\nFOO=bar ENTRYPOINT=0\n",
        "{output:?}"
    );
    assert_eq!(output.status.code(), Some(7));
    let err = text(&output.stderr);
    assert!(
        err.lines().all(|line| line.starts_with("deputy: ")),
        "unprefixed line in {err}"
    );
}

#[test]
fn at_a_terminal_the_child_gets_the_foreground() {
    // `script` (util-linux) runs deputy on a new pseudo-terminal, as `docker run -it` does. In
    // a background process group the child's `read` would stop it (SIGTTIN) for good.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: needs script (util-linux)");
        return;
    }
    let command = format!(
        "{} run --no-control-socket -- sh -c 'read line; echo \"got $line\"'",
        deputy_bin().display()
    );
    let mut script = Command::new("script");
    script.args(["-qec", &command, "/dev/null"]);
    let (mut script, mut stdin) = Proc::spawn_with_stdin(script);
    std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
    let answer = script.expect_out("got ");
    assert_eq!(answer.trim_end(), "got hello");
}

#!/usr/bin/env python3
"""Signal to exit, interleaved: SIGTERM to `X -- sleep 1000` (once sleep runs) until X exits.

Criterion measures one command for seconds, then the next; on a small VM the first command of
a group is penalised. This alternates the commands instead, one sample of each per round, and
prints medians (with the first quartile and the mean) and each one's ratio to the last
command given, by median and by mean.

    python3 scripts/signal_to_exit.py ROUNDS NAME=PATH ...

NAME picks the command line: `deputy...` is `PATH run --drain-delay 0s --ipc-dir DIR --`
(DIR: $IPC, default a fresh directory in /dev/shm, tmpfs as in the manifests), `tini...`
is `PATH -s --`, anything else `PATH --` (catatonit, the async-io-floor example). For example:

    python3 scripts/signal_to_exit.py 300 \\
        deputy=target/x86_64-unknown-linux-musl/dist/deputy \\
        floor=target/release/examples/async-io-floor tini-static=/usr/bin/tini-static
"""

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def command(name, path, ipc):
    if name.startswith("deputy"):
        return [path, "run", "--drain-delay", "0s", "--ipc-dir", ipc, "--"]
    if name.startswith("tini"):
        return [path, "-s", "--"]
    return [path, "--"]


def sleeping(pid):
    """Whether `pid` has a child named sleep (it has exec'd)."""
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return False
    for child in children:
        try:
            if open(f"/proc/{child}/comm").read().strip() == "sleep":
                return True
        except OSError:
            pass
    return False


def one(argv):
    """Microseconds from SIGTERM to exit."""
    process = subprocess.Popen(
        argv + ["sleep", "1000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sleeping(process.pid):
        if time.monotonic() > deadline:
            process.kill()
            sys.exit(f"{argv[0]} did not start sleep")
        time.sleep(0.0002)
    time.sleep(0.002)
    start = time.perf_counter()
    os.kill(process.pid, signal.SIGTERM)
    process.wait()
    return (time.perf_counter() - start) * 1e6


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    commands = dict(arg.split("=", 1) for arg in sys.argv[2:])
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    ipc = os.environ.get("IPC") or tempfile.mkdtemp(prefix="deputy-bench-", dir=base)
    times = {name: [] for name in commands}
    for _ in range(rounds):
        for name, path in commands.items():
            times[name].append(one(command(name, path, ipc)))
    last = statistics.median(times[list(commands)[-1]])
    last_mean = statistics.mean(times[list(commands)[-1]])
    for name, samples in times.items():
        median = statistics.median(samples)
        quartile = statistics.quantiles(samples, n=4)[0]
        mean = statistics.mean(samples)
        print(
            f"{name:24} median {median:7.0f} µs  p25 {quartile:7.0f}  mean {mean:7.0f}"
            f"  ratio {median / last:.2f} (by mean {mean / last_mean:.2f})"
        )


if __name__ == "__main__":
    main()

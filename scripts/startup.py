#!/usr/bin/env python3
"""Start-up, interleaved: `X -- true` from spawn to exit, next to a bare `true`.

Criterion measures one command for seconds, then the next; on a small VM that penalises
some commands by chance. This alternates the commands instead, one sample of each per
round, and prints medians (with the first quartile and the mean), the time over a bare
`true`, and each one's ratio to the last command given, by median and by time over `true`.

    python3 scripts/startup.py ROUNDS NAME=PATH ...

NAME picks the command line as in signal_to_exit.py: `deputy...` is `PATH run --drain-delay
0s --ipc-dir DIR --` (DIR: a fresh directory in /dev/shm), `tini...` is `PATH -s --`,
anything else `PATH --`. For example:

    python3 scripts/startup.py 500 \\
        deputy=target/static/x86_64-unknown-linux-musl/dist/deputy catatonit=/usr/bin/catatonit
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time


def command(name, path, ipc):
    if name.startswith("deputy"):
        return [path, "run", "--drain-delay", "0s", "--ipc-dir", ipc, "--", "true"]
    if name.startswith("tini"):
        return [path, "-s", "--", "true"]
    return [path, "--", "true"]


def once(argv):
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main():
    rounds = int(sys.argv[1])
    wrappers = [arg.split("=", 1) for arg in sys.argv[2:]]
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as ipc:
        commands = [("true", ["true"])] + [(n, command(n, p, ipc)) for n, p in wrappers]
        times = {name: [] for name, _ in commands}
        for name, argv in commands:  # warm the page cache
            once(argv)
        for _ in range(rounds):
            for name, argv in commands:
                times[name].append(once(argv))
    median = {n: statistics.median(t) for n, t in times.items()}
    last = commands[-1][0]
    over = {n: median[n] - median["true"] for n in median}
    print(f"{'command':<20} {'median':>9} {'q1':>9} {'mean':>9} {'over true':>10} "
          f"{'/ ' + last:>10} {'extra / ' + last:>14}")
    for name, _ in commands:
        t = times[name]
        q1 = statistics.quantiles(t, n=4)[0]
        ratio = median[name] / median[last]
        extra = over[name] / over[last] if over[last] > 0 and name != "true" else float("nan")
        print(f"{name:<20} {median[name] * 1e3:>7.2f}ms {q1 * 1e3:>7.2f}ms "
              f"{statistics.mean(t) * 1e3:>7.2f}ms {over[name] * 1e3:>8.2f}ms "
              f"{ratio:>10.2f} {extra:>14.2f}")


if __name__ == "__main__":
    main()

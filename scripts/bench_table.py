#!/usr/bin/env python3
"""Prints BENCHMARKS.md's tables from criterion's results (target/criterion).

Run `cargo bench -p deputy-core --bench primitives` (and, for the supervisor tables,
`cargo bench -p deputy-examples --bench supervisors`) first. Primitives: each group's rows
are its functions; the ratio column is deputy's median divided by the peer's (below 1:
deputy faster). Supervisors (groups with a "deputy run" function): one table per group, each
wrapper's median and deputy run's divided by it.
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
PEERS = ["tokio-util", "async-shutdown"]


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.2f} ns"


rows = {}
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    median = json.loads(est.read_text())["median"]["point_estimate"]
    group = bench["group_id"]
    if bench.get("value_str"):
        group = f"{group} ({bench['value_str']})"
    rows.setdefault(group, {})[bench["function_id"]] = median

SUPERVISOR = "deputy run"
supervisors = {g: by_fn for g, by_fn in rows.items() if SUPERVISOR in by_fn}
rows = {g: by_fn for g, by_fn in rows.items() if g not in supervisors}

if rows:
    print("| benchmark | deputy | tokio-util | async-shutdown | deputy / tokio-util | deputy / async-shutdown |")
    print("|---|---|---|---|---|---|")
for group, by_fn in rows.items():
    deputy = by_fn.get("deputy")
    cells = [fmt(by_fn[p]) if p in by_fn else "n/a" for p in PEERS]
    ratios = [f"{deputy / by_fn[p]:.2f}" if deputy and p in by_fn else "n/a" for p in PEERS]
    print(f"| {group} | {fmt(deputy) if deputy else 'n/a'} | {' | '.join(cells)} | {' | '.join(ratios)} |")

others = [(g, f, m) for g, by_fn in rows.items() for f, m in by_fn.items() if f not in ["deputy", *PEERS]]
if others:
    print()
    for group, function, median in others:
        print(f"- {group}, {function}: {fmt(median)}")

for group, by_fn in supervisors.items():
    print()
    print(f"{group}:")
    print()
    print(f"| command | median | {SUPERVISOR} / it |")
    print("|---|---|---|")
    for function, median in by_fn.items():
        print(f"| {function} | {fmt(median)} | {by_fn[SUPERVISOR] / median:.2f} |")

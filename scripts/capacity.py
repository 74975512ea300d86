#!/usr/bin/env python3
"""The capacity plan's arithmetic (SCALING.md): CPU per operation measured by
scripts/bench.sh (the raw session-bench JSON in BENCHMARKS.md), times the operations
of a playing user, times the players.

    scripts/capacity.py [BENCHMARKS.md] [--players 10000,100000,1000000] [--write SCALING.md]

With --write, the two generated blocks of SCALING.md (between its `capacity` and
`sizes` markers) are replaced by this output.

Everything it prints beyond the measured CPU per operation is extrapolated from the
mix below (change it with the flags) — it is arithmetic, not a measurement at scale.
"""
import argparse
import json
import math
import re

# A playing user of PixSim7, per second (see SCALING.md for where each comes from).
MIX = {
    # AdvanceSession along the scene graph, and UpdateSession saves through the
    # optimistic handle: guarded writes with expected_version.
    "guarded_writes": 1 / 20 + 1 / 30,
    # MutateSession helpers (inventory, quests, relationships): no expected_version.
    "mutations": 1 / 30,
    # GetSession without min_version (opening a tab, refocusing).
    "strong_reads": 1 / 60,
    # GetSession with min_version (the client passes the version it knows).
    "local_reads": 1 / 15,
}
TABS = 1.5  # open tabs (WatchSession streams) per player
CORE_HEADROOM = 0.6  # plan for 60 % CPU busy at peak


def measured(path):
    """{scenario: cpu_us_per_op} from the raw JSON block of BENCHMARKS.md."""
    text = open(path, encoding="utf-8").read()
    block = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    runs = [json.loads(line) for line in block.splitlines() if line.strip()]
    out = {}
    for r in runs:
        name = r["scenario"] if r["concurrency"] in (32,) else f"{r['scenario']}-{r['concurrency']}"
        out[name] = r["cpu_us_per_op"]
    return out


def per_player(cpu):
    """CPU µs per second of one player, for each of server / postgres / redis."""
    writes = MIX["guarded_writes"] + MIX["mutations"]
    ops = {
        "update": MIX["guarded_writes"],
        "mutate": MIX["mutations"],
        "get": MIX["strong_reads"],
        "get-local": MIX["local_reads"],
    }
    total = {"server": 0.0, "postgres": 0.0, "redis": 0.0}
    for scenario, rate in ops.items():
        for who in total:
            total[who] += rate * cpu[scenario][who]
    # Each write's notice reaches every open tab: the watch scenario's cost per delivery.
    deliveries = writes * TABS
    for who in total:
        total[who] += deliveries * cpu["watch"][who]
    return total, writes, deliveries


def measured_block(cpu, load, writes, deliveries):
    reads = MIX["strong_reads"] + MIX["local_reads"]
    lines = [
        "| operation | server | PostgreSQL | Redis |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("update", "mutate", "get", "get-local", "watch"):
        c = cpu[name]
        lines.append(f"| {name} | {c['server']:.0f} | {c['postgres']:.0f} | {c['redis']:.0f} |")
    lines += [
        "",
        f"One player (the mix below): {writes:.3f} writes/s, {reads:.3f} reads/s, {deliveries:.3f} "
        f"notices delivered/s, costing per second {load['server']:.1f} µs of server CPU, "
        f"{load['postgres']:.1f} µs of PostgreSQL and {load['redis']:.1f} µs of Redis.",
    ]
    return lines


def sizes_block(load, writes, players_list, replica_cores, bytes_per_event):
    reads = MIX["strong_reads"] + MIX["local_reads"]
    lines = [
        "| concurrent players | writes/s | reads/s | watch streams | server cores | replicas "
        f"({replica_cores:g} cores, {CORE_HEADROOM:.0%} busy) | PostgreSQL cores (primary) | Redis cores "
        "| events written per day |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for players in players_list:
        cores = {who: players * us / 1e6 for who, us in load.items()}
        replicas = max(2, math.ceil(cores["server"] / (replica_cores * CORE_HEADROOM)))
        per_day = players * writes * 86400 * bytes_per_event / 2**30
        lines.append(
            f"| {players:,} | {players * writes:,.0f} | {players * reads:,.0f} | {players * TABS:,.0f} "
            f"| {cores['server']:.1f} | {replicas} | {cores['postgres']:.1f} | {cores['redis']:.1f} "
            f"| {per_day:,.0f} GiB |"
        )
    return lines


def replace_block(path, name, lines):
    text = open(path, encoding="utf-8").read()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    open(path, "w", encoding="utf-8").write(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)


def bytes_per_event(path):
    m = re.search(r"\*\*(\d+) bytes per event\*\*", open(path, encoding="utf-8").read())
    return int(m.group(1)) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("benchmarks", nargs="?", default="BENCHMARKS.md")
    ap.add_argument("--players", default="10000,100000,1000000")
    ap.add_argument("--replica-cores", type=float, default=2.0, help="cores per service replica")
    ap.add_argument("--write", metavar="SCALING.md")
    args = ap.parse_args()
    cpu = measured(args.benchmarks)
    load, writes, deliveries = per_player(cpu)
    players = [int(p) for p in args.players.split(",")]
    measured_lines = measured_block(cpu, load, writes, deliveries)
    sizes = sizes_block(load, writes, players, args.replica_cores, bytes_per_event(args.benchmarks))
    if args.write:
        replace_block(args.write, "capacity", measured_lines)
        replace_block(args.write, "sizes", sizes)
    print("\n".join(measured_lines + [""] + sizes))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Turns one scripts/bench.sh run into the results section of BENCHMARKS.md.

    report.py WORKDIR OUT CONCURRENCY DURATION PAYLOAD

Replaces what lies between `<!-- results:begin -->` and `<!-- results:end -->` in OUT
(creating OUT with just the results if it does not exist), so the method and the
findings written by hand around it stay.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys

work, out, conc, duration, payload = sys.argv[1:6]


def read(name):
    with open(os.path.join(work, name)) as f:
        return f.read()


def pgbench(name):
    text = read(name)
    tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    return tps, float(lat.group(1)) if lat else None


def bench(name):
    return json.loads(read(name + ".json"))


cas_tps, cas_lat = pgbench("pgbench-cas.txt")
incr_tps, incr_lat = pgbench("pgbench-incr.txt")
redis = read("redis.txt")
redis_rps = float(re.search(r"GET: ([\d.]+) requests per second", redis).group(1))
redis_p50 = re.search(r"p50=([\d.]+) msec", redis)
rss_mib = int(read("rss-kib.txt").strip() or 0) / 1024
batches = read("batches.txt").strip() if os.path.exists(os.path.join(work, "batches.txt")) else ""

names = ["health", "get", "get-local", "update", "update-8", "update-256", "mutate", "hot", "mutate-hot", "watch", "get-256"]
s = {n: bench(n) for n in names if os.path.exists(os.path.join(work, n + ".json"))}


def pg_us_per_tx(name):
    """PostgreSQL CPU µs per pgbench transaction (ticks of 10 ms over the run)."""
    tx = int(re.search(r"number of transactions actually processed: (\d+)", read(name + ".txt")).group(1))
    return int(read(name + ".ticks").strip()) * 10_000 / max(tx, 1)


def failed(r):
    return sum(v for k, v in r["errors"].items())


def row(name, r, floor_name=None, floor=None):
    ratio = f"{r['ops_per_sec'] / floor:.2f} × {floor_name}" if floor else ""
    lat = r["latency_ms"]
    return (
        f"| {name} | {r['ops_per_sec']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
        f"| {r['conflicts']} | {r['retries']} | {failed(r)} | {ratio} |"
    )


def cpu(name, role):
    return s.get(name, {}).get("cpu_us_per_op", {}).get(role)


def us(v):
    return "" if v is None else f"{v:.0f}"


def verdict(ok):
    return "met" if ok else "**missed**"


health = s["health"]["ops_per_sec"]
update_ratio = s["update"]["ops_per_sec"] / cas_tps
get_ratio = s["get"]["ops_per_sec"] / health
local_ratio = s["get-local"]["ops_per_sec"] / health if "get-local" in s else 0.0
mutate_ratio = s["mutate-hot"]["ops_per_sec"] / incr_tps
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
labels = {
    "health": "health (grpc.health.v1 Check)",
    "get": "get (strong, cache hits)",
    "get-local": "get with min_version (local copy)",
    "update": "update (expected_version)",
    "update-8": "update at concurrency 8",
    "update-256": "update at concurrency 256",
    "mutate": "mutate (MutateSession, one session per client)",
    "hot": "hot (update_with_retry, one session)",
    "mutate-hot": "mutate-hot (MutateSession, one session)",
    "watch": "watch (delivery latency)",
    "get-256": "get at concurrency 256",
}
floors = {
    "get": ("health", health),
    "get-local": ("health", health),
    "update": ("pgbench CAS", cas_tps),
    "mutate-hot": ("pgbench increment", incr_tps),
}
srv_update, pg_update, srv_get = cpu("update", "server"), cpu("update", "postgres"), cpu("get", "server")

lines = [
    f"Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`, "
    f"{os.cpu_count()} × {cpu_model}, Linux {platform.release()}; concurrency {conc}, {duration} per scenario "
    f"(after a 2 s warm-up), flags of {payload} bytes. Server, PostgreSQL 15, Redis 7 and the load "
    "generators share the two cores.",
    "",
    "| floor / ceiling | ops/s | latency | PostgreSQL CPU µs/op |",
    "| --- | --- | --- | --- |",
    f"| pgbench -M prepared, single-statement CAS of a 1 KiB document (one row per client) | {cas_tps:,.0f} | avg {cas_lat} ms | {pg_us_per_tx('pgbench-cas'):.0f} |",
    f"| pgbench -M prepared, one hot row incremented by every client | {incr_tps:,.0f} | avg {incr_lat} ms | {pg_us_per_tx('pgbench-incr'):.0f} |",
    f"| redis-benchmark GET, {payload}-byte values | {redis_rps:,.0f} | p50 {redis_p50.group(1) if redis_p50 else '?'} ms | |",
    "",
    "| scenario | ops/s | p50 ms | p99 ms | max ms | conflicts | retries | failed RPCs | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    *[row(labels[n], s[n], *floors.get(n, (None, None))) for n in s],
    "",
    "CPU per operation, from `/proc/<pid>/stat` over each measured run (µs; PostgreSQL is every",
    "`postgres` process, Redis every `redis-server`, bench the load generator):",
    "",
    "| scenario | server | PostgreSQL | Redis | bench |",
    "| --- | --- | --- | --- | --- |",
    *[
        f"| {n} | {us(cpu(n, 'server'))} | {us(cpu(n, 'postgres'))} | {us(cpu(n, 'redis'))} | {us(cpu(n, 'bench'))} |"
        for n in s
    ],
    "",
    "| target | measured | |",
    "| --- | --- | --- |",
    f"| update ≥ 0.4 × pgbench CAS, p99 < 10 ms | {update_ratio:.2f} ×, p99 {s['update']['latency_ms']['p99']:.2f} ms "
    f"| {verdict(update_ratio >= 0.4 and s['update']['latency_ms']['p99'] < 10)} |",
    f"| server CPU per update ≤ 100 µs, PostgreSQL ≤ 120 µs | {us(srv_update)} µs, {us(pg_update)} µs "
    f"| {verdict((srv_update or 1e9) <= 100 and (pg_update or 1e9) <= 120)} |",
    f"| server CPU per warm get ≤ 30 µs | {us(srv_get)} µs | {verdict((srv_get or 1e9) <= 30)} |",
    f"| get (strong) ≥ 0.45 × health | {get_ratio:.2f} × | {verdict(get_ratio >= 0.45)} |",
    f"| get with min_version ≥ 0.8 × health | {local_ratio:.2f} × | {verdict(local_ratio >= 0.8)} |",
    f"| mutate-hot ≥ 0.5 × pgbench increment, 0 failed RPCs | {mutate_ratio:.2f} ×, {failed(s['mutate-hot'])} failed "
    f"| {verdict(mutate_ratio >= 0.5 and failed(s['mutate-hot']) == 0)} |",
    f"| server peak RSS < 64 MiB (after concurrency 256) | {rss_mib:.1f} MiB | {verdict(rss_mib < 64)} |",
]
events = read("events.txt").strip() if os.path.exists(os.path.join(work, "events.txt")) else ""
if events:
    rows, size = (int(x) for x in events.split("|"))
    lines += [
        "",
        f"The run left {rows:,} rows in `session_events` taking {size / 2**20:.1f} MiB with their indexes: "
        f"**{size / max(rows, 1):.0f} bytes per event** (a 1 KiB `flags` document changed per write).",
    ]
if batches:
    lines += ["", "Group-commit batch sizes over the whole run (`session_write_batch_size`, from /metrics):", "", batches]
lines += [
    "",
    "<details><summary>raw session-bench JSON</summary>",
    "",
    "```json",
    *[json.dumps(s[n]) for n in s],
    "```",
    "</details>",
]
results = "\n".join(lines)

begin, end = "<!-- results:begin -->", "<!-- results:end -->"
if os.path.exists(out) and begin in open(out).read():
    text = open(out).read()
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    text = f"{head}{begin}\n{results}\n{end}{tail}"
else:
    text = f"# Benchmarks\n\n{begin}\n{results}\n{end}\n"
with open(out, "w") as f:
    f.write(text)
print(results)

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

s = {n: bench(n) for n in ["health", "get", "update", "hot", "mutate-hot", "watch", "get-256"]}


def failed(r):
    return sum(v for k, v in r["errors"].items())


def row(name, r, floor_name=None, floor=None):
    ratio = f"{r['ops_per_sec'] / floor:.2f} × {floor_name}" if floor else ""
    lat = r["latency_ms"]
    return (
        f"| {name} | {r['ops_per_sec']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
        f"| {r['conflicts']} | {r['retries']} | {failed(r)} | {ratio} |"
    )


def verdict(ok):
    return "met" if ok else "**missed**"


update_ratio = s["update"]["ops_per_sec"] / cas_tps
get_ratio = s["get"]["ops_per_sec"] / s["health"]["ops_per_sec"]
mutate_ratio = s["mutate-hot"]["ops_per_sec"] / incr_tps
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")

lines = [
    f"Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`, "
    f"{os.cpu_count()} × {cpu}, Linux {platform.release()}; concurrency {conc}, {duration} per scenario "
    f"(after a 2 s warm-up), flags of {payload} bytes. Server, PostgreSQL 15, Redis 7 and the load "
    "generators share the two cores.",
    "",
    "| floor / ceiling | ops/s | latency |",
    "| --- | --- | --- |",
    f"| pgbench, the service's conditional UPDATE … RETURNING (one row per client) | {cas_tps:,.0f} | avg {cas_lat} ms |",
    f"| pgbench, one hot row incremented by every client | {incr_tps:,.0f} | avg {incr_lat} ms |",
    f"| redis-benchmark GET, {payload}-byte values | {redis_rps:,.0f} | p50 {redis_p50.group(1) if redis_p50 else '?'} ms |",
    f"| session-bench health (grpc.health.v1 Check) | {s['health']['ops_per_sec']:,.0f} | p50 {s['health']['latency_ms']['p50']:.2f} ms |",
    "",
    "| scenario | ops/s | p50 ms | p99 ms | max ms | conflicts | retries | failed RPCs | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    row("get (cache hits)", s["get"], "health", s["health"]["ops_per_sec"]),
    row("update (expected_version)", s["update"], "pgbench CAS", cas_tps),
    row("hot (update_with_retry, one session)", s["hot"]),
    row("mutate-hot (MutateSession, one session)", s["mutate-hot"], "pgbench increment", incr_tps),
    row("watch (delivery latency)", s["watch"]),
    row("get at concurrency 256", s["get-256"]),
    "",
    "| target | measured | |",
    "| --- | --- | --- |",
    f"| update ≥ 0.5 × pgbench CAS, p99 < 10 ms | {update_ratio:.2f} ×, p99 {s['update']['latency_ms']['p99']:.2f} ms "
    f"| {verdict(update_ratio >= 0.5 and s['update']['latency_ms']['p99'] < 10)} |",
    f"| get ≥ 0.6 × health | {get_ratio:.2f} × | {verdict(get_ratio >= 0.6)} |",
    f"| mutate-hot: zero failed RPCs | {failed(s['mutate-hot'])} failed ({mutate_ratio:.2f} × pgbench increment) "
    f"| {verdict(failed(s['mutate-hot']) == 0)} |",
    f"| server peak RSS < 100 MiB (after concurrency 256) | {rss_mib:.1f} MiB | {verdict(rss_mib < 100)} |",
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

#!/usr/bin/env python3
"""Renders RELIABILITY.md from one scripts/reliability.sh run.

    reliability_report.py WORKDIR OUT
"""

import datetime
import json
import os
import re
import subprocess
import sys

work, out = sys.argv[1], sys.argv[2]


def figures(name):
    path = os.path.join(work, f"{name}.json")
    return json.load(open(path)) if os.path.exists(path) else None


def text(name):
    path = os.path.join(work, name)
    return open(path).read() if os.path.exists(path) else ""


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
tests = text("tests.log")
passed = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", tests)
props = re.search(r"test result: (\w+)\. (\d+) passed; (\d+) failed", text("props.log"))
fuzz = text("fuzz.log")
runs = re.findall(r"Done (\d+) runs in (\d+) second", fuzz)
corpus = re.findall(r"corp: (\d+)/(\S+)", fuzz)
crashed = "panicked" in fuzz or "deadly signal" in fuzz or "SUMMARY" in fuzz

rows = []


def row(scenario, f, sent, faults, acked, lost, dup, note=""):
    if f is None:
        rows.append(f"| {scenario} | not run | | | | | |")
        return
    rows.append(f"| {scenario} | {sent} | {faults} | {acked} | {lost} | {dup} | {note} |")


f = figures("lost_update_checker")
row("1. lost-update checker: 12 clients × 40 read-modify-write increments, 4 sessions (PostgreSQL)", f,
    f and f["requests_sent"], f and f"{f['conflicts']} conflicts", f and f["acknowledged"], f and f["lost"],
    f and f["duplicated"], f and f"{f['exhausted']} gave up (not applied); histories gapless: {f['histories_gapless']}")
f = figures("response_drop_proxy")
row("2. response-drop proxy: 20 % of answers dropped after the server handled them", f,
    f and f["requests_sent"], f and f"{f['responses_dropped']} responses dropped", f and f["acknowledged"],
    f and f["lost"], f and f["duplicated"])
f = figures("crash_kill_9")
row("3. `kill -9` of the server mid-load, restarted on the same database", f,
    f and f["attempts"], "1 kill -9", f and f["acknowledged"], f and f["lost"], f and f["duplicated"],
    f and f"counter at the kill: {f['counter_before_kill']}, at the end: {f['final_counter']}")
f = figures("redis_outage")
row("4. Redis killed and restarted mid-load (private redis-server)", f,
    f and f["requests_sent"], "1 kill, 1 restart", f and f["requests_sent"] - f["failed_rpcs"], 0, 0,
    f and f"{f['failed_rpcs']} failed RPCs; reads older than already seen: {f['reads_older_than_seen']}")
f = figures("postgres_outage")
row("5. PostgreSQL stopped (private cluster) and started again", f,
    f and f["unavailable_answers"], "1 stop, 1 start", "", "", "",
    f and f"all UNAVAILABLE, slowest in {f['slowest_failure_ms']} ms; health NOT_SERVING: {f['health_not_serving']}; "
    f"recovered {f['recovery_ms']} ms after the restart")
f = figures("three_replicas")
row("6. three replicas, one PostgreSQL and Redis, clients spread across them", f,
    f and f["acknowledged"], "", f and f["acknowledged"], f and f["acknowledged"] - f["final_counter"], 0,
    f and f"watchers on each replica ended at versions {f['watchers_final_versions']} (final {f['final_version']})")

doc = f"""# Reliability

What the reliability suite did to session-service and what survived. This file is
written by `scripts/reliability.sh` from the figures the tests record; rerun it to
check (CI runs the same tests, with `.ci/run`).

Run of {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit `{commit}`, this 2-core machine.
Reliability tests: {passed.group(2) if passed else '?'} passed, {passed.group(3) if passed else '?'} failed.

| scenario | requests | faults injected | acknowledged | lost | duplicated | notes |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

How each works (tests/reliability.rs):

1. Clients increment a counter through the client's `update_with_retry` (conflicts
   re-applied from the ABORTED details). Afterwards each session's counter equals its
   acknowledged increments, its version is 1 + that, and ListSessionEvents shows
   versions 1..=version once each.
2. A gRPC proxy forwards every call and, for a seeded 20 % of them, throws the answer
   away after the server committed it and answers UNAVAILABLE. Each logical increment
   keeps one request id across resends, so the server answers a resend from its
   idempotency record instead of applying it again.
3. The real `session-service` binary is killed with SIGKILL while six clients write,
   then started again on the same database and port. Clients keep resending with the
   same request ids until acknowledged; the final counter equals the acknowledgements.
4. A private `redis-server` is killed for a second and restarted while eight clients
   read and write: every RPC succeeds (reads fall back to PostgreSQL within the
   command timeout), and no client ever reads a version older than one it saw.
5. A private PostgreSQL cluster (`pg_createcluster`) is stopped: calls fail fast with
   UNAVAILABLE and health goes NOT_SERVING; after it starts again, calls and health
   recover on their own.
6. Three servers share one PostgreSQL and one Redis; nine clients spread over them
   increment one session exactly once each; a watcher on every replica ends at the
   final version.

Properties (`tests/properties.rs`, proptest, {os.environ.get('PROPTEST_CASES', '2000')} cases each):
{props.group(2) if props else '?'} properties passed, {props.group(3) if props else '?'} failed — normalization is
idempotent, the session helpers never panic and apply deterministically, JSON survives
the wire.

Fuzzing (`fuzz/fuzz_targets/decode_requests.rs`: request decoding + validation + the
session helpers + the JSON helpers; corpus kept in `fuzz/corpus/`):
{f"{runs[-1][0]} runs in {runs[-1][1]} s" if runs else "no summary"}, final corpus {corpus[-1][0] + " inputs" if corpus else "?"},
{"a crash was found (see the log)" if crashed else "no crash"}.
"""
# The soak's section (scripts/soak.sh writes it) is kept as it is.
if os.path.exists(out):
    kept = re.search(r"<!-- soak:begin -->.*<!-- soak:end -->", open(out).read(), re.S)
    if kept:
        doc += "\n" + kept.group(0) + "\n"
open(out, "w").write(doc)
print(doc)

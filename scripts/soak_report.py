#!/usr/bin/env python3
"""Adds one scripts/soak.sh run to the soak table of RELIABILITY.md (between
<!-- soak:begin --> and <!-- soak:end -->), newest first, the last 10 runs kept.

    soak_report.py REPORT.json RELIABILITY.md [--broken] [--commit SHA] [--when "YYYY-MM-DD HH:MM UTC"]

(--commit and --when record a run made earlier, on another commit.)
"""

import datetime
import json
import re
import subprocess
import sys

report, out = sys.argv[1], sys.argv[2]
rest = sys.argv[3:]
broken = "--broken" in rest


def option(name):
    return rest[rest.index(name) + 1] if name in rest else None


r = json.load(open(report))
c = r["check"]
commit = option("--commit") or subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
).stdout.strip()
when = option("--when") or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def kinds(d):
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(d.items())) or "–"


ops = sum(r["operations"].values())
row = (
    f"| {when}, `{commit}`{' **broken build**' if broken else ''} | {r['duration_s']} s | {r['seed']} | {r['redis']} "
    f"| {kinds(r['faults'])}; {r['responses_dropped']} responses dropped "
    f"| {ops}: {kinds(r['operations'])}; {r['replays_checked']} replays checked "
    f"| {c['acknowledged']} ({c['unknown']} in doubt, {c['unknown_applied']} of them applied; {c['refused']} refused) "
    f"| {c['lost']} | {c['duplicated']} | {c['non_monotonic']} "
    f"| {c['phantom'] + c['misordered'] + r['replay_mismatches']} "
    f"| {kinds({k: f'{v} ms' for k, v in r['longest_unavailable_ms'].items()})} |"
)
header = """<!-- soak:begin -->
## Randomized fault soak

Written by `scripts/soak.sh --write RELIABILITY.md` (tests/soak/): a private
PostgreSQL cluster, a private Redis (standalone, or a Sentinel group with forced
failovers), three replicas of the server behind response-dropping proxies, six
clients mixing UpdateSession through the retry loop, idempotent resends with a kept
request id (each sent once more after its answer, which must repeat it),
MutateSession, AdvanceSession, strong reads and `min_version` reads, and a
WatchSession stream per session. A seeded nemesis starts faults at random, 0.3–2.5 s
apart and overlapping: kill -9 of a replica, SIGSTOP of the Redis master, kill of
Redis (or a Sentinel failover), a PostgreSQL restart, 10–30 % of responses dropped.
Every write appends a unique token to a list in its session; the checker
(tests/soak/history.rs) proves each acknowledged token is in the final state exactly
once, no refused or unknown token is, tokens sit in the order of their acknowledged
versions, every version is one event, every read is a prefix of the final state that
shows exactly the writes acknowledged at or below its version and is never older than
a write acknowledged before it was sent or than its client had seen, and every watch
stream only goes forward. A run with `--broken` uses a server built to skip
idempotency and passes only if the checker catches it.

"Other" counts phantom writes, misordered versions and replays answered wrongly.
"Longest unavailable" is the longest stretch with no successful operation that
overlaps a fault of that kind. The final state is read strongly through one replica;
when that read is itself stale, the writes it misses count as lost and misordered
although the events table (also checked) holds them, as in the 08:38 run below.

What the runs found: strong reads older than an acknowledged write, 3 to 6 per
600 s, always after compound faults within one cache TTL (the soak uses a 5 s TTL to
reach them often). Five holes were found and closed, each with a test of its own (a
paused Redis under a write; a replica started next to a young Redis; a replayed
answer or a late fill re-creating an expired entry under a newer version; a replica
started while Redis was down that never connected to it, because fred gives up on a
failed first connection unless told otherwise, and answered its writes without
their write-through). The first 600 s Sentinel run (11:05) then found more: 53
stale reads, all within failover windows. Two causes were closed: a replica started
during a failover trusted the promoted replica (an old process, so the age rule did
not apply) although it lacked what the old master took after its last replication
(now a starting replica behind Sentinel or a Cluster distrusts the cache for one
window), and a write to a demoted master failed READONLY without a reconnect (now
fred reconnects). The 420 s Sentinel run after that (11:53) still found 18, again in
failover windows: while the sentinel takes seconds to demote the old master, replicas
still on it acknowledge write-throughs the new master never sees, and replicas that
reach the new master trust it once their own window has passed. The Sentinel group
now runs as it should in production, with `min-replicas-to-write 1` and
`min-replicas-max-lag 2` (the old master refuses writes once cut off from its
replica, and the service reconnects on NOREPLICAS). Two 600 s Sentinel runs since
(14:09 with a max lag of 1, 14:24 with 2) found no stale reads, but they are not the
runs above with one thing changed: about 13 write-throughs a second per replica met
NOREPLICAS and each reconnected (~8,000 per replica per run), and each reconnect read
from PostgreSQL for a window, so the cache served few reads and the runs made a
quarter of the operations. The refusals are the fencing doing its job, not flapping
(at a max lag of 2 a healthy group refused 0 of 300 writes, at 1 about a quarter): in
this group a paused master (0.3–4 s, more than the 1 s `down-after-milliseconds`) is
failed over, the old master stays master for ~11 s before the sentinel demotes it,
then resyncs for ~4 s, and the new master refuses writes until it has a replica
again; with a pause or failover every ~10 s the group is mostly in that state. The
repeated "Failed to read any known sentinel nodes" warnings are fred finding no
*other* sentinel (there is one), once per connection, and harmless. CI runs the soak
on every change (2 minutes with a fixed seed, 2 with a random one, standalone Redis).

| run | duration | seed | Redis | faults injected | operations | acknowledged | lost | duplicated | non-monotonic reads | other | longest unavailable |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""
doc = open(out).read()
section = re.search(r"<!-- soak:begin -->.*<!-- soak:end -->", doc, re.S)
rows = re.findall(r"^\| \d{4}-.*$", section.group(0), re.M) if section else []
rows = [row] + rows[:9]
new = header + "\n".join(rows) + "\n<!-- soak:end -->"
doc = doc.replace(section.group(0), new) if section else doc.rstrip("\n") + "\n\n" + new + "\n"
open(out, "w").write(doc)
print(row)

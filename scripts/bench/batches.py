#!/usr/bin/env python3
"""Reads Prometheus text on stdin and prints the `session_write_batch_size`
histogram as a markdown table: how many group-commit batches had each size."""

import re
import sys

buckets = []
for line in sys.stdin:
    m = re.match(r'session_write_batch_size_bucket\{.*le="([^"]+)".*\} (\d+)', line)
    if m:
        buckets.append((m.group(1), int(m.group(2))))
if not buckets:
    sys.exit(0)
print("| batch size ≤ | batches |")
print("| --- | --- |")
prev = 0
for le, cumulative in buckets:
    print(f"| {le} | {cumulative - prev} |")
    prev = cumulative

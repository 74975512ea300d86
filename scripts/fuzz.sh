#!/usr/bin/env bash
# Fuzzes request decoding + validation + the JSON helpers (fuzz/fuzz_targets) for a
# bounded time, starting from and adding to the corpus kept in fuzz/corpus/.
#
#   scripts/fuzz.sh            # 60 s
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets this
# machine's stable toolchain accept them. No sanitizer: the code is safe Rust, and
# what the fuzzer looks for is panics (and the target's assertions).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
seconds="${FUZZ_SECONDS:-60}"
mkdir -p corpus/decode_requests
RUSTC_BOOTSTRAP=1 cargo fuzz run decode_requests --sanitizer none -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 2>&1 | tee "${FUZZ_LOG:-/dev/null}" | tail -5

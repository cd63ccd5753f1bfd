#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 600), one after another,
# growing fuzz/corpus/<target>/ and then minimising it; crashes land in fuzz/artifacts/.
# Optimised, with debug assertions and overflow checks (-O -a). Needs the nightly toolchain
# and cargo-fuzz (cargo install cargo-fuzz).
#   bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -a
for target in "${targets[@]}"; do
    echo "== $target: $seconds s"
    # -timeout: an input that takes 10 s is a hang; the memory limits catch unbounded
    # allocation (a single malloc over 512 MB, or the process over 2 GB).
    cargo +nightly fuzz run -O -a "$target" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=512 -print_final_stats=1
    cargo +nightly fuzz cmin -O -a "$target"
done

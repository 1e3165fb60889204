#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# host-suite.sh: every benchmark on the host, under whatever scheduler it
# runs (on a kernel without sched_ext: the default scheduler, and the
# Morpheus runtime's budget source only). No root needed.
#
#   morpheus-bench/scripts/host-suite.sh BIN_DIR [quick|full]
#
# BIN_DIR holds the release binaries (cargo build --release -p
# morpheus-bench). Results (JSON per program, SVG plots) go to
# $MORPHEUS_BENCH_OUT (default /tmp/morpheus-bench-host). quick = a few
# seconds per program (the test suite; under a minute in all); full = the
# figures in BENCHMARKS.md. The Python benchmark runs when
# $MORPHEUS_BENCH_PYTHON (default python3) can import morpheus.
set -euo pipefail

BIN="$(cd "${1:?usage: host-suite.sh BIN_DIR [quick|full]}" && pwd)"
MODE="${2:-quick}"
OUT="${MORPHEUS_BENCH_OUT:-/tmp/morpheus-bench-host}"
mkdir -p "$OUT/plots"
case "$MODE" in
quick) Q=(--quick) ;;
full) Q=() ;;
*) echo "host-suite: mode must be quick or full, not '$MODE'" >&2; exit 2 ;;
esac
for b in starvation latency liar neutrality microbench; do
    [[ -x "$BIN/$b" ]] || { echo "host-suite: $BIN/$b missing (cargo build --release -p morpheus-bench)" >&2; exit 1; }
done

export RUST_LIB_BACKTRACE=0
TAG=host
T0=$SECONDS
run() {
    local name="$1"
    shift
    printf '\n==== %s: %s (%ss into the suite)\n' "$name" "$*" "$((SECONDS - T0))"
    "$BIN/$name" "${Q[@]}" --json "$OUT/$TAG-$name.json" --plots "$OUT/plots" --tag "$TAG" "$@"
}

echo "host-suite: kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), mode $MODE, output $OUT"
run starvation
run latency --pressure
run liar --critical-duration-ms 500
run neutrality
if command -v valgrind >/dev/null; then
    if [[ $MODE == quick ]]; then
        run microbench --callgrind --cases empty_loop,async_loop,checkpoint_async,checkpoint_sync,critical_section
    else
        run microbench --callgrind
    fi
else
    run microbench
fi
# The Python table, when the morpheus package is importable
# ($MORPHEUS_BENCH_PYTHON, default python3; e.g. the test suite's .venv).
PY="${MORPHEUS_BENCH_PYTHON:-python3}"
if "$PY" -c 'import morpheus' 2>/dev/null; then
    printf '\n==== python asyncio_bench (%ss into the suite)\n' "$((SECONDS - T0))"
    "$PY" "$(dirname "${BASH_SOURCE[0]}")/../python/asyncio_bench.py" "${Q[@]}" --json "$OUT/$TAG-python.json"
else
    echo "host-suite: skipping the Python benchmark ($PY cannot import morpheus: pip install ./morpheus-py)"
fi
printf '\n==== done in %ss\n' "$((SECONDS - T0))"

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
# seconds per program (the test suite; under a minute in all); full = every
# program's full run, among them BENCHMARKS.md's host figures (microbench
# with callgrind, the Python table). The Python benchmark runs when
# $MORPHEUS_BENCH_PYTHON (default python3) can import morpheus. Every
# program's JSON and plots are checked for form (never for figures); the
# suite exits 1 if a program failed or wrote malformed output.
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
for b in starvation latency wakeup liar neutrality microbench check-output; do
    [[ -x "$BIN/$b" ]] || { echo "host-suite: $BIN/$b missing (cargo build --release -p morpheus-bench)" >&2; exit 1; }
done

export RUST_LIB_BACKTRACE=0
TAG=host
T0=$SECONDS
# shellcheck source=morpheus-bench/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "host-suite: kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), mode $MODE, output $OUT"
run starvation 1 starvation-probe-tail,starvation-throughput
run latency 1 latency-light-tail,latency-heavy-throughput --pressure
run wakeup 1 wakeup-delay-tail
run liar 1 liar-longest-delay --critical-duration-ms 500
run neutrality 1 neutrality-throughput
if command -v valgrind >/dev/null; then
    if [[ $MODE == quick ]]; then
        # valgrind's start dominates: two cases prove the path (the VM
        # suite and `cargo test --benches` run the others).
        run microbench 1 "" --callgrind --cases empty_loop,checkpoint_sync
    else
        run microbench 1 "" --callgrind
    fi
else
    run microbench 1 ""
fi
# The Python table, when the morpheus package is importable
# ($MORPHEUS_BENCH_PYTHON, default python3; e.g. the test suite's .venv).
PY="${MORPHEUS_BENCH_PYTHON:-python3}"
if "$PY" -c 'import morpheus' 2>/dev/null; then
    step "python asyncio_bench"
    rm -f "$OUT/$TAG-python.json"
    if "$PY" "$(dirname "${BASH_SOURCE[0]}")/../python/asyncio_bench.py" "${Q[@]}" --json "$OUT/$TAG-python.json"; then
        check python "$OUT/$TAG-python.json" -
    else
        FAILED+=("python asyncio_bench: failed (exit status)")
    fi
else
    echo "host-suite: skipping the Python benchmark ($PY cannot import morpheus: pip install ./morpheus-py)"
fi
suite_end host-suite

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# vm-suite.sh: every benchmark under a sched_ext kernel, in one boot, each
# comparing the kernel's default scheduler with scx_morpheus (observer and
# --enforce) and the peer scheduler scx_bpfland where that comparison is the
# point. Run as root under a sched_ext kernel, normally through the VM tool:
#
#   MORPHEUS_VM_OUT=/tmp/bench tools/vm/run -- morpheus-bench/scripts/vm-suite.sh BIN_DIR [quick|full]
#
# BIN_DIR holds the release binaries (scx_morpheus and the benchmarks);
# scx_bpfland is found through MORPHEUS_BPFLAND or the cache
# (morpheus-bench/scripts/ensure-bpfland.sh builds it; tools/vm/run passes
# MORPHEUS_* variables into the guest).
# Results (JSON per program, SVG plots, the console log) go to
# $MORPHEUS_VM_OUT (default /tmp/morpheus-bench). quick = a few seconds per
# program, for the test suite; full = the figures in BENCHMARKS.md. Every
# program's JSON and plots are checked for form (never for figures); the
# suite exits 1 if a program failed or wrote malformed output.
set -euo pipefail

BIN="$(cd "${1:?usage: vm-suite.sh BIN_DIR [quick|full]}" && pwd)"
MODE="${2:-quick}"
OUT="${MORPHEUS_VM_OUT:-/tmp/morpheus-bench}"
mkdir -p "$OUT/plots"
[[ -d /sys/kernel/sched_ext ]] || { echo "vm-suite: this kernel has no sched_ext" >&2; exit 1; }
case "$MODE" in
quick) Q=(--quick) ;;
full) Q=() ;;
*) echo "vm-suite: mode must be quick or full, not '$MODE'" >&2; exit 2 ;;
esac
for b in scx_morpheus starvation latency wakeup liar neutrality microbench demo-table check-output; do
    [[ -x "$BIN/$b" ]] || { echo "vm-suite: $BIN/$b missing (cargo build --release -p scx_morpheus -p morpheus-bench)" >&2; exit 1; }
done

# anyhow: no backtraces in error messages (RUST_BACKTRACE may be set).
export RUST_LIB_BACKTRACE=0
KREL="$(uname -r)"
TAG="vm-${KREL%%+*}"
T0=$SECONDS
# shellcheck source=morpheus-bench/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "vm-suite: kernel $KREL, $(nproc) CPUs, mode $MODE, output $OUT"
# The in-process benchmark with kernel hints: hogs give the kernel a reason
# to hint the workers. Quick mode runs the demo's pair of strategies
# (Blocking and Morpheus), for its table.
if [[ $MODE == full ]]; then
    run starvation 3 starvation-default-probe-tail,starvation-observer-probe-tail,starvation-bpfland-probe-tail,starvation-observer-throughput \
        --hogs "$(nproc)" --sched default,observer,bpfland
else
    run starvation 3 starvation-default-probe-tail,starvation-observer-probe-tail,starvation-bpfland-probe-tail \
        --hogs "$(nproc)" --variants blocking,morpheus --sched default,observer,bpfland
fi
# The main claim, beside the peer scheduler (full mode: also --enforce,
# which is only a loader option).
if [[ $MODE == full ]]; then
    run latency 4 latency-light-tail,latency-heavy-throughput --pressure --sched default,observer,bpfland,enforce
else
    run latency 3 latency-light-tail,latency-heavy-throughput --pressure --sched default,observer,bpfland
fi
# A plain thread waking from a 1 ms sleep beside CPU hogs.
run wakeup 3 wakeup-delay-tail --sched default,observer,bpfland
# The demo's side-by-side table (tools/demo/demo.sh), from the three runs.
if [[ $MODE == quick ]]; then
    step "demo-table"
    "$BIN/demo-table" "$OUT/$TAG-latency.json" "$OUT/$TAG-starvation.json" "$OUT/$TAG-wakeup.json" ||
        FAILED+=("demo-table: failed (exit status)")
fi
# A critical section that lies: the cap must hold. In full mode also with
# honest 1 ms sections first (the delays the machine shows without a liar)
# and under every configuration; quick mode only proves it runs.
if [[ $MODE == full ]]; then
    step "liar (honest 1 ms sections, the baseline)"
    "$BIN/liar" --critical-duration-ms 1 --sched default,observer \
        --json "$OUT/$TAG-liar-honest.json" || FAILED+=("liar (honest): failed (exit status)")
    run liar 3 liar-longest-delay --critical-duration-ms 500 --sched default,observer,enforce
else
    run liar 1 liar-longest-delay --critical-duration-ms 500 --sched observer
fi
# Ordinary workloads must not pay for scx_morpheus.
if [[ $MODE == full ]]; then
    run neutrality 3 neutrality-throughput --sched default,observer,bpfland
else
    run neutrality 2 neutrality-throughput --sched default,observer
fi
# The fast path with the worker registered with the kernel; exact
# instruction counts (valgrind under emulation is slow: full mode only).
CASES=empty_loop,async_loop,checkpoint_async,checkpoint_sync,critical_section
if [[ $MODE == full ]] && command -v valgrind >/dev/null; then
    run microbench 1 "" --callgrind --cases "$CASES" --sched observer
else
    run microbench 1 "" --cases "$CASES" --sched observer
fi
suite_end vm-suite

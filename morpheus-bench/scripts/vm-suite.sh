#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# vm-suite.sh: every benchmark under a sched_ext kernel, in one boot, each
# comparing the kernel's default scheduler with scx_morpheus (observer and
# --enforce) where that comparison is the point. Run as root under a
# sched_ext kernel, normally through the VM tool:
#
#   MORPHEUS_VM_OUT=/tmp/bench tools/vm/run -- morpheus-bench/scripts/vm-suite.sh BIN_DIR [quick|full]
#
# BIN_DIR holds the release binaries (scx_morpheus and the benchmarks).
# Results (JSON per program, SVG plots, the console log) go to
# $MORPHEUS_VM_OUT (default /tmp/morpheus-bench). quick = a few seconds per
# program, for the test suite; full = the figures in BENCHMARKS.md.
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
for b in scx_morpheus starvation latency liar neutrality microbench; do
    [[ -x "$BIN/$b" ]] || { echo "vm-suite: $BIN/$b missing (cargo build --release -p scx_morpheus -p morpheus-bench)" >&2; exit 1; }
done

# anyhow: no backtraces in error messages (RUST_BACKTRACE may be set).
export RUST_LIB_BACKTRACE=0
KREL="$(uname -r)"
TAG="vm-${KREL%%+*}"
T0=$SECONDS
step() { printf '\n==== %s (%ss into the suite)\n' "$*" "$((SECONDS - T0))"; }
run() {
    local name="$1"
    shift
    step "$name: $*"
    "$BIN/$name" "${Q[@]}" --json "$OUT/$TAG-$name.json" --plots "$OUT/plots" --tag "$TAG" "$@"
}

echo "vm-suite: kernel $KREL, $(nproc) CPUs, mode $MODE, output $OUT"
# The in-process benchmark with kernel hints: hogs give the kernel a reason
# to hint the workers.
run starvation --hogs "$(nproc)" --sched observer
# The main claim, in all three configurations.
run latency --pressure --sched default,observer,enforce
# A critical section that lies: the cap must hold. In full mode also with
# honest 1 ms sections first (the delays the machine shows without a liar)
# and under every configuration; quick mode only proves it runs.
if [[ $MODE == full ]]; then
    step "liar (honest 1 ms sections, the baseline)"
    "$BIN/liar" --critical-duration-ms 1 --sched default,observer \
        --json "$OUT/$TAG-liar-honest.json"
    run liar --critical-duration-ms 500 --sched default,observer,enforce
else
    run liar --critical-duration-ms 500 --sched observer
fi
# Ordinary workloads must not pay for scx_morpheus.
run neutrality --sched default,observer
# The fast path with the worker registered with the kernel; exact
# instruction counts (valgrind under emulation is slow: full mode only).
CASES=empty_loop,async_loop,checkpoint_async,checkpoint_sync,critical_section
if [[ $MODE == full ]] && command -v valgrind >/dev/null; then
    run microbench --callgrind --cases "$CASES" --sched observer
else
    run microbench --cases "$CASES" --sched observer
fi
step "done"

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
# $MORPHEUS_VM_OUT (default /tmp/morpheus-bench), named
# vm-<kernel>[-$MORPHEUS_BENCH_SUFFIX]-<program>.json. quick = a few seconds per
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
# File names: vm-<kernel>[-$MORPHEUS_BENCH_SUFFIX] (e.g. the commit).
TAG="vm-${KREL%%+*}${MORPHEUS_BENCH_SUFFIX:+-$MORPHEUS_BENCH_SUFFIX}"
T0=$SECONDS
# shellcheck source=morpheus-bench/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

echo "vm-suite: kernel $KREL, $(nproc) CPUs, mode $MODE, output $OUT"
# Full mode is the current figures of BENCHMARKS.md: every program in 5
# alternating rounds (the programs' default in full mode, except where
# given), the kernel default scheduler, scx_morpheus and scx_bpfland side
# by side, then demo-table's Markdown for the comparison. Quick mode
# proves each program runs (one short round) and prints the demo's table.
S=default,observer,bpfland
# Rounds and window lengths of the full mode (quick mode: the programs'
# quick defaults).
if [[ $MODE == full ]]; then
    R=(--rounds 5) D3=(--duration 3) D4=(--duration 4 --warmup 1)
else
    R=() D3=() D4=()
fi
# A plain thread waking from a 1 ms sleep beside CPU hogs.
run wakeup 3 wakeup-delay-tail --sched "$S" "${R[@]}" "${D3[@]}"
# The main claim: a Tokio service's light requests beside CPU hogs.
run latency 3 latency-light-tail,latency-heavy-throughput --pressure --sched "$S" "${R[@]}" "${D4[@]}"
if [[ $MODE == full ]]; then
    # The same with other worker and hog counts, checkpoint interval and
    # request rate (the targets must not depend on one set of parameters).
    run_as latency-other latency 3 latency-light-tail,latency-heavy-throughput --pressure \
        --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched "$S" "${R[@]}" "${D4[@]}"
fi
# The in-process benchmark with kernel hints: hogs give the kernel a reason
# to hint the workers. Quick mode runs the demo's pair of strategies
# (Blocking and Morpheus); full mode all four, for the comparison with
# Tokio's own coop budget.
if [[ $MODE == full ]]; then
    run starvation 3 starvation-default-probe-tail,starvation-observer-probe-tail,starvation-bpfland-probe-tail,starvation-observer-throughput \
        --hogs "$(nproc)" --sched "$S" "${R[@]}" "${D3[@]}"
else
    run starvation 3 starvation-default-probe-tail,starvation-observer-probe-tail,starvation-bpfland-probe-tail \
        --hogs "$(nproc)" --variants blocking,morpheus --sched "$S"
fi
# Ordinary workloads must not pay for scx_morpheus.
run neutrality 3 neutrality-throughput --sched "$S" "${R[@]}"
# The demo's side-by-side table (tools/demo/demo.sh) from these runs; in
# full mode as Markdown, the blocks of BENCHMARKS.md.
step "demo-table"
if [[ $MODE == full ]]; then
    "$BIN/demo-table" --markdown --other-latency "$OUT/$TAG-latency-other.json" \
        "$OUT/$TAG-latency.json" "$OUT/$TAG-starvation.json" "$OUT/$TAG-wakeup.json" \
        "$OUT/$TAG-neutrality.json" | tee "$OUT/$TAG-demo-table.md" ||
        FAILED+=("demo-table: failed (exit status)")
else
    "$BIN/demo-table" "$OUT/$TAG-latency.json" "$OUT/$TAG-starvation.json" "$OUT/$TAG-wakeup.json" \
        "$OUT/$TAG-neutrality.json" || FAILED+=("demo-table: failed (exit status)")
fi
# A critical section that lies: the cap must hold. In full mode also with
# honest 1 ms sections first (the delays the machine shows without a liar)
# and under every configuration; quick mode only proves it runs.
if [[ $MODE == full ]]; then
    run_as liar-honest liar 3 liar-longest-delay --critical-duration-ms 1 --sched "$S"
    run liar 4 liar-longest-delay --critical-duration-ms 500 --sched default,observer,enforce,bpfland
else
    run liar 1 liar-longest-delay --critical-duration-ms 500 --sched observer
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

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The demo, run as root under a sched_ext kernel (in the test VM or
# natively): short versions of the `latency` and `starvation` benchmarks,
# each under the kernel's default scheduler and under scx_morpheus, then a
# side-by-side table with the scheduler's own metrics (hints sent and
# answered), so that the effect and the mechanism are both visible.
#
#   demo.sh BIN_DIR     BIN_DIR holds scx_morpheus and the morpheus-bench programs
#
# MORPHEUS_DEMO_SECS (default 5): seconds per measurement window.
# MORPHEUS_VM_OUT: where the raw JSON is kept (default: a temporary dir).
set -euo pipefail

BIN="${1:?usage: demo.sh BIN_DIR}"
SECS="${MORPHEUS_DEMO_SECS:-5}"
SCHED_EXT=/sys/kernel/sched_ext
OUT="${MORPHEUS_VM_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

say() { printf '\n== %s\n' "$*"; }

[[ -d $SCHED_EXT ]] || { echo "demo: this kernel has no sched_ext" >&2; exit 1; }
for b in scx_morpheus latency starvation demo-table; do
    [[ -x "$BIN/$b" ]] || { echo "demo: $BIN/$b missing (cargo build --release -p scx_morpheus -p morpheus-bench)" >&2; exit 1; }
done
say "kernel $(uname -r), $(nproc) CPUs, sched_ext state: $(cat $SCHED_EXT/state)"

say "1. latency: a Tokio service (Morpheus checkpoints) with light and CPU-heavy
   requests while CPU hogs saturate every CPU; first under the kernel's default
   scheduler, then with scx_morpheus attached (it starts and stops around the run)"
"$BIN/latency" --pressure --duration "$SECS" --warmup 1 --rounds 1 --sched default,observer \
    --json "$OUT/demo-latency.json"

say "2. starvation: CPU-bound tasks on every worker plus a 1 ms latency probe,
   never yielding (Blocking) or with checkpoint!() (Morpheus), CPU hogs beside them"
"$BIN/starvation" --hogs "$(nproc)" --duration "$((SECS / 2 + 1))" --rounds 1 \
    --variants blocking,morpheus --sched default,observer --json "$OUT/demo-starvation.json"

say "Side by side (kernel default vs scx_morpheus observer; ratio = scx_morpheus / default)"
"$BIN/demo-table" "$OUT/demo-latency.json" "$OUT/demo-starvation.json"
echo "(under QEMU software emulation timings are slow and noisy: compare the columns,"
echo " not absolute values; raw data in $OUT; full benchmarks: BENCHMARKS.md)"

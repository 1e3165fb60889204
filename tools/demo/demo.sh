#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The demo, run as root under a sched_ext kernel (in the test VM or
# natively): short versions of the `latency`, `starvation`, `wakeup` and
# `neutrality` benchmarks, each under the kernel's default scheduler, scx_morpheus and the
# peer scheduler scx_bpfland, then a side-by-side table with the scheduler's
# own metrics (hints sent and answered) and the verdict on each target, so
# that the effect and the mechanism are both visible.
#
#   demo.sh BIN_DIR     BIN_DIR holds scx_morpheus and the morpheus-bench programs
#
# MORPHEUS_DEMO_SECS (default 5): seconds per measurement window.
# MORPHEUS_VM_OUT: where the raw JSON is kept (default: a temporary dir).
# MORPHEUS_BPFLAND: the scx_bpfland binary (morpheus-bench/scripts/ensure-bpfland.sh
# builds it and prints its path; ./morpheus-dev demo sets this).
set -euo pipefail

BIN="${1:?usage: demo.sh BIN_DIR}"
SECS="${MORPHEUS_DEMO_SECS:-5}"
SCHED_EXT=/sys/kernel/sched_ext
OUT="${MORPHEUS_VM_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"

say() { printf '\n== %s\n' "$*"; }

[[ -d $SCHED_EXT ]] || { echo "demo: this kernel has no sched_ext" >&2; exit 1; }
for b in scx_morpheus latency starvation wakeup neutrality demo-table; do
    [[ -x "$BIN/$b" ]] || { echo "demo: $BIN/$b missing (cargo build --release -p scx_morpheus -p morpheus-bench)" >&2; exit 1; }
done
say "kernel $(uname -r), $(nproc) CPUs, sched_ext state: $(cat $SCHED_EXT/state)"

say "1. latency: a Tokio service (Morpheus checkpoints) with light and CPU-heavy
   requests while CPU hogs saturate every CPU; first under the kernel's default
   scheduler, then with scx_morpheus, then with scx_bpfland attached (each
   starts and stops around its run)"
"$BIN/latency" --pressure --duration "$SECS" --warmup 1 --rounds 1 --sched default,observer,bpfland \
    --json "$OUT/demo-latency.json"

say "2. starvation: CPU-bound tasks on every worker plus a 1 ms latency probe,
   never yielding (Blocking) or with checkpoint!() (Morpheus), CPU hogs beside them"
"$BIN/starvation" --hogs "$(nproc)" --duration "$((SECS / 2 + 1))" --rounds 1 \
    --variants blocking,morpheus --sched default,observer,bpfland --json "$OUT/demo-starvation.json"

say "3. wakeup: plain threads sleeping 1 ms in a loop beside two CPU hogs per CPU;
   how late each wakes up"
"$BIN/wakeup" --duration "$((SECS / 2 + 1))" --rounds 1 --sched default,observer,bpfland \
    --json "$OUT/demo-wakeup.json"

say "4. neutrality: hackbench-style groups of tasks exchanging messages over
   pipes, no Morpheus worker among them; messages per second"
"$BIN/neutrality" --rounds 1 --sched default,observer,bpfland --json "$OUT/demo-neutrality.json"

say "Side by side (kernel default, scx_bpfland, scx_morpheus observer; ratios to the default)"
"$BIN/demo-table" "$OUT/demo-latency.json" "$OUT/demo-starvation.json" "$OUT/demo-wakeup.json" \
    "$OUT/demo-neutrality.json"
echo "(under QEMU software emulation timings are slow and noisy: compare the columns,"
echo " not absolute values; raw data in $OUT; full benchmarks: BENCHMARKS.md)"

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# The demo, run as root under a sched_ext kernel (in the test VM or natively):
# the same CPU-bound workload under the kernel's default scheduler and under
# scx_morpheus, with the scheduler's own metrics.
#
#   demo.sh BIN_DIR     BIN_DIR holds scx_morpheus and cpu-hogs
set -euo pipefail

BIN="${1:?usage: demo.sh BIN_DIR}"
SECS="${MORPHEUS_DEMO_SECS:-4}"
SCHED_EXT=/sys/kernel/sched_ext
THREADS=$((2 * $(nproc)))

say() { printf '\n== %s\n' "$*"; }
field() { sed -E "s/.*\"$1\":([0-9.]+).*/\\1/" <<<"$2"; }

[[ -d $SCHED_EXT ]] || { echo "demo: this kernel has no sched_ext" >&2; exit 1; }
say "kernel $(uname -r), $(nproc) CPUs, sched_ext state: $(cat $SCHED_EXT/state)"

say "1. $THREADS CPU-bound threads for ${SECS}s under the kernel's default scheduler"
base="$("$BIN/cpu-hogs" --threads "$THREADS" --duration "$SECS" --json)"
echo "$base"

say "2. attaching scx_morpheus"
"$BIN/scx_morpheus" --stats 1 &
loader=$!
for _ in $(seq 600); do
    [[ "$(cat $SCHED_EXT/state)" == enabled ]] && break
    kill -0 "$loader" 2>/dev/null || { echo "demo: scx_morpheus exited early" >&2; exit 1; }
    sleep 0.1
done
echo "state: $(cat $SCHED_EXT/state), ops: $(cat $SCHED_EXT/root/ops)"

say "3. the same workload under scx_morpheus (its per-second metrics interleaved)"
ours="$("$BIN/cpu-hogs" --threads "$THREADS" --duration "$SECS" --json)"
echo "$ours"

say "4. detaching (SIGINT)"
kill -INT "$loader"
wait "$loader"
echo "state: $(cat $SCHED_EXT/state)"

say "Side by side ($THREADS threads on $(nproc) CPUs, ${SECS}s each)"
printf '%-22s %16s %22s\n' scheduler "work units/s" "fairness (min/max)"
printf '%-22s %16s %22s\n' "kernel default" "$(field units_per_s "$base")" "$(field fairness "$base")"
printf '%-22s %16s %22s\n' "scx_morpheus" "$(field units_per_s "$ours")" "$(field fairness "$ours")"
echo "(timings under QEMU software emulation are slow and noisy: compare the two rows, not absolute values)"

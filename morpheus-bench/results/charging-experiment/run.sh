#!/usr/bin/env bash
# Experiment: vtime charging, in one VM boot (kernel 7.2.13, 2026-11-26):
# scx_morpheus-base = the debug loader of commit 77398ce; scx_morpheus-exp =
# the same with charge-sum-exec-runtime.patch applied (not committed to
# scx_morpheus). Debug builds of starvation (work units ~400 us under TCG).
#   tools/vm/run --kernel-version latest -- morpheus-bench/results/charging-experiment/run.sh
set -u
B=/work/target-bench/wt-target/debug
export RUST_LIB_BACKTRACE=0
for round in 1 2; do
for l in base exp; do
    echo "=== loader $l (round $round)"
    "$B/starvation" --hogs 2 --variants blocking,morpheus --duration 6 --rounds 2 --sched observer \
        --loader /work/target-bench/scx_morpheus-$l --json /tmp/exp-out/starv-$l-$round.json 2>&1 | grep -E '^(Blocking|Morpheus)|scheduler during Morpheus|stopped in'
done
done

#!/bin/sh
# all = the default sources; kernel = MORPHEUS_SOURCES=kernel,pressure (no
# budget source, so no monitor wake-ups for budgets). Release build of
# 6c47e0b, alternating in one 7.3.4 boot (multi-threaded TCG): ab.sh
O=/tmp/bench-out/src; mkdir -p $O
for i in 1 2; do
  for b in all kernel; do
    if [ $b = all ]; then unset MORPHEUS_SOURCES; else export MORPHEUS_SOURCES=kernel,pressure; fi
    target/release/starvation --hogs 2 --variants blocking,morpheus --sched observer --no-probe --rounds 3 --duration 3 --json $O/starv-$b-$i.json > $O/starv-$b-$i.txt 2>&1
    date
  done
done

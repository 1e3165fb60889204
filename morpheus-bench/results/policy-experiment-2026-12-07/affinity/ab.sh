#!/bin/sh
# old = ccab738 (the shared queue's head goes to whichever CPU dispatches),
# new = the same plus: among shared-queue tasks about even with the head
# (deadline within the wake-up granularity), a CPU takes one that last ran
# on it. Alternating in one boot: ab.sh TAG. target/ab/{old,new} hold each
# build's scx_morpheus and the same bench binaries.
O=/tmp/bench-out/affinity; T=$1; mkdir -p $O
for i in 1 2; do
  for b in old new; do
    B=target/ab/$b; N=$b
    $B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 --duration 4 --json $O/$T-starv-$N-$i.json > $O/$T-starv-$N-$i.txt 2>&1
    $B/neutrality --sched default,observer --rounds 3 --loops 100 --json $O/$T-neut-$N-$i.json > $O/$T-neut-$N-$i.txt 2>&1
    $B/wakeup --sched default,observer --rounds 3 --duration 3 --json $O/$T-wake-$N-$i.json > $O/$T-wake-$N-$i.txt 2>&1
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    date
  done
done

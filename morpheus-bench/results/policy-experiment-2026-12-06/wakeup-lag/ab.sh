#!/bin/sh
# Builds old (bbefcf6: run-to-parity by run time only) and new (also by
# vtime lead over the woken task), alternating in one boot, hackbench 4x
# longer (--loops 200): ab.sh TAG. target/ab/{old,new} hold each build's
# scx_morpheus, wakeup, latency and neutrality.
O=/tmp/bench-out/lag; T=$1; mkdir -p $O
for i in 1 2; do
  for c in old:500 new:500 new:1500; do
    b=${c%:*}; g=${c#*:}; B=target/ab/$b; N=$b-g$g
    A="--loader-arg=--wakeup-granularity-us=$g"
    $B/neutrality --sched default,observer --rounds 3 --loops 200 $A --json $O/$T-neut-$N-$i.json > $O/$T-neut-$N-$i.txt 2>&1
    $B/wakeup --sched default,observer --rounds 3 --duration 3 $A --json $O/$T-wake-$N-$i.json > $O/$T-wake-$N-$i.txt 2>&1
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    date
  done
done

#!/bin/sh
# A/B/C of --wakeup-granularity-us inside one boot, hackbench made 4x longer
# (--loops 200) so a round lasts seconds, not a fraction of one: ab.sh TAG
B=target/release; O=/tmp/bench-out/gran; T=$1; mkdir -p $O
for i in 1 2; do
  for g in 500 1500 3000; do
    A="--loader-arg=--wakeup-granularity-us=$g"
    $B/neutrality --sched default,observer --rounds 3 --loops 200 $A --json $O/$T-neut-g$g-$i.json > $O/$T-neut-g$g-$i.txt 2>&1
    $B/wakeup --sched default,observer --rounds 3 --duration 3 $A --json $O/$T-wake-g$g-$i.json > $O/$T-wake-g$g-$i.txt 2>&1
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lat-g$g-$i.json > $O/$T-lat-g$g-$i.txt 2>&1
    date
  done
done

#!/bin/sh
# old = HEAD's policy, new = HEAD + staggering tie-break (experiment). Same bench programs.
O=/tmp/bench-out/stag; T=$1; mkdir -p $O
for i in 1 2; do
  for b in old new; do
    B=target/ab/$b; N=$b
    $B/latency --pressure --attribute --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --attribute --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    date
  done
done

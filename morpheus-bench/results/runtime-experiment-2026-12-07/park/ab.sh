#!/bin/sh
# old = 6c47e0b's runtime (the monitor polls idle workers every half
# budget), new = 9d72a44's (Builder workers say when they park; the
# monitor sleeps while all are parked). Same loader. Alternating in one
# boot: ab.sh TAG. target/ab/{old,new} hold each build's programs.
O=/tmp/bench-out/park; T=$1; mkdir -p $O
for i in 1 2; do
  for b in old new; do
    B=target/ab/$b; N=$b
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    $B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 --duration 4 --json $O/$T-starv-$N-$i.json > $O/$T-starv-$N-$i.txt 2>&1
    date
  done
done

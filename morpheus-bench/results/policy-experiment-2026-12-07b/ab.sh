#!/bin/sh
# old = 5cefbf3's loader, new = with I/O preemption. Same bench programs.
O=/tmp/bench-out/io6; T=$1; mkdir -p $O
for i in 1; do
  for b in new old; do
    B=target/ab/$b; N=$b
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    #$B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 --duration 4 --json $O/$T-starv-$N-$i.json > $O/$T-starv-$N-$i.txt 2>&1
    date
  done
done

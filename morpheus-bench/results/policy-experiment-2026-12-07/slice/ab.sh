#!/bin/sh
# One build (target/ab/new), three slice settings alternating in one boot:
# s5000 = the defaults (--slice-us 5000, min 2000, max 10000), s3000 =
# 3000/1000/6000, s1500 = EEVDF's base slice on 2 CPUs (750 us x (1 +
# log2 2)) with min 750 and max 3000. ab.sh TAG. (s1500 did not run: the
# loader takes --slice-min-us from 1000; its logs are not kept.)
O=/tmp/bench-out/slice; T=$1; mkdir -p $O; B=target/ab/new
for i in 1 2; do
  for c in 5000:2000:10000 3000:1000:6000 1500:750:3000; do
    s=${c%%:*}; r=${c#*:}; mn=${r%%:*}; mx=${r#*:}; N=s$s
    A="--loader-arg=--slice-us=$s --loader-arg=--slice-min-us=$mn --loader-arg=--slice-max-us=$mx"
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    $B/wakeup --sched default,observer --rounds 3 --duration 3 $A --json $O/$T-wake-$N-$i.json > $O/$T-wake-$N-$i.txt 2>&1
    $B/neutrality --sched default,observer --rounds 3 --loops 100 $A --json $O/$T-neut-$N-$i.json > $O/$T-neut-$N-$i.txt 2>&1
    $B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 --duration 4 $A --json $O/$T-starv-$N-$i.json > $O/$T-starv-$N-$i.txt 2>&1
    date
  done
done

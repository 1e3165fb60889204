#!/bin/sh
# One build (target/ab/new, 9fbeccc), the default slices (s5000:
# 5000/2000/10000 us) against EEVDF's base slice on 2 CPUs (s1500:
# --slice-us 1500, min 250, max 3000), alternating in one boot: ab.sh TAG.
O=/tmp/bench-out/slice2; T=$1; mkdir -p $O; B=target/ab/new
for i in 1 2; do
  for c in 5000:2000:10000 1500:250:3000; do
    s=${c%%:*}; r=${c#*:}; mn=${r%%:*}; mx=${r#*:}; N=s$s
    A="--loader-arg=--slice-us=$s --loader-arg=--slice-min-us=$mn --loader-arg=--slice-max-us=$mx"
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 $A --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    $B/wakeup --sched default,observer --rounds 3 --duration 3 $A --json $O/$T-wake-$N-$i.json > $O/$T-wake-$N-$i.txt 2>&1
    $B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 --duration 4 $A --json $O/$T-starv-$N-$i.json > $O/$T-starv-$N-$i.txt 2>&1
    date
  done
done

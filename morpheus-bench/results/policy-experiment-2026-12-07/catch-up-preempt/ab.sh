#!/bin/sh
# old = catch-ups only (f861bb8's loader); new = the same plus: a catch-up
# due while none of the process's workers runs kicks a CPU whose plain task
# its queued worker is entitled to preempt (preempt.bpf.c). Alternating in
# one boot: ab.sh TAG. target/ab/{old,new} hold each loader and the same
# latency binary.
O=${O:-/tmp/bench-out/catch-up-preempt}; T=$1; mkdir -p $O
for i in 1 2; do
  for b in ${AB:-old new}; do
    B=target/ab/$b; N=$b
    $B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    date
  done
done

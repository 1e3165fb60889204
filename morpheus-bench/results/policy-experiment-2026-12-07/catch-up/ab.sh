#!/bin/sh
# off = scx_morpheus --no-catch-up (the policy before catch-ups),
# on  = the same build with catch-ups (I/O ready for a process whose workers
# are all busy: its running worker serves its ready tasks at its next
# checkpoint). Alternating in one boot: ab.sh TAG. target/ab/on holds the
# build's binaries; target/ab/off the same bench binaries and a wrapper that
# runs target/ab/on/scx_morpheus --no-catch-up.
O=/tmp/bench-out/catch-up; T=$1; mkdir -p $O
for i in 1 2; do
  for b in off on; do
    B=target/ab/$b; N=$b
    $B/latency --pressure --sched default,observer,bpfland --rounds 3 --duration 4 --warmup 1 --json $O/$T-lat-$N-$i.json > $O/$T-lat-$N-$i.txt 2>&1
    $B/latency --pressure --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/$T-lato-$N-$i.json > $O/$T-lato-$N-$i.txt 2>&1
    date
  done
done

#!/bin/sh
O=$1; shift
for rep in 1 2; do for v in "$@"; do
B=/tmp/bin$v
$B/neutrality --sched default,observer --rounds 3 --json $O/neut-$v-$rep.json > $O/neut-$v-$rep.txt 2>&1
$B/wakeup --sched default,observer --rounds 3 --duration 3 --json $O/wake-$v-$rep.json > $O/wake-$v-$rep.txt 2>&1
$B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 --json $O/lat-$v-$rep.json > $O/lat-$v-$rep.txt 2>&1
echo "done $v $rep"
done; done

#!/bin/sh
# Alternates bench builds (/tmp/bin<V>, each with latency, starvation and the
# same scx_morpheus) in one VM boot: run.sh OUTDIR V1 V2 ...
O=$1; shift
for rep in 1 2; do for v in "$@"; do
B=/tmp/bin$v
$B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 \
    --json $O/lat-$v-$rep.json > $O/lat-$v-$rep.txt 2>&1
$B/latency --pressure --sched default,observer --rounds 3 --duration 4 --warmup 1 \
    --heavy-ms 8 --checkpoint-us 200 --light-rate 400 \
    --json $O/lat2-$v-$rep.json > $O/lat2-$v-$rep.txt 2>&1
$B/starvation --hogs 2 --variants blocking,morpheus --sched default,observer --rounds 3 \
    --duration 3 --json $O/starv-$v-$rep.json > $O/starv-$v-$rep.txt 2>&1
echo "done $v $rep"
done; done

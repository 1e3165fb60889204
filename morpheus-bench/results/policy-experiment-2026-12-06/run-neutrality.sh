#!/bin/sh
O=$1; shift
for rep in 1 2; do for v in "$@"; do
/tmp/bin$v/neutrality --sched default,observer --rounds 3 --json $O/neut-$v-$rep.json > $O/neut-$v-$rep.txt 2>&1; echo "done $v $rep"
done; done

#!/bin/sh
# idle2.sh BIN: CPU split during the measurement alone, scheduler attached beforehand
B=$1
split() { echo "$1 | $2 | $3" | awk -F'|' '{split($2,x," "); split($3,y," "); tot=0; for(i=2;i<=11;i++){d[i]=y[i]-x[i]; tot+=d[i]}; printf "%s user %.1f%% sys %.1f%% idle %.1f%% iowait %.1f%% softirq %.1f%%\n", $1, 100*d[2]/tot,100*d[4]/tot,100*d[5]/tot,100*d[6]/tot,100*d[8]/tot}'; }
for s in default observer default observer; do
  if [ $s = observer ]; then $B/scx_morpheus > /tmp/scx.log 2>&1 & L=$!; sleep 4; cat /sys/kernel/sched_ext/state; fi
  a=$(head -1 /proc/stat)
  $B/latency --pressure --duration 4 --warmup 1 > /tmp/idle-$s.txt 2>&1
  b=$(head -1 /proc/stat)
  split $s "$a" "$b"
  grep -E "^heavy/s|^light p50|heavy/s" /tmp/idle-$s.txt | head -3
  if [ $s = observer ]; then kill -INT $L; wait $L; tail -4 /tmp/scx.log; fi
done

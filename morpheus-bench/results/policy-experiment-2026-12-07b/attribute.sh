O=/tmp/bench-out/attr
target/release/latency --pressure --attribute --sched default,observer,bpfland --rounds 3 --duration 4 --warmup 1 --json $O/lat.json > $O/lat.txt 2>&1
target/release/latency --pressure --attribute --workers 4 --heavy-ms 8 --checkpoint-us 200 --light-rate 400 --sched default,observer,bpfland --rounds 3 --duration 4 --warmup 1 --json $O/lato.json > $O/lato.txt 2>&1

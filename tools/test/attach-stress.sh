#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Attach and detach scx_morpheus CYCLES times under load, as root under a
# sched_ext kernel (inside the test VM, or natively), and check after every
# cycle that sched_ext is disabled again and that the kernel logged no oops,
# BUG, warning or scheduler error. Every attach/detach flips the kernel's
# static keys (code patching on every CPU): this is what broke under QEMU
# 7.2's multi-threaded emulation.
#
#   attach-stress.sh SCX_MORPHEUS [CYCLES]      (CYCLES default 200)
#
#   tools/vm/run --kernel-version latest -- tools/test/attach-stress.sh target/release/scx_morpheus 200
#   ./morpheus-dev attach-stress latest 200     (builds, installs stress-ng, runs the above)
#
# Load: stress-ng (CPU hogs on every CPU, fork and sleep stressors) when it is
# installed (Debian package stress-ng), else the bench's cpu-hogs beside
# SCX_MORPHEUS plus a fork loop; and in both cases a sleep/wake loop.
# MORPHEUS_STRESS_HOLD_MS (default 300): time attached per cycle.
# MORPHEUS_STRESS_WAIT_S (default 60): longest wait for an attach or a detach.
#
# Last line: "attach-stress: kernel K, C/N cycles, F failures, T s (...)".
# Exit status 0 when all N cycles passed, 1 otherwise, 2 on bad usage.
set -uo pipefail

LOADER="${1:-}"
CYCLES="${2:-200}"
HOLD_MS="${MORPHEUS_STRESS_HOLD_MS:-300}"
WAIT_S="${MORPHEUS_STRESS_WAIT_S:-60}"
SCX=/sys/kernel/sched_ext

say() { echo "attach-stress: $*"; }
usage() { say "usage: attach-stress.sh SCX_MORPHEUS [CYCLES]" >&2; exit 2; }

[[ -n "$LOADER" ]] || usage
[[ -x "$LOADER" ]] || { say "error: $LOADER is not an executable (cargo build --release -p scx_morpheus)" >&2; exit 2; }
[[ "$CYCLES" =~ ^[1-9][0-9]*$ ]] || { say "error: CYCLES must be a positive number, not '$CYCLES'" >&2; exit 2; }
[[ "$HOLD_MS" =~ ^[0-9]+$ && "$WAIT_S" =~ ^[1-9][0-9]*$ ]] ||
    { say "error: MORPHEUS_STRESS_HOLD_MS and MORPHEUS_STRESS_WAIT_S must be whole numbers" >&2; exit 2; }
[[ "$(id -u)" == 0 ]] || { say "error: must run as root (inside tools/vm/run it is)" >&2; exit 2; }
[[ -r $SCX/state ]] || { say "error: kernel $(uname -r) has no sched_ext ($SCX/state missing); run it under tools/vm/run" >&2; exit 2; }
command -v dmesg >/dev/null || { say "error: dmesg not found (Debian package util-linux)" >&2; exit 2; }

state() { cat $SCX/state 2>/dev/null || echo unknown; }
[[ "$(state)" == disabled ]] ||
    { say "error: sched_ext is '$(state)' before the first cycle: another scheduler is attached" >&2; exit 1; }

now_ms() { date +%s%3N; }
WORK="$(mktemp -d /tmp/attach-stress.XXXXXX)"
LOAD_PIDS=()
LOADER_PID=""

# shellcheck disable=SC2317  # invoked from the trap
cleanup() {
    [[ -n "$LOADER_PID" ]] && kill -INT "$LOADER_PID" 2>/dev/null
    local p
    for p in "${LOAD_PIDS[@]}"; do
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
    done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_load CMD... : run CMD in its own process group (so that cleanup stops
# its children too).
start_load() {
    setsid "$@" >/dev/null 2>&1 &
    LOAD_PIDS+=($!)
}

ncpu="$(nproc)"
BIN_DIR="$(dirname "$LOADER")"
if command -v stress-ng >/dev/null; then
    load="stress-ng: $ncpu CPU hogs, 1 fork, 1 sleep stressor"
    start_load stress-ng --cpu "$ncpu" --fork 1 --sleep 1 --timeout 0 --quiet
elif [[ -x "$BIN_DIR/cpu-hogs" ]]; then
    load="cpu-hogs: $((2 * ncpu)) threads, fork loop (stress-ng not installed)"
    start_load "$BIN_DIR/cpu-hogs" --threads "$((2 * ncpu))" --duration 3600
    start_load bash -c 'while :; do /bin/true; done'
else
    load="shell loops: $ncpu spinners, fork loop (neither stress-ng nor $BIN_DIR/cpu-hogs found)"
    for ((i = 0; i < ncpu; i++)); do start_load bash -c 'while :; do :; done'; done
    start_load bash -c 'while :; do /bin/true; done'
fi
start_load bash -c 'while :; do sleep 0.002; done'

# Kernel messages that mean a failure. sched_ext logs "enabled" and
# "disabled (unregistered from user space)" on every normal cycle; any other
# disable reason (runtime error, watchdog, sysrq) is a failure.
BAD_RE='Oops|BUG:|WARNING:|general protection fault|kernel BUG|Kernel panic|invalid opcode|stack segment|Call Trace|sched_ext: .*(error|disabled)'
OK_RE='sched_ext: .*disabled \(unregistered from user space\)'
dmesg_lines() { dmesg 2>/dev/null | wc -l; }
new_kernel_trouble() { # SINCE_LINE: bad lines logged after line SINCE_LINE
    dmesg 2>/dev/null | tail -n "+$(($1 + 1))" | grep -E "$BAD_RE" | grep -vE "$OK_RE"
}

# wait_state WANT : wait up to WAIT_S for sched_ext to be WANT; fails if the
# loader died while we wait for "enabled".
wait_state() {
    local want="$1" deadline=$(($(now_ms) + WAIT_S * 1000))
    while [[ "$(state)" != "$want" ]]; do
        if [[ "$want" == enabled ]] && ! kill -0 "$LOADER_PID" 2>/dev/null; then
            return 1
        fi
        (($(now_ms) < deadline)) || return 1
        sleep 0.02
    done
}

say "kernel $(uname -r), $ncpu CPUs, $CYCLES cycles, ${HOLD_MS} ms attached each, load: $load"
start_s="$(date +%s)"
done_cycles=0
failures=0
attach_ms_total=0
detach_ms_total=0
dmesg_base="$(dmesg_lines)"

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    why=""
    log="$WORK/loader-$cycle.log"
    t0="$(now_ms)"
    "$LOADER" >"$log" 2>&1 &
    LOADER_PID=$!
    if ! wait_state enabled; then
        why="not attached within ${WAIT_S}s (state $(state))"
    else
        t1="$(now_ms)"
        attach_ms_total=$((attach_ms_total + t1 - t0))
        [[ -s $SCX/root/ops ]] ||
            why="attached, but $SCX/root/ops is missing"
        sleep "$(awk -v ms="$HOLD_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
        [[ "$(state)" == enabled ]] || why="ejected while attached (state $(state))"
    fi
    t2="$(now_ms)"
    kill -INT "$LOADER_PID" 2>/dev/null
    # The loader must exit by itself after SIGINT; kill it only after WAIT_S.
    deadline=$(($(now_ms) + WAIT_S * 1000))
    while kill -0 "$LOADER_PID" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.02; done
    if kill -0 "$LOADER_PID" 2>/dev/null; then
        why="${why:+$why; }loader still running ${WAIT_S}s after SIGINT"
        kill -KILL "$LOADER_PID" 2>/dev/null
    fi
    wait "$LOADER_PID" 2>/dev/null
    rc=$?
    LOADER_PID=""
    [[ -z "$why" ]] && ((rc != 0)) && why="loader exited with status $rc"
    if ! wait_state disabled; then
        why="${why:+$why; }sched_ext still '$(state)' ${WAIT_S}s after the loader exited"
    fi
    detach_ms_total=$((detach_ms_total + $(now_ms) - t2))
    trouble="$(new_kernel_trouble "$dmesg_base")"
    dmesg_base="$(dmesg_lines)"
    [[ -n "$trouble" ]] && why="${why:+$why; }kernel log: $(head -n1 <<<"$trouble")"

    done_cycles=$cycle
    if [[ -n "$why" ]]; then
        failures=$((failures + 1))
        say "cycle $cycle FAILED: $why"
        [[ -n "$trouble" ]] && head -n 40 <<<"$trouble" | awk '{ print "    kernel: " $0 }'
        tail -n 15 "$log" | sed 's/^/    loader: /'
        # Nothing more can be tested while a scheduler is stuck attached.
        [[ "$(state)" == disabled ]] || { say "sched_ext stuck '$(state)': stopping"; break; }
    elif ((cycle % 10 == 0 || cycle == CYCLES)); then
        say "cycle $cycle ok ($(($(date +%s) - start_s)) s so far)"
    fi
    rm -f "$log"
done

secs=$(($(date +%s) - start_s))
say "kernel $(uname -r), $done_cycles/$CYCLES cycles, $failures failures, $secs s" \
    "(mean attach $((attach_ms_total / (done_cycles > 0 ? done_cycles : 1))) ms," \
    "detach $((detach_ms_total / (done_cycles > 0 ? done_cycles : 1))) ms; load: $load)"
((failures == 0 && done_cycles == CYCLES))

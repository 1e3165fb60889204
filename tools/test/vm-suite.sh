#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# Every kernel test suite, run as root under a sched_ext kernel (inside the
# test VM, or natively). One boot per kernel runs all of them.
#
#   vm-suite.sh VM_TEST_BINARY
#
# VM_TEST_BINARY is scx_morpheus's `vm` test binary (built on the host by
# `cargo test --no-run -p scx_morpheus --test vm`). Later suites are skipped
# when their prerequisites were not built (each says so).
set -uo pipefail

VM_TEST="${1:?usage: vm-suite.sh VM_TEST_BINARY}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
status=0

echo "vm-suite: kernel $(uname -r), $(nproc) CPUs, sched_ext $(cat /sys/kernel/sched_ext/state)"

echo "vm-suite: [1] scheduler and runtime tests against the real kernel"
"$VM_TEST" --test-threads=1 || status=1

# The Python worker tests need the venv that `./morpheus-dev test` built:
# without it they fail, never pass by being skipped.
echo "vm-suite: [2] Python worker tests against the real kernel"
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PYTHONDONTWRITEBYTECODE=1 "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider \
        "$ROOT/morpheus-py/tests/vm" || status=1
else
    echo "vm-suite: [2] FAILED: no Python venv at $ROOT/.venv (./morpheus-dev setup builds it)"
    status=1
fi

# The benchmarks in quick mode, with the programs built next to the VM test
# binary (`./morpheus-dev test` builds them): each must run under the
# default scheduler and scx_morpheus and write well-formed output; no
# figure is checked. Output goes to the guest's /tmp (dropped at exit).
BENCH_BIN="$(dirname "$(dirname "$VM_TEST")")"
if [[ -x "$BENCH_BIN/scx_morpheus" && -x "$BENCH_BIN/latency" ]]; then
    echo "vm-suite: [3] benchmarks in quick mode"
    MORPHEUS_VM_OUT="$(mktemp -d /tmp/morpheus-bench-quick.XXXXXX)" \
        "$ROOT/morpheus-bench/scripts/vm-suite.sh" "$BENCH_BIN" quick || status=1
else
    echo "vm-suite: [3] benchmarks skipped: no programs in $BENCH_BIN" \
        "(cargo build -p scx_morpheus -p morpheus-bench --bins)"
fi

echo "vm-suite: kernel $(uname -r) done, status $status"
exit "$status"

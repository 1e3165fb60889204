#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# non-debian.sh: morpheus-dev and tools/vm on a host without apt and dpkg.
# Runs them with a PATH in which apt-get, apt-cache, dpkg, dpkg-query and
# dpkg-deb (and, per case, other tools) do not exist, and checks that they
# either work with the tools they find or stop with one message listing what
# is missing, never with "command not found". Nothing is built, installed or
# booted; an empty temporary MORPHEUS_CACHE stands for a fresh machine.
#
#   tools/test/non-debian.sh     last line: "non-debian: test result: ok. N passed; M failed"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# MORPHEUS_NON_DEBIAN_KEEP=1: keep each case's output in $WORK.
[[ "${MORPHEUS_NON_DEBIAN_KEEP:-0}" == 1 ]] && trap 'echo "outputs in $WORK"' EXIT
PASSED=0
FAILED=0

# fake_path NAME HIDDEN_REGEX : a directory of symlinks to every command in
# PATH except those whose name matches HIDDEN_REGEX; prints its path.
fake_path() {
    local dir="$WORK/path-$1" d f name
    mkdir -p "$dir"
    local IFS=:
    for d in $PATH; do
        [[ -d "$d" ]] || continue
        for f in "$d"/*; do
            name="${f##*/}"
            [[ -x "$f" && ! -d "$f" && ! -e "$dir/$name" ]] || continue
            [[ "$name" =~ $2 ]] && continue
            ln -s "$f" "$dir/$name"
        done
    done
    printf '%s\n' "$dir"
}

NO_APT='^(apt|apt-get|apt-cache|apt-config|dpkg|dpkg-query|dpkg-deb)$'

# expect NAME STATUS PATTERNS CMD... : run CMD (stdin empty, output to a
# file); STATUS is the status wanted ("nonzero" for any failure); every
# line of PATTERNS (extended regexes) must occur in the output, a line
# starting with "!" must not (the regex after it), nor "command not found".
expect() {
    local name="$1" want="$2" patterns="$3" out="$WORK/$1.out" rc=0 ok=1 pat
    shift 3
    "$@" </dev/null >"$out" 2>&1 || rc=$?
    if [[ "$want" == nonzero ]]; then
        ((rc != 0)) || { ok=""; echo "  $name: status 0, wanted a failure"; }
    elif ((rc != want)); then
        ok=""
        echo "  $name: status $rc, wanted $want"
    fi
    while IFS= read -r pat; do
        [[ -z "$pat" ]] && continue
        if [[ "$pat" == '!'* ]]; then
            ! grep -qE -- "${pat#!}" "$out" || { ok=""; echo "  $name: a line matches /${pat#!}/"; }
            continue
        fi
        grep -qE -- "$pat" "$out" || { ok=""; echo "  $name: no line matches /$pat/"; }
    done <<<"$patterns"
    if grep -q 'command not found' "$out"; then
        ok=""
        echo "  $name: 'command not found' in the output"
    fi
    if [[ -n "$ok" ]]; then
        PASSED=$((PASSED + 1))
        echo "ok   $name (status $rc)"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $name (status $rc); its output:"
        sed 's/^/    | /' "$out"
    fi
}

run_in() { # PATH_DIR CACHE CMD... : CMD with that PATH and cache, no BPF_CLANG
    local path="$1" cache="$2"
    shift 2
    env -u BPF_CLANG PATH="$path" MORPHEUS_CACHE="$cache" HOME="$HOME" "$@"
}

mkdir -p "$WORK/cache-empty"
EMPTY="$WORK/cache-empty"
P_NOAPT="$(fake_path noapt "$NO_APT")"
# Also no jq, no clang-format, no clang of any version: the probes must
# survive absent commands under `set -o pipefail`.
P_NOTOOLS="$(fake_path notools '^(apt|apt-get|apt-cache|apt-config|dpkg|dpkg-query|dpkg-deb|jq|clang|clang-[0-9]+|clang-format|clang-format-[0-9]+)$')"
P_NOBUSYBOX="$(fake_path nobusybox '^(apt|apt-get|apt-cache|apt-config|dpkg|dpkg-query|dpkg-deb|busybox)$')"

echo "non-debian: apt and dpkg hidden from PATH ($(wc -l < <(ls "$P_NOAPT")) commands left)"

# 1. Everything but apt is there: setup goes on with what it finds.
if command -v jq >/dev/null && command -v clang-format-19 >/dev/null; then
    expect setup-tools-present 0 'no apt/dpkg on this host' \
        run_in "$P_NOAPT" "$EMPTY" "$ROOT/morpheus-dev" setup
fi

# 2. Missing build tools: one message naming each, status 1.
expect setup-tools-missing 1 'needs what this host lacks
there is no apt/dpkg here
jq \[Debian: jq\]
clang-format-19 .*\[Debian: clang-format-19\]
clang >= 18 .*\[Debian: clang-19\]' \
    run_in "$P_NOTOOLS" "$EMPTY" "$ROOT/morpheus-dev" setup

# 2b. demo builds and runs, it does not lint: no clang-format asked for.
expect demo-no-linters 1 'clang >= 18 .*\[Debian: clang-19\]
!clang-format' \
    run_in "$P_NOTOOLS" "$EMPTY" "$ROOT/morpheus-dev" demo

# 3. demo on a fresh machine: the build tools, the VM's and what downloads
# the kernel, in the same message, before anything is built; the step line
# says where it stopped.
expect demo-fresh 1 'busybox .*\[Debian: busybox-static\]
apt-get and apt-cache .*\[Debian: apt\]
dpkg-deb .*\[Debian: dpkg\]
step 1/4 setup .*stopped, status 1' \
    run_in "$P_NOBUSYBOX" "$EMPTY" "$ROOT/morpheus-dev" demo

# 4. tools/vm/run alone: the same check, its own status for tool failures.
expect vm-run-fresh 125 'busybox .*\[Debian: busybox-static\]
apt-get and apt-cache .*\[Debian: apt\]' \
    run_in "$P_NOBUSYBOX" "$EMPTY" "$ROOT/tools/vm/run" --kernel-version lts -- true

# 5. fetch-kernel without apt and without a cached kernel.
expect fetch-kernel-fresh 1 "downloading kernel 'lts' .*needs what this host lacks
apt-get and apt-cache .*\[Debian: apt\]
tools/vm/run --kernel PATH" \
    run_in "$P_NOAPT" "$EMPTY" "$ROOT/tools/vm/fetch-kernel" lts

# 6. --cached never needs apt: nothing cached is status 1, quietly.
expect fetch-kernel-cached-none 1 '' \
    run_in "$P_NOAPT" "$EMPTY" "$ROOT/tools/vm/fetch-kernel" --cached lts

# 7. A cached kernel is used without apt, even when its resolution is stale.
FAKE_CACHE="$WORK/cache-kernel"
REL=6.18.99+deb13-amd64
mkdir -p "$FAKE_CACHE/kernels/$REL/lib/modules/$REL"
touch "$FAKE_CACHE/kernels/$REL"/{vmlinuz,config,package.info} "$FAKE_CACHE/kernels/$REL/lib/modules/$REL/modules.dep"
printf '%s 0 2\n' "$REL" >"$FAKE_CACHE/kernels/resolved-lts"
RE="${REL//+/\\+}"
expect fetch-kernel-cached-stale 0 "using the cached kernel $RE
kernels/$RE\$" \
    run_in "$P_NOAPT" "$FAKE_CACHE" "$ROOT/tools/vm/fetch-kernel" lts

# In cargo's words, which ./morpheus-dev test counts.
result=ok
((FAILED == 0)) || result=FAILED
echo "non-debian: test result: $result. $PASSED passed; $FAILED failed"
((FAILED == 0))

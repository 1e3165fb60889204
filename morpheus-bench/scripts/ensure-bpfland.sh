#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# ensure-bpfland.sh: builds the peer scheduler the benchmarks compare with,
# scx_bpfland at a pinned version, into the project cache (once; later calls
# only check the marker) and prints the binary's path as the last line on
# stdout. The benchmark programs find it through MORPHEUS_BPFLAND (set it to
# that path) or at that cache path.
#
#   MORPHEUS_BPFLAND="$(morpheus-bench/scripts/ensure-bpfland.sh | tail -n1)"
#
# Needs cargo and the BPF toolchain (`./morpheus-dev setup` installs it).
# Environment: MORPHEUS_CACHE (the cache), BPF_CLANG (default clang-19).
set -euo pipefail

VERSION="1.1.4"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tools/lib/common.sh
source "$ROOT/tools/lib/common.sh"

TOOLS="$(morpheus_cache_dir)/tools"
DEST="$TOOLS/scx_bpfland-$VERSION"
BIN="$DEST/bin/scx_bpfland"
MARKER="$DEST/.morpheus-ok"

if [[ ! -f "$MARKER" ]]; then
    mkdir -p "$TOOLS"
    (
        # Parallel callers wait for the first one's build.
        flock -w 1800 9 || die "timed out waiting for the lock on $TOOLS/.scx_bpfland.lock"
        [[ -f "$MARKER" ]] && exit 0
        command -v cargo >/dev/null 2>&1 ||
            die "cargo not found: run ./morpheus-dev setup (it checks Rust), then re-run"
        clang="${BPF_CLANG:-clang-19}"
        command -v "$clang" >/dev/null 2>&1 ||
            die "$clang not found (scx_bpfland's BPF code needs it): run ./morpheus-dev setup"
        log "building scx_bpfland $VERSION into $DEST (once; about 3 minutes on 2 cores)"
        start=$SECONDS
        rm -rf "$DEST"
        # The workspace's .cargo/config.toml (which sets BPF_CLANG) does not
        # apply outside the workspace: set it here, and build from a neutral
        # directory so that no workspace configuration is picked up.
        (cd / && BPF_CLANG="$clang" cargo install --locked --quiet scx_bpfland \
            --version "$VERSION" --root "$DEST") >&2 ||
            die "building scx_bpfland $VERSION failed (see above); is crates.io reachable?"
        [[ -x "$BIN" ]] || die "cargo install left no binary at $BIN"
        touch "$MARKER"
        log "built scx_bpfland $VERSION in $((SECONDS - start)) s"
    ) 9>"$TOOLS/.scx_bpfland.lock"
fi
[[ -x "$BIN" ]] || die "the cache marks $DEST as built but $BIN is missing: rm -rf $DEST and re-run"
echo "$BIN"

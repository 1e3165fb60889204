# shellcheck shell=bash
# Shared helpers for Morpheus' bash tools. Source it; do not execute it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
#
# Everything here writes diagnostics to stderr only, so that scripts can keep
# stdout for their machine-readable result.

# Guard against double sourcing (scripts may source each other's helpers).
[[ -n "${_MORPHEUS_COMMON_SH:-}" ]] && return 0
_MORPHEUS_COMMON_SH=1

# log MSG... : one line on stderr, prefixed so it stands out in CI logs.
log() {
    printf 'morpheus: %s\n' "$*" >&2
}

warn() {
    log "warning: $*"
}

# die MSG... : print an error and exit. Scripts may set MORPHEUS_DIE_STATUS to
# make tool failures distinguishable from the status of a command they run.
die() {
    log "error: $*"
    exit "${MORPHEUS_DIE_STATUS:-1}"
}

# as_root CMD ARGS... : run CMD as root: directly when we already are root,
# through sudo otherwise. sudo -n never prompts, so CI cannot hang on a
# password prompt; interactive users get a clear message instead.
as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then
            sudo "$@"
        else
            sudo -n "$@"
        fi
    else
        die "root privileges needed to run '$*' (not root and sudo is not installed)"
    fi
}

# fmt_secs N : "41 s", "3 min 05 s".
fmt_secs() {
    if (($1 < 60)); then
        printf '%d s' "$1"
    else
        printf '%d min %02d s' $(($1 / 60)) $(($1 % 60))
    fi
}

# True when the Debian package PKG is installed (not just known to dpkg).
debian_package_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
    [[ "$status" == "install ok installed" ]]
}

_MORPHEUS_APT_UPDATED=""

# ensure_debian_packages PKG... : install the missing ones, idempotently.
# Does nothing (and does not need root) when everything is already installed.
ensure_debian_packages() {
    local pkg missing=()
    command -v dpkg-query >/dev/null 2>&1 ||
        die "dpkg-query not found: these tools expect a Debian-based host (needed: $*)"
    for pkg in "$@"; do
        debian_package_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0

    log "installing Debian packages: ${missing[*]}"
    local t0=$SECONDS
    # Wait for a concurrent apt/dpkg (e.g. unattended-upgrades) rather than fail.
    local apt_opts=(-o DPkg::Lock::Timeout=300 -o APT::Get::Assume-Yes=true)
    if [[ -z "$_MORPHEUS_APT_UPDATED" ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -q update >&2 ||
            die "apt-get update failed; cannot install: ${missing[*]}"
        _MORPHEUS_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" -q install -y --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install failed for: ${missing[*]}"
    log "installed ${missing[*]} in $(fmt_secs $((SECONDS - t0)))"
}

# morpheus_cache_dir : print (and create) the cache directory shared by the tools.
morpheus_cache_dir() {
    local dir="${MORPHEUS_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/morpheus}"
    mkdir -p "$dir" || die "cannot create cache directory $dir"
    # Absolute, because the path is handed to other processes and to the VM guest.
    (cd "$dir" && pwd -P)
}

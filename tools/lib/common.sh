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

# is_debian_host : true when packages can be installed with apt (Debian,
# Ubuntu and their derivatives). Elsewhere the tools check for the commands
# and files they need instead, and say what is missing.
is_debian_host() {
    [[ -f /etc/debian_version ]] &&
        command -v apt-get >/dev/null 2>&1 &&
        command -v dpkg-query >/dev/null 2>&1
}

# What the tools need on any host, by the Debian package that provides it.
# The VM (tools/vm/run): virtme-ng needs busybox for its initramfs, depmod/
# modprobe, udev, `file` to read the kernel version, venv to install vng.
VM_HOST_PACKAGES=(busybox-static kmod udev file python3-venv)
# Downloading a kernel (tools/vm/fetch-kernel): Debian's own tools with a
# private state, the archive's signing keys, depmod for modules.dep.
KERNEL_FETCH_PACKAGES=(apt dpkg kmod debian-archive-keyring)

# has_cmd NAME : NAME is a command, also when it lives in an sbin directory
# that is not in PATH (depmod for a normal user).
has_cmd() {
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]]
}

# bpf_clang : print the clang that builds the BPF code: BPF_CLANG as is, else
# `clang` when it is at least version 18, else the newest installed clang-NN
# (Debian 12's `clang` is 14). Fails when there is none.
bpf_clang() {
    if [[ -n "${BPF_CLANG:-}" ]]; then
        printf '%s\n' "$BPF_CLANG"
        return 0
    fi
    local name out
    for name in clang clang-21 clang-20 clang-19 clang-18; do
        # No pipeline: a missing compiler (127) or an early-closing reader
        # (SIGPIPE) would fail it under pipefail.
        out="$("$name" --version 2>/dev/null)" || continue
        if [[ "$out" =~ clang\ version\ ([0-9]+) ]] && ((BASH_REMATCH[1] >= 18)); then
            printf '%s\n' "$name"
            return 0
        fi
    done
    return 1
}

# has_libclang : the libclang shared library bindgen loads is there, where
# clang-sys looks for it: LIBCLANG_PATH, llvm-config's libdir, the system's
# library folders.
has_libclang() {
    local d cfg dirs=()
    [[ -n "${LIBCLANG_PATH:-}" ]] && dirs+=("$LIBCLANG_PATH")
    for cfg in llvm-config llvm-config-21 llvm-config-20 llvm-config-19 llvm-config-18; do
        d="$("$cfg" --libdir 2>/dev/null)" && dirs+=("$d")
    done
    dirs+=(/usr/lib/llvm-*/lib /usr/lib64/llvm*/lib /usr/local/lib /usr/lib64 /usr/lib /usr/lib/*-linux-gnu)
    for d in "${dirs[@]}"; do
        if compgen -G "$d/libclang.so*" >/dev/null || compgen -G "$d/libclang-*.so*" >/dev/null; then
            return 0
        fi
    done
    return 1
}

# package_probe PKG : true when what the Debian package PKG provides is
# there, whoever installed it; prints what was looked for. Packages not
# listed here are looked for as a command of their name.
package_probe() {
    local pkg="$1" f
    case "$pkg" in
    clang-19)
        echo "clang >= 18 (clang, clang-21 ... clang-18, or BPF_CLANG)"
        bpf_clang >/dev/null ;;
    libclang1-19)
        echo "libclang, for bindgen (libclang.so or libclang-NN.so: LIBCLANG_PATH, llvm-config --libdir, /usr/lib...)"
        has_libclang ;;
    clang-format-19)
        echo "clang-format-19 (the BPF sources are formatted with LLVM 19's)"
        has_cmd clang-format-19 ;;
    libelf-dev)
        echo "libelf headers and library (/usr/include/gelf.h: elfutils' libelf development package)"
        [[ -f /usr/include/gelf.h ]] ;;
    zlib1g-dev)
        echo "zlib headers and library (/usr/include/zlib.h: zlib's development package)"
        [[ -f /usr/include/zlib.h ]] ;;
    libc6-dev)
        echo "the C library headers (/usr/include/stdio.h)"
        [[ -f /usr/include/stdio.h ]] ;;
    linux-libc-dev)
        echo "the Linux UAPI headers (/usr/include/linux/types.h)"
        [[ -f /usr/include/linux/types.h ]] ;;
    python3)
        echo "python3"
        has_cmd python3 ;;
    python3-venv)
        echo "python3 with the venv and ensurepip modules"
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ;;
    busybox-static)
        echo "busybox (statically linked: virtme-ng puts it in the VM's initramfs)"
        has_cmd busybox ;;
    kmod)
        echo "depmod and modprobe (kmod)"
        has_cmd depmod && has_cmd modprobe ;;
    udev)
        echo "udevadm (udev/systemd-udev)"
        has_cmd udevadm ;;
    qemu-system-x86)
        echo "qemu-system-x86_64 (QEMU >= 10 runs the VM multi-threaded; or set MORPHEUS_QEMU=PATH)"
        # Or one tools/vm/fetch-qemu unpacked before.
        [[ -n "${MORPHEUS_QEMU:-}" && -x "${MORPHEUS_QEMU:-}" ]] || has_cmd qemu-system-x86_64 ||
            compgen -G "$(morpheus_cache_dir)/tools/qemu-*/.morpheus-ok" >/dev/null ;;
    apt)
        echo "apt-get and apt-cache (Debian's apt: kernels are fetched from Debian's archive)"
        has_cmd apt-get && has_cmd apt-cache ;;
    dpkg)
        echo "dpkg-deb (Debian's dpkg: unpacks the kernel packages)"
        has_cmd dpkg-deb ;;
    debian-archive-keyring)
        f=/usr/share/keyrings/debian-archive-keyring.gpg
        echo "$f (Debian's archive keys: apt checks the kernel packages with them)"
        [[ -f "$f" ]] ;;
    *)
        echo "$pkg"
        has_cmd "$pkg" ;;
    esac
}

# missing_packages PKG... : one line "  - WHAT [Debian: PKG]" per package
# whose probe fails (nothing when all are there).
missing_packages() {
    local pkg what seen=" "
    for pkg in "$@"; do
        [[ "$seen" == *" $pkg "* ]] && continue
        seen+="$pkg "
        if ! what="$(package_probe "$pkg")"; then
            printf '  - %s [Debian: %s]\n' "$what" "$pkg"
        fi
    done
}

# die_missing WHAT LINES : the one message on a host without apt: what is
# missing (LINES, from missing_packages) and what to do about it.
die_missing() {
    log "error: $1 needs what this host lacks:"
    printf '%s\n' "$2" >&2
    log "there is no apt/dpkg here (not Debian or Ubuntu?), so nothing can be installed"
    log "for you: install these with your package manager (the Debian package names"
    log "in [] say what each is), then re-run"
    exit "${MORPHEUS_DIE_STATUS:-1}"
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
# On a host without apt it only checks (package_probe) and stops with the
# list of what is missing.
ensure_debian_packages() {
    local pkg missing=()
    if ! is_debian_host; then
        local lines
        lines="$(missing_packages "$@")"
        [[ -z "$lines" ]] || die_missing "${0##*/}" "$lines"
        return 0
    fi
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

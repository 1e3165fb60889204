# shellcheck shell=bash
# Private apt states for fetching Debian packages without touching the
# system's apt configuration. Source it after common.sh; do not execute it.
#
#   debian_apt_init DIR SUITE...   private state in DIR for SUITE... (main only)
#   debian_apt apt-get|apt-cache ARGS...   run apt with that state only
#   debian_apt_update              refresh its package lists (fails when unreachable)
#   debian_apt_fetch DEST WHAT ARGS...   download with a size line before, the
#                                  progress during it and a time line after
#                                  (WHAT describes it in the log)
#
# Used by tools/vm/fetch-kernel (kernels from sid and trixie-backports) and
# tools/vm/fetch-qemu (QEMU from bookworm-backports).

[[ -n "${_MORPHEUS_DEBIAN_APT_SH:-}" ]] && return 0
_MORPHEUS_DEBIAN_APT_SH=1

DEBIAN_MIRROR="${MORPHEUS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_APT_DIR=""
DEBIAN_APT_SUITES=()
# What apt believes is installed. /dev/null (nothing) for packages that are
# only unpacked, never installed (kernels); a copy of the host's dpkg status
# (debian_apt_use_host_status) to download only what the host lacks.
DEBIAN_APT_STATUS=/dev/null
_DEBIAN_APT_UPDATED=""

# debian_apt_init DIR SUITE... : use (and create) the private state in DIR.
debian_apt_init() {
    DEBIAN_APT_DIR="$1"
    shift
    DEBIAN_APT_SUITES=("$@")
    DEBIAN_APT_STATUS=/dev/null
    _DEBIAN_APT_UPDATED=""
    mkdir -p "$DEBIAN_APT_DIR"/{state,lists/partial,cache/archives/partial} ||
        die "cannot create the private apt state $DEBIAN_APT_DIR"
    local suite
    # Only the Packages indices: no translations, no DEP-11 metadata.
    for suite in "${DEBIAN_APT_SUITES[@]}"; do
        printf 'deb [signed-by=%s target=Packages] %s %s main\n' "$DEBIAN_KEYRING" "$DEBIAN_MIRROR" "$suite"
    done >"$DEBIAN_APT_DIR/sources.list.tmp"
    mv "$DEBIAN_APT_DIR/sources.list.tmp" "$DEBIAN_APT_DIR/sources.list"
}

# debian_apt_use_host_status : make apt see the host's installed packages, so
# that an install --download-only fetches only what the host lacks. A copy:
# apt then locks the private state, never the system's dpkg lock.
debian_apt_use_host_status() {
    local status=/var/lib/dpkg/status
    [[ -r "$status" ]] || die "cannot read $status: is this a Debian-based host?"
    cp "$status" "$DEBIAN_APT_DIR/state/host-status" || die "cannot copy $status"
    DEBIAN_APT_STATUS="$DEBIAN_APT_DIR/state/host-status"
}

# debian_apt apt-get|apt-cache ARGS... : run apt with the private state only.
debian_apt() {
    local tool="$1"
    shift
    [[ -n "$DEBIAN_APT_DIR" ]] || die "internal: debian_apt_init was not called"
    local opts=(
        -o "Dir::Etc::SourceList=$DEBIAN_APT_DIR/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=/dev/null"
        -o "Dir::State=$DEBIAN_APT_DIR/state"
        -o "Dir::State::Lists=$DEBIAN_APT_DIR/lists"
        -o "Dir::State::status=$DEBIAN_APT_STATUS"
        -o "Dir::Cache=$DEBIAN_APT_DIR/cache"
        -o "APT::Architecture=amd64"
        -o "APT::Architectures=amd64"
        -o "APT::Default-Release="
        -o "Acquire::Languages=none"
        -o "Acquire::Retries=2"
        -o "Acquire::http::Timeout=20"
    )
    # As root apt drops to the _apt user for downloads, who cannot write into
    # a private cache under /root; stay root instead (and avoid the warning).
    [[ "$(id -u)" == 0 ]] && opts+=(-o "APT::Sandbox::User=root")
    "$tool" "${opts[@]}" "$@"
}

# debian_apt_update : refresh the private package lists. Fails when the
# archive cannot be reached (apt may then still exit 0 with "W: Failed to
# fetch"), so that callers can fall back to their cache.
debian_apt_update() {
    [[ -n "$_DEBIAN_APT_UPDATED" ]] && return 0
    [[ -f "$DEBIAN_KEYRING" ]] || ensure_debian_packages debian-archive-keyring
    command -v apt-get >/dev/null 2>&1 || ensure_debian_packages apt
    local suites="${DEBIAN_APT_SUITES[*]}"
    log "updating package lists from $DEBIAN_MIRROR (${suites// /, })"
    local out rc=0 t0=$SECONDS
    out="$(debian_apt apt-get -q update 2>&1)" || rc=$?
    if ((rc != 0)) || grep -qE '^(E: |W: Failed to fetch|W: Some index files failed)' <<<"$out"; then
        grep -E '^(E|W|Err):' <<<"$out" >&2 || printf '%s\n' "$out" >&2
        return 1
    fi
    # apt's "Fetched 10.2 MB in 3s (3,400 kB/s)": how much came down.
    local fetched
    fetched="$(sed -n 's/^Fetched \([0-9.,]* *[kMG]*B\) in.*/\1/p' <<<"$out" | tail -n1)"
    log "package lists updated in $(fmt_secs $((SECONDS - t0)))${fetched:+ ($fetched downloaded)}"
    _DEBIAN_APT_UPDATED=1
}

# human_bytes N : 123 MB style.
human_bytes() {
    awk -v b="$1" 'BEGIN {
        if (b >= 1048576) printf "%.1f MB", b / 1048576
        else if (b >= 1024) printf "%.0f kB", b / 1024
        else printf "%d B", b }'
}

# bytes_under DIR... : the bytes of the files under DIR... (empty if du fails,
# e.g. when apt moves a file while it counts).
bytes_under() {
    local out
    out="$(du -sbc "$@" 2>/dev/null)" || return 0
    awk 'END { print $1 }' <<<"$out"
}

# Seconds between progress lines of a download: on a terminal one line is
# rewritten in place; elsewhere (CI logs) a new line now and then.
FETCH_PROGRESS_TTY_SECS=1
FETCH_PROGRESS_LOG_SECS=20

# debian_apt_fetch DEST WHAT APT_GET_ARGS... : run `apt-get APT_GET_ARGS`
# (download PKG... or install --download-only PKG...) in DEST, logging the
# number of packages and their size first, how much has arrived while it
# runs, and the time it took after. Downloads of `download` land in DEST,
# those of `install -d` in the private archive cache (debian_apt_archives);
# both pass through its partial/ directory.
debian_apt_fetch() {
    local dest="$1" what="$2"
    shift 2
    local uris count bytes t0
    uris="$(cd "$dest" && debian_apt apt-get -q --print-uris "$@" 2>&1)" || {
        printf '%s\n' "$uris" | grep -E '^(E|W):' >&2 || printf '%s\n' "$uris" >&2
        return 1
    }
    # --print-uris lines: 'URL' FILE SIZE HASH
    count="$(grep -c "^'" <<<"$uris" || true)"
    bytes="$(awk "/^'/ { s += \$3 } END { print s + 0 }" <<<"$uris")"
    log "downloading $what: $count package(s), $(human_bytes "$bytes")"
    t0=$SECONDS
    local archives base got out rc=0 pid tty="" every next
    archives="$(debian_apt_archives)"
    base="$(bytes_under "$dest" "$archives")"
    # In DEST, which the callers remove when interrupted; a few kB of it
    # count as downloaded.
    out="$(mktemp "$dest/.apt-output.XXXXXX")"
    (cd "$dest" && debian_apt apt-get -q "$@") >"$out" 2>&1 &
    pid=$!
    [[ -t 2 ]] && tty=1
    every=$FETCH_PROGRESS_LOG_SECS
    [[ -n "$tty" ]] && every=$FETCH_PROGRESS_TTY_SECS
    next=$((SECONDS + every))
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.5
        ((SECONDS >= next)) || continue
        next=$((SECONDS + every))
        got="$(bytes_under "$dest" "$archives")"
        [[ -n "$got" && -n "$base" ]] || continue
        got=$((got - base))
        ((got < 0)) && got=0
        ((got > bytes)) && got=$bytes
        local line
        line="$(printf 'downloading %s: %s of %s (%d%%), %s' "$what" "$(human_bytes "$got")" \
            "$(human_bytes "$bytes")" $((bytes > 0 ? got * 100 / bytes : 0)) "$(fmt_secs $((SECONDS - t0)))")"
        if [[ -n "$tty" ]]; then
            printf '\rmorpheus: %s\033[K' "$line" >&2
        else
            log "$line"
        fi
    done
    wait "$pid" || rc=$?
    [[ -n "$tty" ]] && printf '\r\033[K' >&2
    if ((rc != 0)); then
        grep -E '^(E|W|Err):' "$out" >&2 || cat "$out" >&2
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
    local secs=$((SECONDS - t0)) rate=""
    ((secs > 0)) && rate=", $(human_bytes $((bytes / secs)))/s"
    log "downloaded $what ($(human_bytes "$bytes")) in $(fmt_secs "$secs")$rate"
}

# debian_apt_archives : where `apt-get install --download-only` puts .debs.
debian_apt_archives() {
    printf '%s\n' "$DEBIAN_APT_DIR/cache/archives"
}

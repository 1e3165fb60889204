# shellcheck shell=bash
# SPDX-License-Identifier: GPL-2.0-only
# Shared by host-suite.sh and vm-suite.sh (sourced). The caller sets BIN
# (the programs), OUT (where JSON and plots go), TAG (file name prefix), Q
# (the mode's options) and T0 (the suite's start, in $SECONDS). A program
# that fails, or writes malformed JSON or plots, is recorded in FAILED and
# the suite goes on; suite_end exits 1 if anything failed. Only the form of
# the output is checked (by $BIN/check-output), never a figure.

FAILED=()

step() { printf '\n==== %s (%ss into the suite)\n' "$*" "$((SECONDS - T0))"; }

# check NAME JSON RUNS [PLOT...]: JSON is well-formed with RUNS runs ("-":
# any number) and every plot $OUT/plots/$PLOT_TAG-PLOT.svg (PLOT_TAG:
# default $TAG) is a well-formed SVG.
check() {
    local name="$1" json="$2" runs="$3"
    shift 3
    local args=() p
    [[ $runs == - ]] || args=(--runs "$runs")
    if [[ $# -gt 0 ]]; then
        args+=(--svg)
        for p in "$@"; do args+=("$OUT/plots/${PLOT_TAG:-$TAG}-$p.svg"); done
    fi
    "$BIN/check-output" "${args[@]}" -- "$json" || FAILED+=("$name: malformed or missing output")
}

# run NAME RUNS PLOTS [ARGS...]: $BIN/NAME with the mode's options, --json
# $OUT/$TAG-NAME.json and --plots, then `check` (PLOTS: comma-separated
# plot names, "" for none).
run() {
    run_as "$1" "$@"
}

# run_as FILE NAME RUNS PLOTS [ARGS...]: `run` of a variant of program NAME
# whose JSON is $OUT/$TAG-FILE.json and whose plots are tagged
# $TAG-<FILE without "NAME-"> (e.g. run_as latency-other latency ...:
# $TAG-latency-other.json, plots $TAG-other-*.svg).
run_as() {
    local file="$1" name="$2" runs="$3" plots="$4"
    shift 4
    local json="$OUT/$TAG-$file.json" tag="$TAG"
    [[ $file == "$name" ]] || tag="$TAG-${file#"$name"-}"
    step "$file: $name $*"
    rm -f "$json"
    if ! "$BIN/$name" "${Q[@]}" --json "$json" --plots "$OUT/plots" --tag "$tag" "$@"; then
        FAILED+=("$file: failed (exit status)")
        return 0
    fi
    local list=()
    [[ -z $plots ]] || IFS=, read -ra list <<<"$plots"
    PLOT_TAG="$tag" check "$file" "$json" "$runs" "${list[@]}"
}

# suite_end NAME: the verdict; exits 1 if any program failed.
suite_end() {
    step "done"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        printf '%s: FAILED:\n' "$1" >&2
        printf '  %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
    echo "$1: every program ran and wrote well-formed output (in ${OUT})"
}

#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
#
# layout.sh: README.md's layout table matches the tree.
#
# The table's rows name paths in backquotes in their first column. Checks:
#   1. every path a row names exists (a directory when written with a
#      trailing slash);
#   2. every directory of the architecture is named: each top-level
#      directory and its subdirectories, each module directory of a crate
#      (the subdirectories of a `src/`, and of its tests' `tests/vm/`), and
#      each executable file at the top level. A directory is named by a row
#      that names it or something inside it; a row for a directory also
#      covers what is below it, except module directories, which need rows
#      of their own (they are the architecture the table shows).
# Only files git tracks count (build output, caches and results data are
# not architecture); results/ folders are covered by their parent's row.
#
#   tools/test/layout.sh [README]    last line: "layout: ok (N rows, M paths checked)"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
README="${1:-$ROOT/README.md}"
cd "$ROOT"

# The rows' paths: backquoted words of the first column of the table under
# "## Layout", until the next heading.
mapfile -t ROWS < <(awk '
    /^## / { inside = ($0 == "## Layout") ; next }
    inside && /^\| *`/ {
        split($0, cols, "|")
        s = cols[2]
        while (match(s, /`[^`]+`/)) {
            print substr(s, RSTART + 1, RLENGTH - 2)
            s = substr(s, RSTART + RLENGTH)
        }
    }' "$README")
((${#ROWS[@]} > 0)) || { echo "layout: no table rows found under '## Layout' in $README" >&2; exit 1; }

problems=()
for p in "${ROWS[@]}"; do
    if [[ "$p" == */ ]]; then
        [[ -d "$p" ]] || problems+=("the table names '$p', which is not a directory")
    else
        [[ -e "$p" ]] || problems+=("the table names '$p', which does not exist")
    fi
done

# The architecture's directories and top-level executables, from git.
git rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    { echo "layout: $ROOT is not a git checkout: cannot tell the tree's files from build output" >&2; exit 1; }
mapfile -t FILES < <(git ls-files)
declare -A DIRS=() MODULE=()
for f in "${FILES[@]}"; do
    IFS=/ read -r -a parts <<<"$f"
    n=${#parts[@]}
    # Top-level executables (morpheus-dev), and top-level directories and
    # their children (not dotfiles: .cargo, .github and the like are
    # configuration; .ci is named by its script).
    if ((n == 1)); then
        [[ -x "$f" && "$f" != .* ]] && DIRS["$f"]=1
        continue
    fi
    [[ "${parts[0]}" == .* && "${parts[0]}" != .ci ]] && continue
    DIRS["${parts[0]}"]=1
    ((n > 2)) && DIRS["${parts[0]}/${parts[1]}"]=1
    # Module directories: a directory right under some src/ or tests/vm/.
    for ((i = 1; i + 1 < n; i++)); do
        parent="$(IFS=/; echo "${parts[*]:0:i}")"
        if [[ "${parts[i - 1]}" == src || "$parent" == */tests/vm ]]; then
            d="$parent/${parts[i]}"
            DIRS["$d"]=1
            MODULE["$d"]=1
        fi
    done
done

# covered D : a row names D, something inside D, or (unless D is a module
# directory) a directory D is inside. results/ folders: their parent's.
covered() {
    local d="$1" r
    [[ "$d" == */results || "$d" == */results/* ]] && d="${d%%/results*}"
    for r in "${ROWS[@]}"; do
        r="${r%/}"
        [[ "$r" == "$d" || "$r" == "$d"/* ]] && return 0
        [[ -z "${MODULE[$1]:-}" && "$d" == "$r"/* ]] && return 0
    done
    return 1
}

checked=0
for d in $(printf '%s\n' "${!DIRS[@]}" | sort); do
    checked=$((checked + 1))
    covered "$d" || problems+=("'$d' is in the tree but no row of the table names it")
done

if ((${#problems[@]} > 0)); then
    printf 'layout: %s\n' "${problems[@]}" >&2
    echo "layout: README.md's layout table does not match the tree (${#problems[@]} problem(s)); edit the table under '## Layout'" >&2
    exit 1
fi
echo "layout: ok (${#ROWS[@]} rows, $checked paths checked)"

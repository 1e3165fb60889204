#!/usr/bin/env python3
"""Pools the per-round figures of an A/B directory: summarize.py DIR TAG CONFIG...

For each program and configuration (the NAME in TAG-PROG-NAME-REP.json),
prints the median (min..max) over every round of every repetition of
scx_morpheus's figure and of its per-round ratio to the kernel default.
"""
import glob
import json
import os
import statistics
import sys

FIGURES = {
    "neut": ["messages/s"],
    "wake": ["wake p50 ms", "wake p99 ms"],
    "lat": ["light p50 ms", "light p99 ms", "heavy/s"],
    "lato": ["light p50 ms", "light p99 ms", "heavy/s"],
    "starv": ["morpheus/blocking units", "Morpheus worker system share"],
}


def rounds(path, figure):
    """(default values, scx_morpheus values, ratios) per round of one file."""
    runs = {r["sched"]: r for r in json.load(open(path))["runs"]}
    head = lambda r: next(h for h in r["headline"] if h["figure"] == figure)
    m = head(runs["observer"])
    return (head(runs["default"])["value"]["per_round"], m["value"]["per_round"],
            m["vs_default"]["per_round"])


def fmt(xs):
    xs = [x for x in xs if x is not None]  # a ratio to a zero default is null
    if not xs:
        return "-"
    return f"{statistics.median(xs):.3g} ({min(xs):.3g}..{max(xs):.3g})"


def main():
    d, tag, configs = sys.argv[1], sys.argv[2], sys.argv[3:]
    for prog, figures in FIGURES.items():
        for figure in figures:
            print(f"{prog}: {figure}")
            for c in configs:
                dv, mv, rv = [], [], []
                for f in sorted(glob.glob(os.path.join(d, f"{tag}-{prog}-{c}-*.json"))):
                    a, b, r = rounds(f, figure)
                    dv += a
                    mv += b
                    rv += r
                if rv:
                    print(f"  {c:10} default {fmt(dv):28} morpheus {fmt(mv):28} ratio {fmt(rv)}  n={len(rv)}")


main()

// SPDX-License-Identifier: GPL-2.0-only
//! demo-table: reads the JSON that `latency` and `starvation` wrote with
//! `--sched default,observer` and prints one side-by-side table (kernel
//! default scheduler vs scx_morpheus) with the scheduler's own metrics.
//! Used by tools/demo/demo.sh.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use morpheus_bench::report::Table;
use morpheus_bench::stats::{fmt_ms, fmt_ratio, ratio};
use serde_json::Value;

/// Side-by-side summary of a latency and a starvation run.
#[derive(Debug, Parser)]
#[command(name = "demo-table")]
struct Opts {
    /// JSON written by `latency --sched default,observer --json PATH`.
    latency: PathBuf,
    /// JSON written by `starvation --sched default,observer --json PATH`.
    starvation: PathBuf,
}

fn load(p: &PathBuf) -> Result<Value> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
}

/// The kernel-default run and the scx_morpheus observer run of `doc`.
fn pair<'a>(doc: &'a Value, path: &Path) -> Result<(&'a Value, &'a Value)> {
    let runs = doc["runs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let find = |sched: &str| {
        runs.iter().find(|r| r["sched"] == sched).with_context(|| {
            format!(
                "{} has no {sched} run: write it with --sched default,observer",
                path.display()
            )
        })
    };
    Ok((find("default")?, find("observer")?))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn morpheus_variant(run: &Value) -> Option<&Value> {
    run["result"]["variants"]
        .as_array()?
        .iter()
        .find(|v| v["strategy"] == "morpheus")
}

/// A table row: its name, the default run and the scx_morpheus run (or
/// their starvation variants), the path of the value in each, its format.
type Row<'a> = (
    &'a str,
    &'a Value,
    &'a Value,
    &'a [&'a str],
    &'a dyn Fn(f64) -> String,
);

fn main() -> Result<()> {
    let o = Opts::parse();
    let (lat, starv) = (load(&o.latency)?, load(&o.starvation)?);
    let (la, lb) = pair(&lat, &o.latency)?;
    let (sa, sb) = pair(&starv, &o.starvation)?;
    let variant = |run: &'_ Value| {
        morpheus_variant(run).cloned().with_context(|| {
            format!(
                "{} has no morpheus strategy: write it with --variants blocking,morpheus",
                o.starvation.display()
            )
        })
    };
    let (va, vb) = (variant(sa)?, variant(sb)?);
    let ms = |v: f64| {
        if v.is_finite() {
            fmt_ms(v as u64)
        } else {
            "n/a".into()
        }
    };
    let rate = |v: f64| format!("{v:.1}");
    let units = |v: f64| format!("{v:.0}");
    // (row, the default run's value, scx_morpheus's, format), where a
    // value is a path into a run's result.
    let rows: [Row; 5] = [
        (
            "latency: light p50 (ms)",
            la,
            lb,
            &["result", "light", "p50_ns"],
            &ms,
        ),
        (
            "latency: light p99 (ms)",
            la,
            lb,
            &["result", "light", "p99_ns"],
            &ms,
        ),
        (
            "latency: heavy requests/s",
            la,
            lb,
            &["result", "heavy_per_s"],
            &rate,
        ),
        (
            "starvation: probe p99 (ms)",
            &va,
            &vb,
            &["probe", "p99_ns"],
            &ms,
        ),
        (
            "starvation: work units/s",
            &va,
            &vb,
            &["units_per_s"],
            &units,
        ),
    ];
    let mut t = Table::new(&["", "kernel default", "scx_morpheus", "ratio"]);
    for (name, a, b, path, fmt) in rows {
        let get = |v: &Value| num(path.iter().fold(v, |v, k| &v[*k]));
        let (a, b) = (get(a), get(b));
        t.row(&[name.to_string(), fmt(a), fmt(b), fmt_ratio(ratio(b, a))]);
    }
    println!("{}", t.render());
    for (name, r) in [("latency", lb), ("starvation", sb)] {
        let m = &r["sched_metrics"]["counters"];
        println!(
            "scx_morpheus during {name}: hints sent {} answered {} (in grace {}) expired {}",
            m["hints_sent"], m["hints_answered"], m["hints_answered_in_grace"], m["hints_expired"]
        );
    }
    Ok(())
}

// SPDX-License-Identifier: GPL-2.0-only
//! demo-table: reads the JSON that `latency` and `starvation` wrote with
//! `--sched default,observer` and prints one side-by-side table (kernel
//! default scheduler vs scx_morpheus) with the scheduler's own metrics.
//! Used by tools/demo/demo.sh.

use std::path::PathBuf;

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

fn runs(doc: &Value) -> Vec<&Value> {
    doc["runs"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
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

fn main() -> Result<()> {
    let o = Opts::parse();
    let (lat, starv) = (load(&o.latency)?, load(&o.starvation)?);
    let (lr, sr) = (runs(&lat), runs(&starv));
    let mut t = Table::new(&["", "kernel default", "scx_morpheus", "ratio"]);
    let row = |t: &mut Table, name: &str, a: f64, b: f64, fmt: &dyn Fn(f64) -> String| {
        t.row(&[name.to_string(), fmt(a), fmt(b), fmt_ratio(ratio(b, a))]);
    };
    let ms = |v: f64| {
        if v.is_finite() {
            fmt_ms(v as u64)
        } else {
            "n/a".into()
        }
    };
    let rate = |v: f64| format!("{v:.1}");
    if let [a, b, ..] = lr.as_slice() {
        let (a, b) = (&a["result"], &b["result"]);
        row(
            &mut t,
            "latency: light p50 (ms)",
            num(&a["light"]["p50_ns"]),
            num(&b["light"]["p50_ns"]),
            &ms,
        );
        row(
            &mut t,
            "latency: light p99 (ms)",
            num(&a["light"]["p99_ns"]),
            num(&b["light"]["p99_ns"]),
            &ms,
        );
        row(
            &mut t,
            "latency: heavy requests/s",
            num(&a["heavy_per_s"]),
            num(&b["heavy_per_s"]),
            &rate,
        );
    }
    if let [a, b, ..] = sr.as_slice()
        && let (Some(a), Some(b)) = (morpheus_variant(a), morpheus_variant(b))
    {
        row(
            &mut t,
            "starvation: probe p99 (ms)",
            num(&a["probe"]["p99_ns"]),
            num(&b["probe"]["p99_ns"]),
            &ms,
        );
        row(
            &mut t,
            "starvation: work units/s",
            num(&a["units_per_s"]),
            num(&b["units_per_s"]),
            &|v| format!("{v:.0}"),
        );
    }
    println!("{}", t.render());
    for (name, list) in [("latency", &lr), ("starvation", &sr)] {
        for r in list.iter().filter(|r| !r["sched_metrics"].is_null()) {
            let m = &r["sched_metrics"]["counters"];
            println!(
                "scx_morpheus during {name}: hints sent {} answered {} (in grace {}) expired {}",
                m["hints_sent"],
                m["hints_answered"],
                m["hints_answered_in_grace"],
                m["hints_expired"]
            );
        }
    }
    Ok(())
}

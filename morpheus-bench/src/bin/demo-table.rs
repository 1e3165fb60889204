// SPDX-License-Identifier: GPL-2.0-only
//! demo-table: reads the JSON that `latency`, `starvation`, `wakeup` and
//! (optionally) `neutrality` wrote with `--sched default,bpfland,observer`
//! and prints one side-by-side
//! table (kernel default, scx_bpfland, scx_morpheus: medians over the
//! rounds, and per-round ratios to the default), the scheduler's own
//! metrics, and the verdict on each target of issue 10 that these runs
//! measure, computed from the data (and "NOT MEASURED" where they do not).
//! Used by tools/demo/demo.sh and the VM suite; with `--markdown`, the
//! same as Markdown: BENCHMARKS.md's current figures are this output for
//! the committed JSON, and a test (tests/benchmarks_md.rs) keeps them so.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use morpheus_bench::report::Table;
use morpheus_bench::rounds::{Compared, Limit, names, verdict};
use morpheus_bench::sched::{SchedConfig, SchedMetrics};
use morpheus_bench::strategy::Strategy;
use serde_json::Value;

/// Side-by-side summary of a latency, a starvation and a wakeup run.
#[derive(Debug, Parser)]
#[command(name = "demo-table")]
struct Opts {
    /// JSON written by `latency --sched default,bpfland,observer --json PATH`.
    latency: PathBuf,
    /// JSON written by `starvation --variants blocking,morpheus --sched ... --json PATH`.
    starvation: PathBuf,
    /// JSON written by `wakeup --sched default,bpfland,observer --json PATH`.
    wakeup: PathBuf,
    /// JSON written by `neutrality --sched default,bpfland,observer --json
    /// PATH` (hackbench-style messages per second), if measured.
    neutrality: Option<PathBuf>,
    /// JSON written by `latency` with other parameters (other worker and
    /// hog counts, checkpoint interval, request rates), if measured: its
    /// rows and targets are added.
    #[arg(long, value_name = "JSON")]
    other_latency: Option<PathBuf>,
    /// Print Markdown (a pipe table with each ratio's range over the
    /// rounds, then the targets as a list) instead of plain text.
    #[arg(long)]
    markdown: bool,
}

/// The row and target prefix of the latency run with other parameters.
const OTHER: &str = "latency, other parameters";

/// The issue 10 targets need medians of at least this many rounds.
const TARGET_ROUNDS: usize = 5;

type Runs = Vec<Compared<Value>>;

fn load(p: &Path) -> Result<Runs> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
    serde_json::from_value(doc["runs"].clone()).with_context(|| {
        format!(
            "{} has no rounds of configurations: write it with --sched default,bpfland,observer",
            p.display()
        )
    })
}

fn find(runs: &Runs, sched: SchedConfig) -> Option<&Compared<Value>> {
    runs.iter().find(|c| c.sched == Some(sched))
}

fn main() -> Result<()> {
    let o = Opts::parse();
    let (lat, starv, wake) = (load(&o.latency)?, load(&o.starvation)?, load(&o.wakeup)?);
    let neut = o
        .neutrality
        .as_deref()
        .map(load)
        .transpose()?
        .unwrap_or_default();
    let other = o.other_latency.as_deref().map(load).transpose()?;
    find(&lat, SchedConfig::Default).with_context(|| {
        format!(
            "{} has no kernel default run: write it with --sched default,...",
            o.latency.display()
        )
    })?;
    // Columns: the configurations present, in this order.
    let order = [
        SchedConfig::Default,
        SchedConfig::Bpfland,
        SchedConfig::Observer,
        SchedConfig::Enforce,
    ];
    let cols: Vec<SchedConfig> = order
        .into_iter()
        .filter(|s| find(&lat, *s).is_some())
        .collect();
    let morpheus = Strategy::Morpheus.label();
    let mut rows: Vec<(&str, &Runs, String)> = vec![
        ("latency", &lat, names::LIGHT_P50.into()),
        ("latency", &lat, names::LIGHT_P99.into()),
        ("latency", &lat, names::HEAVY_PER_S.into()),
        ("latency", &lat, names::SEND_P99.into()),
        ("latency", &lat, names::SERVE_P99.into()),
    ];
    if let Some(other) = &other {
        for figure in [names::LIGHT_P50, names::LIGHT_P99, names::HEAVY_PER_S] {
            rows.push((OTHER, other, figure.into()));
        }
    }
    rows.extend([
        ("wakeup", &wake, names::WAKE_P50.into()),
        ("wakeup", &wake, names::WAKE_P99.into()),
        ("starvation", &starv, names::probe_p99(morpheus)),
        ("starvation", &starv, names::units_per_s(morpheus)),
        ("starvation", &starv, names::MORPHEUS_VS_BLOCKING.into()),
        ("starvation", &starv, names::MORPHEUS_VS_NAIVE_P99.into()),
        ("starvation", &starv, names::MORPHEUS_VS_COOP_P99.into()),
        ("neutrality", &neut, names::MESSAGES_PER_S.into()),
    ]);
    let mut head = vec!["median of rounds".to_string()];
    head.extend(cols.iter().map(|s| s.label().to_string()));
    head.extend(
        cols.iter()
            .skip(1)
            .map(|s| format!("{} / default", s.label())),
    );
    let mut t = Table::new(&head);
    let num = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    for (program, runs, figure) in &rows {
        let mut row = vec![format!("{program}: {figure}")];
        let get = |s: SchedConfig| find(runs, s).and_then(|c| c.get(figure));
        for &s in &cols {
            row.push(
                get(s)
                    .and_then(|h| h.value.as_ref())
                    .map_or("n/a".into(), |v| num(v.median)),
            );
        }
        for &s in cols.iter().skip(1) {
            let ratio = |v: f64| format!("{v:.2}x");
            row.push(
                get(s)
                    .and_then(|h| h.vs_default.as_ref())
                    .map_or("n/a".into(), |v| {
                        if o.markdown {
                            v.show(ratio)
                        } else {
                            ratio(v.median)
                        }
                    }),
            );
        }
        t.row(&row);
    }
    let mut during = Vec::new();
    for (name, runs) in [
        ("latency", &lat),
        ("starvation", &starv),
        ("wakeup", &wake),
        ("neutrality", &neut),
    ]
    .into_iter()
    .chain(other.as_ref().map(|o| (OTHER, o)))
    {
        if let Some(m) = find(runs, SchedConfig::Observer).and_then(|c| c.sched_metrics()) {
            during.push(format!("scx_morpheus during {name}: {}", m.brief()));
        }
    }
    let (title, lines) = targets(&lat, other.as_ref(), &starv, &wake, &neut);
    if o.markdown {
        print!("{}", t.render_markdown());
        println!();
        for l in &during {
            println!("- {l}");
        }
        println!("\n{title}\n");
        for l in &lines {
            println!("- {l}");
        }
    } else {
        println!("{}", t.render());
        for l in &during {
            println!("{l}");
        }
        println!("\n{title}");
        for l in &lines {
            println!("  {l}");
        }
    }
    Ok(())
}

/// The verdict on each issue 10 target, for scx_morpheus (observer): a
/// title and one line per target.
fn targets(
    lat: &Runs,
    other: Option<&Runs>,
    starv: &Runs,
    wake: &Runs,
    neut: &Runs,
) -> (String, Vec<String>) {
    let Some(m) = find(lat, SchedConfig::Observer) else {
        return (
            "targets: no scx_morpheus run (--sched ...,observer): NOT MEASURED".into(),
            Vec::new(),
        );
    };
    let rounds = m.rounds.len();
    let title = format!(
        "issue 10 targets for scx_morpheus (medians of {rounds} round(s){}):",
        if rounds < TARGET_ROUNDS {
            format!("; the targets ask for >= {TARGET_ROUNDS}, so these are indicative only")
        } else {
            String::new()
        }
    );
    let peer =
        |runs: &Runs, figure: &str, c: &Compared<Value>| match find(runs, SchedConfig::Bpfland) {
            Some(b) => c.judge_below(b, figure),
            None => format!("{figure} below scx_bpfland's: NOT MEASURED (no bpfland run)"),
        };
    let mut out = vec![
        format!("latency: {}", m.judge(names::LIGHT_P99, Limit::AtMost(0.5))),
        format!("latency: {}", peer(lat, names::LIGHT_P99, m)),
        format!("latency: {}", m.judge(names::LIGHT_P50, Limit::AtMost(1.0))),
        format!(
            "latency: {}",
            m.judge(names::HEAVY_PER_S, Limit::AtLeast(0.95))
        ),
    ];
    match find(wake, SchedConfig::Observer) {
        Some(w) => {
            out.push(format!(
                "wakeup: {}",
                w.judge(names::WAKE_P50, Limit::AtMost(2.0))
            ));
            out.push(format!(
                "wakeup: {}",
                w.judge(names::WAKE_P99, Limit::AtMost(1.5))
            ));
            out.push(format!("wakeup: {}", peer(wake, names::WAKE_P50, w)));
            out.push(format!("wakeup: {}", peer(wake, names::WAKE_P99, w)));
        }
        None => out.push("wakeup: no scx_morpheus run: NOT MEASURED".into()),
    }
    match find(starv, SchedConfig::Observer).and_then(|s| s.median(names::MORPHEUS_VS_BLOCKING)) {
        Some(r) => out.push(format!(
            "starvation: Morpheus workers' throughput {r:.2}x Blocking's under scx_morpheus, target >= 0.95x: {}",
            verdict(r >= 0.95)
        )),
        None => out.push(
            "starvation: Morpheus vs Blocking throughput: NOT MEASURED (run --variants blocking,morpheus)"
                .into(),
        ),
    }
    if let Some(r) =
        find(starv, SchedConfig::Observer).and_then(|s| s.median(names::MORPHEUS_VS_BLOCKING_CPU))
    {
        out.push(format!(
            "starvation: Morpheus workers' CPU time {r:.2}x Blocking's (a yield gives up a turn, not a share), target >= 0.95x: {}",
            verdict(r >= 0.95)
        ));
    }
    // The probe against the other ways out of starvation, under
    // scx_morpheus (Tokio coop: the runtime's own answer; Blocking starves
    // the probe by construction, so it is no yardstick).
    let starv_m = find(starv, SchedConfig::Observer);
    for (what, figure, limit) in [
        ("within 2x of Naive's", names::MORPHEUS_VS_NAIVE_P99, 2.0),
        ("at most Tokio coop's", names::MORPHEUS_VS_COOP_P99, 1.0),
    ] {
        match starv_m.and_then(|s| s.get(figure)?.value.clone()) {
            Some(r) => out.push(format!(
                "starvation: Morpheus probe p99 {what} under scx_morpheus: {} of it, target <= {limit:.2}x: {}",
                r.show(|v| format!("{v:.2}x")),
                verdict(r.median <= limit)
            )),
            None => out.push(format!(
                "starvation: Morpheus probe p99 {what}: NOT MEASURED (run all four strategies)"
            )),
        }
    }
    match find(neut, SchedConfig::Observer) {
        Some(n) => out.push(format!(
            "neutrality: {}",
            n.judge(names::MESSAGES_PER_S, Limit::AtLeast(0.95))
        )),
        None => out.push(
            "neutrality (hackbench within 5%): NOT MEASURED (no neutrality run given)".into(),
        ),
    }
    // Every hint of every round of scx_morpheus in these programs, pooled.
    let mut all = SchedMetrics::default();
    for runs in [lat, starv, wake, neut].into_iter().chain(other) {
        if let Some(s) = find(runs, SchedConfig::Observer).and_then(|c| c.sched_metrics()) {
            all.absorb(&s);
        }
    }
    let (sent, in_grace) = (all.get("hints_sent"), all.get("hints_answered_in_grace"));
    if sent > 0 {
        let share = in_grace as f64 / sent as f64;
        out.push(format!(
            "hints: {in_grace} of {sent} answered within grace ({:.1} %), target >= 99 %: {}",
            100.0 * share,
            verdict(share >= 0.99)
        ));
    } else {
        out.push("hints answered within grace: NOT MEASURED (no hint was sent)".into());
    }
    out.push(hint_delay_line(
        sent,
        all.quantile_us("hint_delay_seconds", 0.99),
        all.quantile_us("timer_late_seconds", 0.99),
    ));
    (title, out)
}

/// The hint-delay target's line: the p99 against 1 ms, or why there is
/// none (no hint sent, or results recorded before the loader kept the
/// hint-delay histogram).
fn hint_delay_line(sent: u64, delay_p99_us: Option<u64>, timer_late_p99_us: Option<u64>) -> String {
    match delay_p99_us {
        Some(us) => format!(
            "hints issued after due (every hint of these runs): p99 < {us} us (log2 bucket bound), \
             target <= 1 ms: {} (the scheduler's timers fired p99 < {} us late)",
            verdict(us <= 1024),
            timer_late_p99_us.unwrap_or(0)
        ),
        None if sent == 0 => {
            "hints issued <= 1 ms after due (p99): NOT MEASURED (no hint was sent)".into()
        }
        None => "hints issued <= 1 ms after due (p99): NOT MEASURED (these results have no \
                 hint_delay_seconds histogram: recorded by an older loader, run them again)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_delay_line_says_why_it_has_no_figure() {
        let line = hint_delay_line(0, None, None);
        assert!(line.ends_with("(no hint was sent)"), "{line}");
        let line = hint_delay_line(12, None, None);
        assert!(line.contains("older loader, run them again"), "{line}");
        let line = hint_delay_line(12, Some(512), Some(256));
        assert!(
            line.contains("p99 < 512 us") && line.contains("met"),
            "{line}"
        );
        assert!(line.contains("p99 < 256 us late"), "{line}");
        let line = hint_delay_line(12, Some(2048), None);
        assert!(line.contains("MISSED"), "{line}");
    }
}

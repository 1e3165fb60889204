// SPDX-License-Identifier: GPL-2.0-only
//! demo-table: reads the JSON that `latency`, `starvation`, `wakeup` and
//! (optionally) `neutrality` wrote with `--sched default,bpfland,observer`
//! and prints one side-by-side
//! table (kernel default, scx_bpfland, scx_morpheus: medians over the
//! rounds, and per-round ratios to the default), the scheduler's own
//! metrics, and the verdict on each target of issue 10 that these runs
//! measure, computed from the data (and "NOT MEASURED" where they do not).
//! Used by tools/demo/demo.sh and the VM suite.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use morpheus_bench::report::Table;
use morpheus_bench::rounds::{Compared, Limit, names, verdict};
use morpheus_bench::sched::SchedConfig;
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
}

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
    let rows: [(&str, &Runs, String); 9] = [
        ("latency", &lat, names::LIGHT_P50.into()),
        ("latency", &lat, names::LIGHT_P99.into()),
        ("latency", &lat, names::HEAVY_PER_S.into()),
        ("wakeup", &wake, names::WAKE_P50.into()),
        ("wakeup", &wake, names::WAKE_P99.into()),
        ("starvation", &starv, names::probe_p99(morpheus)),
        ("starvation", &starv, names::units_per_s(morpheus)),
        ("starvation", &starv, names::MORPHEUS_VS_BLOCKING.into()),
        ("neutrality", &neut, names::MESSAGES_PER_S.into()),
    ];
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
            row.push(
                get(s)
                    .and_then(|h| h.vs_default.as_ref())
                    .map_or("n/a".into(), |v| format!("{:.2}x", v.median)),
            );
        }
        t.row(&row);
    }
    println!("{}", t.render());
    for (name, runs) in [
        ("latency", &lat),
        ("starvation", &starv),
        ("wakeup", &wake),
        ("neutrality", &neut),
    ] {
        if let Some(m) = find(runs, SchedConfig::Observer).and_then(|c| c.sched_metrics()) {
            println!("scx_morpheus during {name}: {}", m.brief());
        }
    }
    targets(&lat, &starv, &wake, &neut);
    Ok(())
}

/// The verdict on each issue 10 target, for scx_morpheus (observer).
fn targets(lat: &Runs, starv: &Runs, wake: &Runs, neut: &Runs) {
    let Some(m) = find(lat, SchedConfig::Observer) else {
        println!("\ntargets: no scx_morpheus run (--sched ...,observer): NOT MEASURED");
        return;
    };
    let rounds = m.rounds.len();
    println!(
        "\nissue 10 targets for scx_morpheus (medians of {rounds} round(s){}):",
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
    println!(
        "  latency: {}",
        m.judge(names::LIGHT_P99, Limit::AtMost(0.5))
    );
    println!("  latency: {}", peer(lat, names::LIGHT_P99, m));
    println!(
        "  latency: {}",
        m.judge(names::LIGHT_P50, Limit::AtMost(1.0))
    );
    println!(
        "  latency: {}",
        m.judge(names::HEAVY_PER_S, Limit::AtLeast(0.95))
    );
    match find(wake, SchedConfig::Observer) {
        Some(w) => {
            println!("  wakeup: {}", w.judge(names::WAKE_P50, Limit::AtMost(2.0)));
            println!("  wakeup: {}", w.judge(names::WAKE_P99, Limit::AtMost(1.5)));
            println!("  wakeup: {}", peer(wake, names::WAKE_P50, w));
            println!("  wakeup: {}", peer(wake, names::WAKE_P99, w));
        }
        None => println!("  wakeup: no scx_morpheus run: NOT MEASURED"),
    }
    match find(starv, SchedConfig::Observer).and_then(|s| s.median(names::MORPHEUS_VS_BLOCKING)) {
        Some(r) => println!(
            "  starvation: Morpheus workers' throughput {r:.2}x Blocking's under scx_morpheus, target >= 0.95x: {}",
            verdict(r >= 0.95)
        ),
        None => println!(
            "  starvation: Morpheus vs Blocking throughput: NOT MEASURED (run --variants blocking,morpheus)"
        ),
    }
    if let Some(r) =
        find(starv, SchedConfig::Observer).and_then(|s| s.median(names::MORPHEUS_VS_BLOCKING_CPU))
    {
        println!(
            "  starvation: Morpheus workers' CPU time {r:.2}x Blocking's (a yield gives up a turn, not a share), target >= 0.95x: {}",
            verdict(r >= 0.95)
        );
    }
    match find(neut, SchedConfig::Observer) {
        Some(n) => println!(
            "  neutrality: {}",
            n.judge(names::MESSAGES_PER_S, Limit::AtLeast(0.95))
        ),
        None => {
            println!("  neutrality (hackbench within 5%): NOT MEASURED (no neutrality run given)")
        }
    }
    let mut sent = 0;
    let mut in_grace = 0;
    // Each program's last scx_morpheus run: the p99 since its attach
    // (the upper bound of a log2 bucket); the worst of them is shown.
    let mut delay_p99_us = None;
    // How late the scheduler's decision timers fired: a floor under the
    // hint delay that the policy cannot remove (the emulator's).
    let mut timer_late_p99_us = None;
    for runs in [lat, starv, wake, neut] {
        if let Some(s) = find(runs, SchedConfig::Observer).and_then(|c| c.sched_metrics()) {
            sent += s.get("hints_sent");
            in_grace += s.get("hints_answered_in_grace");
            if s.get("hints_sent") > 0 {
                delay_p99_us = delay_p99_us.max(s.quantile_us("hint_delay_seconds", 0.99));
                timer_late_p99_us =
                    timer_late_p99_us.max(s.quantile_us("timer_late_seconds", 0.99));
            }
        }
    }
    if sent > 0 {
        let share = in_grace as f64 / sent as f64;
        println!(
            "  hints: {in_grace} of {sent} answered within grace ({:.1} %), target >= 99 %: {}",
            100.0 * share,
            verdict(share >= 0.99)
        );
    } else {
        println!("  hints answered within grace: NOT MEASURED (no hint was sent)");
    }
    println!("{}", hint_delay_line(sent, delay_p99_us, timer_late_p99_us));
}

/// The hint-delay target's line: the p99 against 1 ms, or why there is
/// none (no hint sent, or results recorded before the loader kept the
/// hint-delay histogram).
fn hint_delay_line(sent: u64, delay_p99_us: Option<u64>, timer_late_p99_us: Option<u64>) -> String {
    match delay_p99_us {
        Some(us) => format!(
            "  hints issued after due: p99 < {us} us (log2 bucket bound), target <= 1 ms: {} \
             (the scheduler's timers fired p99 < {} us late)",
            verdict(us <= 1024),
            timer_late_p99_us.unwrap_or(0)
        ),
        None if sent == 0 => {
            "  hints issued <= 1 ms after due (p99): NOT MEASURED (no hint was sent)".into()
        }
        None => "  hints issued <= 1 ms after due (p99): NOT MEASURED (these results have no \
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

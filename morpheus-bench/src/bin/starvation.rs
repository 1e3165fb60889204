// SPDX-License-Identifier: GPL-2.0-only
//! starvation: CPU-bound tasks on every worker of a multi-thread Tokio
//! runtime, checkpointing every N work units, plus a probe task that wakes
//! every millisecond and records its lateness. One run per yield strategy
//! (Blocking, Naive `yield_now`, Tokio coop `consume_budget`, Morpheus
//! `checkpoint!()`): throughput in work units per second of wall-clock time,
//! and probe lateness percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, ConfigRun, Ctx, RunOpts};
use morpheus_bench::hogs::{Hogs, cpus};
use morpheus_bench::probe::Probe;
use morpheus_bench::report::Table;
use morpheus_bench::rtmetrics::RuntimeFigures;
use morpheus_bench::sched::SchedMetrics;
use morpheus_bench::stats::{Summary, cdf, fmt_ms, fmt_ratio, ratio};
use morpheus_bench::strategy::Strategy;
use morpheus_bench::svg::{self, Series};
use morpheus_bench::work::{unit_ns, work_unit};
use serde::{Deserialize, Serialize};

/// In-process starvation: throughput and probe latency per yield strategy.
#[derive(Debug, Parser, Serialize)]
#[command(name = "starvation")]
struct Opts {
    /// Runtime worker threads (default: the number of CPUs).
    #[arg(short = 'n', long)]
    workers: Option<usize>,

    /// Seconds per strategy (default: 10, or 1 with --quick).
    #[arg(long)]
    duration: Option<f64>,

    /// Rounds: each round runs every strategy for duration/rounds seconds,
    /// in rotating order, so that background load drifting over time hits
    /// every strategy alike (default: 5, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,

    /// Work units between two checkpoints.
    #[arg(long, default_value_t = 10)]
    every: u64,

    /// CPU-bound tasks per worker.
    #[arg(long, default_value_t = 1)]
    tasks_per_worker: usize,

    /// Strategies to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    variants: Vec<Strategy>,

    /// Budget of the Morpheus workers in milliseconds (default: the
    /// runtime's, 10 ms).
    #[arg(long)]
    budget_ms: Option<f64>,

    /// Background CPU hog threads outside the runtime (other work competing
    /// for the CPUs, so the kernel has a reason to hint).
    #[arg(long, default_value_t = 0)]
    hogs: usize,

    /// Redraw the plots (--plots, --tag) from a JSON file this program
    /// wrote, without measuring.
    #[arg(long, value_name = "JSON")]
    replot: Option<std::path::PathBuf>,

    #[command(flatten)]
    run: RunOpts,
}

/// One strategy's result.
#[derive(Debug, Serialize, Deserialize)]
struct VariantResult {
    strategy: Strategy,
    units: u64,
    wall_s: f64,
    units_per_s: f64,
    hog_units_per_s: f64,
    probe: Summary,
    /// (lateness ns, fraction) points of the probe's CDF.
    probe_cdf: Vec<(u64, f64)>,
    runtime: Option<RuntimeFigures>,
    sched: Option<SchedMetrics>,
}

/// One configuration's measurement.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    workers: usize,
    unit_us: f64,
    variants: Vec<VariantResult>,
}

impl Opts {
    fn validate(&mut self) -> Result<()> {
        let workers = *self.workers.get_or_insert(cpus());
        if !(1..=256).contains(&workers) {
            bail!("--workers must be between 1 and 256 (got {workers})");
        }
        let d = *self.duration.get_or_insert(self.run.pick(1.0, 10.0));
        if !(d > 0.0 && d <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds (got {d})");
        }
        let r = *self.rounds.get_or_insert(self.run.pick(1, 5));
        if !(1..=1000).contains(&r) {
            bail!("--rounds must be between 1 and 1000 (got {r})");
        }
        if self.every == 0 {
            bail!("--every must be at least 1 work unit");
        }
        if !(1..=64).contains(&self.tasks_per_worker) {
            bail!("--tasks-per-worker must be between 1 and 64");
        }
        if let Some(b) = self.budget_ms
            && !(b > 0.0 && b <= 1000.0)
        {
            bail!("--budget-ms must be between 0 and 1000 (got {b})");
        }
        if self.hogs > 1024 {
            bail!("--hogs must be at most 1024");
        }
        if self.variants.is_empty() {
            self.variants = Strategy::ALL.to_vec();
        }
        Ok(())
    }
}

async fn cpu_task(s: Strategy, every: u64, seed: u64, done: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut acc = seed;
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        acc = work_unit(acc);
        n += 1;
        done.store(n, Relaxed);
        if n.is_multiple_of(every) {
            s.checkpoint().await;
        }
    }
    std::hint::black_box(acc);
}

/// One round of one strategy: raw figures to be merged over rounds.
#[derive(Default)]
struct Round {
    units: u64,
    wall_s: f64,
    hog_units: u64,
    samples: Vec<u64>,
    runtime: Option<RuntimeFigures>,
    sched: Option<SchedMetrics>,
}

fn run_round(o: &Opts, s: Strategy, ctx: &Ctx, secs: f64) -> Result<Round> {
    let workers = o.workers.unwrap_or(1);
    let budget = o.budget_ms.map(|ms| Duration::from_secs_f64(ms / 1e3));
    let rt = s.runtime(workers, budget)?;
    let hogs = (o.hogs > 0).then(|| Hogs::start(o.hogs, None));
    let sched_before = ctx.scrape();
    let rt_before = RuntimeFigures::now();
    let probe = Probe::spawn(rt.handle(), Duration::from_millis(1));
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..workers * o.tasks_per_worker)
        .map(|_| Arc::default())
        .collect();
    let start = Instant::now();
    for (i, c) in counters.iter().enumerate() {
        rt.spawn(cpu_task(s, o.every, i as u64, c.clone(), stop.clone()));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    let units: u64 = counters.iter().map(|c| c.load(Relaxed)).sum();
    let wall_s = start.elapsed().as_secs_f64();
    let samples = probe.finish();
    let hog_units: u64 = hogs.map(|h| h.stop().iter().sum()).unwrap_or(0);
    let runtime = (s == Strategy::Morpheus).then(|| RuntimeFigures::now().since(&rt_before));
    stop.store(true, Relaxed);
    rt.shutdown_timeout(Duration::from_secs(10));
    let sched = sched_before.and_then(|b| {
        std::thread::sleep(Duration::from_millis(300));
        ctx.scrape().map(|a| a.since(&b))
    });
    Ok(Round {
        units,
        wall_s,
        hog_units,
        samples,
        runtime,
        sched,
    })
}

fn merge(s: Strategy, rounds: Vec<Round>) -> VariantResult {
    let mut all = Round::default();
    for r in rounds {
        all.units += r.units;
        all.wall_s += r.wall_s;
        all.hog_units += r.hog_units;
        all.samples.extend(r.samples);
        all.runtime = match (all.runtime, r.runtime) {
            (Some(mut a), Some(b)) => {
                a.absorb(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        all.sched = match (all.sched, r.sched) {
            (Some(mut a), Some(b)) => {
                a.absorb(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
    let probe = Summary::of(&mut all.samples);
    VariantResult {
        strategy: s,
        units: all.units,
        wall_s: all.wall_s,
        units_per_s: all.units as f64 / all.wall_s,
        hog_units_per_s: all.hog_units as f64 / all.wall_s,
        probe,
        probe_cdf: cdf(&all.samples, 200),
        runtime: all.runtime,
        sched: all.sched,
    }
}

fn measure(o: &Opts, ctx: &Ctx) -> Result<Measurement> {
    let unit_us = unit_ns(200) / 1e3;
    let rounds = o.rounds.unwrap_or(1);
    let secs = o.duration.unwrap_or(1.0) / rounds as f64;
    let n = o.variants.len();
    let mut raw: Vec<Vec<Round>> = (0..n).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let s = o.variants[i];
            eprintln!("   round {}/{rounds}: {} ...", round + 1, s.label());
            raw[i].push(run_round(o, s, ctx, secs)?);
        }
    }
    let variants = o
        .variants
        .iter()
        .zip(raw)
        .map(|(&s, r)| merge(s, r))
        .collect();
    Ok(Measurement {
        workers: o.workers.unwrap_or(1),
        unit_us,
        variants,
    })
}

fn find(m: &Measurement, s: Strategy) -> Option<&VariantResult> {
    m.variants.iter().find(|v| v.strategy == s)
}

fn print(o: &Opts, run: &ConfigRun<Measurement>) {
    let m = &run.result;
    println!(
        "\nstarvation under {}: {} workers x {} task(s), checkpoint every {} units (1 unit = {:.1} us), {} hog thread(s), {}s per strategy in {} round(s)",
        run.label,
        m.workers,
        o.tasks_per_worker,
        o.every,
        m.unit_us,
        o.hogs,
        o.duration.unwrap_or(0.0),
        o.rounds.unwrap_or(1)
    );
    let blocking = find(m, Strategy::Blocking);
    let naive = find(m, Strategy::Naive);
    let mut t = Table::new(&[
        "strategy",
        "units/s",
        "vs Blocking",
        "probe p50 ms",
        "p99",
        "p99.9",
        "max",
        "p99 vs Naive",
        "samples",
        "hogs units/s",
    ]);
    for v in &m.variants {
        t.row(&[
            v.strategy.label().to_string(),
            format!("{:.0}", v.units_per_s),
            fmt_ratio(ratio(
                v.units_per_s,
                blocking.map_or(0.0, |b| b.units_per_s),
            )),
            fmt_ms(v.probe.p50_ns),
            fmt_ms(v.probe.p99_ns),
            fmt_ms(v.probe.p999_ns),
            fmt_ms(v.probe.max_ns),
            fmt_ratio(ratio(
                v.probe.p99_ns as f64,
                naive.map_or(0.0, |n| n.probe.p99_ns as f64),
            )),
            v.probe.count.to_string(),
            format!("{:.0}", v.hog_units_per_s),
        ]);
    }
    print!("{}", t.render());
    for v in &m.variants {
        if let Some(r) = &v.runtime {
            println!("Morpheus runtime: {}", r.brief());
        }
        if let Some(s) = &v.sched {
            println!("scheduler during {}: {}", v.strategy.label(), s.brief());
        }
    }
    if let (Some(mo), Some(b), Some(n)) = (find(m, Strategy::Morpheus), blocking, naive) {
        let tput = ratio(mo.units_per_s, b.units_per_s);
        let vs_naive = ratio(mo.probe.p99_ns as f64, n.probe.p99_ns as f64);
        let vs_block = ratio(b.probe.p99_ns as f64, mo.probe.p99_ns as f64);
        println!("targets (Morpheus):");
        println!(
            "  throughput >= 0.95x Blocking: {} ({})",
            fmt_ratio(tput),
            verdict(tput >= 0.95)
        );
        println!(
            "  probe p99 within 2x of Naive: {} ({})",
            fmt_ratio(vs_naive),
            verdict(vs_naive <= 2.0)
        );
        println!(
            "  probe p99 >= 10x better than Blocking: {} ({})",
            fmt_ratio(vs_block),
            verdict(vs_block >= 10.0)
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn plots(o: &Opts, runs: &[ConfigRun<Measurement>]) -> Result<()> {
    for run in runs {
        let suffix = run
            .sched
            .map_or(String::new(), |s| format!("-{}", s.as_str()));
        let series: Vec<Series> = run
            .result
            .variants
            .iter()
            .map(|v| Series {
                name: v.strategy.label().into(),
                points: v
                    .probe_cdf
                    .iter()
                    .map(|&(x, y)| (x as f64 / 1e6, y))
                    .collect(),
            })
            .collect();
        let title = format!("starvation: probe lateness ({})", run.label);
        harness::plot(
            &o.run,
            &format!("starvation{suffix}-probe-cdf"),
            &svg::cdf_chart(&title, "lateness (ms, log scale)", &series),
        )?;
        let bars: Vec<(String, f64)> = run
            .result
            .variants
            .iter()
            .map(|v| (v.strategy.label().to_string(), v.units_per_s))
            .collect();
        let title = format!("starvation: throughput ({})", run.label);
        harness::plot(
            &o.run,
            &format!("starvation{suffix}-throughput"),
            &svg::bar_chart(&title, "work units per second", &bars),
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut o = Opts::parse();
    o.validate()?;
    if let Some(path) = &o.replot {
        let runs: Vec<ConfigRun<Measurement>> = harness::load_runs(path)?;
        return plots(&o, &runs);
    }
    harness::measure_and_report(
        &o.run,
        &o,
        |ctx| measure(&o, ctx),
        |runs| runs.iter().for_each(|run| print(&o, run)),
        |runs| plots(&o, runs),
    )
}

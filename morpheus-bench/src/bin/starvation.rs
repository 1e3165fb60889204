// SPDX-License-Identifier: GPL-2.0-only
//! starvation: CPU-bound tasks on every worker of a multi-thread Tokio
//! runtime, checkpointing every N work units, plus a probe task that wakes
//! every millisecond and records its lateness. One run per yield strategy
//! (Blocking, Naive `yield_now`, Tokio coop `consume_budget`, Morpheus
//! `checkpoint!()`): throughput in work units per second of wall-clock time,
//! and probe lateness percentiles. With `--sched`, the configurations run in
//! alternating rounds and the report gives medians and ranges over them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::cputime;
use morpheus_bench::harness::{self, Ctx, RunOpts};
use morpheus_bench::hogs::{Hogs, cpus};
use morpheus_bench::probe::Probe;
use morpheus_bench::rounds::{self, Compared, Figures, names, verdict};
use morpheus_bench::rtmetrics::RuntimeFigures;
use morpheus_bench::sched::SchedMetrics;
use morpheus_bench::stats::{Summary, cdf};
use morpheus_bench::strategy::{Strategy, WORKER_THREAD};
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

    /// Seconds per strategy over all rounds (default: 10, or 1 with
    /// --quick).
    #[arg(long)]
    duration: Option<f64>,

    /// Rounds: each round runs every configuration once (in the same order)
    /// and, in it, every strategy for duration/rounds seconds (in an order
    /// rotating from round to round), so that background load drifting over
    /// time hits every strategy alike; the report gives medians and ranges
    /// over the rounds (default: 5, or 1 with --quick).
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

    /// Run without the latency probe: the strategies' throughput without
    /// the work of serving a task that wakes every millisecond (which
    /// Blocking never does); the probe's figures and targets are then not
    /// measured.
    #[arg(long)]
    no_probe: bool,

    /// Redraw the plots (--plots, --tag) from a JSON file this program
    /// wrote, without measuring.
    #[arg(long, value_name = "JSON")]
    replot: Option<std::path::PathBuf>,

    #[command(flatten)]
    run: RunOpts,
}

/// One strategy's result in one round.
#[derive(Debug, Serialize, Deserialize)]
struct VariantResult {
    strategy: Strategy,
    units: u64,
    wall_s: f64,
    units_per_s: f64,
    hog_units_per_s: f64,
    /// CPU time the runtime's worker threads got (seconds; 0 in JSON
    /// written before it was measured).
    #[serde(default)]
    worker_cpu_s: f64,
    /// The part of `worker_cpu_s` spent in the kernel (seconds, at
    /// clock-tick resolution; 0 in JSON written before it was measured).
    #[serde(default)]
    worker_system_s: f64,
    /// Idle time of all the machine's CPUs (seconds).
    #[serde(default)]
    idle_s: f64,
    /// Times the runtime's worker threads moved to another CPU.
    #[serde(default)]
    worker_migrations: u64,
    probe: Summary,
    /// (lateness ns, fraction) points of the probe's CDF.
    probe_cdf: Vec<(u64, f64)>,
    runtime: Option<RuntimeFigures>,
    sched: Option<SchedMetrics>,
}

/// One configuration's measurement in one round.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    workers: usize,
    unit_us: f64,
    variants: Vec<VariantResult>,
}

/// Per-round probe p99 ratios within one configuration's round.
const BLOCKING_VS_MORPHEUS_P99: &str = "blocking/morpheus probe p99";

/// The round's headline figures: each strategy's throughput and probe p99,
/// and the Morpheus ratios the targets judge.
fn figures(m: &Measurement) -> Figures {
    let mut f: Figures = Vec::new();
    for v in &m.variants {
        let s = v.strategy.label();
        f.push((names::units_per_s(s), v.units_per_s));
        if v.probe.count > 0 {
            f.push((names::probe_p99(s), v.probe.p99_ns as f64 / 1e6));
        }
        // Whether a strategy that gets less done loses CPU time (to the
        // hogs, or to idle CPUs) or does less with the CPU time it gets.
        if v.worker_cpu_s > 0.0 {
            f.push((format!("{s} worker CPUs"), v.worker_cpu_s / v.wall_s));
            f.push((
                format!("{s} units/CPU-ms"),
                v.units as f64 / v.worker_cpu_s / 1e3,
            ));
            f.push((
                format!("{s} worker system share"),
                v.worker_system_s / v.worker_cpu_s,
            ));
        }
        f.push((format!("{s} idle CPUs"), v.idle_s / v.wall_s));
        f.push((
            format!("{s} migrations/s"),
            v.worker_migrations as f64 / v.wall_s,
        ));
    }
    let by = |s| find(m, s);
    if let Some(mo) = by(Strategy::Morpheus) {
        let p99 = |v: &VariantResult| v.probe.p99_ns as f64;
        if let Some(b) = by(Strategy::Blocking).filter(|b| b.units_per_s > 0.0) {
            f.push((
                names::MORPHEUS_VS_BLOCKING.into(),
                mo.units_per_s / b.units_per_s,
            ));
            if b.worker_cpu_s > 0.0 {
                f.push((
                    names::MORPHEUS_VS_BLOCKING_CPU.into(),
                    mo.worker_cpu_s / b.worker_cpu_s,
                ));
            }
            if p99(mo) > 0.0 {
                f.push((BLOCKING_VS_MORPHEUS_P99.into(), p99(b) / p99(mo)));
            }
        }
        if let Some(n) = by(Strategy::Naive).filter(|n| p99(n) > 0.0) {
            f.push((names::MORPHEUS_VS_NAIVE_P99.into(), p99(mo) / p99(n)));
        }
        if let Some(c) = by(Strategy::Coop).filter(|c| p99(c) > 0.0) {
            f.push((names::MORPHEUS_VS_COOP_P99.into(), p99(mo) / p99(c)));
        }
    }
    f
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

/// One round of one strategy.
fn run_round(o: &Opts, s: Strategy, ctx: &Ctx, secs: f64) -> Result<VariantResult> {
    let workers = o.workers.unwrap_or(1);
    let budget = o.budget_ms.map(|ms| Duration::from_secs_f64(ms / 1e3));
    let rt = s.runtime(workers, budget)?;
    let hogs = (o.hogs > 0).then(|| Hogs::start(o.hogs, None));
    let sched_before = ctx.scrape();
    let rt_before = RuntimeFigures::now();
    let probe = (!o.no_probe).then(|| Probe::spawn(rt.handle(), Duration::from_millis(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicU64>> = (0..workers * o.tasks_per_worker)
        .map(|_| Arc::default())
        .collect();
    let cpu_before = cputime::ThreadTimes::now(WORKER_THREAD);
    let idle_before = cputime::machine_idle();
    let start = Instant::now();
    for (i, c) in counters.iter().enumerate() {
        rt.spawn(cpu_task(s, o.every, i as u64, c.clone(), stop.clone()));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    let units: u64 = counters.iter().map(|c| c.load(Relaxed)).sum();
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_after = cputime::ThreadTimes::now(WORKER_THREAD);
    let worker_cpu_s = cpu_after.since(&cpu_before).as_secs_f64();
    let worker_system_s = cpu_after.system_since(&cpu_before).as_secs_f64();
    let worker_migrations = cpu_after.migrations_since(&cpu_before);
    let idle_s = cputime::machine_idle()
        .zip(idle_before)
        .map_or(0.0, |(after, before)| (after - before).as_secs_f64());
    let mut samples = probe.map(Probe::finish).unwrap_or_default();
    let hog_units: u64 = hogs.map(|h| h.stop().iter().sum()).unwrap_or(0);
    let runtime = (s == Strategy::Morpheus).then(|| RuntimeFigures::now().since(&rt_before));
    stop.store(true, Relaxed);
    rt.shutdown_timeout(Duration::from_secs(10));
    let sched = sched_before.and_then(|b| {
        std::thread::sleep(Duration::from_millis(300));
        ctx.scrape().map(|a| a.since(&b))
    });
    let probe = Summary::of(&mut samples);
    Ok(VariantResult {
        strategy: s,
        units,
        wall_s,
        units_per_s: units as f64 / wall_s,
        hog_units_per_s: hog_units as f64 / wall_s,
        worker_cpu_s,
        worker_system_s,
        idle_s,
        worker_migrations,
        probe,
        probe_cdf: cdf(&samples, 200),
        runtime,
        sched,
    })
}

/// One configuration's round: every strategy once, starting at a
/// different one each round.
fn measure(o: &Opts, ctx: &Ctx) -> Result<Measurement> {
    let unit_us = unit_ns(200) / 1e3;
    let rounds = o.rounds.unwrap_or(1);
    let secs = o.duration.unwrap_or(1.0) / rounds as f64;
    let n = o.variants.len();
    let mut done: Vec<Option<VariantResult>> = (0..n).map(|_| None).collect();
    for k in 0..n {
        let i = (k + ctx.round) % n;
        let s = o.variants[i];
        eprintln!("   round {}/{rounds}: {} ...", ctx.round + 1, s.label());
        done[i] = Some(run_round(o, s, ctx, secs)?);
    }
    Ok(Measurement {
        workers: o.workers.unwrap_or(1),
        unit_us,
        variants: done.into_iter().flatten().collect(),
    })
}

fn find(m: &Measurement, s: Strategy) -> Option<&VariantResult> {
    m.variants.iter().find(|v| v.strategy == s)
}

fn print(o: &Opts, runs: &[Compared<Measurement>]) {
    let Some(m0) = runs.first().and_then(|c| c.rounds.first()) else {
        return;
    };
    println!(
        "\nstarvation: {} workers x {} task(s), checkpoint every {} units (1 unit = {:.1} us), {} hog thread(s), {}{}s per strategy in {} round(s)",
        m0.result.workers,
        o.tasks_per_worker,
        o.every,
        m0.result.unit_us,
        o.hogs,
        if o.no_probe { "no probe, " } else { "" },
        o.duration.unwrap_or(0.0),
        o.rounds.unwrap_or(1)
    );
    print!("{}", rounds::render(runs));
    for c in runs {
        let mut rt: Option<RuntimeFigures> = None;
        let mut sched: Option<SchedMetrics> = None;
        for v in c.rounds.iter().flat_map(|r| &r.result.variants) {
            if let Some(r) = &v.runtime {
                rt.get_or_insert_with(RuntimeFigures::default).absorb(r);
            }
            if let Some(s) = &v.sched {
                sched.get_or_insert_with(SchedMetrics::default).absorb(s);
            }
        }
        if let Some(r) = rt {
            println!("{}: Morpheus runtime: {}", c.label, r.brief());
        }
        if let Some(s) = sched {
            println!("{}: scheduler over every strategy: {}", c.label, s.brief());
        }
        let ratio = |f: &str| c.median(f);
        let line = |name: &str, f: &str, ok: &dyn Fn(f64) -> bool| match ratio(f) {
            Some(r) => println!("    {name}: {r:.2}x ({})", verdict(ok(r))),
            None if o.no_probe && name.starts_with("probe") => {
                println!("    {name}: not measured (--no-probe)")
            }
            None => println!("    {name}: not measured (needs both strategies)"),
        };
        println!(
            "  targets (Morpheus under {}; medians of per-round ratios):",
            c.label
        );
        line(
            "throughput >= 0.95x Blocking",
            names::MORPHEUS_VS_BLOCKING,
            &|r| r >= 0.95,
        );
        // What the throughput target stands for, without the work the
        // Morpheus runtime does that Blocking does not (serving the probe,
        // the yields themselves).
        line(
            "worker CPU time >= 0.95x Blocking's",
            names::MORPHEUS_VS_BLOCKING_CPU,
            &|r| r >= 0.95,
        );
        line(
            "probe p99 within 2x of Naive",
            names::MORPHEUS_VS_NAIVE_P99,
            &|r| r <= 2.0,
        );
        // Against Tokio's own answer to starvation (the coop budget), not
        // against Blocking, which starves the probe by construction.
        line(
            "probe p99 at most Tokio coop's",
            names::MORPHEUS_VS_COOP_P99,
            &|r| r <= 1.0,
        );
    }
}

fn plots(o: &Opts, runs: &[Compared<Measurement>]) -> Result<()> {
    for c in runs {
        let suffix = c
            .sched
            .map_or(String::new(), |s| format!("-{}", s.as_str()));
        // The strategies this configuration measured (with --replot, the
        // options hold every strategy, the file only those it ran).
        let measured: Vec<Strategy> = o
            .variants
            .iter()
            .copied()
            .filter(|&s| c.rounds.iter().any(|r| find(&r.result, s).is_some()))
            .collect();
        let series: Vec<Series> = measured
            .iter()
            .map(|&s| {
                let parts: Vec<(usize, &[(u64, f64)])> = c
                    .rounds
                    .iter()
                    .filter_map(|r| find(&r.result, s))
                    .map(|v| (v.probe.count, v.probe_cdf.as_slice()))
                    .collect();
                Series::pooled_ms(s.label(), &parts)
            })
            .collect();
        // Not with --no-probe: nothing to draw.
        if series.iter().any(|s| !s.points.is_empty()) {
            let title = format!("starvation: probe lateness ({}, all rounds)", c.label);
            harness::plot(
                &o.run,
                &format!("starvation{suffix}-probe-tail"),
                &svg::tail_chart(&title, "lateness (ms, log scale)", &series),
            )?;
        }
        let bars: Vec<(String, f64)> = measured
            .iter()
            .map(|s| {
                let m = c.median(&names::units_per_s(s.label()));
                (s.label().to_string(), m.unwrap_or(0.0))
            })
            .collect();
        let title = format!("starvation: throughput ({}, median of rounds)", c.label);
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
        let runs: Vec<Compared<Measurement>> = harness::load_runs(path)?;
        return plots(&o, &runs);
    }
    harness::measure_and_compare(
        &o.run,
        &o,
        o.rounds.unwrap_or(1),
        |ctx| measure(&o, ctx),
        figures,
        |runs| print(&o, runs),
        |runs| plots(&o, runs),
    )
}

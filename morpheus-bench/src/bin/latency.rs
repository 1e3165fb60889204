// SPDX-License-Identifier: GPL-2.0-only
//! latency: the main claim. A Tokio service (Morpheus workers) over
//! loopback with light requests and CPU-heavy requests (which hold a shared
//! lock briefly inside a critical section); with `--pressure`, background
//! CPU hogs saturate every CPU. A client records light-request latency
//! percentiles and both request rates. Compare scheduler configurations
//! with `--sched default,observer,bpfland` (under a sched_ext kernel): they
//! run in alternating rounds, and the report gives each headline figure's
//! median and range over the rounds.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, Ctx, RunOpts};
use morpheus_bench::hogs::{Hogs, cpus};
use morpheus_bench::rounds::{self, Compared, Figures, Limit, names};
use morpheus_bench::rtmetrics::RuntimeFigures;
use morpheus_bench::sched::SchedConfig;
use morpheus_bench::service::{HeavyWork, LightPhases, Load, run_client, start_server};
use morpheus_bench::stats::{Summary, cdf};
use morpheus_bench::strategy::Strategy;
use morpheus_bench::svg::{self, Series};
use morpheus_bench::work::unit_ns;
use serde::{Deserialize, Serialize};

/// Light-request latency and request rates of a mixed service under load.
#[derive(Debug, Parser, Serialize)]
#[command(name = "latency")]
struct Opts {
    /// Measurement window per round, seconds (default: 10, or 2 with --quick).
    #[arg(long)]
    duration: Option<f64>,

    /// Rounds: each runs every configuration once, in turn; the report
    /// gives medians and ranges over the rounds (default: 5, or 1 with
    /// --quick).
    #[arg(long)]
    rounds: Option<usize>,

    /// Service worker threads (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,

    /// Saturate every CPU with background CPU hogs (one per CPU).
    #[arg(long)]
    pressure: bool,

    /// Light requests per second (open loop).
    #[arg(long, default_value_t = 200.0)]
    light_rate: f64,

    /// Closed-loop heavy clients (default: twice the workers).
    #[arg(long)]
    heavy_clients: Option<usize>,

    /// CPU time of one heavy request in milliseconds (converted to work
    /// units measured on this machine).
    #[arg(long, default_value_t = 20.0)]
    heavy_ms: f64,

    /// CPU time spent holding the shared lock, in milliseconds.
    #[arg(long, default_value_t = 0.2)]
    locked_ms: f64,

    /// CPU time between checkpoints in heavy requests, microseconds.
    #[arg(long, default_value_t = 50.0)]
    checkpoint_us: f64,

    /// Attribute the serve phase: how long the worker that read each light
    /// request waited for a CPU meanwhile (its run-queue wait; costs the
    /// client a file read per worker and request).
    #[arg(long)]
    attribute: bool,

    /// Warm-up seconds before the window (default: 2, or 0.5 with --quick).
    #[arg(long)]
    warmup: Option<f64>,

    /// Redraw the plots (--plots, --tag) from a JSON file this program
    /// wrote, without measuring.
    #[arg(long, value_name = "JSON")]
    replot: Option<std::path::PathBuf>,

    #[command(flatten)]
    run: RunOpts,
}

/// One configuration's figures in one round.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    workers: usize,
    hogs: usize,
    unit_us: f64,
    heavy_units: u64,
    window_s: f64,
    /// Raw light-request latencies (ns).
    #[serde(default)]
    light_ns: Vec<u64>,
    heavy_done: u64,
    hog_units: u64,
    /// Warm-up plus window: the time the hogs ran.
    total_s: f64,
    errors: u64,
    light: Summary,
    /// Where the light requests' latency went (absent in files written
    /// before the phases were measured).
    #[serde(default)]
    phases: Phases,
    light_cdf: Vec<(u64, f64)>,
    light_per_s: f64,
    heavy_per_s: f64,
    hog_units_per_s: f64,
    runtime: RuntimeFigures,
}

/// The light requests' latency split into its phases (see
/// [`LightPhases`]): each phase's distribution, and the share each took of
/// the slowest 1 % of requests (what makes the tail).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Phases {
    send: Summary,
    serve: Summary,
    #[serde(rename = "return")]
    ret: Summary,
    /// Shares (0..1) of the summed latency of the requests at or above the
    /// p99: sending, serving, returning.
    tail_send: f64,
    tail_serve: f64,
    tail_return: f64,
    /// With --attribute: the share (0..1) of the serve time of all
    /// attributed requests, and of those at or above the p99, that the
    /// worker reading them spent waiting for a CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    serve_runq: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail_serve_runq: Option<f64>,
}

/// The share of the serve time of `requests` spent in the reader's run
/// queue, over those attributed (`None` if none is).
fn runq_share<'a>(requests: impl Iterator<Item = &'a LightPhases>) -> Option<f64> {
    let (mut runq, mut serve) = (0u64, 0u64);
    for p in requests {
        if let Some(r) = p.serve_runq_ns {
            // The reader's wait is sampled around the serve interval.
            runq += r.min(p.serve_ns);
            serve += p.serve_ns;
        }
    }
    (serve > 0).then(|| runq as f64 / serve as f64)
}

impl Phases {
    fn of(all: &[LightPhases]) -> Phases {
        let summary = |f: fn(&LightPhases) -> u64| {
            let mut v: Vec<u64> = all.iter().map(f).collect();
            Summary::of(&mut v)
        };
        let mut by_total: Vec<&LightPhases> = all.iter().collect();
        by_total.sort_unstable_by_key(|p| p.total_ns());
        // The slowest 1 % (at least one request).
        let tail = &by_total[by_total.len() - by_total.len().div_ceil(100)..];
        let sum = |f: fn(&LightPhases) -> u64| tail.iter().map(|p| f(p)).sum::<u64>() as f64;
        let total = sum(LightPhases::total_ns).max(1.0);
        Phases {
            send: summary(|p| p.send_ns),
            serve: summary(|p| p.serve_ns),
            ret: summary(|p| p.return_ns),
            tail_send: sum(|p| p.send_ns) / total,
            tail_serve: sum(|p| p.serve_ns) / total,
            tail_return: sum(|p| p.return_ns) / total,
            serve_runq: runq_share(all.iter()),
            tail_serve_runq: runq_share(tail.iter().copied()),
        }
    }
}

/// The round's headline figures.
fn figures(m: &Measurement) -> Figures {
    let ms = |ns: u64| ns as f64 / 1e6;
    let p = &m.phases;
    vec![
        (names::LIGHT_P50.into(), ms(m.light.p50_ns)),
        (names::LIGHT_P99.into(), ms(m.light.p99_ns)),
        ("light p99.9 ms".into(), ms(m.light.p999_ns)),
        (names::HEAVY_PER_S.into(), m.heavy_per_s),
        ("light/s".into(), m.light_per_s),
        ("errors".into(), m.errors as f64),
        ("send p50 ms".into(), ms(p.send.p50_ns)),
        (names::SEND_P99.into(), ms(p.send.p99_ns)),
        ("serve p50 ms".into(), ms(p.serve.p50_ns)),
        (names::SERVE_P99.into(), ms(p.serve.p99_ns)),
        ("return p50 ms".into(), ms(p.ret.p50_ns)),
        ("return p99 ms".into(), ms(p.ret.p99_ns)),
        ("tail % send".into(), 100.0 * p.tail_send),
        ("tail % serve".into(), 100.0 * p.tail_serve),
        ("tail % return".into(), 100.0 * p.tail_return),
    ]
    .into_iter()
    .chain(
        p.serve_runq
            .map(|s| ("serve % in run queue".into(), 100.0 * s)),
    )
    .chain(
        p.tail_serve_runq
            .map(|s| ("tail serve % in run queue".into(), 100.0 * s)),
    )
    .collect()
}

impl Opts {
    fn validate(&mut self) -> Result<()> {
        let w = *self.workers.get_or_insert(cpus());
        if !(1..=256).contains(&w) {
            bail!("--workers must be between 1 and 256 (got {w})");
        }
        let d = *self.duration.get_or_insert(self.run.pick(2.0, 10.0));
        let r = *self.rounds.get_or_insert(self.run.pick(1, 5));
        if !(1..=100).contains(&r) {
            bail!("--rounds must be between 1 and 100 (got {r})");
        }
        if !(d > 0.0 && d <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds (got {d})");
        }
        let wu = *self.warmup.get_or_insert(self.run.pick(0.5, 2.0));
        if !(0.0..=600.0).contains(&wu) {
            bail!("--warmup must be between 0 and 600 seconds (got {wu})");
        }
        if !(self.light_rate > 0.0 && self.light_rate <= 100_000.0) {
            bail!("--light-rate must be between 0 and 100000 per second");
        }
        let hc = *self.heavy_clients.get_or_insert(2 * w);
        if hc > 1024 {
            bail!("--heavy-clients must be at most 1024");
        }
        for (name, v, max) in [
            ("--heavy-ms", self.heavy_ms, 10_000.0),
            ("--locked-ms", self.locked_ms, 1_000.0),
            ("--checkpoint-us", self.checkpoint_us, 1e6),
        ] {
            if !(v > 0.0 && v <= max) {
                bail!("{name} must be between 0 and {max} (got {v})");
            }
        }
        Ok(())
    }
}

/// Carries the parent's calibration to the measurement processes, so that
/// every configuration does the same work per heavy request.
const UNIT_ENV: &str = "MORPHEUS_BENCH_UNIT_US";

fn measure(o: &Opts, _ctx: &Ctx) -> Result<Measurement> {
    let unit_us = std::env::var(UNIT_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|u| *u > 0.0)
        .unwrap_or_else(|| unit_ns(200) / 1e3);
    let units = |us: f64| ((us / unit_us).round() as u64).max(1);
    let work = HeavyWork {
        units: units(o.heavy_ms * 1e3),
        every: units(o.checkpoint_us),
        locked_units: units(o.locked_ms * 1e3),
    };
    let workers = o.workers.unwrap_or(1);
    let rt = Strategy::Morpheus.runtime(workers, None)?;
    let addr = start_server(&rt, work)?;
    let nhogs = if o.pressure { cpus() } else { 0 };
    let hogs = Hogs::start(nhogs, None);
    let before = RuntimeFigures::now();
    let window = Duration::from_secs_f64(o.duration.unwrap_or(1.0));
    let load = Load {
        light_rate: o.light_rate,
        light_conns: 16,
        heavy_clients: o.heavy_clients.unwrap_or(1),
        warmup: Duration::from_secs_f64(o.warmup.unwrap_or(0.0)),
        window,
        attribute: o.attribute,
    };
    let total = load.warmup + window;
    let mut r = run_client(addr, load)?;
    let runtime = RuntimeFigures::now().since(&before);
    let hog_units: u64 = hogs.stop().iter().sum();
    rt.shutdown_timeout(Duration::from_secs(10));
    let phases = Phases::of(&r.light_phases);
    let light_ns = std::mem::take(&mut r.light_ns);
    let mut sorted = light_ns.clone();
    let light = Summary::of(&mut sorted);
    let (window_s, total_s) = (window.as_secs_f64(), total.as_secs_f64());
    Ok(Measurement {
        workers,
        hogs: nhogs,
        unit_us,
        heavy_units: work.units,
        window_s,
        phases,
        light_cdf: cdf(&sorted, 200),
        light_per_s: light.count as f64 / window_s,
        light,
        light_ns,
        heavy_done: r.heavy_done,
        heavy_per_s: r.heavy_done as f64 / window_s,
        hog_units,
        hog_units_per_s: hog_units as f64 / total_s,
        total_s,
        errors: r.errors,
        runtime,
    })
}

fn print(o: &Opts, runs: &[Compared<Measurement>]) {
    let Some(m0) = runs.first().and_then(|c| c.rounds.first()) else {
        return;
    };
    let m0 = &m0.result;
    println!(
        "\nlatency: {} workers, {} hog thread(s), light {}/s, {} heavy clients x {} ms ({} units of {:.1} us), lock held {} ms, checkpoint every {} us, window {}s",
        m0.workers,
        m0.hogs,
        o.light_rate,
        o.heavy_clients.unwrap_or(0),
        o.heavy_ms,
        m0.heavy_units,
        m0.unit_us,
        o.locked_ms,
        o.checkpoint_us,
        m0.window_s
    );
    print!("{}", rounds::render(runs));
    for c in runs {
        let mut rt = RuntimeFigures::default();
        c.rounds.iter().for_each(|r| rt.absorb(&r.result.runtime));
        println!("{}: runtime {}", c.label, rt.brief());
        if let Some(s) = c.sched_metrics() {
            println!("{}: scheduler {}", c.label, s.brief());
        }
    }
    let bpfland = runs.iter().find(|c| c.sched == Some(SchedConfig::Bpfland));
    let has_default = runs.iter().any(|c| c.sched == Some(SchedConfig::Default));
    if !has_default {
        return;
    }
    println!("scx_morpheus targets (issue 10; medians of per-round ratios to the kernel default):");
    for c in runs
        .iter()
        // The targets are scx_morpheus's; scx_bpfland is what it is compared with.
        .filter(|c| c.sched.is_some_and(SchedConfig::is_morpheus))
    {
        println!("  {}:", c.label);
        println!("    {}", c.judge(names::LIGHT_P99, Limit::AtMost(0.5)));
        println!("    {}", c.judge(names::LIGHT_P50, Limit::AtMost(1.0)));
        println!("    {}", c.judge(names::HEAVY_PER_S, Limit::AtLeast(0.95)));
        if let Some(b) = bpfland {
            println!("    {}", c.judge_below(b, names::LIGHT_P99));
        }
    }
}

fn plots(o: &Opts, runs: &[Compared<Measurement>]) -> Result<()> {
    let series: Vec<Series> = runs
        .iter()
        .map(|c| {
            let parts: Vec<(usize, &[(u64, f64)])> = c
                .rounds
                .iter()
                .map(|r| (r.result.light.count, r.result.light_cdf.as_slice()))
                .collect();
            Series::pooled_ms(c.label.clone(), &parts)
        })
        .collect();
    harness::plot(
        &o.run,
        "latency-light-tail",
        &svg::tail_chart(
            "latency: light requests (all rounds)",
            "latency (ms, log scale)",
            &series,
        ),
    )?;
    harness::median_bar_plot(
        &o.run,
        "latency-heavy-throughput",
        "latency: heavy requests completed (median of rounds)",
        "requests per second",
        runs,
        names::HEAVY_PER_S,
    )
}

fn main() -> Result<()> {
    if std::env::var_os(UNIT_ENV).is_none() {
        let unit_us = unit_ns(1000) / 1e3;
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var(UNIT_ENV, unit_us.to_string()) };
    }
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

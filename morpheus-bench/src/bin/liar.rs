// SPDX-License-Identifier: GPL-2.0-only
//! liar: a worker that stays inside a critical section far longer than
//! allowed (`--critical-duration-ms`), and a competing thread pinned to the
//! same CPU. Reports the longest time the competitor was kept off the CPU,
//! against the scheduler's cap (`--max-critical-ms`) plus one tick, as
//! medians and ranges over alternating rounds of the configurations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, Ctx, RunOpts};
use morpheus_bench::hogs::{cpus, pin_to};
use morpheus_bench::rounds::{self, Compared, Figures};
use morpheus_bench::rtmetrics::RuntimeFigures;
use morpheus_bench::stats::Summary;
use morpheus_runtime::{WorkerOptions, attach_worker, critical_section};
use serde::{Deserialize, Serialize};

/// How long can a lying critical section delay a competing task?
#[derive(Debug, Parser, Serialize)]
#[command(name = "liar")]
struct Opts {
    /// How long each critical section lasts, milliseconds.
    #[arg(long, default_value_t = 500)]
    critical_duration_ms: u64,

    /// Total run time in seconds (default: 10, or 2 with --quick).
    #[arg(long)]
    duration: Option<f64>,

    /// The scheduler's cap, milliseconds (default: the --max-critical-ms
    /// given with --loader-arg, else scx_morpheus's default).
    #[arg(long)]
    cap_ms: Option<u64>,

    /// One scheduler tick, milliseconds (Debian kernels: CONFIG_HZ=250).
    #[arg(long, default_value_t = 4.0)]
    tick_ms: f64,

    /// Rounds: each runs the liar once under every configuration, in
    /// turn; the report gives medians and ranges over the rounds (default:
    /// 5, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,

    #[command(flatten)]
    run: RunOpts,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    cpu: usize,
    sections: u64,
    /// Competitor gaps longer than 1 ms (ns).
    gaps: Summary,
    /// The same measured by a control thread alone on another CPU: the
    /// noise floor of the machine (in a VM under emulation, the host
    /// descheduling the virtual CPU shows here too). None with one CPU.
    control: Option<Summary>,
    /// Critical sections scx_morpheus preempted at the cap during the run
    /// (None: no scx_morpheus).
    cap_violations: Option<u64>,
    runtime: RuntimeFigures,
}

/// The headline figures of one round.
fn figures(m: &Measurement) -> Figures {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut f = vec![
        (LONGEST.to_string(), ms(m.gaps.max_ns)),
        ("p99 gap ms".to_string(), ms(m.gaps.p99_ns)),
        ("gaps > 1 ms".to_string(), m.gaps.count as f64),
    ];
    if let Some(c) = &m.control {
        f.push(("control max ms".to_string(), ms(c.max_ns)));
    }
    if let Some(v) = m.cap_violations {
        f.push(("cap violations".to_string(), v as f64));
    }
    f.push(("sections".to_string(), m.sections as f64));
    f
}

/// The competitor's longest delay: the figure judged against the bound.
const LONGEST: &str = "longest delay ms";

impl Opts {
    fn validate(&mut self) -> Result<()> {
        if !(1..=10_000).contains(&self.critical_duration_ms) {
            bail!("--critical-duration-ms must be between 1 and 10000");
        }
        let d = *self.duration.get_or_insert(self.run.pick(2.0, 10.0));
        if !(d > 0.0 && d <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds (got {d})");
        }
        if !(self.tick_ms > 0.0 && self.tick_ms <= 100.0) {
            bail!("--tick-ms must be between 0 and 100");
        }
        let r = *self.rounds.get_or_insert(self.run.pick(1, 5));
        if !(1..=100).contains(&r) {
            bail!("--rounds must be between 1 and 100 (got {r})");
        }
        if self.cap_ms.is_none() {
            let from_args = self.run.loader_args.iter().find_map(|a| {
                a.strip_prefix("--max-critical-ms=")
                    .and_then(|v| v.parse().ok())
            });
            self.cap_ms = Some(from_args.unwrap_or(morpheus_common::DEFAULT_MAX_CRITICAL_MS));
        }
        Ok(())
    }
}

fn spin_until(t: Instant) {
    while Instant::now() < t {
        std::hint::spin_loop();
    }
}

fn measure(o: &Opts, ctx: &Ctx) -> Result<Measurement> {
    let cpu = cpus() - 1;
    let stop = Arc::new(AtomicBool::new(false));
    let competitor = gap_recorder("competitor", cpu, stop.clone())?;
    let control = (cpu > 0)
        .then(|| gap_recorder("control", 0, stop.clone()))
        .transpose()?;
    let before = RuntimeFigures::now();
    let section = Duration::from_millis(o.critical_duration_ms);
    let duration = Duration::from_secs_f64(o.duration.unwrap_or(1.0));
    let liar = std::thread::Builder::new()
        .name("liar".into())
        .spawn(move || -> Result<u64> {
            pin_to(cpu)?;
            attach_worker(WorkerOptions {
                escapable: Some(true),
                ..Default::default()
            })?;
            let end = Instant::now() + duration;
            let mut sections = 0;
            while Instant::now() < end {
                {
                    let _cs = critical_section();
                    spin_until(Instant::now() + section);
                }
                sections += 1;
                morpheus_runtime::bindings::checkpoint();
                // A little honest work between sections.
                for _ in 0..10 {
                    spin_until(Instant::now() + Duration::from_millis(1));
                    morpheus_runtime::bindings::checkpoint();
                }
            }
            Ok(sections)
        })?;
    let sections = liar
        .join()
        .map_err(|_| anyhow::anyhow!("the liar thread panicked"))??;
    let runtime = RuntimeFigures::now().since(&before);
    stop.store(true, Relaxed);
    let mut gaps = competitor
        .join()
        .map_err(|_| anyhow::anyhow!("the competitor panicked"))?;
    let control = control
        .map(|c| {
            c.join()
                .map_err(|_| anyhow::anyhow!("the control thread panicked"))
        })
        .transpose()?
        .map(|mut g| Summary::of(&mut g));
    let cap_violations = ctx.scrape().map(|s| s.get("critical_cap_violations"));
    Ok(Measurement {
        cpu,
        sections,
        gaps: Summary::of(&mut gaps),
        control,
        cap_violations,
        runtime,
    })
}

/// A thread pinned to `cpu` that records every gap longer than 1 ms in its
/// own progress until `stop`.
fn gap_recorder(
    name: &str,
    cpu: usize,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<Vec<u64>>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = pin_to(cpu);
            let mut gaps = Vec::new();
            let mut last = Instant::now();
            while !stop.load(Relaxed) {
                let now = Instant::now();
                let gap = now.duration_since(last).as_nanos() as u64;
                if gap > 1_000_000 {
                    gaps.push(gap);
                }
                last = now;
            }
            gaps
        })
}

fn print(o: &Opts, runs: &[Compared<Measurement>]) {
    let cap = o.cap_ms.unwrap_or(0) as f64;
    let bound_ms = cap + o.tick_ms;
    println!(
        "\nliar: critical sections of {} ms on CPU {}; competitor pinned there too; cap {} ms + tick {} ms = {bound_ms} ms; {} round(s)",
        o.critical_duration_ms,
        runs.first()
            .and_then(|c| c.rounds.first())
            .map_or(0, |r| r.result.cpu),
        cap,
        o.tick_ms,
        o.rounds.unwrap_or(0)
    );
    print!("{}", rounds::render(runs));
    for c in runs {
        if let Some(s) = c.sched_metrics() {
            let worst = c
                .get(LONGEST)
                .and_then(|h| h.value.as_ref())
                .map_or(0.0, |s| s.max);
            println!(
                "{}: longest delay of every round within cap + tick ({bound_ms} ms): {}",
                c.label,
                if worst <= bound_ms { "yes" } else { "NO" }
            );
            println!("{}: scheduler {}", c.label, s.brief());
        }
        if let Some(r) = c.rounds.last() {
            println!(
                "{}: runtime (last round) {}",
                c.label,
                r.result.runtime.brief()
            );
        }
    }
}

fn main() -> Result<()> {
    let mut o = Opts::parse();
    o.validate()?;
    harness::measure_and_compare(
        &o.run,
        &o,
        o.rounds.unwrap_or(1),
        |ctx| measure(&o, ctx),
        figures,
        |runs| print(&o, runs),
        |runs| {
            harness::median_bar_plot(
                &o.run,
                "liar-longest-delay",
                "liar: longest delay of the competitor (median of rounds)",
                "milliseconds",
                runs,
                LONGEST,
            )
        },
    )
}

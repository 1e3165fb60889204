// SPDX-License-Identifier: GPL-2.0-only
//! wakeup: how long a plain thread that wakes from a short sleep waits for
//! its CPU when CPU hogs hold every CPU. Sleeper threads (no runtime, not
//! Morpheus workers) sleep to an absolute deadline every `--sleep-us`
//! (clock_nanosleep with TIMER_ABSTIME on CLOCK_MONOTONIC) beside `--hogs`
//! CPU hog threads; each sample is the wake-up delay, the time the thread
//! runs again minus its deadline. Compare scheduler configurations with
//! `--sched default,observer,bpfland`: they run in alternating rounds, and
//! the report gives each figure's median and range over the rounds, and
//! its per-round ratio to the kernel default's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, Ctx, RunOpts};
use morpheus_bench::hogs::{Hogs, cpus};
use morpheus_bench::rounds::{self, Compared, Figures, Limit, names};
use morpheus_bench::sched::SchedConfig;
use morpheus_bench::stats::{Summary, cdf};
use morpheus_bench::svg::{self, Series};
use morpheus_common::clock::monotonic_ns;
use serde::{Deserialize, Serialize};

/// Wake-up delay of sleeping threads beside CPU hogs.
#[derive(Debug, Parser, Serialize)]
#[command(name = "wakeup")]
struct Opts {
    /// CPU hog threads, comma-separated for several measurements (each
    /// count is measured in every round; default: two per CPU).
    #[arg(long, value_delimiter = ',')]
    hogs: Vec<usize>,

    /// Sleeping threads (default: one per CPU).
    #[arg(long)]
    sleepers: Option<usize>,

    /// Sleep period in microseconds (the deadlines are this far apart).
    #[arg(long, default_value_t = 1000)]
    sleep_us: u64,

    /// Measurement window per hog count and round, seconds (default: 5, or
    /// 2 with --quick).
    #[arg(long)]
    duration: Option<f64>,

    /// Rounds: each runs every configuration once, in turn (default: 5, or
    /// 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,

    /// Redraw the plots (--plots, --tag) from a JSON file this program
    /// wrote, without measuring.
    #[arg(long, value_name = "JSON")]
    replot: Option<std::path::PathBuf>,

    #[command(flatten)]
    run: RunOpts,
}

impl Opts {
    fn validate(&mut self) -> Result<()> {
        if self.hogs.is_empty() {
            self.hogs = vec![2 * cpus()];
        }
        if let Some(h) = self.hogs.iter().find(|h| **h > 1024) {
            bail!("--hogs must be at most 1024 (got {h})");
        }
        let s = *self.sleepers.get_or_insert(cpus());
        if !(1..=256).contains(&s) {
            bail!("--sleepers must be between 1 and 256 (got {s})");
        }
        if !(50..=1_000_000).contains(&self.sleep_us) {
            bail!(
                "--sleep-us must be between 50 and 1000000 (got {})",
                self.sleep_us
            );
        }
        let d = *self.duration.get_or_insert(self.run.pick(2.0, 5.0));
        if !(d > 0.0 && d <= 3600.0) {
            bail!("--duration must be between 0 and 3600 seconds (got {d})");
        }
        let r = *self.rounds.get_or_insert(self.run.pick(1, 5));
        if !(1..=100).contains(&r) {
            bail!("--rounds must be between 1 and 100 (got {r})");
        }
        Ok(())
    }
}

/// One hog count's figures in one round.
#[derive(Debug, Serialize, Deserialize)]
struct Case {
    hogs: usize,
    sleepers: usize,
    sleep_us: u64,
    window_s: f64,
    /// Wake-up delays (ns), all sleepers.
    delay: Summary,
    /// (delay ns, fraction) points of the delays' CDF.
    delay_cdf: Vec<(u64, f64)>,
    /// Work units per second the hogs got done meanwhile.
    hog_units_per_s: f64,
}

/// One configuration's round: one case per hog count.
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    cases: Vec<Case>,
}

/// A headline figure's name for the hog count `hogs` (plain when the
/// program measures one count).
fn figure(name: &str, hogs: usize, several: bool) -> String {
    if several {
        format!("{name} ({hogs} hogs)")
    } else {
        name.to_string()
    }
}

fn figures(m: &Measurement) -> Figures {
    let several = m.cases.len() > 1;
    let mut f = Figures::new();
    for c in &m.cases {
        let ms = |ns: u64| ns as f64 / 1e6;
        f.push((figure(names::WAKE_P50, c.hogs, several), ms(c.delay.p50_ns)));
        f.push((figure(names::WAKE_P99, c.hogs, several), ms(c.delay.p99_ns)));
        f.push((
            figure(names::WAKE_P999, c.hogs, several),
            ms(c.delay.p999_ns),
        ));
    }
    f
}

/// Sleeps until the CLOCK_MONOTONIC time `deadline_ns`.
fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: clock_nanosleep reads the timespec; no remainder with
    // TIMER_ABSTIME. EINTR only ends this sleep early (the delay sample is
    // then small, never wrong by a missed deadline).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// A sleeper thread's loop until `stop`: the delay of every wake-up (ns).
/// A deadline that has already passed when the thread gets back to sleep
/// is skipped (the next one is a period from now), so one long delay is
/// one sample, not many.
fn sleeper(period_ns: u64, stop: &AtomicBool) -> Vec<u64> {
    let mut samples = Vec::with_capacity(1 << 14);
    let mut deadline = monotonic_ns() + period_ns;
    while !stop.load(Ordering::Relaxed) {
        sleep_until(deadline);
        let now = monotonic_ns();
        samples.push(now.saturating_sub(deadline));
        deadline = next_deadline(deadline, now, period_ns);
    }
    samples
}

/// The deadline after `deadline`, woken at `now`: one period later, or a
/// period from now if that has passed already.
fn next_deadline(deadline: u64, now: u64, period_ns: u64) -> u64 {
    let next = deadline + period_ns;
    if next <= now { now + period_ns } else { next }
}

/// One hog count: hogs first (so every CPU is busy), then the sleepers for
/// the window.
fn run_case(o: &Opts, hogs: usize) -> Result<Case> {
    let sleepers = o.sleepers.unwrap_or(1);
    let window = Duration::from_secs_f64(o.duration.unwrap_or(1.0));
    let hogs_started = Instant::now();
    let hog_threads = Hogs::start(hogs, None);
    std::thread::sleep(Duration::from_millis(100));
    let stop = Arc::new(AtomicBool::new(false));
    let period_ns = o.sleep_us * 1000;
    let threads: Vec<_> = (0..sleepers)
        .map(|i| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("sleeper-{i}"))
                .spawn(move || sleeper(period_ns, &stop))
        })
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    let mut samples: Vec<u64> = Vec::new();
    for t in threads {
        samples.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a sleeper thread panicked"))?,
        );
    }
    let hog_units: u64 = hog_threads.stop().iter().sum();
    let hog_s = hogs_started.elapsed().as_secs_f64();
    let delay = Summary::of(&mut samples);
    if delay.count == 0 {
        bail!("no sleeper woke up in {}s", window.as_secs_f64());
    }
    Ok(Case {
        hogs,
        sleepers,
        sleep_us: o.sleep_us,
        window_s: window.as_secs_f64(),
        delay_cdf: cdf(&samples, 200),
        delay,
        hog_units_per_s: hog_units as f64 / hog_s,
    })
}

fn measure(o: &Opts, _ctx: &Ctx) -> Result<Measurement> {
    let cases = o
        .hogs
        .iter()
        .map(|&h| run_case(o, h))
        .collect::<Result<_>>()?;
    Ok(Measurement { cases })
}

fn print(o: &Opts, runs: &[Compared<Measurement>]) {
    println!(
        "\nwakeup: {} sleeper thread(s) waking every {} us beside {:?} CPU hog(s), {}s window, {} round(s)",
        o.sleepers.unwrap_or(0),
        o.sleep_us,
        o.hogs,
        o.duration.unwrap_or(0.0),
        o.rounds.unwrap_or(0)
    );
    print!("{}", rounds::render(runs));
    if !runs.iter().any(|c| c.sched == Some(SchedConfig::Default)) {
        return;
    }
    let bpfland = runs.iter().find(|c| c.sched == Some(SchedConfig::Bpfland));
    let several = o.hogs.len() > 1;
    println!("scx_morpheus targets (issue 10; medians of per-round ratios to the kernel default):");
    for c in runs
        .iter()
        // The targets are scx_morpheus's; scx_bpfland is what it is compared with.
        .filter(|c| c.sched.is_some_and(SchedConfig::is_morpheus))
    {
        println!("  {}:", c.label);
        for &h in &o.hogs {
            let p50 = figure(names::WAKE_P50, h, several);
            let p99 = figure(names::WAKE_P99, h, several);
            println!("    {}", c.judge(&p50, Limit::AtMost(2.0)));
            println!("    {}", c.judge(&p99, Limit::AtMost(1.5)));
            if let Some(b) = bpfland {
                println!("    {}", c.judge_below(b, &p50));
                println!("    {}", c.judge_below(b, &p99));
            }
        }
    }
}

fn plots(o: &Opts, runs: &[Compared<Measurement>]) -> Result<()> {
    for (k, &h) in o.hogs.iter().enumerate() {
        let series: Vec<Series> = runs
            .iter()
            .map(|c| {
                let parts: Vec<(usize, &[(u64, f64)])> = c
                    .rounds
                    .iter()
                    .filter_map(|r| r.result.cases.get(k))
                    .map(|case| (case.delay.count, case.delay_cdf.as_slice()))
                    .collect();
                Series::pooled_ms(c.label.clone(), &parts)
            })
            .collect();
        let name = if o.hogs.len() > 1 {
            format!("wakeup-delay-tail-{h}hogs")
        } else {
            "wakeup-delay-tail".into()
        };
        let title = format!("wakeup: delay beside {h} CPU hogs (all rounds)");
        harness::plot(
            &o.run,
            &name,
            &svg::tail_chart(&title, "wake-up delay (ms, log scale)", &series),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleeper_records_one_sample_per_wakeup() {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || sleeper(1_000_000, &s));
        std::thread::sleep(Duration::from_millis(60));
        stop.store(true, Ordering::Relaxed);
        let samples = t.join().unwrap();
        // About 60 wake-ups of 1 ms; far fewer would mean the deadlines are
        // not absolute, more would mean it does not sleep.
        assert!(
            (5..=70).contains(&samples.len()),
            "{} samples",
            samples.len()
        );
    }

    #[test]
    fn a_missed_deadline_is_skipped_not_replayed() {
        // On time: the next deadline is one period on.
        assert_eq!(next_deadline(1_000, 1_100, 1_000), 2_000);
        // Woken 30 periods late: the next deadline is a period from now,
        // so the late wake-up is one sample, not 30.
        assert_eq!(next_deadline(1_000, 31_000, 1_000), 32_000);
        // Exactly at the next deadline counts as passed.
        assert_eq!(next_deadline(1_000, 2_000, 1_000), 3_000);
    }
}

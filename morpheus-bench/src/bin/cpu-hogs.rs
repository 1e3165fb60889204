// SPDX-License-Identifier: GPL-2.0-only
//! cpu-hogs: N threads doing CPU-bound work for a fixed time, then a report
//! of how much each got done. Used by the demo and as background load.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::hogs::Hogs;
use morpheus_bench::work::Spread;

/// Run CPU-bound threads and report their progress and fairness.
#[derive(Debug, Parser)]
#[command(name = "cpu-hogs")]
struct Opts {
    /// Number of threads (default: twice the CPUs, so tasks wait).
    #[arg(short = 'n', long)]
    threads: Option<usize>,

    /// How long to run, in seconds.
    #[arg(short, long, default_value_t = 5.0)]
    duration: f64,

    /// Print the result as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = opts.threads.unwrap_or(2 * cpus);
    if threads == 0 || threads > 4096 {
        bail!("--threads must be between 1 and 4096 (got {threads})");
    }
    if !(opts.duration > 0.0 && opts.duration <= 3600.0) {
        bail!(
            "--duration must be between 0 and 3600 seconds (got {})",
            opts.duration
        );
    }

    let started = Instant::now();
    let hogs = Hogs::start(threads, None);
    std::thread::sleep(Duration::from_secs_f64(opts.duration));
    let counts = hogs.stop();
    let wall = started.elapsed().as_secs_f64();
    let spread = Spread::of(&counts).expect("at least one thread");

    if opts.json {
        println!(
            "{{\"threads\":{threads},\"cpus\":{cpus},\"wall_s\":{wall:.3},\"units\":{},\"units_per_s\":{:.0},\"min\":{},\"max\":{},\"fairness\":{:.3}}}",
            spread.total,
            spread.total as f64 / wall,
            spread.min,
            spread.max,
            spread.fairness()
        );
    } else {
        println!(
            "cpu-hogs: {threads} threads on {cpus} CPUs for {wall:.2}s: {} work units ({:.0}/s), \
             per thread min {} max {} (fairness min/max {:.2})",
            spread.total,
            spread.total as f64 / wall,
            spread.min,
            spread.max,
            spread.fairness()
        );
    }
    Ok(())
}

// SPDX-License-Identifier: GPL-2.0-only
//! neutrality: a general scheduler benchmark that has nothing to do with
//! Morpheus (hackbench's message-passing groups, threads over Unix socket
//! pairs: each sender writes 100-byte messages to every receiver of its
//! group), run under each scheduler configuration; the throughput ratio
//! shows whether scx_morpheus costs ordinary workloads anything.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, ConfigRun, Ctx, RunOpts};
use morpheus_bench::report::Table;
use morpheus_bench::stats::{fmt_ratio, ratio};
use serde::{Deserialize, Serialize};

const MSG: usize = 100;

/// hackbench-style message passing under each scheduler configuration.
#[derive(Debug, Parser, Serialize)]
#[command(name = "neutrality")]
struct Opts {
    /// Groups (default: 10, or 2 with --quick).
    #[arg(long)]
    groups: Option<usize>,

    /// Senders and receivers per group (each).
    #[arg(long, default_value_t = 10)]
    fds: usize,

    /// Messages each sender sends to each receiver (default: 50, or 20
    /// with --quick).
    #[arg(long)]
    loops: Option<usize>,

    /// Repetitions; the median counts (default: 9, or 1 with --quick).
    #[arg(long)]
    repeat: Option<usize>,

    #[command(flatten)]
    run: RunOpts,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    times_s: Vec<f64>,
    median_s: f64,
    messages: u64,
    messages_per_s: f64,
}

impl Opts {
    fn validate(&mut self) -> Result<()> {
        let g = *self.groups.get_or_insert(self.run.pick(2, 10));
        let l = *self.loops.get_or_insert(self.run.pick(20, 50));
        let r = *self.repeat.get_or_insert(self.run.pick(1, 9));
        if !(1..=100).contains(&g) || !(1..=100).contains(&self.fds) {
            bail!("--groups and --fds must be between 1 and 100");
        }
        if !(1..=1_000_000).contains(&l) || !(1..=100).contains(&r) {
            bail!("--loops must be between 1 and 1000000, --repeat between 1 and 100");
        }
        Ok(())
    }
}

/// One hackbench run; returns its wall time in seconds.
fn once(groups: usize, fds: usize, loops: usize) -> Result<f64> {
    let barrier = Arc::new(Barrier::new(groups * fds * 2 + 1));
    let mut threads = Vec::new();
    for _ in 0..groups {
        let mut writers = Vec::new();
        for _ in 0..fds {
            let (mut rx, tx) = UnixStream::pair()?;
            writers.push(tx);
            let b = barrier.clone();
            threads.push(std::thread::spawn(move || -> std::io::Result<()> {
                let mut buf = [0u8; MSG];
                b.wait();
                for _ in 0..fds * loops {
                    rx.read_exact(&mut buf)?;
                }
                Ok(())
            }));
        }
        // The senders of a group share the write ends (no descriptor per
        // sender: the VM's limit is 1024); a stream write of 100 bytes is not
        // split, and receivers only count bytes anyway.
        let writers = Arc::new(writers);
        for _ in 0..fds {
            let outs = writers.clone();
            let b = barrier.clone();
            threads.push(std::thread::spawn(move || -> std::io::Result<()> {
                let buf = [0x5au8; MSG];
                b.wait();
                for _ in 0..loops {
                    for mut o in outs.iter() {
                        o.write_all(&buf)?;
                    }
                }
                Ok(())
            }));
        }
    }
    barrier.wait();
    let start = Instant::now();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a hackbench thread panicked"))??;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn measure(o: &Opts, _ctx: &Ctx) -> Result<Measurement> {
    let (g, l) = (o.groups.unwrap_or(1), o.loops.unwrap_or(1));
    let mut times_s = Vec::new();
    for _ in 0..o.repeat.unwrap_or(1) {
        times_s.push(once(g, o.fds, l)?);
    }
    let mut sorted = times_s.clone();
    sorted.sort_by(f64::total_cmp);
    let median_s = sorted[sorted.len() / 2];
    let messages = (g * o.fds * o.fds * l) as u64;
    Ok(Measurement {
        times_s,
        median_s,
        messages,
        messages_per_s: messages as f64 / median_s,
    })
}

fn print(o: &Opts, runs: &[ConfigRun<Measurement>]) {
    println!(
        "\nneutrality (hackbench, threads): {} groups x {} senders x {} receivers, {} loops, {} messages of {MSG} bytes, median of {}",
        o.groups.unwrap_or(0),
        o.fds,
        o.fds,
        o.loops.unwrap_or(0),
        runs.first().map_or(0, |r| r.result.messages),
        o.repeat.unwrap_or(0)
    );
    let base = runs.first().map_or(0.0, |r| r.result.messages_per_s);
    let mut t = Table::new(&[
        "scheduler",
        "median s",
        "all runs s",
        "messages/s",
        "vs first",
    ]);
    for run in runs {
        let m = &run.result;
        let all: Vec<String> = m.times_s.iter().map(|t| format!("{t:.3}")).collect();
        t.row(&[
            run.label.clone(),
            format!("{:.3}", m.median_s),
            all.join(" "),
            format!("{:.0}", m.messages_per_s),
            fmt_ratio(ratio(m.messages_per_s, base)),
        ]);
    }
    print!("{}", t.render());
    for run in runs.iter().skip(1) {
        let r = ratio(run.result.messages_per_s, base);
        println!(
            "target: {} within 5% of {}: {} ({})",
            run.label,
            runs[0].label,
            fmt_ratio(r),
            if r >= 0.95 {
                "met (no slowdown beyond 5%)"
            } else {
                "MISSED"
            }
        );
        if let Some(s) = &run.sched_metrics {
            println!("{}: scheduler {}", run.label, s.brief());
        }
    }
}

fn main() -> Result<()> {
    let mut o = Opts::parse();
    o.validate()?;
    harness::measure_and_report(
        &o.run,
        &o,
        |ctx| measure(&o, ctx),
        |runs| print(&o, runs),
        |runs| {
            harness::bar_plot(
                &o.run,
                "neutrality-throughput",
                "neutrality: hackbench messages per second",
                "messages per second",
                runs,
                |m| m.messages_per_s,
            )
        },
    )
}

// SPDX-License-Identifier: GPL-2.0-only
//! neutrality: a general scheduler benchmark that has nothing to do with
//! Morpheus (hackbench's message-passing groups, threads over Unix socket
//! pairs: each sender writes 100-byte messages to every receiver of its
//! group), run under each scheduler configuration in alternating rounds; the
//! median over rounds of the per-round throughput ratio shows whether
//! scx_morpheus costs ordinary workloads anything.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, Ctx, RunOpts};
use morpheus_bench::rounds::{self, Compared, Figures, Limit, names};
use morpheus_bench::sched::SchedConfig;
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

    /// Rounds: each runs hackbench once under every configuration, in
    /// turn; the report gives medians and ranges over the rounds (default:
    /// 9, or 1 with --quick).
    #[arg(long)]
    rounds: Option<usize>,

    #[command(flatten)]
    run: RunOpts,
}

/// One hackbench run (one configuration, one round).
#[derive(Debug, Serialize, Deserialize)]
struct Measurement {
    time_s: f64,
    messages: u64,
    messages_per_s: f64,
}

fn figures(m: &Measurement) -> Figures {
    vec![
        (names::MESSAGES_PER_S.into(), m.messages_per_s),
        ("time s".into(), m.time_s),
    ]
}

impl Opts {
    fn validate(&mut self) -> Result<()> {
        let g = *self.groups.get_or_insert(self.run.pick(2, 10));
        let l = *self.loops.get_or_insert(self.run.pick(20, 50));
        let r = *self.rounds.get_or_insert(self.run.pick(1, 9));
        if !(1..=100).contains(&g) || !(1..=100).contains(&self.fds) {
            bail!("--groups and --fds must be between 1 and 100");
        }
        if !(1..=1_000_000).contains(&l) || !(1..=100).contains(&r) {
            bail!("--loops must be between 1 and 1000000, --rounds between 1 and 100");
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
    let time_s = once(g, o.fds, l)?;
    let messages = (g * o.fds * o.fds * l) as u64;
    Ok(Measurement {
        time_s,
        messages,
        messages_per_s: messages as f64 / time_s,
    })
}

fn print(o: &Opts, runs: &[Compared<Measurement>]) {
    println!(
        "\nneutrality (hackbench, threads): {} groups x {} senders x {} receivers, {} loops, {} messages of {MSG} bytes, {} round(s)",
        o.groups.unwrap_or(0),
        o.fds,
        o.fds,
        o.loops.unwrap_or(0),
        runs.first()
            .and_then(|c| c.rounds.first())
            .map_or(0, |r| r.result.messages),
        o.rounds.unwrap_or(0)
    );
    print!("{}", rounds::render(runs));
    for c in runs {
        if c.sched != Some(SchedConfig::Default)
            && runs.iter().any(|d| d.sched == Some(SchedConfig::Default))
        {
            println!(
                "target: {}: {}",
                c.label,
                c.judge(names::MESSAGES_PER_S, Limit::AtLeast(0.95))
            );
        }
        if let Some(s) = c.sched_metrics() {
            println!("{}: scheduler {}", c.label, s.brief());
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
                "neutrality-throughput",
                "neutrality: hackbench messages per second (median of rounds)",
                "messages per second",
                runs,
                names::MESSAGES_PER_S,
            )
        },
    )
}

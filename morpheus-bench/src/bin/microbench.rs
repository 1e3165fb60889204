// SPDX-License-Identifier: GPL-2.0-only
//! microbench: the cost of a checkpoint and of a critical section, next to
//! Tokio baselines measured in the same run: nanoseconds per operation
//! (median of several timed runs) and, with `--callgrind`, exact
//! instructions per operation counted by valgrind's callgrind (these
//! machines have no hardware counters). Each case runs in a process of its
//! own. The criterion version of the same cases is `cargo bench -p
//! morpheus-bench`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;
use morpheus_bench::harness::{self, ConfigRun, Ctx, RunOpts};
use morpheus_bench::micro::{CASES, Case, REGISTERED, case};
use morpheus_bench::report::Table;
use serde::{Deserialize, Serialize};

/// Per-operation cost of checkpoints and critical sections.
#[derive(Debug, Parser, Serialize)]
#[command(name = "microbench")]
struct Opts {
    /// Cases to run, comma-separated (default: all; see --list).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,

    /// List the cases and exit.
    #[arg(long)]
    list: bool,

    /// Iterations per timed run (default: 2000000, or 100000 with --quick).
    #[arg(long)]
    iters: Option<u64>,

    /// Timed runs per case; the median counts (default: 7, or 3 with --quick).
    #[arg(long)]
    repeat: Option<usize>,

    /// Also count instructions under valgrind's callgrind.
    #[arg(long)]
    callgrind: bool,

    /// The valgrind binary.
    #[arg(long, default_value = "valgrind")]
    valgrind: PathBuf,

    /// Internal: run one case in this process and print its result.
    #[arg(long, hide = true)]
    run_case: Option<String>,

    #[command(flatten)]
    run: RunOpts,
}

#[derive(Debug, Serialize, Deserialize)]
struct CaseOut {
    ns_per_iter: Vec<f64>,
    registered: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct CaseResult {
    name: String,
    what: String,
    /// Median over the timed runs (`--repeat`).
    ns: f64,
    /// The fastest and slowest timed run: the range of `ns`.
    #[serde(default)]
    ns_min: f64,
    #[serde(default)]
    ns_max: f64,
    net_ns: f64,
    instr: Option<f64>,
    net_instr: Option<f64>,
    registered: bool,
}

fn child(
    o: &Opts,
    c: &Case,
    iters: u64,
    repeat: usize,
    valgrind_out: Option<&PathBuf>,
) -> Result<CaseOut> {
    let exe = std::env::current_exe()?;
    let mut cmd = match valgrind_out {
        Some(out) => {
            let mut v = Command::new(&o.valgrind);
            v.arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(format!("--toggle-collect={}", c.counted))
                .arg("-q")
                .arg(&exe);
            v
        }
        None => Command::new(&exe),
    };
    cmd.args([
        "--run-case",
        c.name,
        "--iters",
        &iters.to_string(),
        "--repeat",
        &repeat.to_string(),
    ]);
    for (k, v) in c.env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run the {} case", c.name))?;
    if !out.status.success() {
        bail!(
            "case {} failed ({}): {}",
            c.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("bad output from case {}: {text}", c.name))
}

/// Total instructions in a callgrind output file.
fn callgrind_total(path: &PathBuf) -> Result<u64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("no callgrind output {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("callgrind output has no totals line")
}

fn instructions(o: &Opts, c: &Case) -> Result<f64> {
    let n1 = o.run.pick(2_000, 20_000);
    let n2 = 2 * n1;
    let dir = std::env::temp_dir();
    let mut totals = Vec::new();
    for n in [n1, n2] {
        let out = dir.join(format!(
            "callgrind.mb.{}.{}.{n}",
            std::process::id(),
            c.name
        ));
        child(o, c, n, 1, Some(&out))?;
        totals.push(callgrind_total(&out)?);
        let _ = std::fs::remove_file(&out);
    }
    Ok((totals[1] as f64 - totals[0] as f64) / (n2 - n1) as f64)
}

fn measure(o: &Opts, _ctx: &Ctx) -> Result<Vec<CaseResult>> {
    let iters = o.iters.unwrap_or(1);
    let repeat = o.repeat.unwrap_or(1);
    let mut results: Vec<CaseResult> = Vec::new();
    for name in &o.cases {
        let c = case(name).expect("validated");
        eprintln!("   {} ...", c.name);
        let out = child(o, c, iters, repeat, None)?;
        let mut v = out.ns_per_iter.clone();
        v.sort_by(f64::total_cmp);
        let instr = if o.callgrind {
            Some(instructions(o, c)?)
        } else {
            None
        };
        results.push(CaseResult {
            name: c.name.into(),
            what: c.what.into(),
            ns: v[v.len() / 2],
            ns_min: v[0],
            ns_max: v[v.len() - 1],
            net_ns: 0.0,
            instr,
            net_instr: None,
            registered: out.registered,
        });
    }
    let base_of = |name: &str| {
        results
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.ns, r.instr))
    };
    let (sync_base, async_base) = (base_of("empty_loop"), base_of("async_loop"));
    for r in &mut results {
        // In-task checkpoints compare with the same loop without them.
        let base = match r.name.as_str() {
            "checkpoint_async" | "checkpoint_unregistered" => async_base.or(sync_base),
            "async_loop" => sync_base,
            _ => sync_base,
        };
        if let Some((ns, instr)) = base {
            r.net_ns = r.ns - ns;
            r.net_instr = r.instr.zip(instr).map(|(a, b)| a - b);
        }
    }
    Ok(results)
}

fn print(repeat: usize, runs: &[ConfigRun<Vec<CaseResult>>]) {
    for run in runs {
        println!(
            "\nmicrobench under {} (ns/op: median of {} timed runs; net = minus the empty loop; for checkpoint!() in a task, minus the async loop)",
            run.label, repeat
        );
        let mut t = Table::new(&[
            "case",
            "ns/op",
            "(min..max)",
            "net ns",
            "instr/op",
            "net instr",
            "kernel-registered",
        ]);
        for r in &run.result {
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            t.row(&[
                r.name.clone(),
                format!("{:.2}", r.ns),
                format!("({:.2}..{:.2})", r.ns_min, r.ns_max),
                format!("{:.2}", r.net_ns),
                f(r.instr),
                f(r.net_instr),
                if r.registered {
                    "yes".into()
                } else {
                    "no".to_string()
                },
            ]);
        }
        print!("{}", t.render());
        for r in &run.result {
            println!("  {:<24} {}", r.name, r.what);
        }
        let get = |n: &str| run.result.iter().find(|r| r.name == n);
        if let Some(c) = get("checkpoint_async") {
            let instr = c
                .net_instr
                .map_or("not counted".into(), |i| format!("{i:.1} instructions"));
            println!(
                "target checkpoint fast path <= 1 ns and <= 5 instructions: {:.2} ns net, {instr}",
                c.net_ns
            );
        }
        if let Some(c) = get("critical_section") {
            println!(
                "target critical section enter+exit <= 2 ns: {:.2} ns net",
                c.net_ns
            );
        }
    }
}

fn run_case(name: &str, iters: u64, repeat: usize) -> Result<()> {
    let c = case(name).with_context(|| format!("no case named {name}"))?;
    let ns_per_iter = (0..repeat.max(1))
        .map(|_| (c.run)(iters).as_nanos() as f64 / iters as f64)
        .collect();
    let out = CaseOut {
        ns_per_iter,
        registered: REGISTERED.load(std::sync::atomic::Ordering::Relaxed),
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn main() -> Result<()> {
    let mut o = Opts::parse();
    let iters = *o.iters.get_or_insert(o.run.pick(100_000, 2_000_000));
    let repeat = *o.repeat.get_or_insert(o.run.pick(3, 7));
    if !(1000..=1_000_000_000).contains(&iters) || !(1..=100).contains(&repeat) {
        bail!("--iters must be between 1000 and 1e9, --repeat between 1 and 100");
    }
    if let Some(name) = &o.run_case {
        return run_case(name, iters, repeat);
    }
    if o.list {
        for c in CASES {
            println!("{:<24} {}", c.name, c.what);
        }
        return Ok(());
    }
    if o.cases.is_empty() {
        o.cases = CASES.iter().map(|c| c.name.to_string()).collect();
    }
    if let Some(bad) = o.cases.iter().find(|n| case(n).is_none()) {
        bail!("no case named '{bad}' (see --list)");
    }
    if o.callgrind && Command::new(&o.valgrind).arg("--version").output().is_err() {
        bail!(
            "--callgrind needs valgrind ({}): apt-get install valgrind",
            o.valgrind.display()
        );
    }
    harness::measure_and_report(
        &o.run,
        &o,
        |ctx| measure(&o, ctx),
        |runs| print(repeat, runs),
        |_| Ok(()),
    )
}

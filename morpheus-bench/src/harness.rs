// SPDX-License-Identifier: GPL-2.0-only
//! Options every program shares, and running a measurement once per
//! scheduler configuration.
//!
//! With `--sched default,observer,bpfland` the program runs its measurement
//! once per configuration, each in a fresh child process (the same program
//! and arguments; environment variables tell it to measure once and write
//! its result to a file): runtime state such as a kernel registration never
//! carries over from one configuration to the next. The parent starts and
//! stops the scheduler (scx_morpheus or scx_bpfland) around each child and,
//! for scx_morpheus, records the scheduler's metrics over the child's run.
//! Without `--sched` the measurement runs once, in-process, under whatever
//! scheduler is running.
//!
//! Programs that compare configurations run them in rounds
//! ([`measure_and_compare`]): every round runs every configuration once, in
//! the same order (default, observer, bpfland, default, observer, ...), so
//! that background load drifting over time hits each alike; the report
//! gives medians and ranges over the rounds ([`crate::rounds`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rounds::{Compared, Figures};
use crate::sched::{self, Attach, Bpfland, Loader, SchedConfig, SchedMetrics};

const ENV_OUT: &str = "MORPHEUS_BENCH_CHILD_OUT";
const ENV_SCHED: &str = "MORPHEUS_BENCH_SCHED";
const ENV_METRICS: &str = "MORPHEUS_BENCH_METRICS";
const ENV_ROUND: &str = "MORPHEUS_BENCH_ROUND";

/// Options shared by every program.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct RunOpts {
    /// Short run (a few seconds) that proves the program works; for the
    /// test suite, not for figures.
    #[arg(long)]
    pub quick: bool,

    /// Write the raw data as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write SVG plots into DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,

    /// Prefix of the plot file names (e.g. host, vm-latest).
    #[arg(long, default_value = "run")]
    pub tag: String,

    /// Scheduler configurations to compare, comma-separated: default,
    /// observer, enforce, bpfland (scx_bpfland: see $MORPHEUS_BPFLAND).
    /// Needs sched_ext and root; each configuration runs in a fresh
    /// process. Without it: one run under the current scheduler.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub sched: Vec<SchedConfig>,

    /// The scx_morpheus loader binary (default: next to this program).
    #[arg(long, value_name = "PATH")]
    pub loader: Option<PathBuf>,

    /// Extra argument for scx_morpheus (repeatable), e.g.
    /// --loader-arg=--max-critical-ms=50.
    #[arg(long = "loader-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub loader_args: Vec<String>,

    /// Local port of scx_morpheus's metrics endpoint.
    #[arg(long, default_value_t = 9477)]
    pub metrics_port: u16,
}

impl RunOpts {
    /// Picks the quick or the full value of a setting.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// Writes the plot `svg` as `DIR/TAG-NAME.svg` when `--plots DIR` is given.
pub fn plot(opts: &RunOpts, name: &str, svg: &str) -> Result<()> {
    if let Some(dir) = &opts.plots {
        let path = crate::svg::write(dir, &format!("{}-{name}.svg", opts.tag), svg)?;
        eprintln!("plot written to {}", path.display());
    }
    Ok(())
}

/// Draws a bar chart with one bar per configuration (the median of its
/// headline `figure`) as the plot `name` (see [`plot`]).
pub fn median_bar_plot<T>(
    opts: &RunOpts,
    name: &str,
    title: &str,
    unit: &str,
    runs: &[Compared<T>],
    figure: &str,
) -> Result<()> {
    let bars: Vec<(String, f64)> = runs
        .iter()
        .map(|r| {
            let v = r.get(figure).and_then(|h| h.value.as_ref());
            (r.label.clone(), v.map_or(0.0, |s| s.median))
        })
        .collect();
    plot(opts, name, &crate::svg::bar_chart(title, unit, &bars))
}

/// Draws a bar chart with one bar per configuration (`value` of its
/// result) as the plot `name` (see [`plot`]).
pub fn bar_plot<T>(
    opts: &RunOpts,
    name: &str,
    title: &str,
    unit: &str,
    runs: &[ConfigRun<T>],
    value: impl Fn(&T) -> f64,
) -> Result<()> {
    let bars: Vec<(String, f64)> = runs
        .iter()
        .map(|r| (r.label.clone(), value(&r.result)))
        .collect();
    plot(opts, name, &crate::svg::bar_chart(title, unit, &bars))
}

/// Ends a program's run: the machine line, the program's tables (`print`),
/// its plots (`plots`) and, with `--json PATH`, the raw data (`options`
/// and the runs: [`ConfigRun`]s, or [`Compared`] rounds).
pub fn finish<O: Serialize, R: Serialize>(
    opts: &RunOpts,
    options: &O,
    runs: &[R],
    print: impl FnOnce(&[R]),
    plots: impl FnOnce(&[R]) -> Result<()>,
) -> Result<()> {
    println!("machine: {}", crate::report::Machine::detect().describe());
    print(runs);
    plots(runs)?;
    if let Some(path) = &opts.json {
        crate::report::save(path, options, &runs)?;
    }
    Ok(())
}

/// A whole program run: [`run_configs`] with `measure`, then [`finish`]
/// (in a configuration's child process: only the measurement).
pub fn measure_and_report<O, T>(
    opts: &RunOpts,
    options: &O,
    measure: impl Fn(&Ctx) -> Result<T>,
    print: impl FnOnce(&[ConfigRun<T>]),
    plots: impl FnOnce(&[ConfigRun<T>]) -> Result<()>,
) -> Result<()>
where
    O: Serialize,
    T: Serialize + DeserializeOwned,
{
    match run_configs(opts, measure)? {
        Some(runs) => finish(opts, options, &runs, print, plots),
        None => Ok(()),
    }
}

/// A program run in rounds: `rounds` times [`run_configs`] with `measure`
/// (the configurations in the same order every round), the rounds grouped
/// by configuration with their headline `figures` ([`Compared::build`]),
/// then [`finish`] (in a configuration's child process: only the
/// measurement).
pub fn measure_and_compare<O, T>(
    opts: &RunOpts,
    options: &O,
    rounds: usize,
    measure: impl Fn(&Ctx) -> Result<T>,
    figures: impl Fn(&T) -> Figures,
    print: impl FnOnce(&[Compared<T>]),
    plots: impl FnOnce(&[Compared<T>]) -> Result<()>,
) -> Result<()>
where
    O: Serialize,
    T: Serialize + DeserializeOwned,
{
    let mut all = Vec::new();
    for round in 0..rounds {
        match run_round(opts, (round, rounds), &measure)? {
            Some(runs) => all.push(runs),
            None => return Ok(()),
        }
    }
    let compared = Compared::build(all, figures);
    finish(opts, options, &compared, print, plots)
}

/// Reads the runs back from a JSON document written with `--json` (to
/// redraw its plots with `--replot`).
pub fn load_runs<R: DeserializeOwned>(path: &std::path::Path) -> Result<Vec<R>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    serde_json::from_value(doc["runs"].clone())
        .with_context(|| format!("{} has no runs of this program", path.display()))
}

/// What a measurement knows about the scheduler it runs under.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// The configuration (None: not chosen by us).
    pub sched: Option<SchedConfig>,
    /// scx_morpheus's metrics endpoint, when it runs.
    pub metrics: Option<SocketAddr>,
    /// The round (0-based) of a program run in rounds; 0 otherwise.
    pub round: usize,
}

impl Ctx {
    /// The scheduler's metrics now, if scx_morpheus runs (errors ignored:
    /// metrics are informative).
    pub fn scrape(&self) -> Option<SchedMetrics> {
        self.metrics.and_then(|a| sched::scrape(a).ok())
    }
}

/// One configuration's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigRun<T> {
    /// Human-readable configuration ("kernel default", "scx_morpheus", ...).
    pub label: String,
    /// The configuration, if chosen by `--sched`.
    pub sched: Option<SchedConfig>,
    /// The scheduler's counters over the whole run; `None` when the
    /// scheduler serves no metrics (the kernel default, scx_bpfland).
    pub sched_metrics: Option<SchedMetrics>,
    /// Seconds the sched_ext scheduler took to attach (BPF load and
    /// verification); `None` for the kernel default.
    pub attach_secs: Option<f64>,
    /// The measurement.
    pub result: T,
}

/// Runs `measure` once per configuration of `opts.sched` (or once, here,
/// without `--sched`). Returns `None` in a child process, which has written
/// its result for the parent and should exit successfully.
pub fn run_configs<T, F>(opts: &RunOpts, measure: F) -> Result<Option<Vec<ConfigRun<T>>>>
where
    T: Serialize + DeserializeOwned,
    F: Fn(&Ctx) -> Result<T>,
{
    run_round(opts, (0, 1), &measure)
}

/// One round (`round.0` of `round.1`) of [`run_configs`].
fn run_round<T, F>(
    opts: &RunOpts,
    round: (usize, usize),
    measure: &F,
) -> Result<Option<Vec<ConfigRun<T>>>>
where
    T: Serialize + DeserializeOwned,
    F: Fn(&Ctx) -> Result<T>,
{
    if let Ok(out) = std::env::var(ENV_OUT) {
        let ctx = Ctx {
            sched: std::env::var(ENV_SCHED).ok().and_then(|s| s.parse().ok()),
            metrics: std::env::var(ENV_METRICS).ok().and_then(|s| s.parse().ok()),
            round: std::env::var(ENV_ROUND)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        };
        let result = measure(&ctx)?;
        crate::report::write_json(out.as_ref(), &result)?;
        return Ok(None);
    }
    if opts.sched.is_empty() {
        let result = measure(&Ctx {
            round: round.0,
            ..Ctx::default()
        })?;
        let label = match sched::sched_ext_state().as_deref() {
            Some("enabled") => "sched_ext scheduler",
            _ => "kernel default",
        };
        return Ok(Some(vec![ConfigRun {
            label: label.into(),
            sched: None,
            sched_metrics: None,
            attach_secs: None,
            result,
        }]));
    }
    sched::require_sched_ext()?;
    let mut runs = Vec::new();
    for &config in &opts.sched {
        let of = if round.1 > 1 {
            format!(" (round {}/{})", round.0 + 1, round.1)
        } else {
            String::new()
        };
        eprintln!("== {}: {}{of}", crate::report::program(), config.label());
        runs.push(run_config(opts, config, round.0)?);
    }
    Ok(Some(runs))
}

/// Attaches `config`'s scheduler, runs the measurement child under it and
/// detaches it again.
fn run_config<T: DeserializeOwned>(
    opts: &RunOpts,
    config: SchedConfig,
    round: usize,
) -> Result<ConfigRun<T>> {
    let (result, sched_metrics, attach_secs) = match config.attach() {
        Attach::Nothing => (run_child(config, None, round)?, None, None),
        Attach::Bpfland => {
            let peer = Bpfland::start()?;
            eprintln!("   scx_bpfland attached in {:.1}s", peer.attach_secs);
            let attach = peer.attach_secs;
            let result = run_child(config, None, round);
            let report = peer.stop();
            let result = result.with_context(|| format!("scx_bpfland output:\n{report}"))?;
            (result, None, Some(attach))
        }
        Attach::Morpheus(mut args) => {
            args.extend(opts.loader_args.iter().cloned());
            let loader_bin = opts.loader.clone().unwrap_or_else(sched::default_loader);
            let addr: SocketAddr = ([127, 0, 0, 1], opts.metrics_port).into();
            let loader = Loader::start(&loader_bin, &args, addr)?;
            eprintln!(
                "   scx_morpheus attached in {:.1}s (args: {:?})",
                loader.attach_secs, args
            );
            let before = loader.scrape()?;
            let result = run_child(config, Some(addr), round);
            // The loader refreshes its metrics every 100 ms.
            std::thread::sleep(std::time::Duration::from_millis(300));
            let after = loader.scrape();
            let attach = loader.attach_secs;
            let stopping = std::time::Instant::now();
            let report = loader.stop()?;
            let result = result.with_context(|| format!("loader output:\n{report}"))?;
            let delta = after?.since(&before);
            eprintln!(
                "   scx_morpheus stopped in {:.1}s; scheduler over the run: {}",
                stopping.elapsed().as_secs_f64(),
                delta.brief()
            );
            (result, Some(delta), Some(attach))
        }
    };
    Ok(ConfigRun {
        label: config.label().into(),
        sched: Some(config),
        sched_metrics,
        attach_secs,
        result,
    })
}

fn run_child<T: DeserializeOwned>(
    config: SchedConfig,
    metrics: Option<SocketAddr>,
    round: usize,
) -> Result<T> {
    let out = std::env::temp_dir().join(format!(
        "morpheus-bench-{}-{}.json",
        std::process::id(),
        config.as_str()
    ));
    let _ = std::fs::remove_file(&out);
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(ENV_OUT, &out)
        .env(ENV_SCHED, config.as_str())
        .env(ENV_ROUND, round.to_string());
    if let Some(a) = metrics {
        cmd.env(ENV_METRICS, a.to_string());
    }
    let started = std::time::Instant::now();
    let status = cmd.status().context("cannot run the measurement process")?;
    if !status.success() {
        bail!("the {} measurement failed ({status})", config.label());
    }
    eprintln!(
        "   measurement process ({}) took {:.1}s",
        config.label(),
        started.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(&out)
        .with_context(|| format!("the measurement wrote no result to {}", out.display()))?;
    let _ = std::fs::remove_file(&out);
    Ok(serde_json::from_str(&text)?)
}

// SPDX-License-Identifier: GPL-2.0-only
//! scx_morpheus loader: opens, configures, loads and attaches the BPF
//! scheduler, serves its metrics, and reports why it exited.

mod bpf_intf;
mod bpf_skel;
mod stats;

use std::io::IsTerminal;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bpf_skel::*;
use clap::Parser;
use crossbeam::channel::RecvTimeoutError;
use libbpf_rs::OpenObject;
use log::{info, warn};
use scx_stats::prelude::*;
use scx_utils::libbpf_clap_opts::LibbpfOpts;
use scx_utils::{
    UserExitInfo, build_id, scx_ops_attach, scx_ops_load, scx_ops_open, try_set_rlimit_infinity,
    uei_exited, uei_report,
};

use stats::Metrics;

/// The name the scheduler is registered under (the kernel shows it with a
/// version suffix in /sys/kernel/sched_ext/root/ops).
pub const SCHEDULER_NAME: &str = "scx_morpheus";

const NSEC_PER_MSEC: u64 = 1_000_000;

/// scx_morpheus: a sched_ext scheduler that asks registered async-runtime
/// workers to yield at safe points when other tasks wait for their CPU.
///
/// Every task is scheduled by weighted virtual time on a shared queue (nice
/// levels honoured, idle CPUs used first, nothing starves). Stop it with
/// Ctrl-C or SIGTERM; the kernel then returns every task to its default
/// scheduler.
#[derive(Debug, Parser)]
#[command(name = "scx_morpheus", version, disable_version_flag = true)]
struct Opts {
    /// Scheduling slice in milliseconds (1..=100).
    #[arg(long, default_value_t = morpheus_common::DEFAULT_SLICE_MS, value_parser = clap::value_parser!(u64).range(1..=100))]
    slice_ms: u64,

    /// Exit debug dump buffer length (0 = kernel default).
    #[arg(long, default_value_t = 0)]
    exit_dump_len: u32,

    /// Print scheduler statistics every SECS seconds while running.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    stats: Option<f64>,

    /// Do not run a scheduler: attach to the running one and print its
    /// statistics every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    monitor: Option<f64>,

    /// Describe every metric and exit.
    #[arg(long)]
    help_stats: bool,

    /// Verbose output, including libbpf's.
    #[arg(short, long)]
    verbose: bool,

    /// Print the version and exit.
    #[arg(short = 'V', long)]
    version: bool,

    /// Test hook: make the BPF program call scx_bpf_error() MS milliseconds
    /// after attaching, to exercise the kernel's fallback and the exit report.
    #[arg(long, value_name = "MS", hide = true)]
    inject_error_after_ms: Option<u64>,

    #[clap(flatten, next_help_heading = "Libbpf Options")]
    libbpf: LibbpfOpts,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!(
            "interval {secs}s is out of range (0.1 to 3600 seconds)"
        ));
    }
    Ok(secs)
}

struct Scheduler<'a> {
    skel: BpfSkel<'a>,
    struct_ops: Option<libbpf_rs::Link>,
    opts: &'a Opts,
    stats_server: StatsServer<(), Metrics>,
}

impl<'a> Scheduler<'a> {
    fn init(opts: &'a Opts, open_object: &'a mut MaybeUninit<OpenObject>) -> Result<Self> {
        try_set_rlimit_infinity();
        info!(
            "{SCHEDULER_NAME} {} (ABI v{})",
            build_id::full_version(env!("CARGO_PKG_VERSION")),
            morpheus_common::ABI_VERSION
        );

        let mut skel_builder = BpfSkelBuilder::default();
        skel_builder.obj_builder.debug(opts.verbose);
        let open_opts = opts.libbpf.clone().into_bpf_open_opts();
        let mut skel = scx_ops_open!(skel_builder, open_object, morpheus_ops, open_opts)?;

        skel.struct_ops.morpheus_ops_mut().exit_dump_len = opts.exit_dump_len;
        let rodata = skel.maps.rodata_data.as_mut().unwrap();
        rodata.slice_ns = opts.slice_ms * NSEC_PER_MSEC;

        let mut skel = scx_ops_load!(skel, morpheus_ops, uei)?;
        let struct_ops = Some(scx_ops_attach!(skel, morpheus_ops)?);
        let stats_server = StatsServer::new(stats::server_data()).launch()?;
        info!("{SCHEDULER_NAME} attached (slice {} ms)", opts.slice_ms);

        Ok(Self {
            skel,
            struct_ops,
            opts,
            stats_server,
        })
    }

    fn metrics(&self) -> Metrics {
        let bss = self.skel.maps.bss_data.as_ref().unwrap();
        Metrics {
            nr_direct_dispatches: bss.nr_direct_dispatches,
            nr_shared_enqueues: bss.nr_shared_enqueues,
            nr_shared_dispatches: bss.nr_shared_dispatches,
            nr_idle_kicks: bss.nr_idle_kicks,
            nr_ticks: bss.nr_ticks,
            nr_queued_max: bss.nr_queued_max,
            slice_us: self.opts.slice_ms * 1000,
        }
    }

    fn run(&mut self, shutdown: Arc<AtomicBool>) -> Result<UserExitInfo> {
        let (res_ch, req_ch) = self.stats_server.channels();
        let mut inject_at = self
            .opts
            .inject_error_after_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));

        while !shutdown.load(Ordering::Relaxed) && !uei_exited!(&self.skel, uei) {
            if inject_at.is_some_and(|at| Instant::now() >= at) {
                inject_at = None;
                warn!("test hook: injecting a BPF error");
                self.skel.maps.bss_data.as_mut().unwrap().inject_error = 1;
            }
            match req_ch.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => res_ch.send(self.metrics())?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(e) => Err(e)?,
            }
        }

        let summary = self.metrics();
        let _ = self.struct_ops.take();
        info!("{SCHEDULER_NAME} detached; totals since attach:");
        summary.format(&mut std::io::stderr())?;
        uei_report!(&self.skel, uei)
    }
}

fn init_logging(verbose: bool) -> Result<()> {
    let level = if verbose {
        simplelog::LevelFilter::Debug
    } else {
        simplelog::LevelFilter::Info
    };
    let mut cfg = simplelog::ConfigBuilder::new();
    cfg.set_time_level(simplelog::LevelFilter::Error)
        .set_location_level(simplelog::LevelFilter::Off)
        .set_target_level(simplelog::LevelFilter::Off)
        .set_thread_level(simplelog::LevelFilter::Off);
    simplelog::TermLogger::init(
        level,
        cfg.build(),
        simplelog::TerminalMode::Stderr,
        if std::io::stderr().is_terminal() {
            simplelog::ColorChoice::Auto
        } else {
            simplelog::ColorChoice::Never
        },
    )?;

    // libbpf's warnings explain failed loads; keep them even when not verbose.
    if !verbose {
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, |level, msg| {
            if level == libbpf_rs::PrintLevel::Warn {
                eprint!("libbpf: {msg}");
            }
        })));
    }
    Ok(())
}

fn main() -> Result<()> {
    let opts = Opts::parse();

    if opts.version {
        println!(
            "{SCHEDULER_NAME} {} (ABI v{})",
            build_id::full_version(env!("CARGO_PKG_VERSION")),
            morpheus_common::ABI_VERSION
        );
        return Ok(());
    }
    if opts.help_stats {
        stats::server_data().describe_meta(&mut std::io::stdout(), None)?;
        return Ok(());
    }
    init_logging(opts.verbose)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let shutdown_clone = shutdown.clone();
    ctrlc::set_handler(move || shutdown_clone.store(true, Ordering::Relaxed))
        .context("cannot install the SIGINT/SIGTERM handler")?;

    if let Some(intv) = opts.monitor.or(opts.stats) {
        let shutdown_copy = shutdown.clone();
        let jh = std::thread::spawn(move || {
            if let Err(e) = stats::monitor(Duration::from_secs_f64(intv), shutdown_copy) {
                warn!("stats monitor stopped: {e:#}");
            }
        });
        if opts.monitor.is_some() {
            let _ = jh.join();
            return Ok(());
        }
    }

    if !std::path::Path::new("/sys/kernel/sched_ext").exists() {
        bail!(
            "this kernel has no sched_ext (/sys/kernel/sched_ext is missing): boot a kernel \
             built with CONFIG_SCHED_CLASS_EXT=y, or run under `./morpheus-dev vm -- ...`"
        );
    }

    let mut open_object = MaybeUninit::uninit();
    loop {
        let mut sched = Scheduler::init(&opts, &mut open_object)?;
        if !sched.run(shutdown.clone())?.should_restart() {
            break;
        }
        info!("the kernel asked for a restart; reattaching");
    }
    Ok(())
}

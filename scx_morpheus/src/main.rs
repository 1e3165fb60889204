// SPDX-License-Identifier: GPL-2.0-only
//! scx_morpheus loader: validates its options, opens, configures, loads and
//! attaches the BPF scheduler, serves worker registrations and metrics, and
//! reports why it exited.

mod bpf_intf;
mod bpf_skel;
mod caps;
mod histogram;
mod leases;
mod lines;
mod metrics_http;
mod opts;
mod peer;
mod registry;
mod scb_maps;
mod server;
mod stats;

use std::cell::RefCell;
use std::io::{IsTerminal, Write as _};
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bpf_skel::*;
use clap::Parser;
use libbpf_rs::{MapHandle, OpenObject, RingBufferBuilder};
use log::{info, warn};
use morpheus_common::{ABI_VERSION, Event, EventKind, WorkerState};
use scx_stats::prelude::*;
use scx_utils::{
    UserExitInfo, build_id, compat, scx_ops_attach, scx_ops_load, scx_ops_open,
    try_set_rlimit_infinity, uei_exited, uei_report,
};

use opts::{Config, Opts};
use registry::Limits;
use server::{Server, ServerConfig};
use stats::Metrics;

/// How often the event ring is drained (BPF never wakes the loader).
const EVENT_DRAIN: Duration =
    Duration::from_millis(bpf_intf::morpheus_sched_consts_MORPHEUS_EVENT_DRAIN_MS as u64);

/// The name the scheduler is registered under (the kernel shows it with a
/// version suffix in /sys/kernel/sched_ext/root/ops).
pub const SCHEDULER_NAME: &str = "scx_morpheus";

struct Scheduler<'a> {
    skel: BpfSkel<'a>,
    struct_ops: Option<libbpf_rs::Link>,
    cfg: &'a Config,
    server: Option<Server>,
    stats_server: StatsServer<(), Metrics>,
    metrics: metrics_http::SharedMetrics,
}

impl<'a> Scheduler<'a> {
    fn init(
        cfg: &'a Config,
        open_object: &'a mut MaybeUninit<OpenObject>,
        metrics: metrics_http::SharedMetrics,
    ) -> Result<Self> {
        try_set_rlimit_infinity();
        info!(
            "{SCHEDULER_NAME} {} (ABI v{ABI_VERSION}), {} mode, escalation {}",
            build_id::full_version(env!("CARGO_PKG_VERSION")),
            if cfg.enforce { "enforce" } else { "observer" },
            cfg.escalation,
        );

        let mut skel_builder = BpfSkelBuilder::default();
        skel_builder.obj_builder.debug(cfg.verbose);
        let open_opts = cfg.libbpf.clone().into_bpf_open_opts();
        let mut skel = scx_ops_open!(skel_builder, open_object, morpheus_ops, open_opts)?;

        skel.struct_ops.morpheus_ops_mut().exit_dump_len = cfg.exit_dump_len;
        if cfg.partial {
            skel.struct_ops.morpheus_ops_mut().flags |= *compat::SCX_OPS_SWITCH_PARTIAL;
        }
        let rodata = skel.maps.rodata_data.as_mut().unwrap();
        rodata.slice_ns = cfg.slice_ns;
        rodata.slice_min_ns = cfg.slice_min_ns;
        rodata.slice_max_ns = cfg.slice_max_ns;
        rodata.grace_ns = cfg.grace_ns;
        rodata.max_critical_ns = cfg.max_critical_ns;
        rodata.max_overrun_ns = cfg.max_overrun_ns;
        rodata.yield_window_ns = cfg.yield_window_ns;
        rodata.wakeup_granularity_ns = cfg.wakeup_granularity_ns;
        rodata.throttle_ns = cfg.throttle_ns;
        // Re-read at every attach: a CPU hotplug restarts the scheduler.
        rodata.nr_cpus = opts::online_cpus();
        rodata.enforce = cfg.enforce;
        rodata.escalation_policy = cfg.escalation.as_u32();

        let catch_up = cfg.catch_up && catch_up_supported();
        skel.progs.morpheus_epoll_ready.set_autoload(catch_up);

        let mut skel = scx_ops_load!(skel, morpheus_ops, uei)?;
        let struct_ops = Some(scx_ops_attach!(skel, morpheus_ops)?);
        let stats_server = StatsServer::new(stats::server_data()).launch()?;

        let kernel = scb_maps::Kernel::new(
            MapHandle::try_from(&skel.maps.scb_maps)?,
            MapHandle::try_from(&skel.maps.worker_ctxs)?,
            MapHandle::try_from(&skel.maps.leases)?,
            scb_flags(cfg),
        )?;
        let server = Server::start(
            ServerConfig {
                path: cfg.socket.clone(),
                mode: cfg.socket_mode,
                group: cfg.socket_group,
                grace_ns: cfg.grace_ns,
                limits: Limits {
                    max_workers_per_user: cfg.max_workers_per_user,
                    ..Default::default()
                },
            },
            kernel,
        )?;
        info!(
            "{SCHEDULER_NAME} attached: slice {}..{} us, grace {} ms, yield window {} us, wake-up granularity {} us, caps critical {} ms / overrun {} ms{}",
            cfg.slice_min_ns / 1_000,
            cfg.slice_max_ns / 1_000,
            cfg.grace_ns / 1_000_000,
            cfg.yield_window_ns / 1_000,
            cfg.wakeup_granularity_ns / 1_000,
            cfg.max_critical_ns / 1_000_000,
            cfg.max_overrun_ns / 1_000_000,
            if cfg.partial { ", partial" } else { "" },
        );
        if !catch_up {
            info!(
                "catch-ups off{}",
                if cfg.catch_up {
                    ": this kernel has no ep_poll_callback to trace"
                } else {
                    " (--no-catch-up)"
                }
            );
        }

        Ok(Self {
            skel,
            struct_ops,
            cfg,
            server: Some(server),
            stats_server,
            metrics,
        })
    }

    fn collect_metrics(&self) -> Metrics {
        let bss = self.skel.maps.bss_data.as_ref().unwrap();
        let (counts, counters) = match &self.server {
            Some(s) => {
                let st = s.state();
                (st.counts(), st.counters)
            }
            None => Default::default(),
        };
        let policy = |p: u32| bss.escalations[p as usize];
        Metrics {
            nr_direct_dispatches: bss.nr_direct_dispatches,
            nr_kthread_dispatches: bss.nr_kthread_dispatches,
            nr_shared_enqueues: bss.nr_shared_enqueues,
            nr_shared_dispatches: bss.nr_shared_dispatches,
            nr_local_enqueues: bss.nr_local_enqueues,
            nr_local_dispatches: bss.nr_local_dispatches,
            nr_steals: bss.nr_steals,
            nr_idle_kicks: bss.nr_idle_kicks,
            nr_wakeup_preempts: bss.nr_wakeup_preempts,
            nr_wakeup_hints: bss.nr_wakeup_hints,
            nr_window_preempts: bss.nr_window_preempts,
            nr_slice_preempts: bss.nr_slice_preempts,
            nr_timer_kicks: bss.nr_timer_kicks,
            nr_ticks: bss.nr_ticks,
            nr_queued_max: bss.nr_queued_max,
            slice_us: bss.cur_slice_ns / 1000,
            pressure: bss.cur_pressure,
            processes: counts.processes,
            workers: counts.workers,
            workers_registered: counts.registered,
            workers_running: counts.running,
            workers_dead: counts.dead,
            registrations: counters.registrations,
            registrations_refused: counters.refusals,
            bad_messages: counters.bad_messages,
            workers_reaped: counters.reaped,
            workers_started: bss.workers_started,
            workers_exited: bss.workers_exited,
            hints_sent: bss.hints_sent,
            hints_answered: bss.hints_answered,
            hints_answered_in_grace: bss.hints_answered_in_grace,
            hints_expired: bss.hints_expired,
            hints_dropped: bss.hints_dropped + counters.hints_dropped,
            catch_ups: bss.catch_ups,
            catch_ups_deferred: bss.catch_ups_deferred,
            hint_response_hist: bss.hint_response_hist.to_vec(),
            hint_delay_hist: bss.hint_delay_hist.to_vec(),
            timer_late_hist: bss.timer_late_hist.to_vec(),
            catch_up_delay_hist: bss.catch_up_delay_hist.to_vec(),
            escalations_kick: policy(morpheus_common::abi::MORPHEUS_ESCALATION_THREAD_KICK),
            escalations_throttle: policy(morpheus_common::abi::MORPHEUS_ESCALATION_CGROUP_THROTTLE),
            throttles_active: bss.throttles_active,
            throttles: bss.throttles,
            critical_cap_violations: bss.critical_cap_violations,
            overrun_cap_violations: bss.overrun_cap_violations,
            ring_drops: bss.ring_drops,
        }
    }

    fn run(&mut self, shutdown: Arc<AtomicBool>) -> Result<UserExitInfo> {
        let (res_ch, req_ch) = self.stats_server.channels();
        let mut inject_at = self
            .cfg
            .inject_error_after_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));

        // Events from the ring buffer: reclaim exited workers, and print
        // them with --debug. BPF never wakes us (a wakeup per hint would
        // cost a context switch per hint): the ring is drained every
        // MORPHEUS_EVENT_DRAIN_MS.
        let events_map = MapHandle::try_from(&self.skel.maps.events)?;
        let pending: Rc<RefCell<Vec<Event>>> = Rc::default();
        let mut builder = RingBufferBuilder::new();
        {
            let pending = pending.clone();
            builder.add(&events_map, move |data: &[u8]| {
                if data.len() >= size_of::<Event>() {
                    // SAFETY: the BPF program writes whole `struct morpheus_event` records.
                    pending
                        .borrow_mut()
                        .push(unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) });
                }
                0
            })?;
        }
        let ring = builder.build()?;
        let mut last_sweep = Instant::now();

        while !shutdown.load(Ordering::Relaxed) && !uei_exited!(&self.skel, uei) {
            if inject_at.is_some_and(|at| Instant::now() >= at) {
                inject_at = None;
                warn!("test hook: injecting a BPF error");
                self.skel.maps.bss_data.as_mut().unwrap().inject_error = 1;
            }
            std::thread::sleep(EVENT_DRAIN);
            // EINTR on a signal is not an error.
            let _ = ring.consume();
            for ev in pending.borrow_mut().drain(..) {
                self.handle_event(&ev);
            }
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                if let Some(s) = &self.server {
                    s.state().sweep();
                }
            }
            let m = self.collect_metrics();
            while req_ch.try_recv().is_ok() {
                res_ch.send(m.clone())?;
            }
            self.metrics.publish(m);
        }

        let summary = self.collect_metrics();
        // Clients see the scheduler go away before it detaches.
        drop(self.server.take());
        let _ = self.struct_ops.take();
        info!("{SCHEDULER_NAME} detached; totals since attach:");
        summary.format(&mut std::io::stderr())?;
        uei_report!(&self.skel, uei)
    }

    fn handle_event(&self, ev: &Event) {
        let kind = EventKind::try_from(ev.kind);
        if kind == Ok(EventKind::WorkerState)
            && ev.value == WorkerState::Dead as u64
            && let Some(s) = &self.server
        {
            s.state().reap(ev.tgid, ev.slot, ev.tid);
        }
        if self.cfg.debug {
            let what = kind.map(|k| k.as_str()).unwrap_or("unknown");
            println!(
                "event {what:<12} pid {:>7} tid {:>7} slot {:>3} seq {:>6} value {}",
                ev.tgid, ev.tid, ev.slot, ev.hint_seq, ev.value
            );
        }
    }
}

/// The `MORPHEUS_SCBK_*` flags every worker's SCB starts with.
/// Whether the kernel has the epoll callback the catch-ups trace (every
/// kernel with sched_ext does; checked so that one without it still runs
/// the scheduler, without catch-ups).
fn catch_up_supported() -> bool {
    compat::ksym_exists("ep_poll_callback").unwrap_or(false)
}

fn scb_flags(cfg: &Config) -> u32 {
    let mut flags = 0;
    if cfg.enforce {
        flags |= morpheus_common::SCBK_ENFORCING;
    }
    if cfg.partial {
        // Workers switch themselves to SCHED_EXT: see MORPHEUS_SCBK_PARTIAL.
        flags |= morpheus_common::SCBK_PARTIAL;
    }
    flags
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

/// `r`, except that stdout's reader having gone (`--help-stats | head`) is
/// not an error: the output was wanted only that far.
fn reader_gone_is_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn main() -> Result<()> {
    let opts = Opts::parse();

    if opts.version {
        let version = build_id::full_version(env!("CARGO_PKG_VERSION"));
        let r = writeln!(
            std::io::stdout(),
            "{SCHEDULER_NAME} {version} (ABI v{ABI_VERSION})"
        );
        return reader_gone_is_ok(r.map_err(Into::into));
    }
    if opts.help_stats {
        return reader_gone_is_ok(stats::server_data().describe_meta(&mut std::io::stdout(), None));
    }
    // Every value is checked before anything is loaded.
    let cfg = opts.validate()?;
    init_logging(cfg.verbose)?;

    let shutdown = Arc::new(AtomicBool::new(false));
    let shutdown_clone = shutdown.clone();
    ctrlc::set_handler(move || shutdown_clone.store(true, Ordering::Relaxed))
        .context("cannot install the SIGINT/SIGTERM handler")?;

    if let Some(intv) = cfg.monitor.or(cfg.stats) {
        let shutdown_copy = shutdown.clone();
        let jh = std::thread::spawn(move || {
            if let Err(e) = stats::monitor(Duration::from_secs_f64(intv), shutdown_copy) {
                warn!("stats monitor stopped: {e:#}");
            }
        });
        if cfg.monitor.is_some() {
            let _ = jh.join();
            return Ok(());
        }
    }

    // Before anything is loaded: a missing privilege is named, not an EPERM.
    caps::check()?;

    if !std::path::Path::new("/sys/kernel/sched_ext").exists() {
        bail!(
            "this kernel has no sched_ext (/sys/kernel/sched_ext is missing): boot a kernel \
             built with CONFIG_SCHED_CLASS_EXT=y, or run under `./morpheus-dev vm -- ...`"
        );
    }

    let metrics = metrics_http::SharedMetrics::default();
    if let Some(addr) = cfg.metrics_addr {
        metrics_http::serve(addr, metrics.clone())?;
    }

    let mut open_object = MaybeUninit::uninit();
    loop {
        let mut sched = Scheduler::init(&cfg, &mut open_object, metrics.clone())?;
        if !sched.run(shutdown.clone())?.should_restart() {
            break;
        }
        info!("the kernel asked for a restart; reattaching");
    }
    Ok(())
}

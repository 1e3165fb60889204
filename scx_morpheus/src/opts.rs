// SPDX-License-Identifier: GPL-2.0-only
//! Command-line options and their validation. Every value is checked here,
//! before anything is loaded, and turned into a [`Config`] in nanoseconds.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_common::{
    DEFAULT_GRACE_MS, DEFAULT_MAX_CRITICAL_MS, DEFAULT_SLICE_MAX_MS, DEFAULT_SLICE_MIN_MS,
    DEFAULT_SLICE_MS, DEFAULT_SOCKET_PATH, EscalationPolicy, WATCHDOG_TIMEOUT_MS,
};
use scx_utils::libbpf_clap_opts::LibbpfOpts;

use crate::bpf_intf;

const NSEC_PER_MSEC: u64 = 1_000_000;
/// Longest any cap may be: well inside the 5 s sched_ext watchdog.
const MAX_CAP_MS: u64 = WATCHDOG_TIMEOUT_MS as u64 / 2;

/// scx_morpheus: a sched_ext scheduler that asks registered async-runtime
/// workers to yield at safe points when other tasks wait for their CPU.
///
/// Every task is scheduled by weighted virtual time on a shared queue (nice
/// levels honoured, idle CPUs used first, nothing starves). Runtimes register
/// worker threads on the --socket. Observer mode (the default) sends hints
/// and records metrics; --enforce also escalates escapable workers that
/// ignore a hint past the grace period. Stop it with Ctrl-C or SIGTERM: the
/// kernel then returns every task to its default scheduler.
#[derive(Debug, Parser)]
#[command(name = "scx_morpheus", version, disable_version_flag = true)]
pub struct Opts {
    /// Slice in milliseconds at one waiting task per CPU; it doubles when
    /// nobody waits and shrinks as the queue grows, within
    /// --slice-min-ms..--slice-max-ms.
    #[arg(long, default_value_t = DEFAULT_SLICE_MS, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub slice_ms: u64,

    /// Lower bound of the adaptive slice, milliseconds.
    #[arg(long, default_value_t = DEFAULT_SLICE_MIN_MS, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub slice_min_ms: u64,

    /// Upper bound of the adaptive slice, milliseconds.
    #[arg(long, default_value_t = DEFAULT_SLICE_MAX_MS, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub slice_max_ms: u64,

    /// Time a hinted worker has to reach a checkpoint, milliseconds.
    #[arg(long, default_value_t = DEFAULT_GRACE_MS, value_parser = clap::value_parser!(u64).range(1..=MAX_CAP_MS))]
    pub grace_ms: u64,

    /// Escalate escapable workers that ignore a hint past the grace period
    /// (default: observer mode, hints and metrics only).
    #[arg(long)]
    pub enforce: bool,

    /// What --enforce does to an offender: none, thread_kick, cgroup_throttle
    /// or hybrid (kick, then throttle repeat offenders).
    #[arg(long, default_value = "thread_kick", value_parser = parse_policy)]
    pub escalation: EscalationPolicy,

    /// Longest a critical section may keep others waiting, milliseconds;
    /// then the worker is preempted like any task and a violation counted.
    #[arg(long, default_value_t = DEFAULT_MAX_CRITICAL_MS, value_parser = clap::value_parser!(u64).range(1..=MAX_CAP_MS))]
    pub max_critical_ms: u64,

    /// Longest a worker outside a critical section may run past its slice
    /// while others wait (observer mode, non-escapable workers, workers that
    /// never checkpoint), milliseconds. At least --grace-ms.
    #[arg(long, default_value_t = bpf_intf::morpheus_sched_consts_MORPHEUS_DEFAULT_MAX_OVERRUN_MS as u64,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CAP_MS))]
    pub max_overrun_ms: u64,

    /// When a woken task is entitled to the CPU a worker holds (outside a
    /// critical section), the worker is hinted and has this long to yield
    /// at a checkpoint before it is preempted, microseconds.
    #[arg(long, default_value_t = bpf_intf::morpheus_sched_consts_MORPHEUS_DEFAULT_YIELD_WINDOW_US as u64,
          value_parser = clap::value_parser!(u64).range(10..=100_000))]
    pub yield_window_us: u64,

    /// Penalty window of a cgroup_throttle escalation, milliseconds.
    #[arg(long, default_value_t = bpf_intf::morpheus_sched_consts_MORPHEUS_DEFAULT_THROTTLE_MS as u64,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub throttle_ms: u64,

    /// Only schedule SCHED_EXT tasks (registered workers switch themselves
    /// to it); other tasks stay on the default scheduler. Safer, but the
    /// scheduler then sees only part of the run queue, so hints react to
    /// less.
    #[arg(long)]
    pub partial: bool,

    /// Path of the registration socket.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    pub socket: PathBuf,

    /// Group that owns the socket: its members may register workers.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Permission bits of the socket, octal (who may register).
    #[arg(long, default_value = "660", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Serve OpenMetrics text on http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Print scheduler statistics every SECS seconds while running.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub stats: Option<f64>,

    /// Do not run a scheduler: attach to the running one and print its
    /// statistics every SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub monitor: Option<f64>,

    /// Describe every metric and exit.
    #[arg(long)]
    pub help_stats: bool,

    /// Exit debug dump buffer length (0 = kernel default).
    #[arg(long, default_value_t = 0)]
    pub exit_dump_len: u32,

    /// Print every hint event (hint, answered, expired, escalated, ...).
    #[arg(short, long)]
    pub debug: bool,

    /// Verbose output, including libbpf's.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print the version and exit.
    #[arg(short = 'V', long)]
    pub version: bool,

    /// Test hook: make the BPF program call scx_bpf_error() MS milliseconds
    /// after attaching, to exercise the kernel's fallback and the exit report.
    #[arg(long, value_name = "MS", hide = true)]
    pub inject_error_after_ms: Option<u64>,

    #[clap(flatten, next_help_heading = "Libbpf Options")]
    pub libbpf: LibbpfOpts,
}

/// Validated settings, in the units the BPF program uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub slice_ns: u64,
    pub slice_min_ns: u64,
    pub slice_max_ns: u64,
    pub grace_ns: u64,
    pub max_critical_ns: u64,
    pub max_overrun_ns: u64,
    pub yield_window_ns: u64,
    pub throttle_ns: u64,
    pub enforce: bool,
    pub escalation: EscalationPolicy,
    pub partial: bool,
    pub socket: PathBuf,
    pub socket_group: Option<u32>,
    pub socket_mode: u32,
    pub metrics_addr: Option<SocketAddr>,
    pub stats: Option<f64>,
    pub monitor: Option<f64>,
    pub exit_dump_len: u32,
    pub debug: bool,
    pub verbose: bool,
    pub inject_error_after_ms: Option<u64>,
    pub libbpf: LibbpfOpts,
}

fn parse_policy(s: &str) -> Result<EscalationPolicy, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("'{s}' is not an octal mode such as 660"))?;
    if mode > 0o777 {
        return Err(format!("mode {s} has bits beyond 777"));
    }
    Ok(mode)
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

/// Number of online CPUs, from sysfs ("0-3,6" style ranges).
pub fn online_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| count_cpu_list(s.trim()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
}

fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

fn group_id(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let cname = std::ffi::CString::new(name)?;
    // SAFETY: getgrnam returns a pointer into static storage or NULL.
    let gr = unsafe { libc::getgrnam(cname.as_ptr()) };
    if gr.is_null() {
        bail!("--socket-group: no group named '{name}' (create it with groupadd, or give a gid)");
    }
    // SAFETY: non-null result of getgrnam.
    Ok(unsafe { (*gr).gr_gid })
}

impl Opts {
    /// Checks every relation between options; errors say what to change.
    pub fn validate(self) -> Result<Config> {
        if self.slice_min_ms > self.slice_max_ms {
            bail!(
                "--slice-min-ms ({}) must not exceed --slice-max-ms ({})",
                self.slice_min_ms,
                self.slice_max_ms
            );
        }
        if !(self.slice_min_ms..=self.slice_max_ms).contains(&self.slice_ms) {
            bail!(
                "--slice-ms ({}) must lie within --slice-min-ms..--slice-max-ms ({}..{})",
                self.slice_ms,
                self.slice_min_ms,
                self.slice_max_ms
            );
        }
        if self.max_overrun_ms < self.grace_ms {
            bail!(
                "--max-overrun-ms ({}) must be at least --grace-ms ({}): a worker needs its \
                 whole grace period to reach a checkpoint",
                self.max_overrun_ms,
                self.grace_ms
            );
        }
        if self.socket.as_os_str().is_empty() || self.socket.is_relative() {
            bail!(
                "--socket must be an absolute path (got '{}')",
                self.socket.display()
            );
        }
        if self.monitor.is_some() && self.stats.is_some() {
            bail!("--monitor and --stats are exclusive: --monitor attaches to a running scheduler");
        }
        let socket_group = self.socket_group.as_deref().map(group_id).transpose()?;
        let ms = |v: u64| v * NSEC_PER_MSEC;
        Ok(Config {
            slice_ns: ms(self.slice_ms),
            slice_min_ns: ms(self.slice_min_ms),
            slice_max_ns: ms(self.slice_max_ms),
            grace_ns: ms(self.grace_ms),
            max_critical_ns: ms(self.max_critical_ms),
            max_overrun_ns: ms(self.max_overrun_ms),
            yield_window_ns: self.yield_window_us * 1000,
            throttle_ns: ms(self.throttle_ms),
            enforce: self.enforce,
            escalation: self.escalation,
            partial: self.partial,
            socket: self.socket,
            socket_group,
            socket_mode: self.socket_mode,
            metrics_addr: self.metrics_addr,
            stats: self.stats,
            monitor: self.monitor,
            exit_dump_len: self.exit_dump_len,
            debug: self.debug,
            verbose: self.verbose,
            inject_error_after_ms: self.inject_error_after_ms,
            libbpf: self.libbpf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config> {
        let opts =
            Opts::try_parse_from(std::iter::once("scx_morpheus").chain(args.iter().copied()))?;
        opts.validate()
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", parse(args).unwrap_err())
    }

    #[test]
    fn defaults_come_from_the_abi() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.slice_ns, DEFAULT_SLICE_MS * NSEC_PER_MSEC);
        assert_eq!(c.grace_ns, DEFAULT_GRACE_MS * NSEC_PER_MSEC);
        assert_eq!(c.max_critical_ns, DEFAULT_MAX_CRITICAL_MS * NSEC_PER_MSEC);
        assert_eq!(
            c.yield_window_ns,
            bpf_intf::morpheus_sched_consts_MORPHEUS_DEFAULT_YIELD_WINDOW_US as u64 * 1000
        );
        assert!(!c.enforce);
        assert_eq!(c.escalation, EscalationPolicy::ThreadKick);
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(c.socket_mode, 0o660);
        assert!(online_cpus() >= 1);
    }

    #[test]
    fn invalid_values_are_rejected_with_a_reason() {
        assert!(err(&["--slice-ms", "0"]).contains("invalid value"));
        assert!(err(&["--slice-ms", "ten"]).contains("invalid value"));
        assert!(err(&["--grace-ms", "999999"]).contains("invalid value"));
        assert!(err(&["--escalation", "nuke"]).contains("expected one of none, thread_kick"));
        assert!(err(&["--socket-mode", "999"]).contains("octal"));
        assert!(err(&["--stats", "0"]).contains("out of range"));
        assert!(err(&["--yield-window-us", "5"]).contains("invalid value"));
        assert!(err(&["--metrics-addr", "nowhere"]).contains("invalid value"));
        assert!(err(&["--slice-min-ms", "8", "--slice-max-ms", "4"]).contains("must not exceed"));
        assert!(err(&["--slice-ms", "20"]).contains("must lie within"));
        assert!(
            err(&["--grace-ms", "300", "--max-overrun-ms", "100"]).contains("at least --grace-ms")
        );
        assert!(err(&["--socket", "relative.sock"]).contains("absolute path"));
        assert!(err(&["--socket-group", "no-such-group-xyz"]).contains("no group named"));
        assert!(err(&["--monitor", "1", "--stats", "1"]).contains("exclusive"));
    }

    #[test]
    fn accepted_values_are_converted() {
        let c = parse(&[
            "--enforce",
            "--escalation",
            "hybrid",
            "--slice-ms",
            "3",
            "--socket-mode",
            "0666",
            "--socket-group",
            "0",
            "--yield-window-us",
            "250",
        ])
        .unwrap();
        assert_eq!(c.yield_window_ns, 250_000);
        assert!(c.enforce);
        assert_eq!(c.escalation, EscalationPolicy::Hybrid);
        assert_eq!(c.slice_ns, 3 * NSEC_PER_MSEC);
        assert_eq!(c.socket_mode, 0o666);
        assert_eq!(c.socket_group, Some(0));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0-3"), Some(4));
        assert_eq!(count_cpu_list("0-1,4,6-7"), Some(5));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
        assert_eq!(count_cpu_list(""), None);
    }
}

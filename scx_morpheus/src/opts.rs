// SPDX-License-Identifier: GPL-2.0-only
//! Command-line options and their validation. Every value is checked here,
//! before anything is loaded, and turned into a [`Config`] in nanoseconds.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use morpheus_common::{
    DEFAULT_GRACE_MS, DEFAULT_MAX_CRITICAL_MS, DEFAULT_SLICE_MAX_MS, DEFAULT_SLICE_MIN_MS,
    DEFAULT_SLICE_MS, DEFAULT_SOCKET_PATH, EscalationPolicy, MAX_WORKERS, WATCHDOG_TIMEOUT_MS,
};
use scx_utils::libbpf_clap_opts::LibbpfOpts;

use crate::bpf_intf;
use crate::registry::DEFAULT_MAX_WORKERS_PER_USER;

const NSEC_PER_MSEC: u64 = 1_000_000;
const NSEC_PER_USEC: u64 = 1_000;
const USEC_PER_MSEC: u64 = 1_000;
/// Longest slice or slice bound, in either unit; the shortest is 1 ms.
const SLICE_LIMIT_MS: u64 = 100;
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
    /// Slice at one waiting task per CPU, microseconds; it doubles when
    /// nobody waits and shrinks as the queue grows, within
    /// --slice-min-us..--slice-max-us.
    #[arg(long, value_name = "US", default_value_t = DEFAULT_SLICE_MS * USEC_PER_MSEC,
          conflicts_with = "slice_ms", value_parser = slice_us_parser())]
    pub slice_us: u64,

    /// Lower bound of the adaptive slice, microseconds.
    #[arg(long, value_name = "US", default_value_t = DEFAULT_SLICE_MIN_MS * USEC_PER_MSEC,
          conflicts_with = "slice_min_ms", value_parser = slice_us_parser())]
    pub slice_min_us: u64,

    /// Upper bound of the adaptive slice, microseconds.
    #[arg(long, value_name = "US", default_value_t = DEFAULT_SLICE_MAX_MS * USEC_PER_MSEC,
          conflicts_with = "slice_max_ms", value_parser = slice_us_parser())]
    pub slice_max_us: u64,

    /// --slice-us in milliseconds (the original flag, kept as an alias).
    #[arg(long, value_name = "MS", value_parser = slice_ms_parser())]
    pub slice_ms: Option<u64>,

    /// --slice-min-us in milliseconds (kept as an alias).
    #[arg(long, value_name = "MS", value_parser = slice_ms_parser())]
    pub slice_min_ms: Option<u64>,

    /// --slice-max-us in milliseconds (kept as an alias).
    #[arg(long, value_name = "MS", value_parser = slice_ms_parser())]
    pub slice_max_ms: Option<u64>,

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

    /// Longest a critical section may keep others waiting, milliseconds,
    /// shared among the waiting tasks (N/n with n waiting, at least 0.25
    /// ms); then the worker is preempted like any task and a violation
    /// counted.
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

    /// A woken task does not preempt a plain task that has run less than
    /// this, microseconds, unless it lags that task by as much in virtual
    /// time (a task that slept preempts at once); it waits at most this
    /// long for that CPU; 0 preempts at once. Bounds the switches bursts of
    /// wake-ups cost. Default: 750 x (1 + log2 of the online CPUs, counted
    /// up to 8), as EEVDF scales its base slice (1500 on 2 CPUs).
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub wakeup_granularity_us: Option<u64>,

    /// Do not send catch-ups: by default, when I/O becomes ready for a
    /// process whose registered workers are all busy (none waits on its
    /// epoll instance), its running worker is asked to serve its ready
    /// tasks at its next checkpoint (a tracing program on the kernel's
    /// ep_poll_callback).
    #[arg(long)]
    pub no_catch_up: bool,

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

    /// Most workers one user other than root may have registered at once,
    /// over all its processes (the table holds MORPHEUS_MAX_WORKERS, 8192):
    /// a user past it is refused with USER_QUOTA, so no one user can fill
    /// the table for everyone else.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_WORKERS_PER_USER,
          value_parser = clap::value_parser!(u32).range(1..=MAX_WORKERS as i64))]
    pub max_workers_per_user: u32,

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
    pub wakeup_granularity_ns: u64,
    pub throttle_ns: u64,
    pub catch_up: bool,
    pub enforce: bool,
    pub escalation: EscalationPolicy,
    pub partial: bool,
    pub socket: PathBuf,
    pub socket_group: Option<u32>,
    pub socket_mode: u32,
    pub max_workers_per_user: u32,
    pub metrics_addr: Option<SocketAddr>,
    pub stats: Option<f64>,
    pub monitor: Option<f64>,
    pub exit_dump_len: u32,
    pub debug: bool,
    pub verbose: bool,
    pub inject_error_after_ms: Option<u64>,
    pub libbpf: LibbpfOpts,
}

fn slice_ms_parser() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=SLICE_LIMIT_MS)
}

/// The shortest slice the policy gives any task (MORPHEUS_SLICE_FLOOR_NS),
/// in microseconds: the lowest value of the `--slice*-us` flags.
const SLICE_FLOOR_US: u64 = bpf_intf::morpheus_sched_consts_MORPHEUS_SLICE_FLOOR_NS as u64 / 1_000;

fn slice_us_parser() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(SLICE_FLOOR_US..=SLICE_LIMIT_MS * USEC_PER_MSEC)
}

/// One slice setting, given as `--NAME-us` (or by default) or as its alias
/// `--NAME-ms` (clap refuses both at once).
struct Slice {
    ns: u64,
    /// How it was set, for error messages: the flag used, or both forms.
    given: String,
}

impl Slice {
    fn new(name: &str, us: u64, ms: Option<u64>) -> Self {
        match ms {
            Some(ms) => Slice {
                ns: ms * NSEC_PER_MSEC,
                given: format!("--{name}-ms {ms}"),
            },
            None => Slice {
                ns: us * NSEC_PER_USEC,
                given: format!("--{name}-us {us} (or --{name}-ms)"),
            },
        }
    }
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

/// The run-to-parity granularity for `cpus` online CPUs, microseconds:
/// the base scaled by 1 + log2(CPUs), counting at most 8, as EEVDF scales
/// its base slice (with more CPUs, a woken task more often finds another
/// one to run on).
pub fn default_wakeup_granularity_us(cpus: u32) -> u64 {
    let base = u64::from(bpf_intf::morpheus_sched_consts_MORPHEUS_WAKEUP_GRANULARITY_BASE_US);
    let counted = cpus.clamp(
        1,
        bpf_intf::morpheus_sched_consts_MORPHEUS_WAKEUP_GRANULARITY_MAX_CPUS,
    );
    base * u64::from(1 + counted.ilog2())
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
        let slice = Slice::new("slice", self.slice_us, self.slice_ms);
        let min = Slice::new("slice-min", self.slice_min_us, self.slice_min_ms);
        let max = Slice::new("slice-max", self.slice_max_us, self.slice_max_ms);
        if min.ns > max.ns {
            bail!("{} must not exceed {}", min.given, max.given);
        }
        if !(min.ns..=max.ns).contains(&slice.ns) {
            bail!(
                "{} must lie within {} and {}",
                slice.given,
                min.given,
                max.given
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
            slice_ns: slice.ns,
            slice_min_ns: min.ns,
            slice_max_ns: max.ns,
            grace_ns: ms(self.grace_ms),
            max_critical_ns: ms(self.max_critical_ms),
            max_overrun_ns: ms(self.max_overrun_ms),
            yield_window_ns: self.yield_window_us * NSEC_PER_USEC,
            wakeup_granularity_ns: self
                .wakeup_granularity_us
                .unwrap_or_else(|| default_wakeup_granularity_us(online_cpus()))
                * NSEC_PER_USEC,
            throttle_ns: ms(self.throttle_ms),
            catch_up: !self.no_catch_up,
            enforce: self.enforce,
            escalation: self.escalation,
            partial: self.partial,
            socket: self.socket,
            socket_group,
            socket_mode: self.socket_mode,
            max_workers_per_user: self.max_workers_per_user,
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
        assert_eq!(
            c.wakeup_granularity_ns,
            default_wakeup_granularity_us(online_cpus()) * 1000
        );
        assert!(!c.enforce);
        assert_eq!(c.escalation, EscalationPolicy::ThreadKick);
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET_PATH));
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.max_workers_per_user, MAX_WORKERS / 4);
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
        assert!(
            err(&["--grace-ms", "300", "--max-overrun-ms", "100"]).contains("at least --grace-ms")
        );
        assert!(err(&["--socket", "relative.sock"]).contains("absolute path"));
        assert!(err(&["--socket-group", "no-such-group-xyz"]).contains("no group named"));
        assert!(err(&["--monitor", "1", "--stats", "1"]).contains("exclusive"));
        assert!(err(&["--max-workers-per-user", "0"]).contains("invalid value"));
        assert!(err(&["--max-workers-per-user", "8193"]).contains("invalid value"));
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
            "--wakeup-granularity-us",
            "0",
            "--max-workers-per-user",
            "900",
        ])
        .unwrap();
        assert_eq!(c.max_workers_per_user, 900);
        assert_eq!(c.yield_window_ns, 250_000);
        assert_eq!(c.wakeup_granularity_ns, 0);
        assert!(c.enforce);
        assert_eq!(c.escalation, EscalationPolicy::Hybrid);
        assert_eq!(c.slice_ns, 3 * NSEC_PER_MSEC);
        assert_eq!(c.socket_mode, 0o666);
        assert_eq!(c.socket_group, Some(0));
    }

    #[test]
    fn the_default_granularity_grows_with_log2_of_the_cpus_up_to_8() {
        let g: Vec<u64> = [0, 1, 2, 3, 4, 8, 64]
            .map(default_wakeup_granularity_us)
            .to_vec();
        assert_eq!(g, [750, 750, 1500, 1500, 2250, 3000, 3000]);
    }

    fn slices(c: &Config) -> (u64, u64, u64) {
        (c.slice_ns, c.slice_min_ns, c.slice_max_ns)
    }

    #[test]
    fn slice_flags_in_us_and_ms_set_the_same_values() {
        let want = (3_000_000, 2_000_000, 8_000_000);
        let us = [
            "--slice-us",
            "3000",
            "--slice-min-us",
            "2000",
            "--slice-max-us",
            "8000",
        ];
        let ms = [
            "--slice-ms",
            "3",
            "--slice-min-ms",
            "2",
            "--slice-max-ms",
            "8",
        ];
        let mixed = [
            "--slice-us",
            "3000",
            "--slice-min-ms",
            "2",
            "--slice-max-us",
            "8000",
        ];
        assert_eq!(slices(&parse(&us).unwrap()), want);
        assert_eq!(slices(&parse(&ms).unwrap()), want);
        assert_eq!(slices(&parse(&mixed).unwrap()), want);
        // Microseconds give finer settings than the ms aliases can.
        assert_eq!(parse(&["--slice-us", "2500"]).unwrap().slice_ns, 2_500_000);
        assert_eq!(
            slices(&parse(&[]).unwrap()),
            (
                DEFAULT_SLICE_MS * NSEC_PER_MSEC,
                DEFAULT_SLICE_MIN_MS * NSEC_PER_MSEC,
                DEFAULT_SLICE_MAX_MS * NSEC_PER_MSEC
            )
        );
    }

    #[test]
    fn a_slice_given_in_both_units_is_refused() {
        for (us, ms) in [
            ("--slice-us", "--slice-ms"),
            ("--slice-min-us", "--slice-min-ms"),
            ("--slice-max-us", "--slice-max-ms"),
        ] {
            let e = err(&[us, "3000", ms, "3"]);
            assert!(e.contains("cannot be used with"), "{e}");
            assert!(e.contains(us) && e.contains(ms), "{e}");
            let e = err(&[ms, "3", us, "3000"]);
            assert!(e.contains("cannot be used with"), "{e}");
        }
    }

    #[test]
    fn slice_ranges_are_checked_in_both_units() {
        for bad in [
            &["--slice-us", "249"][..],
            &["--slice-min-us", "249"],
            &["--slice-us", "100001"],
            &["--slice-max-us", "0"],
            &["--slice-min-ms", "101"],
        ] {
            assert!(err(bad).contains("invalid value"), "{bad:?}");
        }
        // Down to the policy's floor (EEVDF's base slice on small machines
        // is 750 us).
        let c = parse(&[
            "--slice-us",
            "1500",
            "--slice-min-us",
            "250",
            "--slice-max-us",
            "3000",
        ])
        .unwrap();
        assert_eq!(
            (c.slice_ns, c.slice_min_ns, c.slice_max_ns),
            (1_500_000, 250_000, 3_000_000)
        );
        assert_eq!(
            err(&["--slice-min-ms", "8", "--slice-max-ms", "4"]),
            "--slice-min-ms 8 must not exceed --slice-max-ms 4"
        );
        assert_eq!(
            err(&["--slice-min-us", "8000", "--slice-max-us", "4000"]),
            "--slice-min-us 8000 (or --slice-min-ms) must not exceed \
             --slice-max-us 4000 (or --slice-max-ms)"
        );
        assert_eq!(
            err(&["--slice-min-ms", "8", "--slice-max-us", "4000"]),
            "--slice-min-ms 8 must not exceed --slice-max-us 4000 (or --slice-max-ms)"
        );
        assert_eq!(
            err(&["--slice-ms", "20"]),
            "--slice-ms 20 must lie within --slice-min-us 2000 (or --slice-min-ms) and \
             --slice-max-us 10000 (or --slice-max-ms)"
        );
        assert!(
            err(&["--slice-us", "1500", "--slice-min-ms", "2"])
                .contains("--slice-us 1500 (or --slice-ms) must lie within --slice-min-ms 2 and")
        );
        let top = parse(&["--slice-us", "100000", "--slice-max-ms", "100"]).unwrap();
        assert_eq!(top.slice_ns, 100 * NSEC_PER_MSEC);
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

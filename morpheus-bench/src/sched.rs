// SPDX-License-Identifier: GPL-2.0-only
//! Scheduler control for kernel runs: which scheduler a configuration uses,
//! starting and stopping the scx_morpheus loader (and the peer scheduler
//! scx_bpfland), and reading scx_morpheus's OpenMetrics endpoint
//! (`--metrics-addr`) so results carry the scheduler's own view (hints sent
//! and answered, cap violations). scx_bpfland has no such endpoint: its
//! results carry no scheduler metrics at all.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use morpheus_common::openmetrics::Scrape;
use serde::{Deserialize, Serialize};

const SCHED_EXT: &str = "/sys/kernel/sched_ext";
/// BPF verification under TCG emulation can take tens of seconds.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(180);

/// Which scheduler a configuration runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedConfig {
    /// The kernel's default scheduler (no sched_ext scheduler attached).
    Default,
    /// scx_morpheus in observer mode (hints and metrics, no escalation).
    Observer,
    /// scx_morpheus with `--enforce`.
    Enforce,
    /// The peer scheduler scx_bpfland ([`BPFLAND_VERSION`]), for comparison.
    Bpfland,
}

/// The scx_bpfland version the benchmarks compare with (what
/// morpheus-bench/scripts/ensure-bpfland.sh builds).
pub const BPFLAND_VERSION: &str = "1.1.4";

/// What a configuration attaches to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// Nothing: the kernel's default scheduler.
    Nothing,
    /// scx_morpheus with these loader arguments (it serves metrics).
    Morpheus(Vec<String>),
    /// scx_bpfland with its defaults (no metrics endpoint).
    Bpfland,
}

impl SchedConfig {
    /// Name used on the command line and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedConfig::Default => "default",
            SchedConfig::Observer => "observer",
            SchedConfig::Enforce => "enforce",
            SchedConfig::Bpfland => "bpfland",
        }
    }

    /// Label for tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            SchedConfig::Default => "kernel default",
            SchedConfig::Observer => "scx_morpheus",
            SchedConfig::Enforce => "scx_morpheus --enforce",
            SchedConfig::Bpfland => "scx_bpfland 1.1.4",
        }
    }

    /// Whether this configuration runs scx_morpheus.
    pub fn is_morpheus(self) -> bool {
        matches!(self.attach(), Attach::Morpheus(_))
    }

    /// What this configuration attaches.
    pub fn attach(self) -> Attach {
        match self {
            SchedConfig::Default => Attach::Nothing,
            SchedConfig::Observer => Attach::Morpheus(vec![]),
            SchedConfig::Enforce => Attach::Morpheus(vec!["--enforce".into()]),
            SchedConfig::Bpfland => Attach::Bpfland,
        }
    }
}

impl std::str::FromStr for SchedConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(SchedConfig::Default),
            "observer" | "morpheus" => Ok(SchedConfig::Observer),
            "enforce" => Ok(SchedConfig::Enforce),
            "bpfland" | "scx_bpfland" => Ok(SchedConfig::Bpfland),
            _ => Err(format!(
                "'{s}' is not a scheduler configuration: expected default, observer, enforce or bpfland"
            )),
        }
    }
}

/// sched_ext's state ("enabled", "disabled", ...), `None` without sched_ext.
pub fn sched_ext_state() -> Option<String> {
    std::fs::read_to_string(format!("{SCHED_EXT}/state"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Checks that kernel configurations can run here: sched_ext and root.
pub fn require_sched_ext() -> Result<()> {
    let Some(state) = sched_ext_state() else {
        bail!(
            "this kernel has no sched_ext: run kernel configurations in the test VM, \
             e.g. `tools/vm/run -- {}`, or drop --sched",
            crate::report::command_line()
        );
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("attaching a scheduler needs root");
    }
    if state != "disabled" {
        bail!("another sched_ext scheduler is attached (state {state}); stop it first");
    }
    Ok(())
}

/// The scx_morpheus binary: next to this program (cargo puts every binary
/// of the workspace in the same directory), or on PATH.
pub fn default_loader() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("scx_morpheus")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("scx_morpheus"))
}

fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// A scheduler process we started, its output going to a log file; dropping
/// it stops it (SIGINT) and waits until sched_ext is disabled.
struct SchedProcess {
    child: Child,
    log: PathBuf,
}

impl SchedProcess {
    /// Spawns `cmd` (named `name` in errors) with its output in a log file.
    fn spawn(name: &str, mut cmd: Command) -> Result<SchedProcess> {
        let log = std::env::temp_dir().join(format!("{name}-bench-{}.log", std::process::id()));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(SchedProcess { child, log })
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// The process's output so far (last lines).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn shutdown(&mut self) {
        if !self.exited() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            if !wait_for(Duration::from_secs(60), || self.exited()) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        wait_for(Duration::from_secs(30), || {
            sched_ext_state().as_deref() == Some("disabled")
        });
    }
}

impl Drop for SchedProcess {
    fn drop(&mut self) {
        self.shutdown();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A running scx_morpheus loader; dropping it stops it (SIGINT).
pub struct Loader {
    proc: SchedProcess,
    metrics: SocketAddr,
    /// Seconds from spawn to "attached and serving".
    pub attach_secs: f64,
}

impl Loader {
    /// Starts `bin` with `args` plus a metrics endpoint on `metrics`, and
    /// waits until the kernel reports it attached and both its registration
    /// socket and metrics endpoint answer.
    pub fn start(bin: &Path, args: &[String], metrics: SocketAddr) -> Result<Loader> {
        require_sched_ext()?;
        let started = Instant::now();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .arg("--metrics-addr")
            .arg(metrics.to_string());
        let proc = SchedProcess::spawn("scx_morpheus", cmd)
            .context("build it (cargo build --release -p scx_morpheus), or pass --loader")?;
        let mut loader = Loader {
            proc,
            metrics,
            attach_secs: 0.0,
        };
        let socket = Path::new(morpheus_common::DEFAULT_SOCKET_PATH);
        let mut why = String::new();
        let ready = wait_for(ATTACH_TIMEOUT, || {
            if loader.proc.exited() {
                why = "the loader exited".into();
                return true;
            }
            let state = sched_ext_state().unwrap_or_default();
            if state != "enabled" {
                why = format!("sched_ext state is {state:?}");
                return false;
            }
            // A SOCK_SEQPACKET socket: its existence is what we check.
            let is_socket = std::fs::metadata(socket).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                why = format!("{} does not exist yet", socket.display());
                return false;
            }
            match loader.scrape() {
                Ok(_) => true,
                Err(e) => {
                    why = format!("{e:#}");
                    false
                }
            }
        });
        if !ready || loader.proc.exited() {
            let tail = loader.proc.log_tail();
            drop(loader);
            bail!("scx_morpheus did not attach and serve ({why}):\n{tail}");
        }
        loader.attach_secs = started.elapsed().as_secs_f64();
        Ok(loader)
    }

    /// The loader's output so far (last lines).
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Reads the scheduler's metrics now.
    pub fn scrape(&self) -> Result<SchedMetrics> {
        scrape(self.metrics)
    }

    /// Stops the loader (SIGINT) and waits until sched_ext is disabled.
    /// Returns its final report (the last lines of its output).
    pub fn stop(mut self) -> Result<String> {
        self.proc.shutdown();
        Ok(self.proc.log_tail())
    }
}

/// Environment variable naming the scx_bpfland binary (set by the
/// project's scripts to what ensure-bpfland.sh printed).
pub const BPFLAND_ENV: &str = "MORPHEUS_BPFLAND";

/// Where ensure-bpfland.sh caches scx_bpfland: under `$MORPHEUS_CACHE`, or
/// `$XDG_CACHE_HOME/morpheus`, or `~/.cache/morpheus` (as tools/lib/common.sh).
pub fn bpfland_cache_path() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = env("MORPHEUS_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("morpheus")))
        .unwrap_or_else(|| env("HOME").unwrap_or_default().join(".cache/morpheus"));
    cache.join(format!(
        "tools/scx_bpfland-{BPFLAND_VERSION}/bin/scx_bpfland"
    ))
}

/// The scx_bpfland binary: `$MORPHEUS_BPFLAND`, else the cache path.
pub fn bpfland_binary() -> Result<PathBuf> {
    find_bpfland(std::env::var_os(BPFLAND_ENV), bpfland_cache_path())
}

/// `from_env` if set (non-empty), else `cache`; an error naming the setup
/// command when the chosen file does not exist.
fn find_bpfland(from_env: Option<std::ffi::OsString>, cache: PathBuf) -> Result<PathBuf> {
    let from_env = from_env.filter(|v| !v.is_empty()).map(PathBuf::from);
    let source = if from_env.is_some() {
        BPFLAND_ENV
    } else {
        "the cache path"
    };
    let path = from_env.unwrap_or(cache);
    if !path.is_file() {
        bail!(
            "scx_bpfland {BPFLAND_VERSION} not found at {} (from {source}): build it with \
             morpheus-bench/scripts/ensure-bpfland.sh and set {BPFLAND_ENV} to the path it prints \
             (./morpheus-dev demo and test do both)",
            path.display()
        );
    }
    Ok(path)
}

/// A running scx_bpfland; dropping it stops it (SIGINT). It serves no
/// metrics.
pub struct Bpfland {
    proc: SchedProcess,
    /// Seconds from spawn to attached.
    pub attach_secs: f64,
}

impl Bpfland {
    /// Starts scx_bpfland ([`bpfland_binary`]) with its defaults and waits
    /// until sched_ext is enabled with bpfland as the root scheduler.
    pub fn start() -> Result<Bpfland> {
        require_sched_ext()?;
        let bin = bpfland_binary()?;
        // libbpf resolves the BPF program's kconfig externs from here (or
        // /proc/config.gz); without it the load fails with EINVAL.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let kconfig = format!("/boot/config-{release}");
        if !Path::new(&kconfig).exists() && !Path::new("/proc/config.gz").exists() {
            bail!(
                "scx_bpfland needs the kernel's configuration at {kconfig} (or /proc/config.gz): \
                 copy the kernel package's config there (tools/vm/run does in the test VM)"
            );
        }
        let started = Instant::now();
        let mut proc = SchedProcess::spawn("scx_bpfland", Command::new(&bin))?;
        let mut why = String::new();
        let ready = wait_for(ATTACH_TIMEOUT, || {
            if proc.exited() {
                why = "it exited".into();
                return true;
            }
            let state = sched_ext_state().unwrap_or_default();
            if state != "enabled" {
                why = format!("sched_ext state is {state:?}");
                return false;
            }
            let ops = std::fs::read_to_string(format!("{SCHED_EXT}/root/ops")).unwrap_or_default();
            if !ops.trim().starts_with("bpfland") {
                why = format!("the attached scheduler is {:?}", ops.trim());
                return false;
            }
            true
        });
        if !ready || proc.exited() {
            let tail = proc.log_tail();
            drop(proc);
            bail!(
                "scx_bpfland ({}) did not attach ({why}):\n{tail}",
                bin.display()
            );
        }
        Ok(Bpfland {
            proc,
            attach_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// Stops scx_bpfland (SIGINT) and waits until sched_ext is disabled;
    /// returns the last lines of its output.
    pub fn stop(mut self) -> String {
        self.proc.shutdown();
        self.proc.log_tail()
    }
}

/// The scheduler's metrics: counters (`*_total`), gauges and histograms,
/// by name without the `scx_morpheus_` prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedMetrics {
    /// Cumulative counters (or, after [`SchedMetrics::since`], increments).
    pub counters: BTreeMap<String, u64>,
    /// Current values.
    pub gauges: BTreeMap<String, u64>,
    /// Histograms by family (`hint_delay_seconds` ...): (upper bound in
    /// seconds, observations at most that long), cumulative, `+Inf` last
    /// (in JSON the string "+Inf": JSON has no infinity). Absent from
    /// results recorded before the loader exported them.
    #[serde(default, with = "bounds_json")]
    pub histograms: BTreeMap<String, Vec<(f64, u64)>>,
}

/// [`SchedMetrics::histograms`] in JSON: serde_json writes an infinite
/// `f64` as `null`, which it then cannot read back, so the `+Inf` bound is
/// written as the string OpenMetrics uses. Results recorded before that
/// (c882aec's, in BENCHMARKS.md) have `null` there: read as `+Inf` too.
mod bounds_json {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// A bucket's upper bound as JSON can hold it.
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bound {
        Finite(f64),
        Inf(String),
        /// `+Inf` as serde_json wrote it before this module existed.
        Null,
    }

    type Histograms = BTreeMap<String, Vec<(f64, u64)>>;

    pub fn serialize<S: Serializer>(h: &Histograms, s: S) -> Result<S::Ok, S::Error> {
        let out: BTreeMap<&String, Vec<(Bound, u64)>> = h
            .iter()
            .map(|(k, buckets)| {
                let b = buckets
                    .iter()
                    .map(|&(le, n)| {
                        let bound = if le.is_finite() {
                            Bound::Finite(le)
                        } else {
                            Bound::Inf("+Inf".into())
                        };
                        (bound, n)
                    })
                    .collect();
                (k, b)
            })
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histograms, D::Error> {
        let raw = BTreeMap::<String, Vec<(Bound, u64)>>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, buckets)| {
                let b = buckets
                    .into_iter()
                    .map(|(bound, n)| match bound {
                        Bound::Finite(le) => Ok((le, n)),
                        Bound::Inf(t) if t == "+Inf" => Ok((f64::INFINITY, n)),
                        Bound::Null => Ok((f64::INFINITY, n)),
                        Bound::Inf(t) => Err(serde::de::Error::custom(format!(
                            "histogram bound '{t}' is neither a number nor \"+Inf\""
                        ))),
                    })
                    .collect::<Result<_, _>>()?;
                Ok((k, b))
            })
            .collect()
    }
}

impl SchedMetrics {
    /// Parses OpenMetrics text as served by scx_morpheus.
    pub fn parse(text: &str) -> SchedMetrics {
        let s = Scrape::parse(text, "scx_morpheus_");
        SchedMetrics {
            counters: s.counters,
            gauges: s.gauges,
            histograms: s.histograms,
        }
    }

    /// Counter increments since `before`; gauges as now.
    pub fn since(&self, before: &SchedMetrics) -> SchedMetrics {
        SchedMetrics {
            counters: self
                .counters
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(*before.counters.get(k).unwrap_or(&0)),
                    )
                })
                .collect(),
            gauges: self.gauges.clone(),
            histograms: self
                .histograms
                .iter()
                .map(|(k, buckets)| {
                    let prev = before.histograms.get(k);
                    let d = buckets
                        .iter()
                        .enumerate()
                        .map(|(i, (le, n))| {
                            let p = prev.and_then(|p| p.get(i)).map_or(0, |b| b.1);
                            (*le, n.saturating_sub(p))
                        })
                        .collect();
                    (k.clone(), d)
                })
                .collect(),
        }
    }

    /// Adds the counter and histogram increments of `b` into `self`;
    /// gauges become `b`'s.
    pub fn absorb(&mut self, b: &SchedMetrics) {
        for (k, v) in &b.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        self.gauges.clone_from(&b.gauges);
        for (k, buckets) in &b.histograms {
            let mine = self.histograms.entry(k.clone()).or_default();
            if mine.is_empty() {
                mine.clone_from(buckets);
            } else {
                for (m, b) in mine.iter_mut().zip(buckets) {
                    m.1 += b.1;
                }
            }
        }
    }

    /// Quantile `q` (0..1) of histogram `family`, as the upper bound of its
    /// bucket in microseconds (`u64::MAX` past the last bound); `None`
    /// when nothing was observed or the family is absent.
    pub fn quantile_us(&self, family: &str, q: f64) -> Option<u64> {
        morpheus_common::openmetrics::quantile_us(self.histograms.get(family)?, q)
    }

    /// A counter (or gauge) by name, 0 if absent.
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .get(name)
            .or_else(|| self.gauges.get(name))
            .copied()
            .unwrap_or(0)
    }

    /// The figures a reader needs to see that hints flowed.
    pub fn brief(&self) -> String {
        format!(
            "hints sent {} answered {} (in grace {}) expired {} | escalations {} | cap violations: critical {} overrun {}",
            self.get("hints_sent"),
            self.get("hints_answered"),
            self.get("hints_answered_in_grace"),
            self.get("hints_expired"),
            self.get("escalations_kick") + self.get("escalations_throttle"),
            self.get("critical_cap_violations"),
            self.get("overrun_cap_violations"),
        )
    }
}

/// GETs `http://addr/metrics` and parses it.
pub fn scrape(addr: SocketAddr) -> Result<SchedMetrics> {
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot reach scx_morpheus metrics at {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", &text));
    if !head.starts_with("HTTP/1.") || !head.contains(" 200") {
        bail!(
            "unexpected answer from {addr}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(SchedMetrics::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_with_clear_errors() {
        assert_eq!("Default".parse::<SchedConfig>(), Ok(SchedConfig::Default));
        assert_eq!("enforce".parse::<SchedConfig>(), Ok(SchedConfig::Enforce));
        assert!(
            "cfs"
                .parse::<SchedConfig>()
                .unwrap_err()
                .contains("expected default")
        );
        assert_eq!("bpfland".parse::<SchedConfig>(), Ok(SchedConfig::Bpfland));
        assert_eq!(
            SchedConfig::Enforce.attach(),
            Attach::Morpheus(vec!["--enforce".to_string()])
        );
        assert_eq!(SchedConfig::Default.attach(), Attach::Nothing);
        assert_eq!(SchedConfig::Bpfland.attach(), Attach::Bpfland);
        assert!(SchedConfig::Enforce.is_morpheus() && !SchedConfig::Bpfland.is_morpheus());
        assert!(SchedConfig::Bpfland.label().ends_with(BPFLAND_VERSION));
    }

    #[test]
    fn bpfland_is_found_from_the_environment_or_the_cache() {
        let exe = std::env::current_exe().unwrap();
        let missing = PathBuf::from("/nonexistent/scx_bpfland");
        assert_eq!(
            find_bpfland(Some(exe.clone().into()), missing.clone()).unwrap(),
            exe
        );
        assert_eq!(find_bpfland(Some("".into()), exe.clone()).unwrap(), exe);
        let err = find_bpfland(None, missing.clone()).unwrap_err().to_string();
        assert!(
            err.contains("ensure-bpfland.sh") && err.contains("the cache path"),
            "{err}"
        );
        let err = find_bpfland(Some(missing.into()), exe)
            .unwrap_err()
            .to_string();
        assert!(err.contains(BPFLAND_ENV), "{err}");
        assert!(bpfland_cache_path().ends_with("tools/scx_bpfland-1.1.4/bin/scx_bpfland"));
    }

    #[test]
    fn openmetrics_is_parsed_and_subtracted() {
        let a = SchedMetrics::parse(
            "# TYPE scx_morpheus_hints_sent counter\nscx_morpheus_hints_sent_total 10\n\
             scx_morpheus_pressure 2048\nother_metric 1\n# EOF\n",
        );
        let b =
            SchedMetrics::parse("scx_morpheus_hints_sent_total 25\nscx_morpheus_pressure 512\n");
        let d = b.since(&a);
        assert_eq!(d.get("hints_sent"), 15);
        assert_eq!(d.get("pressure"), 512);
        assert_eq!(d.get("missing"), 0);
        assert!(d.brief().starts_with("hints sent 15 answered 0"));
    }

    #[test]
    fn histograms_are_parsed_subtracted_and_read_in_microseconds() {
        let text = |fast: u64, slow: u64| {
            format!(
                "scx_morpheus_hint_delay_seconds_bucket{{le=\"0.000016\"}} {fast}\n\
                 scx_morpheus_hint_delay_seconds_bucket{{le=\"0.002048\"}} {}\n\
                 scx_morpheus_hint_delay_seconds_bucket{{le=\"+Inf\"}} {}\n",
                fast + slow,
                fast + slow
            )
        };
        let a = SchedMetrics::parse(&text(100, 0));
        let b = SchedMetrics::parse(&text(100, 5));
        // Since attach, p50 is in the 16 us bucket; in between, all 5 were slow.
        assert_eq!(b.quantile_us("hint_delay_seconds", 0.5), Some(16));
        assert_eq!(
            b.since(&a).quantile_us("hint_delay_seconds", 0.5),
            Some(2048)
        );
        assert_eq!(a.since(&a).quantile_us("hint_delay_seconds", 0.5), None);
        assert_eq!(a.quantile_us("missing_seconds", 0.5), None);
        let mut sum = a.clone();
        sum.absorb(&b.since(&a));
        assert_eq!(sum.histograms, b.histograms);
        // Through JSON (a measurement process hands its figures to the
        // parent so), the +Inf bound included.
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.contains("\"+Inf\""), "{json}");
        assert_eq!(serde_json::from_str::<SchedMetrics>(&json).unwrap(), b);
        // Older results wrote the +Inf bound as null.
        let old = json.replace("\"+Inf\"", "null");
        assert!(old.contains("null"), "{old}");
        assert_eq!(serde_json::from_str::<SchedMetrics>(&old).unwrap(), b);
    }
}

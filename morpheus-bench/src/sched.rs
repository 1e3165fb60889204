// SPDX-License-Identifier: GPL-2.0-only
//! Scheduler control for kernel runs: which scheduler a configuration uses,
//! starting and stopping the scx_morpheus loader, and reading its
//! OpenMetrics endpoint (`--metrics-addr`) so results carry the scheduler's
//! own view (hints sent and answered, cap violations).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
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
}

impl SchedConfig {
    /// Name used on the command line and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedConfig::Default => "default",
            SchedConfig::Observer => "observer",
            SchedConfig::Enforce => "enforce",
        }
    }

    /// Label for tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            SchedConfig::Default => "kernel default",
            SchedConfig::Observer => "scx_morpheus",
            SchedConfig::Enforce => "scx_morpheus --enforce",
        }
    }

    /// Loader arguments for this configuration (`None`: no loader).
    pub fn loader_args(self) -> Option<Vec<String>> {
        match self {
            SchedConfig::Default => None,
            SchedConfig::Observer => Some(vec![]),
            SchedConfig::Enforce => Some(vec!["--enforce".into()]),
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
            _ => Err(format!(
                "'{s}' is not a scheduler configuration: expected default, observer or enforce"
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

/// A running scx_morpheus loader; dropping it stops it (SIGINT).
pub struct Loader {
    child: Child,
    metrics: SocketAddr,
    log: PathBuf,
    /// Seconds from spawn to "attached and serving".
    pub attach_secs: f64,
}

impl Loader {
    /// Starts `bin` with `args` plus a metrics endpoint on `metrics`, and
    /// waits until the kernel reports it attached and both its registration
    /// socket and metrics endpoint answer.
    pub fn start(bin: &Path, args: &[String], metrics: SocketAddr) -> Result<Loader> {
        require_sched_ext()?;
        let log =
            std::env::temp_dir().join(format!("scx_morpheus-bench-{}.log", std::process::id()));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args(args)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it, or pass --loader)",
                    bin.display()
                )
            })?;
        let mut loader = Loader {
            child,
            metrics,
            log,
            attach_secs: 0.0,
        };
        let socket = Path::new(morpheus_common::DEFAULT_SOCKET_PATH);
        let mut why = String::new();
        let ready = wait_for(ATTACH_TIMEOUT, || {
            if loader.exited() {
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
        if !ready || loader.exited() {
            let tail = loader.log_tail();
            drop(loader);
            bail!("scx_morpheus did not attach and serve ({why}):\n{tail}");
        }
        loader.attach_secs = started.elapsed().as_secs_f64();
        Ok(loader)
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// The loader's output so far (last lines).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Reads the scheduler's metrics now.
    pub fn scrape(&self) -> Result<SchedMetrics> {
        scrape(self.metrics)
    }

    /// Stops the loader (SIGINT) and waits until sched_ext is disabled.
    /// Returns its final report (the last lines of its output).
    pub fn stop(mut self) -> Result<String> {
        self.shutdown();
        Ok(self.log_tail())
    }

    fn shutdown(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        if !wait_for(Duration::from_secs(60), || self.exited()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        wait_for(Duration::from_secs(30), || {
            sched_ext_state().as_deref() != Some("enabled")
        });
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if !self.exited() {
            self.shutdown();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The scheduler's metrics: counters (`*_total`) and gauges, by name
/// without the `scx_morpheus_` prefix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedMetrics {
    /// Cumulative counters (or, after [`SchedMetrics::since`], increments).
    pub counters: BTreeMap<String, u64>,
    /// Current values.
    pub gauges: BTreeMap<String, u64>,
}

impl SchedMetrics {
    /// Parses OpenMetrics text as served by scx_morpheus.
    pub fn parse(text: &str) -> SchedMetrics {
        let mut m = SchedMetrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(' ') else {
                continue;
            };
            let Some(name) = name.strip_prefix("scx_morpheus_") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            match name.strip_suffix("_total") {
                Some(c) => m.counters.insert(c.to_string(), value as u64),
                None => m.gauges.insert(name.to_string(), value as u64),
            };
        }
        m
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
        }
    }

    /// Adds the counter increments of `b` into `self`; gauges become `b`'s.
    pub fn absorb(&mut self, b: &SchedMetrics) {
        for (k, v) in &b.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        self.gauges.clone_from(&b.gauges);
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
        assert_eq!(
            SchedConfig::Enforce.loader_args(),
            Some(vec!["--enforce".to_string()])
        );
        assert_eq!(SchedConfig::Default.loader_args(), None);
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
}

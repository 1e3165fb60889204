// SPDX-License-Identifier: GPL-2.0-only
//! Process-wide configuration: defaults, environment variables, validation.

use std::path::PathBuf;
use std::time::Duration;

use morpheus_common::{DEFAULT_SOCKET_PATH, RuntimeMode};

/// Default local time budget: how long a worker may run without passing a
/// yielding checkpoint before the budget source asks it to yield.
///
/// 10 ms is the point where Go's runtime forces preemption and twice the
/// scheduler's default slice (5 ms): long enough that a CPU-bound task pays
/// at most ~0.1 % for its yields, short enough that a latency probe sharing
/// its worker waits about one budget. Tokio's own cooperative budget (128
/// resource operations) never fires in a pure CPU loop, which is why this
/// source exists.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(10);

/// Which hint sources may run. All are on by default; see the crate docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// Kernel hints from scx_morpheus (registration over its socket).
    pub kernel: bool,
    /// The local per-worker time budget.
    pub budget: bool,
    /// System CPU pressure (PSI) tightening the budget.
    pub pressure: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            kernel: true,
            budget: true,
            pressure: true,
        }
    }
}

impl Sources {
    /// Parses a comma-separated list such as `kernel,budget` (or `none`).
    pub fn parse(text: &str) -> Result<Sources, String> {
        let mut s = Sources {
            kernel: false,
            budget: false,
            pressure: false,
        };
        let text = text.trim();
        if text.eq_ignore_ascii_case("none") {
            return Ok(s);
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "kernel" => s.kernel = true,
                "budget" => s.budget = true,
                "pressure" => s.pressure = true,
                "all" => s = Sources::default(),
                _ => {
                    return Err(format!(
                        "'{part}' is not a hint source: expected a comma-separated list of \
                         kernel, budget, pressure (or all, none)"
                    ));
                }
            }
        }
        Ok(s)
    }
}

/// Process-wide settings of the Morpheus runtime.
///
/// Read from the environment on first use (see [`Config::from_env`]) unless
/// the program calls [`crate::configure`] first. [`crate::Builder`] can override
/// the per-worker settings (budget, mode, escapable) for its own workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `false` turns every checkpoint into a no-op and never contacts the
    /// scheduler (`MORPHEUS_DISABLE=1`).
    pub enabled: bool,
    /// Path of scx_morpheus's registration socket (`MORPHEUS_SOCKET`).
    pub socket_path: PathBuf,
    /// Default local time budget per worker (`MORPHEUS_BUDGET_MS`).
    pub budget: Duration,
    /// Pin every worker to this mode instead of choosing automatically
    /// (`MORPHEUS_MODE`, `auto` for `None`).
    pub mode: Option<RuntimeMode>,
    /// Which hint sources may run (`MORPHEUS_SOURCES`).
    pub sources: Sources,
    /// Register workers as escapable by default: the scheduler may force
    /// them once they ignore a hint past the grace period
    /// (`MORPHEUS_ESCAPABLE`).
    pub escapable: bool,
    /// PSI `some avg10` (percent) at or above which the machine counts as
    /// overloaded and the budget is halved.
    pub pressure_high: f64,
    /// PSI `some avg10` (percent) below which the overload ends, once it has
    /// stayed there for [`Config::pressure_hold`].
    pub pressure_low: f64,
    /// How long pressure must stay low before the budget relaxes again.
    pub pressure_hold: Duration,
    /// How long without escalations before DEFENSIVE mode is left.
    pub defensive_hold: Duration,
    /// How often a lost or absent scheduler is looked for again.
    pub reconnect_interval: Duration,
    /// Export each live worker's yields with a `worker` label
    /// (`MORPHEUS_METRICS_PER_WORKER`, off by default: every worker number
    /// becomes a series that outlives the worker;
    /// [`crate::metrics::openmetrics_with`] overrides it per call).
    pub metrics_per_worker: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            socket_path: PathBuf::from(DEFAULT_SOCKET_PATH),
            budget: DEFAULT_BUDGET,
            mode: None,
            sources: Sources::default(),
            escapable: false,
            pressure_high: 40.0,
            pressure_low: 20.0,
            pressure_hold: Duration::from_secs(5),
            defensive_hold: Duration::from_secs(10),
            reconnect_interval: Duration::from_secs(1),
            metrics_per_worker: false,
        }
    }
}

/// An environment variable with a value Morpheus cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={:?} is invalid: {}; fix or unset the variable",
            self.var, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Parses `MORPHEUS_MODE`: `auto` or a mode name.
pub(crate) fn parse_mode(v: &str) -> Result<Option<RuntimeMode>, String> {
    if v.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    v.parse::<RuntimeMode>()
        .map(Some)
        .map_err(|e| format!("{e} (or auto)"))
}

impl Config {
    /// The defaults overridden by the `MORPHEUS_*` environment variables.
    ///
    /// Variables: `MORPHEUS_DISABLE` (bool), `MORPHEUS_SOCKET` (path),
    /// `MORPHEUS_MODE` (`auto`, `deterministic`, `pressured`, `defensive`),
    /// `MORPHEUS_BUDGET_MS` (milliseconds, 0.1 to 10000),
    /// `MORPHEUS_SOURCES` (e.g. `kernel,budget,pressure` or `none`),
    /// `MORPHEUS_ESCAPABLE` (bool), `MORPHEUS_METRICS_PER_WORKER` (bool).
    /// The first invalid value is an error.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut c = Config::default();
        match c.apply_env(|k| std::env::var(k).ok()).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(c),
        }
    }

    /// Applies the variables found by `get`; invalid ones are skipped and
    /// returned (the default stays).
    pub(crate) fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut bad = |var: &'static str, value: &str, expected: &str| {
            errors.push(ConfigError {
                var,
                value: value.to_string(),
                expected: expected.to_string(),
            })
        };
        if let Some(v) = get("MORPHEUS_DISABLE") {
            match parse_bool(&v) {
                Some(b) => self.enabled = !b,
                None => bad("MORPHEUS_DISABLE", &v, "expected 1/true/yes or 0/false/no"),
            }
        }
        if let Some(v) = get("MORPHEUS_SOCKET") {
            if v.trim().is_empty() {
                bad(
                    "MORPHEUS_SOCKET",
                    &v,
                    "expected the path of scx_morpheus's socket",
                );
            } else {
                self.socket_path = PathBuf::from(v);
            }
        }
        if let Some(v) = get("MORPHEUS_MODE") {
            match parse_mode(&v) {
                Ok(m) => self.mode = m,
                Err(e) => bad("MORPHEUS_MODE", &v, &e),
            }
        }
        if let Some(v) = get("MORPHEUS_BUDGET_MS") {
            match v.trim().parse::<f64>() {
                Ok(ms) if (0.1..=10_000.0).contains(&ms) => {
                    self.budget = Duration::from_secs_f64(ms / 1000.0)
                }
                _ => bad(
                    "MORPHEUS_BUDGET_MS",
                    &v,
                    "expected milliseconds between 0.1 and 10000, e.g. 10",
                ),
            }
        }
        if let Some(v) = get("MORPHEUS_SOURCES") {
            match Sources::parse(&v) {
                Ok(s) => self.sources = s,
                Err(e) => bad("MORPHEUS_SOURCES", &v, &e),
            }
        }
        if let Some(v) = get("MORPHEUS_ESCAPABLE") {
            match parse_bool(&v) {
                Some(b) => self.escapable = b,
                None => bad(
                    "MORPHEUS_ESCAPABLE",
                    &v,
                    "expected 1/true/yes or 0/false/no",
                ),
            }
        }
        if let Some(v) = get("MORPHEUS_METRICS_PER_WORKER") {
            match parse_bool(&v) {
                Some(b) => self.metrics_per_worker = b,
                None => bad(
                    "MORPHEUS_METRICS_PER_WORKER",
                    &v,
                    "expected 1/true/yes or 0/false/no",
                ),
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> (Config, Vec<ConfigError>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Config::default();
        let errors = c.apply_env(|k| map.get(k).cloned());
        (c, errors)
    }

    #[test]
    fn env_overrides_defaults() {
        let (c, errors) = env(&[
            ("MORPHEUS_DISABLE", "0"),
            ("MORPHEUS_SOCKET", "/tmp/x.sock"),
            ("MORPHEUS_MODE", "Defensive"),
            ("MORPHEUS_BUDGET_MS", "2.5"),
            ("MORPHEUS_SOURCES", "budget, pressure"),
            ("MORPHEUS_ESCAPABLE", "yes"),
            ("MORPHEUS_METRICS_PER_WORKER", "1"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(c.metrics_per_worker);
        assert!(c.enabled);
        assert_eq!(c.socket_path, PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.mode, Some(RuntimeMode::Defensive));
        assert_eq!(c.budget, Duration::from_micros(2500));
        assert_eq!(
            c.sources,
            Sources {
                kernel: false,
                budget: true,
                pressure: true
            }
        );
        assert!(c.escapable);
        let (c, _) = env(&[("MORPHEUS_DISABLE", "1"), ("MORPHEUS_MODE", "auto")]);
        assert!(!c.enabled);
        assert_eq!(c.mode, None);
    }

    #[test]
    fn bad_values_are_reported_and_keep_defaults() {
        let (c, errors) = env(&[
            ("MORPHEUS_BUDGET_MS", "ten"),
            ("MORPHEUS_MODE", "fast"),
            ("MORPHEUS_SOURCES", "kernel,gpu"),
            ("MORPHEUS_DISABLE", "maybe"),
            ("MORPHEUS_METRICS_PER_WORKER", "workers"),
        ]);
        assert_eq!(c, Config::default());
        assert_eq!(errors.len(), 5);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("MORPHEUS_BUDGET_MS=\"ten\"")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("deterministic, pressured, defensive")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("'gpu' is not a hint source")),
            "{text:?}"
        );
        let (_, errors) = env(&[("MORPHEUS_BUDGET_MS", "0")]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            Sources::parse("none").unwrap(),
            Sources {
                kernel: false,
                budget: false,
                pressure: false
            }
        );
    }
}

// SPDX-License-Identifier: GPL-2.0-only
//! Per-round figures to medians and ranges: a program that runs its
//! configurations in alternating rounds names its headline figures per
//! round ([`Figures`]); [`Compared::build`] turns the rounds into, per
//! configuration, the median and range (min..max) of each figure over the
//! rounds, and the same for its ratio to the kernel default scheduler's
//! figure, computed round by round (within one round, where both ran under
//! the same background conditions) rather than as a ratio of medians.

use serde::{Deserialize, Serialize};

use crate::harness::ConfigRun;
use crate::report::Table;
use crate::sched::{SchedConfig, SchedMetrics};

/// Names of the headline figures that more than one program reads (the
/// benchmark that writes them and the demo table).
pub mod names {
    /// latency: median light-request latency.
    pub const LIGHT_P50: &str = "light p50 ms";
    /// latency: 99th percentile light-request latency.
    pub const LIGHT_P99: &str = "light p99 ms";
    /// latency: heavy requests completed per second.
    pub const HEAVY_PER_S: &str = "heavy/s";
    /// latency: 99th percentile of the send phase (the client's wake-up).
    pub const SEND_P99: &str = "send p99 ms";
    /// latency: 99th percentile of the serve phase (written -> read).
    pub const SERVE_P99: &str = "serve p99 ms";
    /// wakeup: median wake-up delay.
    pub const WAKE_P50: &str = "wake p50 ms";
    /// wakeup: 99th percentile wake-up delay.
    pub const WAKE_P99: &str = "wake p99 ms";
    /// wakeup: 99.9th percentile wake-up delay.
    pub const WAKE_P999: &str = "wake p99.9 ms";
    /// neutrality: hackbench messages per second.
    pub const MESSAGES_PER_S: &str = "messages/s";

    /// starvation: work units per second of `strategy`'s tasks.
    pub fn units_per_s(strategy: &str) -> String {
        format!("{strategy} units/s")
    }

    /// starvation: probe p99 under `strategy`.
    pub fn probe_p99(strategy: &str) -> String {
        format!("{strategy} probe p99 ms")
    }

    /// starvation: the Morpheus probe's p99 over Naive `yield_now`'s, same
    /// round.
    pub const MORPHEUS_VS_NAIVE_P99: &str = "morpheus/naive probe p99";

    /// starvation: the Morpheus probe's p99 over Tokio coop's, same round.
    pub const MORPHEUS_VS_COOP_P99: &str = "morpheus/coop probe p99";

    /// starvation: Morpheus tasks' throughput over Blocking's, same run.
    pub const MORPHEUS_VS_BLOCKING: &str = "morpheus/blocking units";

    /// starvation: the CPU time Morpheus workers got over what Blocking
    /// workers got, same run (a worker that yields at a hint gives up its
    /// turn, not its share).
    pub const MORPHEUS_VS_BLOCKING_CPU: &str = "morpheus/blocking worker CPUs";
}

/// A round's headline figures: (name with unit, value), in display order.
pub type Figures = Vec<(String, f64)>;

/// Median and range of one figure over rounds, with the per-round values
/// (`None` where the figure is undefined in that round, e.g. a ratio to
/// zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median of the defined values (mean of the middle two for an even
    /// count).
    pub median: f64,
    /// Smallest defined value.
    pub min: f64,
    /// Largest defined value.
    pub max: f64,
    /// Value per round, in round order.
    pub per_round: Vec<Option<f64>>,
}

impl Spread {
    /// The spread of `per_round`, ignoring undefined and non-finite values;
    /// `None` when no value is defined.
    pub fn of(per_round: Vec<Option<f64>>) -> Option<Spread> {
        let per_round: Vec<Option<f64>> = per_round
            .into_iter()
            .map(|v| v.filter(|v| v.is_finite()))
            .collect();
        let mut v: Vec<f64> = per_round.iter().flatten().copied().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            per_round,
        })
    }

    /// "median (min..max)" with `fmt` for each number; just the value for a
    /// single round.
    pub fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.per_round.len() <= 1 || self.min == self.max {
            fmt(self.median)
        } else {
            format!(
                "{} ({}..{})",
                fmt(self.median),
                fmt(self.min),
                fmt(self.max)
            )
        }
    }
}

/// `a[i] / base[i]` round by round (`None` where either is missing or the
/// base is zero).
pub fn ratios(a: &[Option<f64>], base: &[Option<f64>]) -> Vec<Option<f64>> {
    a.iter()
        .zip(base)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) if *b != 0.0 => Some(a / b),
            _ => None,
        })
        .collect()
}

/// One headline figure of one configuration over the rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Headline {
    /// The figure's name with its unit (e.g. "light p99 ms").
    pub figure: String,
    /// Its median and range (`None`: undefined in every round).
    pub value: Option<Spread>,
    /// Its ratio to the kernel default scheduler's, per round (`None`:
    /// no default run, or this is it).
    pub vs_default: Option<Spread>,
}

/// One configuration's rounds and their headline figures: what a program
/// that runs rounds writes as one entry of `runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compared<T> {
    /// Human-readable configuration.
    pub label: String,
    /// The configuration, if chosen by `--sched`.
    pub sched: Option<SchedConfig>,
    /// Median and range of each headline figure.
    pub headline: Vec<Headline>,
    /// The raw runs, one per round, in round order.
    pub rounds: Vec<ConfigRun<T>>,
}

impl<T> Compared<T> {
    /// Groups `rounds` (each: one run per configuration, in the same order)
    /// by configuration and computes the headlines with `figures`.
    pub fn build(
        rounds: Vec<Vec<ConfigRun<T>>>,
        figures: impl Fn(&T) -> Figures,
    ) -> Vec<Compared<T>> {
        let mut out: Vec<Compared<T>> = Vec::new();
        for round in rounds {
            for (i, run) in round.into_iter().enumerate() {
                if out.len() <= i {
                    out.push(Compared {
                        label: run.label.clone(),
                        sched: run.sched,
                        headline: Vec::new(),
                        rounds: Vec::new(),
                    });
                }
                out[i].rounds.push(run);
            }
        }
        // Per configuration: figure name -> value per round.
        let table: Vec<Vec<(String, Vec<Option<f64>>)>> = out
            .iter()
            .map(|c| per_figure(&c.rounds, &figures))
            .collect();
        let base = out
            .iter()
            .position(|c| c.sched == Some(SchedConfig::Default));
        for (i, c) in out.iter_mut().enumerate() {
            c.headline = table[i]
                .iter()
                .map(|(name, values)| {
                    let vs_default = base.filter(|&b| b != i).and_then(|b| {
                        let base_values = table[b].iter().find(|(n, _)| n == name)?;
                        Spread::of(ratios(values, &base_values.1))
                    });
                    Headline {
                        figure: name.clone(),
                        value: Spread::of(values.clone()),
                        vs_default,
                    }
                })
                .collect();
        }
        out
    }

    /// The headline figure `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Headline> {
        self.headline.iter().find(|h| h.figure == name)
    }

    /// The scheduler's metrics summed over the rounds (`None`: the
    /// scheduler serves none).
    pub fn sched_metrics(&self) -> Option<SchedMetrics> {
        let mut all: Option<SchedMetrics> = None;
        for m in self.rounds.iter().filter_map(|r| r.sched_metrics.as_ref()) {
            all.get_or_insert_with(SchedMetrics::default).absorb(m);
        }
        all
    }
}

/// Each figure's value per round, figures in the order they first appear.
fn per_figure<T>(
    runs: &[ConfigRun<T>],
    figures: &impl Fn(&T) -> Figures,
) -> Vec<(String, Vec<Option<f64>>)> {
    let mut out: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        for (name, v) in figures(&run.result) {
            let k = match out.iter().position(|(n, _)| *n == name) {
                Some(k) => k,
                None => {
                    out.push((name, vec![None; runs.len()]));
                    out.len() - 1
                }
            };
            out[k].1[r] = Some(v);
        }
    }
    out
}

/// A limit a target puts on a figure's per-round ratio to the kernel
/// default's (judged on the median).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// The median ratio must be at most this.
    AtMost(f64),
    /// The median ratio must be at least this.
    AtLeast(f64),
}

/// "met" or "MISSED".
pub fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

impl<T> Compared<T> {
    /// The median of headline `figure` (`None` if undefined or absent).
    pub fn median(&self, figure: &str) -> Option<f64> {
        self.get(figure)?.value.as_ref().map(|s| s.median)
    }

    /// One line judging `figure`'s ratio to the kernel default against
    /// `limit`, e.g. "light p99 ms 0.62x (0.55x..0.70x) of kernel default,
    /// target <= 0.50x: MISSED". Says so plainly when it cannot be judged.
    pub fn judge(&self, figure: &str, limit: Limit) -> String {
        let (sign, x) = match limit {
            Limit::AtMost(x) => ("<=", x),
            Limit::AtLeast(x) => (">=", x),
        };
        let target = format!("target {sign} {x:.2}x");
        match self.get(figure).and_then(|h| h.vs_default.as_ref()) {
            None => format!("{figure}: no ratio to kernel default ({target}): NOT MEASURED"),
            Some(r) => {
                let ok = match limit {
                    Limit::AtMost(x) => r.median <= x,
                    Limit::AtLeast(x) => r.median >= x,
                };
                // The verdict is the median's; say when single rounds
                // fell on both sides of the limit.
                let mixed = if r.min < x && x < r.max {
                    " (rounds on both sides of the limit)"
                } else {
                    ""
                };
                format!(
                    "{figure} {} of kernel default, {target}: {}{mixed}",
                    r.show(|v| format!("{v:.2}x")),
                    verdict(ok)
                )
            }
        }
    }

    /// One line judging whether `figure`'s median is below `other`'s
    /// (lower is better), e.g. "light p99 ms 9.1 vs scx_bpfland's 8.0,
    /// target below: MISSED".
    pub fn judge_below<U>(&self, other: &Compared<U>, figure: &str) -> String {
        match (self.median(figure), other.median(figure)) {
            (Some(a), Some(b)) => format!(
                "{figure} {a:.3} vs {}'s {b:.3}, target below: {}",
                other.label,
                verdict(a < b)
            ),
            _ => format!(
                "{figure}: not measured for both {} and {}",
                self.label, other.label
            ),
        }
    }
}

/// One table, a row per headline figure: each configuration's median
/// (min..max) over the rounds, then each configuration's per-round ratio to
/// the kernel default's (median and range).
pub fn render<T>(runs: &[Compared<T>]) -> String {
    let Some(first) = runs.first() else {
        return String::new();
    };
    let num = |v: f64| {
        let a = v.abs();
        if a >= 100.0 {
            format!("{v:.0}")
        } else if a >= 10.0 {
            format!("{v:.1}")
        } else if a >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    };
    let ratio = |v: f64| format!("{v:.2}x");
    let with_ratio: Vec<&Compared<T>> = runs
        .iter()
        .filter(|c| c.headline.iter().any(|h| h.vs_default.is_some()))
        .collect();
    let mut head = vec![format!(
        "median (min..max) of {} round(s)",
        first.rounds.len()
    )];
    head.extend(runs.iter().map(|c| c.label.clone()));
    head.extend(with_ratio.iter().map(|c| format!("{} / default", c.label)));
    let mut t = Table::new(&head);
    // Every configuration's figures, in the order they first appear: a
    // figure some configurations lack (the scheduler's own counters) gets
    // its row, "n/a" where it is absent.
    let mut figures: Vec<&str> = Vec::new();
    for h in runs.iter().flat_map(|c| &c.headline) {
        if !figures.contains(&h.figure.as_str()) {
            figures.push(&h.figure);
        }
    }
    for f in figures {
        let mut row = vec![f.to_string()];
        row.extend(runs.iter().map(|c| {
            c.get(f)
                .and_then(|h| h.value.as_ref())
                .map_or("n/a".into(), |s| s.show(num))
        }));
        row.extend(with_ratio.iter().map(|c| {
            c.get(f)
                .and_then(|h| h.vs_default.as_ref())
                .map_or("n/a".into(), |s| s.show(ratio))
        }));
        t.row(&row);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sched: SchedConfig, x: f64) -> ConfigRun<f64> {
        ConfigRun {
            label: sched.label().into(),
            sched: Some(sched),
            sched_metrics: None,
            attach_secs: None,
            result: x,
        }
    }

    #[test]
    fn median_and_range_of_odd_and_even_counts() {
        let s = Spread::of(vec![Some(3.0), Some(1.0), Some(2.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(vec![Some(4.0), Some(1.0), Some(3.0), Some(10.0)]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.5, 1.0, 10.0));
        // Undefined rounds are skipped but kept in the per-round record.
        let s = Spread::of(vec![None, Some(5.0), Some(f64::NAN)]).unwrap();
        assert_eq!((s.median, s.min, s.max), (5.0, 5.0, 5.0));
        assert_eq!(s.per_round, vec![None, Some(5.0), None]);
        assert!(Spread::of(vec![None]).is_none());
        assert_eq!(s.show(|v| format!("{v}")), "5");
        let s = Spread::of(vec![Some(1.0), Some(2.0)]).unwrap();
        assert_eq!(s.show(|v| format!("{v}")), "1.5 (1..2)");
    }

    #[test]
    fn ratios_are_per_round_not_of_medians() {
        // Default 1, 10, 100; observer 3, 20, 50: per-round ratios 3, 2, 0.5.
        let rounds = vec![
            vec![
                run(SchedConfig::Default, 1.0),
                run(SchedConfig::Observer, 3.0),
            ],
            vec![
                run(SchedConfig::Default, 10.0),
                run(SchedConfig::Observer, 20.0),
            ],
            vec![
                run(SchedConfig::Default, 100.0),
                run(SchedConfig::Observer, 50.0),
            ],
        ];
        let c = Compared::build(rounds, |x| vec![("x".to_string(), *x)]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].rounds.len(), 3);
        let h = c[1].get("x").unwrap();
        assert_eq!(h.value.as_ref().unwrap().median, 20.0);
        let r = h.vs_default.as_ref().unwrap();
        assert_eq!((r.median, r.min, r.max), (2.0, 0.5, 3.0));
        assert!(c[0].get("x").unwrap().vs_default.is_none());
        let text = render(&c);
        assert!(text.contains("2.00x (0.50x..3.00x)"), "{text}");
        let line = c[1].judge("x", Limit::AtMost(2.5));
        assert!(
            line.ends_with("target <= 2.50x: met (rounds on both sides of the limit)"),
            "{line}"
        );
        let line = c[1].judge("x", Limit::AtMost(3.0));
        assert!(line.ends_with("target <= 3.00x: met"), "{line}");
        let line = c[1].judge("x", Limit::AtLeast(2.5));
        assert!(
            line.ends_with("MISSED (rounds on both sides of the limit)"),
            "{line}"
        );
    }

    #[test]
    fn ratio_of_medians_would_differ() {
        // Default 1, 4; bpfland 4, 4: per-round ratios 4 and 1 (median
        // 2.5), while the ratio of the medians is 4 / 2.5 = 1.6.
        let rounds = vec![
            vec![
                run(SchedConfig::Default, 1.0),
                run(SchedConfig::Bpfland, 4.0),
            ],
            vec![
                run(SchedConfig::Default, 4.0),
                run(SchedConfig::Bpfland, 4.0),
            ],
        ];
        let c = Compared::build(rounds, |x| vec![("x".to_string(), *x)]);
        let r = c[1].get("x").unwrap().vs_default.clone().unwrap();
        assert_eq!(r.median, 2.5);
        assert_eq!(r.per_round, vec![Some(4.0), Some(1.0)]);
    }

    #[test]
    fn a_figure_only_some_configurations_have_gets_its_row() {
        // The default has "x" only; scx_morpheus also has "violations".
        let rounds = vec![vec![
            run(SchedConfig::Default, 1.0),
            run(SchedConfig::Observer, 2.0),
        ]];
        let c = Compared::build(rounds, |x| {
            let mut f = vec![("x".to_string(), *x)];
            if *x > 1.5 {
                f.push(("violations".to_string(), 7.0));
            }
            f
        });
        let text = render(&c);
        let row = text
            .lines()
            .find(|l| l.starts_with("violations"))
            .unwrap_or_else(|| panic!("no violations row:\n{text}"));
        assert!(row.contains("n/a") && row.contains('7'), "{row}");
    }

    #[test]
    fn no_default_run_means_no_ratios_and_zero_base_is_undefined() {
        let rounds = vec![vec![run(SchedConfig::Observer, 1.0)]];
        let c = Compared::build(rounds, |x| vec![("x".to_string(), *x)]);
        assert!(c[0].get("x").unwrap().vs_default.is_none());
        assert_eq!(
            ratios(&[Some(1.0), Some(2.0)], &[Some(0.0), None]),
            vec![None, None]
        );
    }
}

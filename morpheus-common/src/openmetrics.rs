// SPDX-License-Identifier: GPL-2.0-only
//! OpenMetrics text exposition (what Prometheus scrapes), written the same
//! way by the loader and the runtimes: every family's `# TYPE` and `# HELP`
//! lines followed by its samples, counters' samples named `_total`, label
//! values escaped, and one `# EOF` at the end.
//!
//! ```
//! use morpheus_common::openmetrics::{Exposition, Kind};
//!
//! let mut m = Exposition::new("demo_");
//! m.counter("hints_sent", "Hints sent.", 3);
//! m.family("mode", Kind::Gauge, "1 for the current mode.")
//!     .sample(&[("mode", "pressured")], 1)
//!     .sample(&[("mode", "defensive")], 0);
//! let text = m.finish();
//! assert!(text.contains("demo_hints_sent_total 3\n"));
//! assert!(text.contains("demo_mode{mode=\"pressured\"} 1\n"));
//! assert!(text.ends_with("# EOF\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::{Display, Write};

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (samples are named `<family>_total`).
    Counter,
    /// A current value.
    Gauge,
    /// Cumulative buckets, and a sum and a count when the sum is known
    /// ([`Family::histogram`]).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// An exposition being written; [`Exposition::finish`] ends it.
#[derive(Debug)]
pub struct Exposition {
    out: String,
    prefix: &'static str,
}

impl Exposition {
    /// An empty exposition whose metric names all start with `prefix`.
    pub fn new(prefix: &'static str) -> Exposition {
        Exposition {
            out: String::new(),
            prefix,
        }
    }

    /// Starts a family; its samples follow ([`Family::sample`]).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> Family<'_> {
        let name = format!("{}{name}", self.prefix);
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        Family {
            exp: self,
            name,
            kind,
        }
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help).sample(&[], value);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Gauge, help).sample(&[], value);
    }

    /// The text, ending with `# EOF`.
    pub fn finish(mut self) -> String {
        self.out.push_str("# EOF\n");
        self.out
    }
}

/// A family whose samples are being written.
#[derive(Debug)]
pub struct Family<'a> {
    exp: &'a mut Exposition,
    name: String,
    kind: Kind,
}

impl Family<'_> {
    /// One sample with `labels` (name, value; values are escaped).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        self.line(suffix, labels, value);
        self
    }

    /// A histogram's samples: `buckets` are (upper bound, observations at
    /// most that bound, cumulative) in increasing order; `count` is every
    /// observation (the `+Inf` bucket) and `sum` their total, if known.
    ///
    /// Without a sum there is no `_count` sample either: OpenMetrics
    /// requires `_count` exactly when `_sum` is present, and the `+Inf`
    /// bucket already says how many observations there were.
    pub fn histogram(&mut self, buckets: &[(f64, u64)], count: u64, sum: Option<f64>) -> &mut Self {
        debug_assert_eq!(self.kind, Kind::Histogram);
        for (le, n) in buckets {
            self.line("_bucket", &[("le", &le.to_string())], n);
        }
        self.line("_bucket", &[("le", "+Inf")], count);
        if let Some(sum) = sum {
            self.line("_sum", &[], sum);
            self.line("_count", &[], count);
        }
        self
    }

    fn line(&mut self, suffix: &str, labels: &[(&str, &str)], value: impl Display) {
        let out = &mut self.exp.out;
        let _ = write!(out, "{}{suffix}", self.name);
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { '{' } else { ',' };
            let _ = write!(out, "{sep}{k}=\"{}\"", escape_label(v));
        }
        if !labels.is_empty() {
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }
}

/// A label value as OpenMetrics writes it: backslash, double quote and
/// newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help text: backslash and newline escaped (quotes are fine there).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Quantile `q` (0..1) of a histogram given as cumulative buckets (upper
/// bound in seconds, observations at most that long; the last one `+Inf`,
/// the total): the bound of the bucket it falls in, in microseconds
/// (`u64::MAX` past the last finite bound); `None` when nothing was
/// observed.
pub fn quantile_us(buckets: &[(f64, u64)], q: f64) -> Option<u64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let want = ((total as f64 * q).ceil() as u64).max(1);
    let (le, _) = buckets.iter().find(|(_, n)| *n >= want)?;
    Some(if le.is_finite() {
        (le * 1e6).round() as u64
    } else {
        u64::MAX
    })
}

/// An exposition read back, as tests and benchmarks scrape one: the
/// unlabelled samples of the families named with a prefix, by family name
/// without it, and the buckets of its histograms. Labelled samples other
/// than buckets are skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Counters (`<prefix>hints_sent_total 3`: `hints_sent`, 3).
    pub counters: BTreeMap<String, u64>,
    /// Gauges: every other unlabelled sample.
    pub gauges: BTreeMap<String, u64>,
    /// Histograms by family: cumulative (upper bound in seconds, count),
    /// in the order written, `+Inf` last.
    pub histograms: BTreeMap<String, Vec<(f64, u64)>>,
}

impl Scrape {
    /// Reads the samples of `text` whose names start with `prefix`.
    pub fn parse(text: &str, prefix: &str) -> Scrape {
        let mut m = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(name) = name.strip_prefix(prefix) else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if let Some((family, le)) = name.split_once("_bucket{le=\"") {
                let le = le.trim_end_matches("\"}");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                m.histograms
                    .entry(family.to_string())
                    .or_default()
                    .push((le, value as u64));
                continue;
            }
            if name.contains('{') {
                continue;
            }
            match name.strip_suffix("_total") {
                Some(c) => m.counters.insert(c.to_string(), value as u64),
                None => m.gauges.insert(name.to_string(), value as u64),
            };
        }
        m
    }

    /// The value of counter or gauge `name`.
    pub fn value(&self, name: &str) -> Option<u64> {
        self.counters
            .get(name)
            .or_else(|| self.gauges.get(name))
            .copied()
    }

    /// How many observations histogram `family` counted (its `+Inf`
    /// bucket; 0 when it has none).
    pub fn count(&self, family: &str) -> u64 {
        self.histograms
            .get(family)
            .and_then(|b| b.last())
            .map_or(0, |b| b.1)
    }

    /// [`quantile_us`] of histogram `family`; `None` if it has none or is
    /// empty.
    pub fn quantile_us(&self, family: &str, q: f64) -> Option<u64> {
        quantile_us(self.histograms.get(family)?, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_whole_with_typed_sample_names() {
        let mut m = Exposition::new("t_");
        m.counter("sent", "Sent.", 7);
        m.gauge("slice_us", "Slice.", 2000);
        m.family("yields", Kind::Counter, "Yields, by cause.")
            .sample(&[("cause", "hint")], 2)
            .sample(&[("cause", "budget"), ("worker", "1")], 3);
        m.family("response_seconds", Kind::Histogram, "Response.")
            .histogram(&[(0.0005, 1), (0.001, 3)], 4, Some(0.25));
        let text = m.finish();
        assert_eq!(
            text,
            "# TYPE t_sent counter\n# HELP t_sent Sent.\nt_sent_total 7\n\
             # TYPE t_slice_us gauge\n# HELP t_slice_us Slice.\nt_slice_us 2000\n\
             # TYPE t_yields counter\n# HELP t_yields Yields, by cause.\n\
             t_yields_total{cause=\"hint\"} 2\n\
             t_yields_total{cause=\"budget\",worker=\"1\"} 3\n\
             # TYPE t_response_seconds histogram\n# HELP t_response_seconds Response.\n\
             t_response_seconds_bucket{le=\"0.0005\"} 1\n\
             t_response_seconds_bucket{le=\"0.001\"} 3\n\
             t_response_seconds_bucket{le=\"+Inf\"} 4\n\
             t_response_seconds_sum 0.25\nt_response_seconds_count 4\n# EOF\n"
        );
    }

    #[test]
    fn a_histogram_without_a_sum_has_no_count_either() {
        let mut m = Exposition::new("t_");
        m.family("delay_seconds", Kind::Histogram, "Delay.")
            .histogram(&[(0.000002, 5)], 6, None);
        let text = m.finish();
        assert_eq!(
            text,
            "# TYPE t_delay_seconds histogram\n# HELP t_delay_seconds Delay.\n\
             t_delay_seconds_bucket{le=\"0.000002\"} 5\n\
             t_delay_seconds_bucket{le=\"+Inf\"} 6\n# EOF\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut m = Exposition::new("t_");
        m.family("odd", Kind::Gauge, "Line one\nline \\two \"quoted\"")
            .sample(&[("v", "a\"b\\c\nd")], 1);
        let text = m.finish();
        assert!(
            text.contains("# HELP t_odd Line one\\nline \\\\two \"quoted\"\n"),
            "{text}"
        );
        assert!(text.contains("t_odd{v=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
        // Every line is one line: nothing unescaped split one.
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn quantiles_are_bucket_bounds_in_microseconds() {
        let b = [
            (0.000_002, 1),
            (0.000_004, 3),
            (0.000_008, 4),
            (f64::INFINITY, 5),
        ];
        assert_eq!(quantile_us(&b, 0.2), Some(2));
        assert_eq!(quantile_us(&b, 0.5), Some(4));
        assert_eq!(quantile_us(&b, 0.8), Some(8));
        assert_eq!(quantile_us(&b, 0.99), Some(u64::MAX));
        assert_eq!(quantile_us(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(quantile_us(&[], 0.5), None);
    }

    #[test]
    fn a_scrape_reads_back_what_an_exposition_wrote() {
        let mut m = Exposition::new("t_");
        m.counter("sent", "Sent.", 7);
        m.gauge("slice_us", "Slice.", 2000);
        m.family("yields", Kind::Counter, "Yields, by cause.")
            .sample(&[("cause", "hint")], 2);
        m.family("delay_seconds", Kind::Histogram, "Delay.")
            .histogram(&[(0.000016, 90), (0.002048, 99)], 100, None);
        let text = m.finish() + "other_sent_total 9\n";
        let s = Scrape::parse(&text, "t_");
        assert_eq!(s.value("sent"), Some(7));
        assert_eq!(s.value("slice_us"), Some(2000));
        assert_eq!(
            s.counters.len(),
            1,
            "labelled and foreign samples skipped: {s:?}"
        );
        assert_eq!(s.gauges.len(), 1, "{s:?}");
        assert_eq!(s.count("delay_seconds"), 100);
        assert_eq!(s.quantile_us("delay_seconds", 0.5), Some(16));
        assert_eq!(s.quantile_us("delay_seconds", 0.99), Some(2048));
        assert_eq!(s.quantile_us("delay_seconds", 1.0), Some(u64::MAX));
        assert_eq!((s.count("none"), s.quantile_us("none", 0.5)), (0, None));
    }
}

// SPDX-License-Identifier: GPL-2.0-only
//! [`MorpheusCollector`]: the runtime's figures in a service's own
//! `prometheus_client` registry (feature `prometheus-client`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;

use super::families::{Family, Labels, PREFIX, Samples, families};

/// Adds the runtime's metric families to a `prometheus_client` registry,
/// read afresh at each scrape, with the names of
/// [`openmetrics`](super::openmetrics)'s text (`morpheus_runtime_...`).
///
/// Register it on the registry itself, not a sub-registry made with
/// `sub_registry_with_prefix`, which would prefix the names again.
///
/// ```
/// use morpheus_runtime::metrics::MorpheusCollector;
/// use prometheus_client::registry::Registry;
///
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(MorpheusCollector::new()));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("# TYPE morpheus_runtime_yields counter\n"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct MorpheusCollector {
    per_worker: Option<bool>,
}

impl MorpheusCollector {
    /// A collector with the process's configured options (per-worker
    /// samples only with `MORPHEUS_METRICS_PER_WORKER=1`).
    pub fn new() -> MorpheusCollector {
        MorpheusCollector { per_worker: None }
    }

    /// Whether to add the `worker`-labelled samples, whatever the
    /// configuration says (`MORPHEUS_METRICS_PER_WORKER`).
    pub fn per_worker(mut self, on: bool) -> MorpheusCollector {
        self.per_worker = Some(on);
        self
    }
}

impl Default for MorpheusCollector {
    fn default() -> Self {
        MorpheusCollector::new()
    }
}

impl Collector for MorpheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (snapshot, opts) = super::snapshot_and_options(self.per_worker);
        for f in families(&snapshot, opts) {
            encode_family(&mut encoder, &f)?;
        }
        Ok(())
    }
}

fn encode_family(encoder: &mut DescriptorEncoder<'_>, f: &Family) -> Result<(), std::fmt::Error> {
    let name = format!("{PREFIX}{}", f.name);
    let kind = match f.samples {
        Samples::Counter(_) => MetricType::Counter,
        Samples::Gauge(_) => MetricType::Gauge,
        Samples::Histogram { .. } => MetricType::Histogram,
    };
    let mut metric = encoder.encode_descriptor(&name, f.help, None, kind)?;
    match &f.samples {
        Samples::Counter(samples) => {
            for (labels, v) in samples {
                with_labels(&mut metric, labels, |m| {
                    m.encode_counter::<Labels, _, f64>(v, None)
                })?;
            }
        }
        Samples::Gauge(samples) => {
            for (labels, v) in samples {
                with_labels(&mut metric, labels, |m| m.encode_gauge(v))?;
            }
        }
        Samples::Histogram {
            buckets,
            count,
            sum,
        } => {
            // prometheus_client adds the buckets up itself, and writes the
            // bound f64::MAX as +Inf.
            let mut per_bucket = Vec::with_capacity(buckets.len() + 1);
            let mut below = 0;
            for (le, cumulative) in buckets {
                per_bucket.push((*le, cumulative - below));
                below = *cumulative;
            }
            per_bucket.push((f64::MAX, count - below));
            metric.encode_histogram::<Labels>(*sum, *count, &per_bucket, None)?;
        }
    }
    Ok(())
}

/// Encodes one sample through `encode`, in a labelled family when it has
/// labels.
fn with_labels(
    metric: &mut MetricEncoder<'_>,
    labels: &Labels,
    encode: impl FnOnce(&mut MetricEncoder<'_>) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    if labels.is_empty() {
        encode(metric)
    } else {
        encode(&mut metric.encode_family(labels)?)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    fn scrape(c: MorpheusCollector) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(c));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn the_families_have_the_endpoints_names_and_types() {
        let text = scrape(MorpheusCollector::new().per_worker(false));
        let own = super::super::openmetrics();
        for line in own.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing in:\n{text}"
            );
        }
        assert!(
            text.contains("morpheus_runtime_yields_total{cause=\"hint\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("morpheus_runtime_hint_response_seconds_bucket{le=\"+Inf\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("worker="), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// A collector of fixed families.
    #[derive(Debug)]
    struct Fixed(Vec<Family>);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            self.0
                .iter()
                .try_for_each(|f| encode_family(&mut encoder, f))
        }
    }

    fn scrape_fixed(families: Vec<Family>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(families)));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn histograms_stay_cumulative_and_counters_keep_their_labels() {
        let text = scrape_fixed(vec![
            Family {
                name: "hint_response_seconds",
                help: "Response.",
                samples: Samples::Histogram {
                    buckets: vec![(0.00001, 1), (0.0001, 3)],
                    count: 4,
                    sum: 0.5,
                },
            },
            Family {
                name: "worker_yields",
                help: "Yields.",
                samples: Samples::Counter(vec![(
                    vec![("worker", "7".into()), ("cause", "hint".into())],
                    2,
                )]),
            },
        ]);
        let bucket = |n: usize| {
            text.lines()
                .filter(|l| l.starts_with("morpheus_runtime_hint_response_seconds_bucket"))
                .nth(n)
                .unwrap_or_else(|| panic!("no bucket {n} in:\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_string()
        };
        // Cumulative as given: 1, 3, then every observation at +Inf.
        assert_eq!(
            (bucket(0), bucket(1), bucket(2)),
            ("1".into(), "3".into(), "4".into())
        );
        assert!(text.contains("_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(
            text.contains("morpheus_runtime_hint_response_seconds_count 4\n"),
            "{text}"
        );
        assert!(
            text.contains("morpheus_runtime_hint_response_seconds_sum 0.5\n"),
            "{text}"
        );
        assert!(
            text.contains("morpheus_runtime_worker_yields_total{worker=\"7\",cause=\"hint\"} 2\n"),
            "{text}"
        );
    }
}

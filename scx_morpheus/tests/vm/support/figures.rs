// SPDX-License-Identifier: GPL-2.0-only
//! Reading the loader's figures as it prints them (`--stats`, `--monitor`,
//! the exit totals: blocks of lines of "name value" pairs, see
//! src/lines.rs) and its OpenMetrics histograms.

/// The first line of each printed block.
pub const BLOCK_START: &str = "[scx_morpheus] slice ";

/// The printed blocks of `out`, each as one string (its lines joined).
pub fn blocks(out: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with(BLOCK_START) {
            blocks.push(line.to_string());
        } else if line.starts_with("  ")
            && let Some(b) = blocks.last_mut()
        {
            b.push(' ');
            b.push_str(line.trim());
        }
    }
    blocks
}

/// The value after "`label` " in a block, for example `figure(b, "hints
/// sent")`: a number as printed (`5000us`, `12/7` gives 12, `1.2M`).
pub fn figure(block: &str, label: &str) -> Option<u64> {
    let key = format!(" {label} ");
    let at = block.find(&key)? + key.len();
    let token = block[at..].split([' ', '/']).next()?.trim_end_matches("us");
    let (digits, scale) = match token.char_indices().last()? {
        (i, 'k') => (&token[..i], 1e3),
        (i, 'M') => (&token[..i], 1e6),
        (i, 'G') => (&token[..i], 1e9),
        _ => (token, 1.0),
    };
    Some((digits.parse::<f64>().ok()? * scale) as u64)
}

/// Quantile `q` of the loader's histogram `family` (for example
/// `hint_response_seconds`) in `text`, as the upper bound of its bucket in
/// microseconds; `u64::MAX` past the last bound, `None` if it is empty.
pub fn quantile_us(text: &str, family: &str, q: f64) -> Option<u64> {
    morpheus_common::openmetrics::quantile_us(&buckets(text, family), q)
}

/// How many durations the loader's histogram `family` in `text` counted
/// (its `+Inf` bucket; 0 if it has none).
pub fn count(text: &str, family: &str) -> u64 {
    buckets(text, family).last().map_or(0, |b| b.1)
}

/// The cumulative buckets of the loader's histogram `family` in `text`:
/// (upper bound in seconds, count).
fn buckets(text: &str, family: &str) -> Vec<(f64, u64)> {
    let prefix = format!("scx_morpheus_{family}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, n) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two readings as `--monitor` prints them (src/lines.rs).
    const OUT: &str = "\
[scx_morpheus] slice 5000us pressure 1024 qmax 3 | ticks 250 timers 12 idle kicks 4
  dispatch direct 10 kthread 2 shared 7/6 local 1/1 steal 0
  hints sent 3 answered 3 (in grace 3) expired 0 dropped 0 | bad msgs 0
some log line
[scx_morpheus] slice 2000us pressure 0 qmax 0 | ticks 1.2M timers 0 idle kicks 0
  hints sent 0 answered 0 (in grace 0) expired 0 dropped 0 | bad msgs 0
";

    #[test]
    fn printed_figures_are_read_by_label() {
        let b = blocks(OUT);
        assert_eq!(b.len(), 2);
        assert_eq!(figure(&b[0], "slice"), Some(5000));
        assert_eq!(figure(&b[0], "ticks"), Some(250));
        assert_eq!(figure(&b[0], "shared"), Some(7));
        assert_eq!(figure(&b[0], "hints sent"), Some(3));
        assert_eq!(figure(&b[1], "ticks"), Some(1_200_000));
        assert_eq!(figure(&b[1], "hints sent"), Some(0));
        assert_eq!(figure(&b[1], "nothing"), None);
    }

    #[test]
    fn histogram_quantiles_are_bucket_bounds_in_microseconds() {
        let text = "\
scx_morpheus_hint_delay_seconds_bucket{le=\"0.000016\"} 90
scx_morpheus_hint_delay_seconds_bucket{le=\"0.002048\"} 99
scx_morpheus_hint_delay_seconds_bucket{le=\"+Inf\"} 100
";
        assert_eq!(quantile_us(text, "hint_delay_seconds", 0.5), Some(16));
        assert_eq!(quantile_us(text, "hint_delay_seconds", 0.99), Some(2048));
        assert_eq!(quantile_us(text, "hint_delay_seconds", 1.0), Some(u64::MAX));
        assert_eq!(quantile_us(text, "timer_late_seconds", 0.5), None);
        assert_eq!(count(text, "hint_delay_seconds"), 100);
        assert_eq!(count(text, "timer_late_seconds"), 0);
    }
}

// SPDX-License-Identifier: GPL-2.0-only
//! Small self-contained SVG charts: latency distributions (log-scaled x
//! axis, log-scaled tail on y) and bar charts. No dependencies; the output
//! is a few kilobytes.

use std::fmt::Write as _;
use std::path::Path;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// One named line of a chart: (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data units.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The pooled latency CDF of several rounds (each part: its sample
    /// count and its CDF in nanoseconds, see [`crate::stats::pool_cdfs`]),
    /// in milliseconds.
    pub fn pooled_ms(name: impl Into<String>, parts: &[(usize, &[(u64, f64)])]) -> Series {
        Series {
            name: name.into(),
            points: crate::stats::pool_cdfs(parts, 200)
                .iter()
                .map(|&(x, y)| (x as f64 / 1e6, y))
                .collect(),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn header(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
}

fn legend(out: &mut String, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let x = W - RIGHT + 15.0;
        let c = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{c}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            y - 4.0,
            x + 20.0,
            y + 1.0,
            esc(name)
        );
    }
}

/// Powers of ten (and 2x, 5x) between `lo` and `hi`, for a log axis.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let t = decade * m;
            if t >= lo * 0.9999 && t <= hi * 1.0001 {
                ticks.push(t);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn fmt_tick(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// The lowest tail fraction a chart shows: one sample in 100 000.
const TAIL_FLOOR: f64 = 1e-5;

/// A latency-distribution chart from CDFs (points: latency, fraction of
/// samples at or below it): x = latency (log scale, the series' unit), y =
/// the fraction of samples above it (1 - CDF, log scale, 1 at the top), so
/// that the tail gets the room: 0.01 is p99, 0.001 p99.9. The y axis goes
/// down to the smallest tail fraction the data resolves (a decade, at
/// least 0.01); each series ends at its largest sample, drawn there.
pub fn tail_chart(title: &str, x_label: &str, series: &[Series]) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (mut lo, mut hi) = xs.fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(x), h.max(x)));
    if lo > hi {
        (lo, hi) = (1.0, 10.0);
    }
    let lo = 10f64.powf(lo.max(1e-3).log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
    let smallest_tail = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| 1.0 - p.1))
        .filter(|&t| t > 0.0)
        .fold(1e-2, f64::min);
    // (1 - 0.9999 is a hair below 1e-4: round before taking the decade.)
    let floor = 10f64
        .powf((smallest_tail.max(TAIL_FLOOR).log10() + 1e-9).floor())
        .min(1e-2);
    let decades = -floor.log10();
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let px = |x: f64| LEFT + (x.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) * pw;
    let py = |tail: f64| TOP + (-tail.max(floor).log10()) / decades * ph;
    let mut out = String::new();
    header(&mut out, title);
    // Over more than three decades only powers of ten get a label.
    let sparse = hi / lo > 1e3;
    for t in log_ticks(lo, hi) {
        let x = px(t);
        let major = (t.log10() - t.log10().round()).abs() < 1e-9;
        let label = if major || !sparse {
            fmt_tick(t)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#{}\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            TOP + ph,
            if major { "ccc" } else { "eee" },
            TOP + ph + 16.0,
        );
    }
    for k in 0..=decades.round() as i32 {
        let tail = 10f64.powi(-k);
        let y = py(tail);
        let label = match k {
            0 => "all".to_string(),
            _ => format!("p{}", fmt_tail(100.0 * (1.0 - tail))),
        };
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#{}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            LEFT + pw,
            if k == 0 { "999" } else { "ddd" },
            LEFT - 4.0,
            y + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        let mut prev_tail = 1.0;
        for (j, &(x, f)) in s.points.iter().enumerate() {
            // Step function: level at the previous tail, then down.
            let cmd = if j == 0 { 'M' } else { 'L' };
            let _ = write!(
                d,
                "{cmd}{:.1},{:.1} L{:.1},{:.1} ",
                px(x),
                py(prev_tail),
                px(x),
                py(1.0 - f)
            );
            prev_tail = 1.0 - f;
        }
        let _ = writeln!(
            out,
            "<path d=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
            d.trim_end()
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut out, &names);
    axis_labels(&mut out, x_label, "share of samples above x (log)");
    out.push_str("</svg>\n");
    out
}

/// A percentile without trailing zeros (90, 99.9).
fn fmt_tail(v: f64) -> String {
    let s = format!("{v:.5}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn axis_labels(out: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 18.0,
        esc(x_label),
        TOP + (H - TOP - BOTTOM) / 2.0,
        esc(y_label)
    );
}

/// A bar chart of (label, value) pairs, values written above the bars.
pub fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let max = if max > 0.0 { max * 1.15 } else { 1.0 };
    let (pw, ph) = (W - LEFT - 40.0, H - TOP - BOTTOM);
    let mut out = String::new();
    header(&mut out, title);
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let slot = pw / bars.len().max(1) as f64;
    for (i, (label, v)) in bars.iter().enumerate() {
        let h = (v.max(0.0) / max) * ph;
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let c = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            out,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{c}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + ph - h,
            slot * 0.7,
            x + slot * 0.35,
            TOP + ph - h - 5.0,
            fmt_value(*v),
            x + slot * 0.35,
            TOP + ph + 16.0,
            esc(label)
        );
    }
    axis_labels(&mut out, "", y_label);
    out.push_str("</svg>\n");
    out
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Writes `svg` to `dir/name`, creating `dir`.
pub fn write(dir: &Path, name: &str, svg: &str) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, svg)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_chart_is_wellformed_svg() {
        let s = Series {
            name: "a<b".into(),
            points: vec![(0.5, 0.1), (2.0, 0.5), (30.0, 1.0)],
        };
        let svg = tail_chart("t", "ms", &[s]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("<path"));
        // Empty input still renders axes.
        assert!(tail_chart("t", "ms", &[]).contains("</svg>"));
    }

    #[test]
    fn tail_chart_goes_down_to_the_nines_the_data_has() {
        // A tail down to 1 sample in 10 000: the axis shows p99.99, and the
        // p99 and p99.9 levels are a decade apart (not squeezed into the
        // last pixel of a linear axis).
        let points = vec![
            (1.0, 0.5),
            (2.0, 0.99),
            (5.0, 0.999),
            (9.0, 0.9999),
            (20.0, 1.0),
        ];
        let svg = tail_chart(
            "t",
            "ms",
            &[Series {
                name: "s".into(),
                points,
            }],
        );
        for label in [">p90<", ">p99<", ">p99.9<", ">p99.99<"] {
            assert!(svg.contains(label), "no {label}: {svg}");
        }
        assert!(!svg.contains(">p99.999<"), "{svg}");
        // The path's y coordinates: p99 (tail 0.01) two decades of four
        // below the top, p99.9 three.
        let ph = H - TOP - BOTTOM;
        let y = |decade: f64| format!("{:.1}", TOP + decade / 4.0 * ph);
        let path = svg.lines().find(|l| l.starts_with("<path")).unwrap();
        for decades in [2.0, 3.0] {
            assert!(path.contains(&y(decades)), "no y {} in {path}", y(decades));
        }
        // Without samples that far out, the axis stops at p99.
        let short = vec![(1.0, 0.5), (2.0, 1.0)];
        let svg = tail_chart(
            "t",
            "ms",
            &[Series {
                name: "s".into(),
                points: short,
            }],
        );
        assert!(svg.contains(">p99<") && !svg.contains(">p99.9<"), "{svg}");
    }

    #[test]
    fn bar_chart_labels_values() {
        let svg = bar_chart(
            "t",
            "units/s",
            &[("x".into(), 1_500_000.0), ("y".into(), 0.5)],
        );
        assert!(svg.contains("1.50M") && svg.contains("0.50"));
        assert_eq!(svg.matches("<rect").count(), 3); // background + 2 bars
    }

    #[test]
    fn log_ticks_cover_the_range() {
        assert_eq!(
            log_ticks(0.1, 10.0),
            vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
        );
    }
}

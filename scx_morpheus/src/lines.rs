// SPDX-License-Identifier: GPL-2.0-only
//! The figures as `--stats` and `--monitor` print them: a few lines of at
//! most [`WIDTH`] columns, whatever the values. The stats server hands each
//! client the counters and histograms accumulated since its previous
//! request ([`crate::stats::Metrics::delta`]), so every line is about one
//! interval; gauges are current values.

use crate::histogram::percentile;
use crate::stats::Metrics;

/// The widest line printed: fits a 100-column terminal.
pub const WIDTH: usize = 100;

/// `n` in at most 5 columns: as is below 100 000, else 3 significant
/// digits with a k, M, G, T, P or E suffix (`123k`, `4.5M`, `18E`).
pub fn compact(n: u64) -> String {
    if n < 100_000 {
        return n.to_string();
    }
    let mut v = n as f64;
    for suffix in ["k", "M", "G", "T", "P", "E"] {
        v /= 1000.0;
        if v < 9.95 {
            return format!("{v:.1}{suffix}");
        }
        if v < 999.5 {
            return format!("{v:.0}{suffix}");
        }
    }
    unreachable!("u64 is below 1000 E")
}

/// The lines for one reading.
pub fn lines(m: &Metrics) -> Vec<String> {
    let c = compact;
    let p50_p99 = |h: &[u64]| format!("{}/{}", percentile(h, 0.50), percentile(h, 0.99));
    let lines = vec![
        format!(
            "[{}] slice {}us pressure {} qmax {} | ticks {} timers {} idle kicks {}",
            crate::SCHEDULER_NAME,
            c(m.slice_us),
            c(m.pressure),
            c(m.nr_queued_max),
            c(m.nr_ticks),
            c(m.nr_timer_kicks),
            c(m.nr_idle_kicks),
        ),
        format!(
            "  dispatch direct {} kthread {} shared {}/{} local {}/{} steal {}",
            c(m.nr_direct_dispatches),
            c(m.nr_kthread_dispatches),
            c(m.nr_shared_enqueues),
            c(m.nr_shared_dispatches),
            c(m.nr_local_enqueues),
            c(m.nr_local_dispatches),
            c(m.nr_steals),
        ),
        format!(
            "  preempt wakeup {} hint {} window {} slice {} | caps critical {} overrun {}",
            c(m.nr_wakeup_preempts),
            c(m.nr_wakeup_hints),
            c(m.nr_window_preempts),
            c(m.nr_slice_preempts),
            c(m.critical_cap_violations),
            c(m.overrun_cap_violations),
        ),
        format!(
            "  workers {} in {} procs (reg {} run {} dead {}) | joined {} refused {}",
            c(m.workers),
            c(m.processes),
            c(m.workers_registered),
            c(m.workers_running),
            c(m.workers_dead),
            c(m.registrations),
            c(m.registrations_refused),
        ),
        format!(
            "  hints sent {} answered {} (in grace {}) expired {} dropped {} | bad msgs {}",
            c(m.hints_sent),
            c(m.hints_answered),
            c(m.hints_answered_in_grace),
            c(m.hints_expired),
            c(m.hints_dropped),
            c(m.bad_messages),
        ),
        format!(
            "  p50/p99 response {} delay {} timer late {} | ring drops {}",
            p50_p99(&m.hint_response_hist),
            p50_p99(&m.hint_delay_hist),
            p50_p99(&m.timer_late_hist),
            c(m.ring_drops),
        ),
        format!(
            "  escalate kick {} throttle {} (now {}) | catch-ups {} deferred {} wait {}",
            c(m.escalations_kick),
            c(m.escalations_throttle),
            c(m.throttles_active),
            c(m.catch_ups),
            c(m.catch_ups_deferred),
            p50_p99(&m.catch_up_delay_hist),
        ),
    ];
    debug_assert!(lines.iter().all(|l| l.len() <= WIDTH), "{lines:#?}");
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers_fit_five_columns() {
        assert_eq!(compact(0), "0");
        assert_eq!(compact(99_999), "99999");
        assert_eq!(compact(100_000), "100k");
        assert_eq!(compact(1_234_567), "1.2M");
        assert_eq!(compact(999_499_999), "999M");
        assert_eq!(compact(999_500_000), "1.0G");
        assert_eq!(compact(u64::MAX), "18E");
        for shift in 0..64 {
            for n in [
                1u64 << shift,
                (1u64 << shift) - 1,
                (1u64 << shift).saturating_mul(3) / 2,
            ] {
                assert!(compact(n).len() <= 5, "{n} -> {}", compact(n));
            }
        }
    }

    /// Every value at its widest (99999 prints widest, in 5 columns;
    /// u64::MAX as "18E"): the lines still fit.
    #[test]
    fn lines_fit_the_width_whatever_the_values() {
        for widest in [99_999, u64::MAX] {
            let mut json = serde_json::to_value(Metrics::default()).unwrap();
            for value in json.as_object_mut().unwrap().values_mut() {
                if value.is_u64() {
                    *value = widest.into();
                }
            }
            let mut m: Metrics = serde_json::from_value(json).unwrap();
            // Widest percentile texts: an open-ended bucket, "<263ms".
            let mut h = vec![0; 24];
            h[23] = widest;
            m.hint_response_hist = h.clone();
            m.hint_delay_hist = h.clone();
            m.catch_up_delay_hist = h;
            m.timer_late_hist = vec![0; 24];
            m.timer_late_hist[17] = 1;
            let lines = lines(&m);
            for line in &lines {
                assert!(line.len() <= WIDTH, "{} columns: {line}", line.len());
            }
            // Every line is used: none so short it should have been merged.
            assert!(lines.iter().all(|l| l.len() > 40), "{lines:#?}");
        }
    }

    /// The stats server's readings are deltas: what the lines show is the
    /// interval since the previous reading, percentiles included.
    #[test]
    fn lines_of_a_delta_show_the_interval_only() {
        let mut before = Metrics {
            hints_sent: 1_000,
            slice_us: 2_000,
            hint_response_hist: vec![0; 24],
            ..Default::default()
        };
        // Since attach: 1000 fast answers (8..16 us).
        before.hint_response_hist[3] = 1_000;
        let mut now = before.clone();
        now.hints_sent += 7;
        now.slice_us = 5_000;
        // In this interval: 7 slow answers (1024..2048 us).
        now.hint_response_hist[10] = 7;
        let text = lines(&now.delta(&before)).join("\n");
        assert!(text.contains("hints sent 7 "), "{text}");
        assert!(text.contains("slice 5000us"), "{text}");
        assert!(text.contains("response <2.1ms/<2.1ms "), "{text}");
        // Since attach, the slow answers are lost among the fast ones.
        let total = lines(&now).join("\n");
        assert!(total.contains("response <16us/<16us "), "{total}");
    }
}

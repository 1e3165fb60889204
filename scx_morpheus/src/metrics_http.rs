// SPDX-License-Identifier: GPL-2.0-only
//! A minimal HTTP endpoint serving the metrics as OpenMetrics text on
//! `GET /metrics`, for Prometheus (`--metrics-addr`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use log::{debug, info};

use crate::stats::Metrics;

/// Longest a scrape waits for the scheduler loop to publish fresh figures
/// (the loop publishes every 100 ms while it runs).
const FRESH_WAIT: Duration = Duration::from_secs(1);

/// The metrics board shared by the scheduler loop and the HTTP thread.
pub type SharedMetrics = Arc<MetricsBoard>;

/// The latest metrics, published by the scheduler loop. A scrape waits for
/// the next publication, so it never reports counts older than the request:
/// whatever a client saw happen before it asked is in the answer.
#[derive(Default)]
pub struct MetricsBoard {
    latest: Mutex<(u64, Metrics)>,
    published: Condvar,
}

impl MetricsBoard {
    /// Replaces the figures and wakes waiting scrapes.
    pub fn publish(&self, metrics: Metrics) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.0 += 1;
        latest.1 = metrics;
        self.published.notify_all();
    }

    /// Figures published after this call, or the last ones if the loop has
    /// stopped publishing (after `timeout`).
    pub fn fresh(&self, timeout: Duration) -> Metrics {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let seen = latest.0;
        let (latest, _) = self
            .published
            .wait_timeout_while(latest, timeout, |l| l.0 == seen)
            .unwrap_or_else(|e| e.into_inner());
        latest.1.clone()
    }
}

/// Starts serving on `addr` in a background thread.
pub fn serve(addr: SocketAddr, metrics: SharedMetrics) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
    info!("OpenMetrics on http://{addr}/metrics");
    std::thread::Builder::new()
        .name("morpheus-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &metrics) {
                    debug!("metrics request failed: {e}");
                }
            }
        })?;
    Ok(())
}

fn answer(mut stream: TcpStream, metrics: &SharedMetrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut request_line = String::new();
    BufReader::new(&stream).take_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = if request_line.starts_with("GET ") && path == "/metrics" {
        let text = metrics.fresh(FRESH_WAIT).openmetrics();
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_string(),
        )
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

trait TakeLine {
    fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    /// Reads one line of at most 8 KiB (a hostile client cannot grow it).
    fn take_line(&mut self, buf: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(8192).read_line(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_scrape_waits_for_figures_published_after_it_asked() {
        let board = SharedMetrics::default();
        board.publish(Metrics {
            registrations: 1,
            ..Default::default()
        });
        let publisher = {
            let board = board.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                board.publish(Metrics {
                    registrations: 2,
                    ..Default::default()
                });
            })
        };
        assert_eq!(board.fresh(Duration::from_secs(10)).registrations, 2);
        publisher.join().unwrap();
    }

    #[test]
    fn a_stopped_loop_yields_the_last_figures_after_the_timeout() {
        let board = MetricsBoard::default();
        board.publish(Metrics {
            registrations: 7,
            ..Default::default()
        });
        let start = Instant::now();
        assert_eq!(board.fresh(Duration::from_millis(30)).registrations, 7);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}

// SPDX-License-Identifier: GPL-2.0-only
//! A minimal HTTP endpoint serving the metrics as OpenMetrics text on
//! `GET /metrics`, for Prometheus (`--metrics-addr`).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use log::{debug, info};

use crate::stats::Metrics;

/// Latest metrics, refreshed by the scheduler loop.
pub type SharedMetrics = Arc<Mutex<Metrics>>;

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
        let text = metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .openmetrics();
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

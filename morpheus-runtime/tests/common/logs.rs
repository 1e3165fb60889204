// SPDX-License-Identifier: GPL-2.0-only
//! Captures the runtime's `log` records, to check what it says and how often.

use std::sync::Mutex;

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        RECORDS.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs the capturing logger (once per test binary).
pub fn install() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// How many records so far contain `text`.
pub fn count(text: &str) -> usize {
    all().iter().filter(|l| l.contains(text)).count()
}

/// Every record so far.
pub fn all() -> Vec<String> {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

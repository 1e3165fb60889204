// SPDX-License-Identifier: GPL-2.0-only
//! Morpheus benchmarks and demo workloads.
//!
//! Each program in `src/bin/` prints its figures as a table and can write
//! raw data as JSON (`--json`) and SVG plots (`--plots`); this library holds
//! what they share. See the crate README for the programs.

#![warn(missing_docs)]

pub mod check;
pub mod cputime;
pub mod harness;
pub mod hogs;
pub mod micro;
pub mod probe;
pub mod report;
pub mod rounds;
pub mod rtmetrics;
pub mod sched;
pub mod service;
pub mod stats;
pub mod strategy;
pub mod svg;
pub mod work;

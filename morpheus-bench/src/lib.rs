// SPDX-License-Identifier: GPL-2.0-only
//! Morpheus benchmarks and demo workloads.
//!
//! Each program in `src/bin/` prints its figures and can write raw data as
//! JSON; this library holds what they share.

pub mod work;

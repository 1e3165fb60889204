// SPDX-License-Identifier: GPL-2.0-only
//! How CPU-bound async code yields: the variants the benchmarks compare.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The name of the runtimes' worker threads (at most 15 bytes, the
/// kernel's limit), by which their CPU time is found.
pub const WORKER_THREAD: &str = "bench-rt-worker";

/// What a CPU-bound task does at each of its checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Nothing: never yields.
    Blocking,
    /// `tokio::task::yield_now().await` every time.
    Naive,
    /// `tokio::task::coop::consume_budget().await` (Tokio's cooperative
    /// budget: yields after 128 calls in one poll).
    Coop,
    /// `morpheus_runtime::checkpoint!()`: yields when a hint source says so.
    Morpheus,
}

impl Strategy {
    /// Every strategy, in report order (baselines first).
    pub const ALL: [Strategy; 4] = [
        Strategy::Blocking,
        Strategy::Naive,
        Strategy::Coop,
        Strategy::Morpheus,
    ];

    /// Label for tables and plots.
    pub fn label(self) -> &'static str {
        match self {
            Strategy::Blocking => "Blocking",
            Strategy::Naive => "Naive yield_now",
            Strategy::Coop => "Tokio coop",
            Strategy::Morpheus => "Morpheus",
        }
    }

    /// One checkpoint.
    #[inline]
    pub async fn checkpoint(self) {
        match self {
            Strategy::Blocking => {}
            Strategy::Naive => tokio::task::yield_now().await,
            Strategy::Coop => tokio::task::coop::consume_budget().await,
            Strategy::Morpheus => morpheus_runtime::checkpoint!(),
        }
    }

    /// A multi-thread runtime with `workers` workers, named
    /// [`WORKER_THREAD`], (all drivers on): a
    /// Morpheus [`Builder`](morpheus_runtime::Builder) runtime for
    /// `Morpheus` (with `budget` if given), a plain Tokio one otherwise.
    pub fn runtime(
        self,
        workers: usize,
        budget: Option<Duration>,
    ) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Strategy::Morpheus => {
                let mut b = morpheus_runtime::Builder::new_multi_thread();
                b.worker_threads(workers)
                    .thread_name(WORKER_THREAD)
                    .enable_all();
                if let Some(budget) = budget {
                    b.budget(budget);
                }
                b.build()
            }
            _ => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(WORKER_THREAD)
                .enable_all()
                .build(),
        }
    }
}

// SPDX-License-Identifier: GPL-2.0-only
//! Tokio integration (feature `tokio`, on by default): [`Builder`] and
//! [`yield_now()`]. The [`checkpoint!`](crate::checkpoint!) macro works in
//! any Tokio task with or without the builder.

mod builder;

pub use builder::Builder;

/// `tokio::task::yield_now`, recorded in the ledger as a `voluntary` yield
/// (and answering a pending kernel hint).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// morpheus_runtime::yield_now().await;
/// let me = morpheus_runtime::current_worker().unwrap();
/// assert_eq!(me.ledger.yields_by(morpheus_runtime::YieldCause::Voluntary), 1);
/// # }
/// ```
pub async fn yield_now() {
    crate::bindings::record_voluntary_yield();
    tokio::task::yield_now().await
}

/// Whether the calling thread is inside a Tokio runtime's context.
pub(crate) fn in_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// `checkpoint!()` outside a Tokio runtime: said once per process.
#[cold]
#[inline(never)]
pub(crate) fn report_outside_runtime() {
    crate::process::Process::get().say_once(
        log::Level::Error,
        &format!("morpheus: {}", crate::Error::OutsideRuntime),
    );
}

/// Yields to the worker's other tasks on a Tokio worker.
///
/// `yield_now` first (Tokio defers the wake-up until its I/O and timer
/// drivers have been polled, so tasks they make ready run), then once more
/// by waking ourselves. The second step matters on the multi-thread
/// runtime: the deferred wake-up puts the yielding task in the worker's
/// LIFO slot, ahead of the tasks the drivers just woke, so without it
/// those tasks could wait another budget. A self-wake while running is
/// queued at the back.
pub(crate) async fn yield_task() {
    tokio::task::yield_now().await;
    crate::checkpoint::yield_back().await
}

/// Identity of the running task for debug checks (0 outside a task).
pub(crate) fn task_identity() -> u64 {
    if let Some(id) = tokio::task::try_id() {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        return h.finish() | 1;
    }
    0
}

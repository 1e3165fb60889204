// SPDX-License-Identifier: GPL-2.0-only
//! Voluntary yields for Tokio code.

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
    crate::record_voluntary_yield();
    tokio::task::yield_now().await
}

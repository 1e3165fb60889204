// SPDX-License-Identifier: GPL-2.0-only
//! Tokio integration (feature `tokio`, on by default): [`Builder`] and
//! [`yield_now`]. The [`checkpoint!`](crate::checkpoint) macro works in any
//! Tokio task with or without the builder.

mod builder;
mod checkpoint;

pub use builder::Builder;
pub use checkpoint::yield_now;

/// Whether the calling thread is inside a Tokio runtime's context.
pub(crate) fn in_runtime() -> bool {
    ::tokio::runtime::Handle::try_current().is_ok()
}

/// `checkpoint!()` outside a Tokio runtime: said once per process.
#[cold]
#[inline(never)]
pub(crate) fn report_outside_runtime() {
    crate::core::Process::get().say_once(
        log::Level::Error,
        &format!("morpheus: {}", crate::Error::OutsideRuntime),
    );
}

// SPDX-License-Identifier: GPL-2.0-only
//! Tokio integration (feature `tokio`, on by default): [`Builder`] and
//! [`yield_now`]. The [`checkpoint!`](crate::checkpoint) macro works in any
//! Tokio task with or without the builder.

mod builder;
mod checkpoint;

pub use builder::Builder;
pub use checkpoint::yield_now;

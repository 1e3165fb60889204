// SPDX-License-Identifier: GPL-2.0-only
//! The Morpheus ABI, shared by the BPF scheduler, its loader, the runtimes
//! and the Python bindings.
//!
//! The single definition is the C header `include/morpheus/abi.h`; [`abi`]
//! is generated from it by bindgen and checked for drift by a test. This
//! crate adds typed views over it: named constants ([`ABI_VERSION`], the
//! defaults), checked enums ([`WorkerState`], [`YieldCause`], ...) and the
//! registration protocol codec ([`protocol`]).

#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs,
    clippy::all
)]
#[rustfmt::skip]
pub mod abi;
pub mod clock;
mod enums;
pub mod openmetrics;
pub mod pidfd;
pub mod protocol;
pub mod seqpacket;
pub mod shm;

pub use enums::*;

/// The shared control block of one worker (two cache lines).
pub type Scb = abi::morpheus_scb;
/// The kernel-written cache line of an SCB.
pub type ScbKernel = abi::morpheus_scb_kernel;
/// The runtime-written cache line of an SCB.
pub type ScbUser = abi::morpheus_scb_user;
/// One record of the scheduler's event ring buffer.
pub type Event = abi::morpheus_event;

/// First word of every SCB and protocol message ("MRPH").
pub const ABI_MAGIC: u32 = abi::MORPHEUS_ABI_MAGIC;
/// Version of the ABI; peers of different versions refuse to pair.
pub const ABI_VERSION: u32 = abi::MORPHEUS_ABI_VERSION;
/// Size in bytes of one SCB.
pub const SCB_SIZE: usize = core::mem::size_of::<Scb>();
/// Worker slots in one process's SCB array.
pub const MAX_WORKERS_PER_PROCESS: u32 = abi::MORPHEUS_MAX_WORKERS_PER_PROCESS;
/// Processes that may hold registrations at the same time.
pub const MAX_PROCESSES: u32 = abi::MORPHEUS_MAX_PROCESSES;
/// Worker threads registered machine-wide at the same time.
pub const MAX_WORKERS: u32 = abi::MORPHEUS_MAX_WORKERS;
/// `MORPHEUS_PRESSURE_ONE`: one runnable task per CPU on the pressure scale.
pub const PRESSURE_ONE: u32 = abi::MORPHEUS_PRESSURE_ONE;
/// Highest pressure value the scheduler reports.
pub const PRESSURE_MAX: u32 = abi::MORPHEUS_PRESSURE_MAX;
/// sched_ext watchdog timeout the scheduler sets.
pub const WATCHDOG_TIMEOUT_MS: u32 = abi::MORPHEUS_WATCHDOG_TIMEOUT_MS;

const NSEC_PER_MSEC: u64 = 1_000_000;
/// Default scheduler slice, milliseconds.
pub const DEFAULT_SLICE_MS: u64 = abi::MORPHEUS_DEFAULT_SLICE_NS as u64 / NSEC_PER_MSEC;
/// Default lower bound of the adaptive slice, milliseconds.
pub const DEFAULT_SLICE_MIN_MS: u64 = abi::MORPHEUS_DEFAULT_SLICE_MIN_NS as u64 / NSEC_PER_MSEC;
/// Default upper bound of the adaptive slice, milliseconds.
pub const DEFAULT_SLICE_MAX_MS: u64 = abi::MORPHEUS_DEFAULT_SLICE_MAX_NS as u64 / NSEC_PER_MSEC;
/// Default grace period after a hint, milliseconds.
pub const DEFAULT_GRACE_MS: u64 = abi::MORPHEUS_DEFAULT_GRACE_NS as u64 / NSEC_PER_MSEC;
/// Default cap on a critical section that keeps others waiting, milliseconds.
pub const DEFAULT_MAX_CRITICAL_MS: u64 =
    abi::MORPHEUS_DEFAULT_MAX_CRITICAL_NS as u64 / NSEC_PER_MSEC;

/// Default path of the loader's registration socket.
pub const DEFAULT_SOCKET_PATH: &str = c_str_literal(abi::MORPHEUS_DEFAULT_SOCKET_PATH);

/// Turns a NUL-terminated byte-string constant from the header into `&str`.
const fn c_str_literal(bytes: &'static [u8]) -> &'static str {
    let (text, nul) = bytes.split_at(bytes.len() - 1);
    assert!(nul[0] == 0, "header string constant is not NUL-terminated");
    match core::str::from_utf8(text) {
        Ok(s) => s,
        Err(_) => panic!("header string constant is not UTF-8"),
    }
}

/// Worker flag: the scheduler may force this worker once it ignores a hint
/// past the grace period (only with `--enforce`).
pub const WORKER_ESCAPABLE: u32 = abi::MORPHEUS_WORKER_ESCAPABLE;
/// SCB kernel flag: the scheduler runs with enforcement on.
pub const SCBK_ENFORCING: u32 = abi::MORPHEUS_SCBK_ENFORCING;
/// SCB kernel flag: the worker is serving a throttle penalty.
pub const SCBK_THROTTLED: u32 = abi::MORPHEUS_SCBK_THROTTLED;
/// SCB kernel flag: the scheduler runs `--partial`; the worker switches
/// itself to `SCHED_EXT`.
pub const SCBK_PARTIAL: u32 = abi::MORPHEUS_SCBK_PARTIAL;
/// The `SCHED_EXT` scheduling policy (`sched_setscheduler`), which libc
/// does not name.
pub const SCHED_EXT: i32 = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn scb_writers_sit_on_separate_cache_lines() {
        let line = abi::MORPHEUS_CACHELINE_SIZE as usize;
        assert_eq!(size_of::<ScbKernel>(), line);
        assert_eq!(size_of::<ScbUser>(), line);
        assert_eq!(offset_of!(Scb, k), 0);
        assert_eq!(offset_of!(Scb, u), line);
        assert_eq!(SCB_SIZE, 2 * line);
        assert_eq!(core::mem::align_of::<Scb>(), line);
    }

    #[test]
    fn defaults_are_consistent() {
        assert_eq!(DEFAULT_SOCKET_PATH, "/run/morpheus/morpheus.sock");
        const { assert!(DEFAULT_SLICE_MIN_MS <= DEFAULT_SLICE_MS) };
        const { assert!(DEFAULT_SLICE_MS <= DEFAULT_SLICE_MAX_MS) };
        assert_eq!(DEFAULT_SLICE_MS, 5);
        assert_eq!(DEFAULT_GRACE_MS, 100);
        assert_eq!(&ABI_MAGIC.to_be_bytes(), b"MRPH");
        assert!(MAX_WORKERS_PER_PROCESS as usize * SCB_SIZE <= 64 * 1024);
    }
}

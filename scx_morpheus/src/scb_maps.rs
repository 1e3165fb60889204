// SPDX-License-Identifier: GPL-2.0-only
//! The kernel side of registration: per-process SCB arrays (mmapable BPF
//! arrays inserted into the `scb_maps` hash-of-maps), per-thread entries
//! in the `worker_ctxs` task storage, keyed by the thread's pidfd, and
//! their leases (`leases.rs`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::{addr_of, addr_of_mut};

use anyhow::{Context, Result, anyhow};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use morpheus_common::shm::SharedMapping;
use morpheus_common::{
    ABI_MAGIC, ABI_VERSION, MAX_WORKERS_PER_PROCESS, SCB_SIZE, Scb, WorkerState,
};

use crate::bpf_intf::morpheus_worker_ctx;
use crate::leases::{Lease, Leases};

/// Handles on the scheduler's registration maps (owned duplicates of the
/// skeleton's fds, so they can move to the server threads).
pub struct Kernel {
    scb_maps: MapHandle,
    worker_ctxs: MapHandle,
    leases: Leases,
    /// `MORPHEUS_SCBK_*` flags written into every SCB.
    pub scb_flags: u32,
}

impl Kernel {
    /// Wraps the skeleton's `scb_maps`, `worker_ctxs` and `leases` maps.
    pub fn new(
        scb_maps: MapHandle,
        worker_ctxs: MapHandle,
        leases: MapHandle,
        scb_flags: u32,
    ) -> Result<Self> {
        Ok(Kernel {
            scb_maps,
            worker_ctxs,
            leases: Leases::new(leases, morpheus_common::MAX_WORKERS)?,
            scb_flags,
        })
    }

    /// Creates the SCB array of process `tgid` and publishes it to BPF.
    pub fn create_array(&self, tgid: u32) -> Result<ScbArray> {
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some("mph_scb"),
            4,
            SCB_SIZE as u32,
            MAX_WORKERS_PER_PROCESS,
            &opts,
        )
        .context("cannot create an SCB array (BPF map)")?;
        let mem = SharedMapping::new(map.as_fd(), MAX_WORKERS_PER_PROCESS as usize * SCB_SIZE)
            .context("cannot mmap an SCB array")?;
        let array = ScbArray { map, mem };
        let fd = array.map.as_fd().as_raw_fd() as u32;
        self.scb_maps
            .update(&tgid.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("cannot publish an SCB array to the scheduler")?;
        Ok(array)
    }

    /// Withdraws the SCB array of `tgid` from BPF.
    pub fn remove_array(&self, tgid: u32) {
        let _ = self.scb_maps.delete(&tgid.to_ne_bytes());
    }

    /// Attaches a registration to the thread behind `pidfd`, with a new
    /// lease; end it with [`Kernel::detach_worker`].
    pub fn attach_worker(
        &self,
        pidfd: BorrowedFd<'_>,
        tgid: u32,
        slot: u32,
        flags: u32,
        runtime_kind: u32,
    ) -> Result<Lease> {
        let lease = self.leases.take().ok_or_else(|| {
            anyhow!("no registration lease free (the registry's worker limit should prevent this)")
        })?;
        // SAFETY: an all-zero POD struct is valid (BPF owns the zeroed tail).
        let mut ctx: morpheus_worker_ctx = unsafe { std::mem::zeroed() };
        ctx.tgid = tgid;
        ctx.slot = slot;
        ctx.flags = flags;
        ctx.runtime_kind = runtime_kind;
        ctx.lease = lease.index();
        ctx.lease_gen = lease.generation();
        // SAFETY: a bindgen POD struct viewed as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(addr_of!(ctx).cast::<u8>(), size_of::<morpheus_worker_ctx>())
        };
        match self
            .worker_ctxs
            .update(&pidfd.as_raw_fd().to_ne_bytes(), bytes, MapFlags::ANY)
        {
            Ok(()) => Ok(lease),
            Err(e) => {
                let _ = self.leases.end(lease);
                Err(e).context("cannot attach the registration to the thread (task storage)")
            }
        }
    }

    /// Ends the registration of the thread behind `pidfd`: its lease first
    /// (from then on BPF leaves it alone, even if its thread still runs),
    /// then its task storage entry (gone already if the thread was
    /// released). Returns whether a hint was outstanding, which the caller
    /// counts as dropped (BPF did not, see `leases.rs`).
    pub fn detach_worker(&self, pidfd: &OwnedFd, lease: Lease) -> bool {
        let outstanding = self.leases.end(lease);
        let _ = self.worker_ctxs.delete(&pidfd.as_raw_fd().to_ne_bytes());
        outstanding
    }
}

/// One process's SCB array, mapped into the loader (every access goes
/// through volatile reads and writes of individual fields).
pub struct ScbArray {
    map: MapHandle,
    mem: SharedMapping,
}

impl ScbArray {
    /// The map's fd, sent to the process with SCM_RIGHTS.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.as_fd()
    }

    fn scb(&self, slot: u32) -> *mut Scb {
        assert!(slot < MAX_WORKERS_PER_PROCESS, "slot {slot} out of range");
        // SAFETY: in bounds of the mapping (checked above; it holds
        // MAX_WORKERS_PER_PROCESS SCBs).
        unsafe { self.mem.as_ptr().cast::<Scb>().add(slot as usize) }
    }

    /// Prepares `slot` for a new worker: both cache lines reset, then the
    /// identity written, before the slot number is handed out.
    pub fn init_slot(&self, slot: u32, generation: u64, flags: u32) {
        let scb = self.scb(slot);
        // SAFETY: a valid SCB in our mapping; no BPF program reads this
        // slot until the task storage entry is attached after this.
        unsafe {
            std::ptr::write_volatile(scb, Scb::default());
            let k = addr_of_mut!((*scb).k);
            std::ptr::write_volatile(addr_of_mut!((*k).generation), generation);
            std::ptr::write_volatile(addr_of_mut!((*k).flags), flags);
            std::ptr::write_volatile(addr_of_mut!((*k).abi_version), ABI_VERSION as u16);
            std::ptr::write_volatile(addr_of_mut!((*k).state), WorkerState::Registered as u16);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(addr_of_mut!((*k).magic), ABI_MAGIC);
        }
    }

    /// Sets the state of `slot`.
    pub fn set_state(&self, slot: u32, state: WorkerState) {
        // SAFETY: a valid SCB in our mapping.
        unsafe { std::ptr::write_volatile(addr_of_mut!((*self.scb(slot)).k.state), state as u16) }
    }

    /// The state of `slot` as last written by the loader or BPF.
    pub fn state(&self, slot: u32) -> Option<WorkerState> {
        // SAFETY: a valid SCB in our mapping.
        let raw = unsafe { std::ptr::read_volatile(addr_of!((*self.scb(slot)).k.state)) };
        WorkerState::try_from(u32::from(raw)).ok()
    }
}

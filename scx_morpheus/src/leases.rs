// SPDX-License-Identifier: GPL-2.0-only
//! Registration leases: one 64-bit word per live registration in the
//! scheduler's `leases` array, mapped here and read and moved by BPF with
//! atomic operations (the protocol is described in `intf.h`). A lease
//! settles who counts a hint that is outstanding when a registration ends:
//! BPF counts it as answered, expired or dropped by moving the lease out of
//! HINTED; the loader, ending the registration, swaps in ENDED and counts
//! it as dropped only if the lease was HINTED. Exactly one of them sees
//! HINTED, so no hint is counted twice or never, whichever CPU the dying
//! thread's last callbacks run on.

use std::os::fd::AsFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use libbpf_rs::MapHandle;
use morpheus_common::shm::SharedMapping;

use crate::bpf_intf::{
    morpheus_lease_state_MORPHEUS_LEASE_ENDED as ENDED,
    morpheus_lease_state_MORPHEUS_LEASE_HINTED as HINTED,
    morpheus_lease_state_MORPHEUS_LEASE_IDLE as IDLE,
};

/// One registration's lease: where its word is and the generation it holds.
/// Written into the registration (`morpheus_worker_ctx.lease`, `lease_gen`);
/// give it back with [`Leases::end`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a lease not ended is never reused"]
pub struct Lease {
    index: u32,
    generation: u32,
}

impl Lease {
    /// Its index in the `leases` array.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The generation its word holds while it is live.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    fn word(&self, state: u32) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(state)
    }
}

/// The lease words and which of them are free.
pub struct Leases {
    words: Words,
    pool: Mutex<Pool>,
}

struct Pool {
    free: Vec<u32>,
    /// The generation each index last held (0: never handed out).
    generations: Vec<u32>,
}

/// The memory of the words: the BPF array's mapping (or, in tests, ours).
enum Words {
    Mapped {
        _map: MapHandle,
        mem: SharedMapping,
        n: usize,
    },
    #[cfg(test)]
    Owned(Box<[AtomicU64]>),
}

impl Words {
    fn get(&self, index: u32) -> &AtomicU64 {
        match self {
            Words::Mapped { mem, n, .. } => {
                assert!((index as usize) < *n, "lease {index} out of range");
                // SAFETY: in bounds of the mapping (n words), which lives as
                // long as self; the words are only accessed atomically.
                unsafe { &*mem.as_ptr().cast::<AtomicU64>().add(index as usize) }
            }
            #[cfg(test)]
            Words::Owned(words) => &words[index as usize],
        }
    }
}

impl Leases {
    /// Maps the scheduler's `leases` array (`n` words).
    pub fn new(map: MapHandle, n: u32) -> Result<Self> {
        let mem = SharedMapping::new(map.as_fd(), n as usize * size_of::<u64>())
            .context("cannot mmap the scheduler's lease array")?;
        Ok(Self::with_words(
            Words::Mapped {
                _map: map,
                mem,
                n: n as usize,
            },
            n,
        ))
    }

    fn with_words(words: Words, n: u32) -> Self {
        Leases {
            words,
            pool: Mutex::new(Pool {
                // Popped from the end: index 0 first.
                free: (0..n).rev().collect(),
                generations: vec![0; n as usize],
            }),
        }
    }

    /// A lease for a new registration, live and idle, or `None` when every
    /// one is taken (the registry's worker limit keeps that from happening).
    pub fn take(&self) -> Option<Lease> {
        let mut pool = self.pool.lock().unwrap();
        let index = pool.free.pop()?;
        let g = &mut pool.generations[index as usize];
        // Never 0, which a zeroed word would match.
        *g = g.checked_add(1).unwrap_or(1);
        let lease = Lease {
            index,
            generation: *g,
        };
        // Published before the registration that names it is attached.
        self.words
            .get(index)
            .store(lease.word(IDLE), Ordering::Release);
        Some(lease)
    }

    /// Ends `lease`: BPF no longer acts on its registration. Returns whether
    /// a hint was outstanding, which is then the caller's to count as
    /// dropped (BPF counts it otherwise).
    pub fn end(&self, lease: Lease) -> bool {
        let old = self
            .words
            .get(lease.index)
            .swap(lease.word(ENDED), Ordering::AcqRel);
        self.pool.lock().unwrap().free.push(lease.index);
        old == lease.word(HINTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(n: u32) -> Leases {
        let words = (0..n).map(|_| AtomicU64::new(0)).collect();
        Leases::with_words(Words::Owned(words), n)
    }

    /// What BPF's lease_move() does.
    fn bpf_move(l: &Leases, index: u32, generation: u32, from: u32, to: u32) -> bool {
        let word = |s: u32| (u64::from(generation) << 32) | u64::from(s);
        l.words
            .get(index)
            .compare_exchange(word(from), word(to), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    #[test]
    fn the_loader_counts_a_hint_only_if_bpf_has_not_settled_it() {
        let l = leases(4);
        let a = l.take().unwrap();
        // Idle: nothing to count.
        assert!(!l.end(a));

        // Hinted, then ended by the loader: the loader counts it, and
        // BPF's settling afterwards fails (it must not count it too).
        let b = l.take().unwrap();
        let (bi, bg) = (b.index(), b.generation());
        assert!(bpf_move(&l, bi, bg, IDLE, HINTED));
        assert!(l.end(b));
        assert!(!bpf_move(&l, bi, bg, HINTED, IDLE));

        // Hinted, settled by BPF first: the loader does not count it.
        let c = l.take().unwrap();
        assert!(bpf_move(&l, c.index(), c.generation(), IDLE, HINTED));
        assert!(bpf_move(&l, c.index(), c.generation(), HINTED, IDLE));
        assert!(!l.end(c));
    }

    #[test]
    fn a_reused_lease_rejects_its_old_registration() {
        let l = leases(1);
        let a = l.take().unwrap();
        let (i, old) = (a.index(), a.generation());
        assert!(!l.end(a));
        let b = l.take().unwrap();
        assert_eq!(b.index(), i, "one lease: the same index again");
        assert_ne!(b.generation(), old);
        // The old registration (a dying thread's) can neither hint nor
        // settle on the new one's lease.
        assert!(!bpf_move(&l, i, old, IDLE, HINTED));
        assert!(!bpf_move(&l, i, old, HINTED, IDLE));
        assert!(bpf_move(&l, i, b.generation(), IDLE, HINTED));
        assert!(l.end(b));
    }

    #[test]
    fn leases_run_out_and_come_back() {
        let l = leases(2);
        let a = l.take().unwrap();
        let b = l.take().unwrap();
        assert_ne!(a.index(), b.index());
        assert!(l.take().is_none());
        let _ = l.end(a);
        assert!(l.take().is_some());
        let _ = l.end(b);
    }

    #[test]
    fn a_generation_is_never_zero() {
        let l = leases(1);
        l.pool.lock().unwrap().generations[0] = u32::MAX;
        let a = l.take().unwrap();
        assert_eq!(a.generation(), 1);
        assert_eq!(l.words.get(0).load(Ordering::Relaxed), 1 << 32);
        let _ = l.end(a);
    }
}

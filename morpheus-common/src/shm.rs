// SPDX-License-Identifier: GPL-2.0-only
//! Shared memory behind a file descriptor (an mmapable BPF array, a memfd):
//! SCB arrays and the scheduler's lease words are read and written this way
//! by the loader, the runtimes and the tests.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// A read-write `MAP_SHARED` mapping of the start of a file descriptor,
/// whole pages long, unmapped on drop (or kept for good by
/// [`SharedMapping::leak`]). The memory is shared with other processes
/// and the kernel: access it through volatile or atomic operations only.
#[derive(Debug)]
pub struct SharedMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: plain shared memory; its users access it with volatile reads
// and writes or atomics, never through references that assume exclusivity.
unsafe impl Send for SharedMapping {}
// SAFETY: as above.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps the first `len` bytes of `fd`, rounded up to whole pages.
    pub fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMapping> {
        let len = len.max(1).next_multiple_of(page_size());
        // SAFETY: a fresh mapping of a descriptor the caller holds open;
        // the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast()).ok_or_else(|| io::Error::other("mmap returned 0"))?;
        Ok(SharedMapping { base, len })
    }

    /// The start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Its length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty (at least a page); for API completeness.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the memory mapped for the rest of the process (for pointers
    /// handed to code that may read them at any time) and returns its
    /// start and length.
    pub fn leak(self) -> (*mut u8, usize) {
        let me = std::mem::ManuallyDrop::new(self);
        (me.base.as_ptr(), me.len)
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped, once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// The system's page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    fn memfd(len: usize) -> OwnedFd {
        // SAFETY: memfd_create with a valid name; the fd is checked and owned.
        let fd = unsafe { libc::memfd_create(c"shm-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd was just returned to us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: resizing our own memfd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
        fd
    }

    #[test]
    fn two_mappings_of_one_descriptor_share_their_memory_in_whole_pages() {
        let fd = memfd(2 * page_size());
        let a = SharedMapping::new(fd.as_fd(), page_size() + 1).unwrap();
        let b = SharedMapping::new(fd.as_fd(), 8).unwrap();
        assert_eq!(a.len(), 2 * page_size());
        assert_eq!(b.len(), page_size());
        // SAFETY: both mappings are at least a page long.
        unsafe {
            std::ptr::write_volatile(a.as_ptr().add(8), 42);
            assert_eq!(std::ptr::read_volatile(b.as_ptr().add(8)), 42);
        }
        let (p, len) = b.leak();
        // SAFETY: a leaked mapping stays valid.
        assert_eq!(unsafe { std::ptr::read_volatile(p.add(8)) }, 42);
        // SAFETY: the test unmaps what it leaked.
        unsafe { libc::munmap(p.cast(), len) };
    }

    #[test]
    fn a_descriptor_that_cannot_be_mapped_is_an_error() {
        let pipe = {
            let mut fds = [0; 2];
            // SAFETY: a valid array for pipe(2).
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            // SAFETY: both were just returned to us.
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        assert!(SharedMapping::new(pipe.0.as_fd(), 4096).is_err());
    }
}

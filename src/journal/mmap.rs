//! The memory map of a journal file: the only `unsafe` code of the storage
//! layer.
//!
//! Contract that makes the mapping sound:
//! - the file is held under its exclusive `flock` for the whole life of the
//!   map ([`LockedFile`] can only be made by taking that lock), so no other
//!   cooperating process or handle writes or resizes it;
//! - the file is preallocated to its full length before it is mapped and
//!   this crate never changes its length while mapped;
//! - nothing outside the library truncates it. A process that ignores the
//!   lock and truncates the file can make accesses fault (SIGBUS); this is
//!   the same contract as any mmap-based store and is documented in the
//!   README.
//!
//! Under that contract the map behaves like an exclusively owned byte slice.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use memmap2::{Advice, MmapMut, MmapOptions};

use crate::journal::file::LockedFile;

/// A whole file mapped read-write and shared.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: MmapMut,
}

impl MappedFile {
    /// Maps the first `len` bytes of `file`, which must be at least that
    /// long (checked).
    pub(crate) fn map(file: &LockedFile, len: usize) -> io::Result<MappedFile> {
        let actual = file.file().metadata()?.len();
        if actual < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file is {actual} bytes, {len} expected"),
            ));
        }
        // SAFETY: `LockedFile` proves we hold the exclusive lock, the length
        // was checked above and is never changed while mapped (module
        // contract), so the mapped memory stays backed by the file and is
        // written by no one else.
        let map = unsafe { MmapOptions::new().len(len).map_mut(file.file())? };
        // Random access keeps the page cache from building large folios
        // through readahead; a folio is written whole by msync, so a large
        // one multiplies the bytes written per sync (DESIGN.md section 9).
        map.advise(Advice::Random)?;
        Ok(MappedFile { map })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// `msync(MS_SYNC)` of the pages covering `[offset, offset + len)`.
    pub(crate) fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)
    }
}

/// Reserves `len` bytes of disk for `file` without writing them, so a full
/// disk is an `ENOSPC` here rather than a SIGBUS inside a mapped write.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: plain syscall on a valid open descriptor; no memory is passed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

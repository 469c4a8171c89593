//! The memory map of a journal file: the library's own [`Device`], and with
//! `sys.rs` the only `unsafe` code of the storage layer.
//!
//! Contract that makes the mapping sound:
//! - the file is held under its exclusive lock for the whole life of the
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

use std::io;

use memmap2::{Advice, MmapMut, MmapOptions};

use crate::error::{Error, Result};
use crate::journal::device::Device;
use crate::journal::file::LockedFile;

/// A whole file mapped read-write and shared.
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
        // one multiplies the bytes written per sync (docs/ARCHITECTURE.md,
        // "Write amplification").
        map.advise(Advice::Random)?;
        Ok(MappedFile { map })
    }

    /// [`MappedFile::map`], its error naming the file.
    pub(crate) fn map_locked(file: &LockedFile, len: u64) -> Result<MappedFile> {
        let len = usize::try_from(len).map_err(|_| {
            Error::invalid(format!(
                "{} is too large to map on this machine ({len} bytes)",
                file.path().display()
            ))
        })?;
        MappedFile::map(file, len).map_err(|e| Error::io("map", file.path(), e))
    }
}

impl Device for MappedFile {
    fn bytes(&self) -> &[u8] {
        &self.map
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// `msync(MS_SYNC)` of the pages covering `[offset, offset + len)`.
    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)
    }
}

//! The memory map of a journal file: the library's own [`Device`], and with
//! `sys.rs` and `sigbus.rs` the only `unsafe` code of the storage layer.
//!
//! Contract that makes the mapping sound:
//! - the file is held under its exclusive lock for the whole life of the
//!   map ([`LockedFile`] can only be made by taking that lock), so no other
//!   cooperating process or handle writes or resizes it;
//! - the file is preallocated to its full length before it is mapped and
//!   this crate never changes its length while mapped;
//! - a page the kernel cannot back (the file was truncated by a program
//!   that ignores the lock, or the medium failed to read it) does not end
//!   the process: the map's range is registered with the SIGBUS handler of
//!   `sigbus.rs` for the map's whole life (registered after mapping,
//!   unregistered before unmapping), which replaces such a page with a
//!   zero page and marks the map faulted. The bytes of that page change to
//!   zeros under the journal; the journal treats the map's bytes as
//!   untrusted input (every access is bounds-checked, records are checked
//!   against their CRC, no `unsafe` code depends on their values), so the
//!   change is data, not memory unsafety, as with any map of a file another
//!   program writes. From then on [`Device::check`] and `sync` return an
//!   I/O error, which the journal returns at the end of the operation
//!   during which the page was lost (whatever that operation read from it
//!   is discarded with the error), and the store falls back to level 1.
//!
//! Under that contract the map behaves like an exclusively owned byte slice
//! whose contents may turn to zeros, and only after a fault that the next
//! `check` reports.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::io;

use memmap2::{Advice, MmapMut, MmapOptions};

use crate::error::{Error, Result};
use crate::journal::device::Device;
use crate::journal::file::LockedFile;
use crate::journal::sigbus::{self, Registration};

/// A whole file mapped read-write and shared.
pub(crate) struct MappedFile {
    /// Declared first: dropped (unregistered) before the map is unmapped.
    registration: Registration,
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
        // was checked above and is never changed by us while mapped, so no
        // cooperating writer touches the memory; a page lost to another
        // program's truncation or to the medium turns into zeros rather
        // than a crash, once registered below (module contract).
        let map = unsafe { MmapOptions::new().len(len).map_mut(file.file())? };
        // Random access keeps the page cache from building large folios
        // through readahead; a folio is written whole by msync, so a large
        // one multiplies the bytes written per sync (docs/ARCHITECTURE.md,
        // "Write amplification").
        map.advise(Advice::Random)?;
        let registration = sigbus::register(map.as_ptr(), map.len())?;
        Ok(MappedFile { registration, map })
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

    /// `msync(MS_SYNC)` of the pages covering `[offset, offset + len)`;
    /// fails once a page of the map faulted (see [`Device::check`]).
    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)?;
        self.check()
    }

    /// One relaxed load: whether the SIGBUS handler replaced a page.
    fn check(&self) -> io::Result<()> {
        if self.registration.faulted() {
            return Err(io::Error::other(
                "the file's mapped pages could not be read or written: it was truncated by \
                 another program or the medium failed (the pages read as zeros now)",
            ));
        }
        Ok(())
    }
}

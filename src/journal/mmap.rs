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
//! - the map's memory is only ever seen from Rust through the slices of
//!   [`MappedFile::bytes`] and [`MappedFile::bytes_mut`], built from the
//!   raw mapping: the first borrows the `MappedFile` shared, the second
//!   exclusively, so those slices alias exactly as the `MappedFile`'s own
//!   borrows do, and the borrow checker enforces them. The map itself is
//!   shared (an `Arc`) with the device's [`Syncer`]s, which never form a
//!   reference to its memory: they only pass its address range to `msync`,
//!   which has the kernel write the page-cache pages back. A sync on
//!   another thread while the journal writes through `bytes_mut` is the
//!   kernel reading the pages, as another program reading the file would,
//!   not a data race of Rust code; the bytes it writes back are the bytes
//!   of the moment (a record being written may go out half done, which the
//!   journal's format is built for). The `Arc` keeps the map (and its
//!   SIGBUS registration) alive until the last syncer is dropped, so a
//!   device dropped while a sync runs stays mapped until the sync returns.
//!
//! Under that contract the map behaves like an exclusively owned byte slice
//! whose contents may turn to zeros, and only after a fault that the next
//! `check` reports.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::io;
use std::sync::Arc;

use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::journal::device::{Device, Syncer};
use crate::journal::file::LockedFile;
use crate::journal::sigbus::{self, Registration};

/// A whole file mapped read-write and shared.
pub(crate) struct MappedFile {
    mapping: Arc<Mapping>,
}

/// The map and its registration with the SIGBUS handler, shared by the
/// device and its syncers: unmapped when the last of them is dropped.
struct Mapping {
    /// Declared first: dropped (unregistered) before the map is unmapped.
    registration: Registration,
    map: MmapRaw,
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
        // A raw map hands out no references: `bytes` and `bytes_mut` make
        // them under the module contract. `LockedFile` proves we hold the
        // exclusive lock, and the length was checked above and is never
        // changed by us while mapped.
        let map = MmapOptions::new().len(len).map_raw(file.file())?;
        // Random access keeps the page cache from building large folios
        // through readahead; a folio is written whole by msync, so a large
        // one multiplies the bytes written per sync (docs/ARCHITECTURE.md,
        // "Write amplification").
        map.advise(Advice::Random)?;
        let registration = sigbus::register(map.as_ptr(), map.len())?;
        Ok(MappedFile {
            mapping: Arc::new(Mapping { registration, map }),
        })
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
        let map = &self.mapping.map;
        // SAFETY: the map is `map.len()` bytes of readable memory, mapped
        // (the `Arc` we hold) for as long as `self` is borrowed; under the
        // module contract only this `MappedFile` makes references to it,
        // and this shared one lives no longer than the shared borrow of
        // `self`, so no `&mut` from `bytes_mut` overlaps it. A page lost to
        // a fault reads as zeros (module contract), never unmapped memory.
        unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let map = &self.mapping.map;
        // SAFETY: as in `bytes`, for writable memory (a read-write shared
        // map); the exclusive borrow of `self` makes this the only
        // reference to the memory while it lives. The syncers sharing the
        // map never make references to it (module contract).
        unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr(), map.len()) }
    }

    /// `msync(MS_SYNC)` of the pages covering `[offset, offset + len)`;
    /// fails once a page of the map faulted (see [`Device::check`]).
    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.mapping.sync(offset, len)
    }

    /// One relaxed load: whether the SIGBUS handler replaced a page.
    fn check(&self) -> io::Result<()> {
        self.mapping.check()
    }

    /// The map itself: `msync` from any thread, the map kept alive.
    fn syncer(&self) -> Option<Arc<dyn Syncer>> {
        Some(Arc::clone(&self.mapping) as Arc<dyn Syncer>)
    }
}

impl Mapping {
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

impl Syncer for Mapping {
    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)?;
        self.check()
    }

    /// `MADV_POPULATE_WRITE` (Linux 5.14): the kernel faults the pages in
    /// as writable, without changing their bytes and without raising a
    /// signal for a page it cannot back (it returns an error instead,
    /// ignored here: the write that needs the page gets the fault, handled
    /// as in the module contract). No reference to the map's memory is
    /// made, so this runs alongside the journal's writes as `sync` does.
    fn prefault(&self, offset: usize, len: usize) {
        let len = len.min(self.map.len().saturating_sub(offset));
        if len > 0 {
            let _ = self.map.advise_range(Advice::PopulateWrite, offset, len);
        }
    }
}

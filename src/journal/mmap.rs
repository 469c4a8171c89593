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
    /// What the device holds: the bytes as of the last sync of each page.
    /// A power cut loses everything else (see `power_cut_image`).
    #[cfg(feature = "fault-injection")]
    durable: Vec<u8>,
    #[cfg(feature = "fault-injection")]
    cut: PowerCut,
}

/// Fault injection: counts syncs and captures the image a power cut at a
/// chosen sync would leave.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Default)]
struct PowerCut {
    syncs: u64,
    armed: Option<(u64, u64)>,
    image: Option<Vec<u8>>,
}

/// Granularity at which a device may tear a write.
#[cfg(feature = "fault-injection")]
const SECTOR: usize = 512;

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
        Ok(MappedFile {
            #[cfg(feature = "fault-injection")]
            durable: map.to_vec(),
            #[cfg(feature = "fault-injection")]
            cut: PowerCut::default(),
            map,
        })
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
    pub(crate) fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        self.count_sync();
        self.map.flush_range(offset, len)?;
        #[cfg(feature = "fault-injection")]
        {
            // msync writes whole pages.
            let start = offset - offset % 4096;
            let end = (offset + len).next_multiple_of(4096).min(self.map.len());
            self.durable[start..end].copy_from_slice(&self.map[start..end]);
        }
        Ok(())
    }

    /// Fault injection: the file as a power cut now would leave it. Each
    /// 512-byte sector written since its page was last synced is either lost
    /// (the synced bytes come back) or, if `keep_unsynced(sector)` says so,
    /// was written back by the kernel on its own before the cut.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn power_cut_image(&self, keep_unsynced: &mut dyn FnMut(usize) -> bool) -> Vec<u8> {
        let mut image = self.durable.clone();
        for (sector, chunk) in image.chunks_mut(SECTOR).enumerate() {
            let start = sector * SECTOR;
            let now = &self.map[start..start + chunk.len()];
            if now != chunk && keep_unsynced(sector) {
                chunk.copy_from_slice(now);
            }
        }
        image
    }

    /// Fault injection: capture a power-cut image just before sync number
    /// `at` (counting from 1 over this map's life), keeping unsynced sectors
    /// at random (seeded).
    #[cfg(feature = "fault-injection")]
    pub(crate) fn arm_power_cut(&mut self, at: u64, seed: u64) {
        self.cut.armed = Some((at, seed | 1));
        self.cut.image = None;
    }

    /// Fault injection: the captured image, if the armed sync happened.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn take_power_cut_image(&mut self) -> Option<Vec<u8>> {
        self.cut.image.take()
    }

    /// Fault injection: syncs so far.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn sync_count(&self) -> u64 {
        self.cut.syncs
    }

    #[cfg(feature = "fault-injection")]
    fn count_sync(&mut self) {
        self.cut.syncs += 1;
        if let Some((at, mut rng)) = self.cut.armed {
            if at == self.cut.syncs {
                let mut keep = |_: usize| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng & 1 == 1
                };
                self.cut.image = Some(self.power_cut_image(&mut keep));
                self.cut.armed = None;
            }
        }
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

//! The seam between the journal and the storage device: the bytes of a
//! journal file as the journal reads and writes them, and the call that
//! makes written bytes durable.
//!
//! The library's own device is the file's memory map (`mmap.rs`). A
//! [`DeviceLayer`] given in the store's options wraps every device the
//! journal maps, so that an application (or this library's own tests) can
//! watch, delay or fail syncs, or simulate a power cut: keep a copy of what
//! each sync made durable and, at a chosen sync, write that copy back as
//! the file a reboot would find.
//!
//! A device may also hand out a [`Syncer`]: a way to make a range of the
//! file durable from any thread, without the device itself. With one, the
//! journal syncs `Durability::Sync` operations in groups, outside the
//! store's lock (`group.rs`); without one (the default, as for a layer
//! that does not pass it on), every sync is made under the lock.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// A journal file's bytes and their way to the device.
///
/// Contract the journal relies on: `bytes` and `bytes_mut` are the whole
/// file (the same length for the device's life), and after `sync(offset,
/// len)` returns `Ok` the bytes in that range are as durable as the device
/// can make them (the map: `msync(MS_SYNC)` of the pages covering it). An
/// `Err` from `sync` is an I/O failure of the level: the store falls back
/// to level 1 and reports it.
pub trait Device: Send {
    /// The file's bytes.
    fn bytes(&self) -> &[u8];
    /// The file's bytes, to write.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Makes `[offset, offset + len)` durable.
    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()>;
    /// Whether the bytes are still the file's: an `Err` once an access to
    /// them failed (the map: a page was lost to a truncation by another
    /// program or to a read error of the medium, and reads as zeros now).
    /// The journal calls it at the end of every operation, so it must be
    /// cheap; an `Err` is an I/O failure of the level, like one from
    /// `sync`. A layer that wraps a device should pass the call on.
    fn check(&self) -> io::Result<()> {
        Ok(())
    }
    /// A [`Syncer`] for this device's file, if it can sync concurrently
    /// with the journal's writes (the map can: `msync` from another
    /// thread). `None` (the default) keeps every sync under the store's
    /// lock, through [`Device::sync`], which is always correct. A layer
    /// that wraps a device may pass the inner device's syncer on, wrapped,
    /// so that what it watches in `sync` it also watches there.
    fn syncer(&self) -> Option<Arc<dyn Syncer>> {
        None
    }
}

/// Makes ranges of a device's file durable from any thread (see
/// [`Device::syncer`]).
///
/// Contract: `sync(offset, len)` has the effect of [`Device::sync`] on the
/// same range: when it returns `Ok`, the bytes the journal had written in
/// that range before the call are durable. It is called without the
/// device, from a thread that holds no lock of the store, while the
/// journal may go on writing other records (also into the same pages) and
/// may even drop the device: a syncer keeps what it needs alive itself. A
/// syncer never reads or writes the bytes through the device's slices (the
/// journal holds those exclusively); a layer that needs the bytes reads
/// them from the file. An `Err` is an I/O failure of the level, as from
/// `Device::sync`: the store falls back to level 1 and reports it.
pub trait Syncer: Send + Sync {
    /// Makes `[offset, offset + len)` durable.
    fn sync(&self, offset: usize, len: usize) -> io::Result<()>;
    /// Prepares `[offset, offset + len)` for the journal's next writes, so
    /// that they do not fault on the writing thread (the map:
    /// `MADV_POPULATE_WRITE`). A hint, called from a thread of the journal
    /// ahead of its head with `Durability::None` and `Batch`: it must not
    /// change the bytes, and whatever it fails to prepare is simply
    /// slower to write. The default does nothing; a layer passing a syncer
    /// on should pass this on too.
    fn prefault(&self, offset: usize, len: usize) {
        let _ = (offset, len);
    }
}

/// Wraps each device the journal opens: see the module docs.
pub trait DeviceLayer: Send + Sync {
    /// The device the journal uses for the file at `path`, built over the
    /// library's own `device` for it. `path` is the name the file has when
    /// it is mapped (a new file is mapped under a temporary name and then
    /// renamed into place).
    fn wrap(&self, path: &Path, device: Box<dyn Device>) -> Box<dyn Device>;
}

/// A layer as the options carry it.
pub(crate) type SharedLayer = Arc<dyn DeviceLayer>;

/// Puts `device` under `layer`, if there is one.
pub(crate) fn layered(
    layer: Option<&SharedLayer>,
    path: &Path,
    device: Box<dyn Device>,
) -> Box<dyn Device> {
    match layer {
        Some(layer) => layer.wrap(path, device),
        None => device,
    }
}

/// Shown by the options' `Debug`.
pub(crate) struct LayerPresence<'a>(pub &'a Option<SharedLayer>);

impl fmt::Debug for LayerPresence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

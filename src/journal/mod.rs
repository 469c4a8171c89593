//! Level 2: the journal, a crash-safe record log in a preallocated,
//! memory-mapped, locked, checksummed ring file. It implements
//! [`RecordLog`](crate::backend::RecordLog) and knows nothing of services,
//! clients, events or file names: its users pass the path, the magic, the
//! owner uid and the capacity ([`JournalConfig`]).
//!
//! - `format`: the on-disk layout (named offsets, codecs); `docs/FORMAT.md`
//!   describes the same thing in prose.
//! - `ring`: in-memory bookkeeping of the ring (pure, no I/O).
//! - `recovery`: rebuilding that bookkeeping from a file's bytes.
//! - `log`: the [`Journal`] and its `RecordLog` operations.
//! - `write`: placing, writing and syncing records.
//! - `open`, `create`, `salvage`: opening and recovering, laying out new
//!   files, and what happens to damaged or foreign files.
//! - `file`: locking, atomic creation and replacement, setting aside.
//! - `device`: the seam to the storage device ([`Device`], [`DeviceLayer`]);
//!   `mmap` is the library's own device, `sys` the raw system calls, `fork`
//!   what a fork does (descriptors detached in the child, fork generation,
//!   fork-safe uids), `sigbus` the handler that turns a fault in a mapped
//!   page (a truncated file, a failing medium) into an I/O error.
//! - `resync`: recovery past damage in the middle of the log.
//! - `examine`: reading a snapshot of a journal's bytes without opening
//!   it (for tools), and writing a repaired copy of it to a new file.
//! - `durability`: when writes are forced to the device; `group`: the
//!   syncs of `Durability::Sync` shared by the threads of a store (group
//!   commit).

mod chain;
mod create;
mod device;
mod durability;
mod examine;
mod file;
mod fork;
mod format;
mod group;
mod log;
mod mmap;
mod open;
mod prefault;
mod recovery;
mod resync;
mod ring;
mod salvage;
mod sigbus;
mod sys;
mod write;

#[cfg(test)]
mod tests;

pub(crate) use device::LayerPresence;
pub use device::{Device, DeviceLayer, Syncer};
pub use durability::Durability;
pub(crate) use examine::{examine, write_copy, Examined, JournalCopy, SlotStatus};
pub(crate) use fork::{generation as fork_generation, new_uid};
pub(crate) use group::SyncTicket;
pub(crate) use log::{Journal, JournalConfig};

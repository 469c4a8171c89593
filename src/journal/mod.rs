//! Level 2: the journal, a crash-safe record log in a memory-mapped file.
//!
//! - `format`: the on-disk layout (named offsets, codecs); `docs/FORMAT.md`
//!   describes the same thing in prose.
//! - `ring`: in-memory bookkeeping of the ring (pure, no I/O).
//! - `recovery`: rebuilding that bookkeeping from a file's bytes.
//! - `log`: the [`Journal`] itself ([`RecordLog`](crate::RecordLog)).
//! - `open`: opening, recovery, salvage of damaged or foreign files.
//! - `file`: locking, atomic creation and replacement, setting aside.
//! - `mmap`: the map, the only `unsafe` code here.
//! - `durability`: when writes are forced to the device.

pub(crate) mod durability;
pub(crate) mod file;
pub mod format;
mod log;
mod mmap;
mod open;
mod recovery;
mod ring;

pub use durability::Durability;
pub use log::{service_journal_path, Journal, JournalConfig};

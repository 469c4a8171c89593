//! The bottom layer: where a store keeps its bytes, and the small
//! vocabulary shared by the stores and their backends.
//!
//! - [`RecordLog`]: ordered opaque records, for a service store. Memory
//!   ([`MemoryLog`], level 1), the journal (level 2) and user code (custom
//!   level 2) implement it.
//! - [`IdStore`]: the last handled id per subscription, for a client store.
//!   The client file (level 2) and user code implement it.
//!
//! Nothing here knows the stores, the journal, events or file names; they
//! all depend on this module (docs/ARCHITECTURE.md).

mod id_store;
mod memory;
mod record_log;

pub use id_store::IdStore;
pub use memory::MemoryLog;
pub use record_log::{RecordLog, Removal};

/// Largest record a service store hands its [`RecordLog`]: an encoded
/// event with the longest name and arguments (40 bytes of fixed fields and
/// raise time, 256 of name, 2048 of arguments). Every backend must accept
/// this much.
pub const MAX_RECORD_LEN: usize = 40 + crate::event::MAX_NAME_LEN + crate::event::MAX_ARGS_LEN;

/// Bytes a record with `payload_len` bytes of payload counts against a
/// store's capacity, the same at every level: what the journal file holds
/// for it (a 32-byte record header, then the payload padded to 8 bytes).
pub(crate) const fn stored_size(payload_len: usize) -> u64 {
    (32 + payload_len).next_multiple_of(8) as u64
}

/// Longest metadata blob a [`RecordLog`] must keep (the store writes a
/// version byte and its 16-byte storage uid).
pub const MAX_METADATA_LEN: usize = 64;

/// The persistence level a store runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Level 1: memory. Survives a network outage, not a restart.
    Memory = 1,
    /// Level 2: a file or a custom backend. Survives restarts and, with
    /// [`Durability::Sync`](crate::Durability::Sync), power loss.
    Persistent = 2,
}

impl Level {
    /// 1 or 2.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// The level of a [`Level::number`] (level 2 for anything but 1).
    pub(crate) fn of_number(number: u64) -> Level {
        if number == 1 {
            Level::Memory
        } else {
            Level::Persistent
        }
    }
}

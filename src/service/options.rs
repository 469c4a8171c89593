//! How a service store is opened and what it reports about itself: options,
//! capacities, modes, overflow policy, statistics.

use std::fmt;

use uuid::Uuid;

use crate::backend::Level;
use crate::error::{Error, Result};
use crate::journal::{DeviceLayer, Durability, LayerPresence};
use crate::report::{FailureCallback, OpenPolicy};

/// Level-1 capacity when 0 is given.
pub const DEFAULT_MEMORY_CAPACITY: usize = 16 * 1024;
/// Smallest level-1 capacity; smaller non-zero values are raised to it.
pub const MIN_MEMORY_CAPACITY: usize = 4 * 1024;
/// Level-2 capacity when 0 is given.
pub const DEFAULT_FILE_CAPACITY: usize = 1024 * 1024;
/// Smallest level-2 capacity; smaller non-zero values are raised to it.
pub const MIN_FILE_CAPACITY: usize = 8 * 1024;
/// Largest capacity at either level.
pub const MAX_CAPACITY: usize = 1 << 32;

/// The store's delivery mode (docs/BEHAVIOUR.md section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One global FIFO in raise order: `peek`/`ack`.
    Storage = 0,
    /// One pipeline per event name: `peek_name`/`ack_name`.
    Cache = 1,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Storage => "storage-mode",
            Mode::Cache => "cache-mode",
        })
    }
}

/// What happens when a new event does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Overflow {
    /// Drop the oldest pending events to make room; each drop is counted and
    /// reported (the default).
    #[default]
    DropOldest = 0,
    /// Refuse the new event with [`Error::StorageFull`].
    RejectNew = 1,
}

/// How to open a service store.
#[derive(Clone, Default)]
pub struct ServiceOptions {
    /// Level-2 capacity in bytes of stored records (file or custom backend):
    /// 0 means 1 MiB, smaller values are raised to 8 KiB.
    pub capacity: usize,
    /// Level-1 capacity (memory store, and fallback from level 2): 0 means
    /// 16 KiB, smaller values are raised to 4 KiB.
    pub memory_capacity: usize,
    /// When the journal forces writes to the device (journal only).
    pub durability: Durability,
    /// Drop the oldest (default) or reject the new event when full.
    pub overflow: Overflow,
    /// Called with every failure report, after the store's lock is released.
    pub on_failure: Option<FailureCallback>,
    /// Wraps the journal's device (journal only; see [`DeviceLayer`]).
    pub device_layer: Option<std::sync::Arc<dyn DeviceLayer>>,
    /// What `open_file` does when the journal cannot be opened: fall back
    /// to level 1 (default) or fail (see [`OpenPolicy`]).
    pub open_policy: OpenPolicy,
}

impl fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("capacity", &self.capacity)
            .field("memory_capacity", &self.memory_capacity)
            .field("durability", &self.durability)
            .field("overflow", &self.overflow)
            .field("on_failure", &self.on_failure.is_some())
            .field("device_layer", &LayerPresence(&self.device_layer))
            .field("open_policy", &self.open_policy)
            .finish()
    }
}

fn effective_capacity(given: usize, default: usize, min: usize, what: &str) -> Result<u64> {
    if given > MAX_CAPACITY {
        return Err(Error::invalid(format!(
            "{what} capacity {given} exceeds the limit of {MAX_CAPACITY} bytes"
        )));
    }
    Ok(match given {
        0 => default,
        n => n.max(min),
    } as u64)
}

impl ServiceOptions {
    /// Checks the options (capacities in range) without opening anything.
    pub fn validate(&self) -> Result<()> {
        self.memory_capacity_bytes()?;
        self.file_capacity_bytes()?;
        Ok(())
    }

    /// The level-1 capacity in effect.
    pub(crate) fn memory_capacity_bytes(&self) -> Result<u64> {
        effective_capacity(
            self.memory_capacity,
            DEFAULT_MEMORY_CAPACITY,
            MIN_MEMORY_CAPACITY,
            "memory",
        )
    }

    /// The level-2 capacity in effect.
    pub(crate) fn file_capacity_bytes(&self) -> Result<u64> {
        effective_capacity(
            self.capacity,
            DEFAULT_FILE_CAPACITY,
            MIN_FILE_CAPACITY,
            "level-2",
        )
    }
}

/// A snapshot of a store's state and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStats {
    /// Current level (it drops to 1 after a level-2 failure).
    pub level: Level,
    /// Current mode.
    pub mode: Mode,
    /// Events stored and not yet acknowledged.
    pub pending_events: u64,
    /// Bytes of stored records.
    pub used_bytes: u64,
    /// Capacity of the current level in bytes.
    pub capacity_bytes: u64,
    /// Events dropped to make room (drop-oldest policy).
    pub dropped_events: u64,
    /// Raises refused as storage full (reject-new policy).
    pub rejected_events: u64,
    /// Replacing instances superseded by newer ones (not lost: by design).
    pub superseded_events: u64,
    /// Ancient events discarded by `invalidate_ancient`.
    pub invalidated_events: u64,
    /// Failure reports other than capacity drops (fallback, corruption,
    /// interrupted writes).
    pub failures: u64,
    /// Events lost through those failures.
    pub events_lost: u64,
    /// The storage uid the broker's duplicate detection is tied to.
    pub storage_uid: Uuid,
}

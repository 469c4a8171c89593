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
/// Largest capacity at either level: 4 GiB on a 64-bit target.
#[cfg(target_pointer_width = "64")]
pub const MAX_CAPACITY: usize = 1 << 32;
/// Largest capacity at either level: 1 GiB on a 32-bit target, where the
/// journal file (the capacity, its spare room and 8 KiB of header) is mapped
/// whole into an address space of 2 to 4 GiB shared with the rest of the
/// process, and a resize maps the new file beside the old one.
#[cfg(not(target_pointer_width = "64"))]
pub const MAX_CAPACITY: usize = 1 << 30;

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
    /// Age limit: a pending event raised longer ago than this is dropped
    /// when it would next be delivered, and reported as
    /// [`FailureKind::Expired`](crate::FailureKind::Expired). `None` (the
    /// default) keeps events however old. Ages come from the wall clock:
    /// an event whose raise time is unknown, or was read from a clock
    /// that had not been set (before 2020), or is ahead of the clock now
    /// (it went backwards) never expires. Whole milliseconds count.
    pub max_age: Option<std::time::Duration>,
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
            .field("max_age", &self.max_age)
            .finish()
    }
}

fn effective_capacity(given: usize, default: usize, min: usize, what: &str) -> Result<u64> {
    capacity_within(given, default, min, what, MAX_CAPACITY, usize::BITS)
}

/// [`effective_capacity`] against the limit `max` of a build whose
/// addresses have `pointer_bits` bits (the message says which limit it is).
fn capacity_within(
    given: usize,
    default: usize,
    min: usize,
    what: &str,
    max: usize,
    pointer_bits: u32,
) -> Result<u64> {
    if given > max {
        return Err(Error::invalid(format!(
            "{what} capacity {given} exceeds the limit of {max} bytes of a \
             {pointer_bits}-bit build"
        )));
    }
    let effective = match given {
        0 => default,
        n => n.max(min),
    };
    // usize is at most 64 bits on every target Rust supports.
    Ok(u64::try_from(effective).unwrap_or(u64::MAX))
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
    /// Events dropped for being older than
    /// [`ServiceOptions::max_age`] (by the application's choice: not
    /// counted in `failures` or `events_lost`).
    pub expired_events: u64,
    /// Failure reports other than capacity drops (fallback, corruption,
    /// interrupted writes).
    pub failures: u64,
    /// Events lost through those failures.
    pub events_lost: u64,
    /// The storage uid the broker's duplicate detection is tied to.
    pub storage_uid: Uuid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_limit_per_pointer_width() {
        // This build's own limit.
        assert!(effective_capacity(MAX_CAPACITY, 1, 1, "level-2").is_ok());
        if let Some(above) = MAX_CAPACITY.checked_add(1) {
            let err = effective_capacity(above, 1, 1, "level-2").unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument);
        }
        if cfg!(target_pointer_width = "64") {
            assert_eq!(MAX_CAPACITY as u64, 1 << 32);
        } else {
            assert_eq!(MAX_CAPACITY, 1 << 30);
        }
        // A 32-bit build's limit, checked on any build.
        let gib = 1usize << 30;
        assert_eq!(
            capacity_within(gib, 1, 1, "level-2", gib, 32).unwrap(),
            1 << 30
        );
        let err = capacity_within(gib + 1, 1, 1, "level-2", gib, 32).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("1073741825"), "{message}");
        assert!(message.contains("32-bit"), "{message}");
        assert_eq!(capacity_within(0, 77, 8, "memory", gib, 32).unwrap(), 77);
        assert_eq!(capacity_within(3, 77, 8, "memory", gib, 32).unwrap(), 8);
    }
}

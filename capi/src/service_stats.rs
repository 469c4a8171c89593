//! `snp_service_stats` and the modes: what a service store reports about
//! itself.

use snp::{Mode, ServiceStats};

use crate::uuid::snp_uuid;

/// Storage mode: one FIFO, `snp_service_peek`/`snp_service_ack`.
pub const SNP_MODE_STORAGE: i32 = 0;
/// Cache mode: one pipeline per name, `_peek_name`/`_ack_name`.
pub const SNP_MODE_CACHE: i32 = 1;

/// The C code of a mode.
pub(crate) fn mode_code(mode: Mode) -> i32 {
    match mode {
        Mode::Storage => SNP_MODE_STORAGE,
        Mode::Cache => SNP_MODE_CACHE,
    }
}

/// Counters and state of a service store. Set `struct_size` to
/// `sizeof(snp_service_stats)` before `snp_service_get_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct snp_service_stats {
    /// `sizeof(snp_service_stats)` as the caller knows it.
    pub struct_size: u32,
    /// 1 or 2 (drops to 1 after a level-2 failure).
    pub level: i32,
    /// `SNP_MODE_STORAGE` or `SNP_MODE_CACHE`.
    pub mode: i32,
    /// Events stored and not yet acknowledged.
    pub pending_events: u64,
    /// Bytes of stored records.
    pub used_bytes: u64,
    /// Capacity of the current level.
    pub capacity_bytes: u64,
    /// Events dropped to make room.
    pub dropped_events: u64,
    /// Raises refused with `SNP_ERR_STORAGE_FULL`.
    pub rejected_events: u64,
    /// Replacing instances superseded by newer ones (not lost).
    pub superseded_events: u64,
    /// Ancient events discarded by `snp_service_invalidate_ancient`.
    pub invalidated_events: u64,
    /// Failure reports other than capacity drops.
    pub failures: u64,
    /// Events lost through those failures.
    pub events_lost: u64,
    /// The storage uid.
    pub storage_uid: snp_uuid,
}

impl snp_service_stats {
    /// The C copy of the library's statistics.
    pub(crate) fn of(s: &ServiceStats) -> snp_service_stats {
        snp_service_stats {
            struct_size: std::mem::size_of::<snp_service_stats>() as u32,
            level: i32::from(s.level.number()),
            mode: mode_code(s.mode),
            pending_events: s.pending_events,
            used_bytes: s.used_bytes,
            capacity_bytes: s.capacity_bytes,
            dropped_events: s.dropped_events,
            rejected_events: s.rejected_events,
            superseded_events: s.superseded_events,
            invalidated_events: s.invalidated_events,
            failures: s.failures,
            events_lost: s.events_lost,
            storage_uid: s.storage_uid.into(),
        }
    }
}

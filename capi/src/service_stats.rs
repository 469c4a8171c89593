//! `snp_service_stats`, the modes, and the readers of a service store:
//! what it reports about itself.

use snp::{Error, Mode, ServiceStats};

use crate::cast::{write_versioned, Out};
use crate::panic::guard;
use crate::service::{reader, snp_service};
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};
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
    /// Events dropped for being older than `max_age_ms` (not counted in
    /// `failures` or `events_lost`).
    pub expired_events: u64,
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
            expired_events: s.expired_events,
        }
    }
}

/// Writes `value` to a required output: `SNP_OK`, or an invalid-argument
/// error naming `what` if it is NULL.
///
/// # Safety
/// `out` must be NULL or writable.
unsafe fn put<T: Copy>(out: *mut T, what: &str, value: T) -> Result<snp_status, Error> {
    let o = Out::new(out, what)?;
    // SAFETY: forwarded contract; not NULL (checked).
    unsafe { o.write(value) };
    Ok(SNP_OK)
}

/// Writes the current mode (`SNP_MODE_STORAGE` or `SNP_MODE_CACHE`).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_STATE`
/// (a forked child on its parent's handle), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_mode` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_mode(
    service: *const snp_service,
    out_mode: *mut i32,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle; `out_mode` writable (the contract).
        unsafe { put(out_mode, "out_mode", mode_code(reader(service)?.mode())) }
    })
}

/// Writes the storage uid (what the broker's duplicate detection is tied
/// to). Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_STATE`
/// (a forked child on its parent's handle), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_uid` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_storage_uid(
    service: *const snp_service,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle; `out_uid` writable (the contract).
        unsafe { put(out_uid, "out_uid", reader(service)?.storage_uid().into()) }
    })
}

/// Writes the storage uid the store had before a level-2 failure moved it
/// to level 1 with a new one; `SNP_EMPTY` (nothing written) if that never
/// happened. When going online, a broker that remembers this uid knows the
/// delivery state of the moved events: treat it like the current uid
/// (invalidate nothing) and send the broker the current one.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_STATE`
/// (a forked child on its parent's handle), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_uid` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_previous_storage_uid(
    service: *const snp_service,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { reader(service) }?;
        let o = Out::new(out_uid, "out_uid")?;
        match store.previous_storage_uid() {
            Some(uid) => {
                // SAFETY: `out_uid` is writable (the contract), not NULL.
                unsafe { o.write(uid.into()) };
                Ok(SNP_OK)
            }
            None => Ok(SNP_EMPTY),
        }
    })
}

/// Copies the counters into `*out_stats`, up to `out_stats->struct_size`
/// bytes (set it to `sizeof(snp_service_stats)` first).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, struct_size too
/// small), `SNP_ERR_STATE` (a forked child on its parent's handle),
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_stats` writable for its own
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn snp_service_get_stats(
    service: *const snp_service,
    out_stats: *mut snp_service_stats,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let stats = unsafe { reader(service) }?.stats();
        // SAFETY: `out_stats` is NULL or writable for its own struct_size
        // bytes (the contract).
        unsafe { write_versioned(out_stats, &snp_service_stats::of(&stats), "out_stats") }
    })
}

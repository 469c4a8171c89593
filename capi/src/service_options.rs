//! `snp_service_options`: how a service store is opened.

use std::ffi::{c_char, c_void};
use std::ptr;

use snp::{Error, Overflow, ServiceOptions};

use crate::cast::{init, versioned_since};
use crate::failure::{failure_callback, snp_failure_fn};
use crate::options::{
    durability_of, open_policy_of, SNP_DURABILITY_SYNC, SNP_LEVEL_FILE, SNP_OPEN_FALLBACK,
};
use crate::uuid::snp_uuid;

/// Overflow policy: drop the oldest pending events (reported).
pub const SNP_OVERFLOW_DROP_OLDEST: i32 = 0;
/// Overflow policy: refuse the new event with `SNP_ERR_STORAGE_FULL`.
pub const SNP_OVERFLOW_REJECT_NEW: i32 = 1;

/// How to open a service store. Call `snp_service_options_init` first, then
/// set what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_service_options {
    /// `sizeof(snp_service_options)`, set by `_init`. A larger value (a newer
    /// caller's struct) is fine, and only the fields of this header are
    /// read; a smaller one from an older header (ending before
    /// `open_policy`) is read with the defaults for the fields it lacks;
    /// anything smaller is refused (`SNP_ERR_INVALID_ARGUMENT`).
    pub struct_size: u32,
    /// `SNP_LEVEL_FILE` (default) or `SNP_LEVEL_MEMORY`.
    pub level: i32,
    /// Directory of the journal file (NUL-terminated; level 2 only).
    pub directory: *const c_char,
    /// The service uid; the journal is
    /// `softnet.service.persistence_<uid>.ssp` (level 2 only).
    pub service_uid: snp_uuid,
    /// Level-2 capacity in bytes (0: 1 MiB; minimum 8 KiB).
    pub file_capacity: u64,
    /// Level-1 capacity, also used after a fallback (0: 16 KiB; min 4 KiB).
    pub memory_capacity: u64,
    /// `SNP_DURABILITY_SYNC` (default), `_BATCH` or `_NONE`.
    pub durability: i32,
    /// Batch: sync after this many operations (default 64).
    pub batch_max_ops: u32,
    /// Batch: sync when the oldest unsynced operation is this old (default
    /// 100 ms), checked on each call.
    pub batch_max_delay_ms: u32,
    /// `SNP_OVERFLOW_DROP_OLDEST` (default) or `SNP_OVERFLOW_REJECT_NEW`.
    pub overflow: i32,
    /// Called with every failure report (may be NULL), on the calling
    /// thread, after the store's lock is released. The C library has no
    /// logger of its own: without a callback, failures show only in
    /// `snp_service_get_stats` (`level`, `failures`, `events_lost`).
    pub on_failure: snp_failure_fn,
    /// Passed to `on_failure`.
    pub user_data: *mut c_void,
    /// `SNP_OPEN_FALLBACK` (default): a level-2 store whose file cannot be
    /// opened or created (a missing or read-only directory, a full disk)
    /// starts at level 1 and reports it; `SNP_OPEN_STRICT`: the open fails
    /// with `SNP_ERR_IO` and a message naming the directory or file, the
    /// cause and the fix. A caller built with a header that lacks this
    /// field (a smaller `struct_size`) gets the default.
    pub open_policy: i32,
    /// Age limit in milliseconds (0, the default: none): a pending event
    /// raised longer ago than this is dropped when it would next be
    /// delivered, and reported as `SNP_FAILURE_EXPIRED`. An event whose raise
    /// time is unknown, or came from a clock not yet set (before 2020), or
    /// is ahead of the clock now (it went backwards) never expires.
    pub max_age_ms: u64,
}

impl Default for snp_service_options {
    fn default() -> Self {
        snp_service_options {
            struct_size: std::mem::size_of::<snp_service_options>() as u32,
            level: SNP_LEVEL_FILE,
            directory: ptr::null(),
            service_uid: snp_uuid::default(),
            file_capacity: 0,
            memory_capacity: 0,
            durability: SNP_DURABILITY_SYNC,
            batch_max_ops: 64,
            batch_max_delay_ms: 100,
            overflow: SNP_OVERFLOW_DROP_OLDEST,
            on_failure: None,
            user_data: ptr::null_mut(),
            open_policy: SNP_OPEN_FALLBACK,
            max_age_ms: 0,
        }
    }
}

/// Fills `options` with the defaults (NULL is ignored).
///
/// # Safety
/// `options` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_options_init(options: *mut snp_service_options) {
    // SAFETY: `options` is NULL or writable (the function's contract).
    unsafe { init(options) }
}

/// The library's options for the caller's.
pub(crate) fn rust_options(o: &snp_service_options) -> Result<ServiceOptions, Error> {
    let capacity = |v: u64, what: &str| {
        usize::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is too large")))
    };
    let overflow = match o.overflow {
        SNP_OVERFLOW_DROP_OLDEST => Overflow::DropOldest,
        SNP_OVERFLOW_REJECT_NEW => Overflow::RejectNew,
        other => {
            return Err(Error::InvalidArgument(format!(
                "overflow {other} is not SNP_OVERFLOW_DROP_OLDEST (0) or REJECT_NEW (1)"
            )))
        }
    };
    Ok(ServiceOptions {
        capacity: capacity(o.file_capacity, "file_capacity")?,
        memory_capacity: capacity(o.memory_capacity, "memory_capacity")?,
        durability: durability_of(o.durability, o.batch_max_ops, o.batch_max_delay_ms)?,
        overflow,
        on_failure: failure_callback(o.on_failure, o.user_data),
        open_policy: open_policy_of(o.open_policy)?,
        max_age: (o.max_age_ms > 0).then(|| std::time::Duration::from_millis(o.max_age_ms)),
        ..ServiceOptions::default()
    })
}

/// Copies the caller's options (see `versioned_since`: the struct of
/// ABI 1.0 ends before `open_policy`).
///
/// # Safety
/// `options` must be NULL or readable for its own `struct_size` bytes.
pub(crate) unsafe fn read_options(
    options: *const snp_service_options,
) -> Result<snp_service_options, Error> {
    // SAFETY: forwarded contract: NULL or readable for its own struct_size.
    unsafe {
        versioned_since(
            options,
            std::mem::offset_of!(snp_service_options, open_policy),
            "options",
            "snp_service_options",
            "call snp_service_options_init first (or set struct_size = \
             sizeof(snp_service_options))",
        )
    }
}

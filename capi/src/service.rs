//! `snp_service`: the service store through the C ABI.

use std::ffi::{c_char, c_void};
use std::ptr;

use crate::custom::{snp_record_log_vtable, CRecordLog};
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};
use crate::types::SNP_MAX_ARGS_LEN;
use crate::types::{
    durability_of, failure_callback, kind_of, snp_event, snp_failure_fn, snp_stored_event,
    snp_uuid, SNP_DURABILITY_SYNC, SNP_LEVEL_FILE, SNP_LEVEL_MEMORY,
};
use crate::{arg, c_str, guard, owned_bytes, owned_name, read_arg, versioned, Out};
use snp::Error;
use snp::Event;
use snp::{Mode, Overflow, ServiceOptions, ServiceStore};

/// A service store. Opaque; safe to use from several threads at once.
pub struct snp_service {
    store: ServiceStore,
}

/// Overflow policy: drop the oldest pending events (reported).
pub const SNP_OVERFLOW_DROP_OLDEST: i32 = 0;
/// Overflow policy: refuse the new event with `SNP_ERR_STORAGE_FULL`.
pub const SNP_OVERFLOW_REJECT_NEW: i32 = 1;

/// Storage mode: one FIFO, `snp_service_peek`/`snp_service_ack`.
pub const SNP_MODE_STORAGE: i32 = 0;
/// Cache mode: one pipeline per name, `_peek_name`/`_ack_name`.
pub const SNP_MODE_CACHE: i32 = 1;

/// The C code of a mode.
fn mode_code(mode: Mode) -> i32 {
    match mode {
        Mode::Storage => SNP_MODE_STORAGE,
        Mode::Cache => SNP_MODE_CACHE,
    }
}

/// How to open a service store. Call `snp_service_options_init` first, then
/// set what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_service_options {
    /// `sizeof(snp_service_options)`, set by `_init`. A smaller value is
    /// refused (`SNP_ERR_INVALID_ARGUMENT`); a larger one (a newer caller's
    /// struct) is fine, and only the fields of this header are read.
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
    /// thread, after the store's lock is released.
    pub on_failure: snp_failure_fn,
    /// Passed to `on_failure`.
    pub user_data: *mut c_void,
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
        }
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

/// Fills `options` with the defaults (NULL is ignored).
///
/// # Safety
/// `options` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_options_init(options: *mut snp_service_options) {
    guard(|| {
        // SAFETY: NULL or a caller's writable struct.
        if let Some(o) = unsafe { options.as_mut() } {
            *o = snp_service_options::default();
        }
        Ok(SNP_OK)
    });
}

fn rust_options(o: &snp_service_options) -> Result<ServiceOptions, Error> {
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
        ..ServiceOptions::default()
    })
}

/// Copies the caller's options (see `versioned`).
///
/// # Safety
/// `options` must be NULL or readable for its own `struct_size` bytes.
unsafe fn read_options(options: *const snp_service_options) -> Result<snp_service_options, Error> {
    // SAFETY: forwarded contract.
    unsafe {
        versioned(
            options,
            "options",
            "snp_service_options",
            "call snp_service_options_init first (or set struct_size = \
             sizeof(snp_service_options))",
        )
    }
}

/// Writes a new handle for `store` to the caller's `*out_service`.
///
/// # Safety
/// `out_service` must be writable (checked non-null by `Out::new`).
unsafe fn hand_out(
    store: ServiceStore,
    out_service: Out<*mut snp_service>,
) -> Result<snp_status, Error> {
    let handle = Box::into_raw(Box::new(snp_service { store }));
    // SAFETY: forwarded contract.
    unsafe { out_service.write(handle) };
    Ok(SNP_OK)
}

/// Opens a service store as `options` say and writes its handle to
/// `*out_service`.
///
/// A damaged or foreign journal is set aside and reported through
/// `on_failure`, not an error; an I/O error opening the journal starts the
/// store at level 1 (reported).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, `struct_size` less
/// than `sizeof(snp_service_options)`, no directory at level 2, bad enum
/// value), `SNP_ERR_LOCKED` (another handle has the journal),
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `options` must point to an initialised `snp_service_options`; its
/// `directory` must be NULL or NUL-terminated; `out_service` must be
/// writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_open(
    options: *const snp_service_options,
    out_service: *mut *mut snp_service,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let o = unsafe { read_options(options) }?;
        let out_service = Out::new(out_service, "out_service")?;
        let rust = rust_options(&o)?;
        let store = match o.level {
            SNP_LEVEL_MEMORY => ServiceStore::open_memory(&rust)?,
            SNP_LEVEL_FILE => {
                // SAFETY: per the function's contract.
                let dir = unsafe { c_str(o.directory, "options->directory") }.map_err(|_| {
                    Error::InvalidArgument(
                        "options->directory is NULL or not UTF-8; a level-2 store needs the \
                         directory of its journal (or set level = SNP_LEVEL_MEMORY)"
                            .to_string(),
                    )
                })?;
                ServiceStore::open_file(dir, o.service_uid.into(), &rust)?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "options->level {other} is not SNP_LEVEL_MEMORY (1) or SNP_LEVEL_FILE (2)"
                )))
            }
        };
        // SAFETY: per the function's contract.
        unsafe { hand_out(store, out_service) }
    })
}

/// Opens a level-2 service store kept by user code (see
/// `snp_record_log_vtable`). The vtable is copied; its `ctx` must stay
/// valid until the store calls `destroy` (or is closed, if `destroy` is
/// NULL). When this call fails, `destroy` is not called and `ctx` is still
/// yours. A backend error makes the store continue at level 1 (reported);
/// the store then calls `destroy` as it lets go of the backend.
/// `options->level`, `directory`, `service_uid` and `durability` are
/// ignored.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, a `struct_size`
/// less than the struct's `sizeof`, a required function missing, bad option
/// value), `SNP_ERR_PANIC`.
///
/// # Safety
/// `backend` and `options` must point to initialised structs; the vtable's
/// functions must follow its documented contract; `out_service` must be
/// writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_open_custom(
    backend: *const snp_record_log_vtable,
    options: *const snp_service_options,
    out_service: *mut *mut snp_service,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let mut o = unsafe { read_options(options) }?;
        let out_service = Out::new(out_service, "out_service")?;
        // Durability is the backend's own business (its commit and flush).
        o.durability = SNP_DURABILITY_SYNC;
        let rust = rust_options(&o)?;
        rust.validate()?;
        // Last: from here on the backend is the store's, and its destroy
        // runs when the store lets go of it.
        // SAFETY: per the function's contract.
        let log = unsafe { CRecordLog::from_vtable(backend) }?;
        let store = ServiceStore::open_custom(Box::new(log), &rust)?;
        // SAFETY: per the function's contract.
        unsafe { hand_out(store, out_service) }
    })
}

/// Closes the store (syncing what the durability setting left pending) and
/// frees the handle. NULL is fine. The handle must not be used afterwards.
///
/// # Safety
/// `service` must be NULL or a handle from `snp_service_open*` not yet
/// closed, with no call on it in progress on another thread.
#[no_mangle]
pub unsafe extern "C" fn snp_service_close(service: *mut snp_service) {
    guard(|| {
        if !service.is_null() {
            // SAFETY: a live handle from Box::into_raw, closed once.
            let handle = unsafe { Box::from_raw(service) };
            let _ = handle.store.close();
        }
        Ok(SNP_OK)
    });
}

/// The store behind a handle.
///
/// # Safety
/// `service` must be NULL or a live handle.
unsafe fn store<'a>(service: *const snp_service) -> Result<&'a ServiceStore, Error> {
    // SAFETY: forwarded contract.
    Ok(&unsafe { arg(service, "service") }?.store)
}

/// Copies a C event into an owned one: the struct first, then its name and
/// arguments, their lengths checked against `SNP_MAX_NAME_LEN` and
/// `SNP_MAX_ARGS_LEN` before anything is read. The store checks the rest
/// (name characters, arguments on ReplacingNull) and names the rule broken.
///
/// # Safety
/// `event` must be NULL or point to an `snp_event` whose buffers hold
/// their lengths in readable bytes (when within the limits).
unsafe fn event_of(event: *const snp_event) -> Result<Event, Error> {
    // SAFETY: forwarded contract.
    let e = unsafe { read_arg(event, "event") }?;
    let kind = kind_of(e.kind)?;
    // SAFETY: forwarded contract.
    let name = unsafe { owned_name(e.name, e.name_len, "event->name") }?;
    // SAFETY: forwarded contract.
    let args = unsafe {
        owned_bytes(
            e.args,
            e.args_len,
            SNP_MAX_ARGS_LEN,
            "event->args",
            "SNP_MAX_ARGS_LEN",
        )
    }
    .map_err(|e| match e {
        // Name the event, as the store's own checks do.
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("event '{name}': {m}")),
        other => other,
    })?;
    let client_id = (kind == snp::EventKind::Private).then_some(e.client_id);
    Ok(Event {
        kind,
        name,
        args,
        client_id,
        uid: snp::Uuid::new_v4(),
    })
}

/// Stores an event with a new random uid, written to `*out_uid` unless
/// `out_uid` is NULL. With `SNP_DURABILITY_SYNC` the event is on the device
/// when this returns, while the store is at level 2: if level 2 fails during
/// the call, the event is kept at level 1, `SNP_OK` is still returned, and
/// the fallback is reported through `on_failure` (and `stats.level`).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, bad kind, name
/// rules, `name_len` 0 or over `SNP_MAX_NAME_LEN`, `args_len` over
/// `SNP_MAX_ARGS_LEN`: lengths are checked before the buffers are read),
/// `SNP_ERR_STORAGE_FULL` (reject-new policy), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle, `event` an initialised `snp_event`
/// whose `name`/`args` point to `name_len`/`args_len` readable bytes (when
/// those are within the limits), and `out_uid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_raise(
    service: *mut snp_service,
    event: *const snp_event,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        // SAFETY: per the function's contract.
        let event = unsafe { event_of(event) }?;
        let uid = store.raise_event(&event)?;
        if let Some(o) = Out::optional(out_uid) {
            // SAFETY: NULL or writable, per the contract.
            unsafe { o.write(uid.into()) };
        }
        Ok(SNP_OK)
    })
}

/// Stores an event under the caller's uid (e.g. one made earlier).
/// Returns as `snp_service_raise`.
///
/// # Safety
/// As `snp_service_raise`; `uid` must be readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_raise_with_uid(
    service: *mut snp_service,
    event: *const snp_event,
    uid: *const snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        // SAFETY: per the function's contract.
        let mut event = unsafe { event_of(event) }?;
        // SAFETY: per the function's contract.
        event.uid = unsafe { read_arg(uid, "uid") }?.into();
        store.raise_event(&event)?;
        Ok(SNP_OK)
    })
}

/// Writes an event to the caller's output (`SNP_OK`), or nothing
/// (`SNP_EMPTY`).
///
/// # Safety
/// `out_event` must be writable; no input may be borrowed from caller
/// memory any more (copy inputs first: the output may overlap them).
unsafe fn copy_out(event: Option<Event>, out_event: Out<snp_stored_event>) -> snp_status {
    match event {
        Some(e) => {
            // SAFETY: forwarded contract.
            unsafe { out_event.write(snp_stored_event::of(&e)) };
            SNP_OK
        }
        None => SNP_EMPTY,
    }
}

/// Storage mode: copies the oldest pending event to `*out_event` (the same
/// one until it is acknowledged). `SNP_EMPTY` when nothing is pending; the
/// store is then in cache mode.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT`,
/// `SNP_ERR_STATE` (cache mode), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_event` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_peek(
    service: *mut snp_service,
    out_event: *mut snp_stored_event,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        let o = Out::new(out_event, "out_event")?;
        let event = store.peek()?;
        // SAFETY: per the function's contract.
        Ok(unsafe { copy_out(event, o) })
    })
}

/// Storage mode: removes the oldest pending event if `*uid` is its uid.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_STATE` (cache
/// mode, or `uid` is not the event in flight: a late or repeated ack),
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `uid` readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_ack(
    service: *mut snp_service,
    uid: *const snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, uid) = unsafe { (store(service)?, read_arg(uid, "uid")?) };
        store.ack(uid.into())?;
        Ok(SNP_OK)
    })
}

/// Cache mode: copies the oldest pending event of (`kind`, `name`) to
/// `*out_event`; it is now in flight. `SNP_EMPTY` if the name has none.
/// `name` is copied before anything is written, so it may be a stored
/// event's own `name` with that event as `out_event`.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT` (NULL, bad
/// kind, `name_len` 0 or over `SNP_MAX_NAME_LEN`, checked before `name` is
/// read), `SNP_ERR_STATE` (storage mode), `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle, `name` `name_len` readable bytes (when
/// within the limit), and `out_event` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_peek_name(
    service: *mut snp_service,
    kind: i32,
    name: *const c_char,
    name_len: usize,
    out_event: *mut snp_stored_event,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, name) = unsafe { (store(service)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_event, "out_event")?;
        let event = store.peek_name(kind_of(kind)?, &name)?;
        // SAFETY: per the function's contract; the inputs are copies.
        Ok(unsafe { copy_out(event, o) })
    })
}

/// Cache mode: removes the event in flight of (`kind`, `name`) if `*uid`
/// is its uid, and copies the name's next event (now in flight) to
/// `*out_next`: `SNP_OK` with the next one, `SNP_EMPTY` if there is none.
/// `name` and `*uid` are copied before anything is written, so they may
/// point into `*out_next`: `snp_service_ack_name(s, ev.kind, ev.name,
/// ev.name_len, &ev.uid, &ev)` acknowledges `ev` and fetches the next one.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT` (as
/// `snp_service_peek_name`), `SNP_ERR_STATE` (storage mode, or `uid` is not
/// the event in flight), `SNP_ERR_PANIC`.
///
/// # Safety
/// As `snp_service_peek_name`; `uid` must be readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_ack_name(
    service: *mut snp_service,
    kind: i32,
    name: *const c_char,
    name_len: usize,
    uid: *const snp_uuid,
    out_next: *mut snp_stored_event,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, name, uid) = unsafe {
            (
                store(service)?,
                owned_name(name, name_len, "name")?,
                read_arg(uid, "uid")?,
            )
        };
        let o = Out::new(out_next, "out_next")?;
        let next = store.ack_name(kind_of(kind)?, &name, uid.into())?;
        // SAFETY: per the function's contract; the inputs are copies.
        Ok(unsafe { copy_out(next, o) })
    })
}

/// Back to storage mode (on disconnect); nothing is in flight afterwards.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_set_storage_mode(service: *mut snp_service) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        unsafe { store(service) }?.set_storage_mode()?;
        Ok(SNP_OK)
    })
}

/// Writes the current mode (`SNP_MODE_STORAGE` or `SNP_MODE_CACHE`).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_mode` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_mode(
    service: *const snp_service,
    out_mode: *mut i32,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        let o = Out::new(out_mode, "out_mode")?;
        let mode = mode_code(store.mode());
        // SAFETY: per the function's contract.
        unsafe { o.write(mode) };
        Ok(SNP_OK)
    })
}

/// Writes the storage uid (what the broker's duplicate detection is tied
/// to). Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_uid` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_storage_uid(
    service: *const snp_service,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        let o = Out::new(out_uid, "out_uid")?;
        let uid = store.storage_uid();
        // SAFETY: per the function's contract.
        unsafe { o.write(uid.into()) };
        Ok(SNP_OK)
    })
}

/// Writes the storage uid the store had before a level-2 failure moved it
/// to level 1 with a new one; `SNP_EMPTY` (nothing written) if that never
/// happened. When going online, a broker that remembers this uid knows the
/// delivery state of the moved events: treat it like the current uid
/// (invalidate nothing) and send the broker the current one.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_uid` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_previous_storage_uid(
    service: *const snp_service,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        let o = Out::new(out_uid, "out_uid")?;
        match store.previous_storage_uid() {
            Some(uid) => {
                // SAFETY: per the function's contract.
                unsafe { o.write(uid.into()) };
                Ok(SNP_OK)
            }
            None => Ok(SNP_EMPTY),
        }
    })
}

/// Discards the events stored when the store was opened ("ancient data":
/// call it when the broker remembers another storage uid than the current
/// or the previous one); keeps events raised since. Writes how many were discarded to `*out_count` unless it
/// is NULL.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle and `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_invalidate_ancient(
    service: *mut snp_service,
    out_count: *mut u64,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let n = unsafe { store(service) }?.invalidate_ancient()?;
        if let Some(o) = Out::optional(out_count) {
            // SAFETY: NULL or writable, per the contract.
            unsafe { o.write(n) };
        }
        Ok(SNP_OK)
    })
}

/// Discards every pending event; keeps the storage uid.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_reset(service: *mut snp_service) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        unsafe { store(service) }?.reset()?;
        Ok(SNP_OK)
    })
}

/// Forces everything written to the device, whatever the durability.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC` (an I/O
/// error falls back to level 1 and is reported, not returned).
///
/// # Safety
/// `service` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_flush(service: *mut snp_service) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        unsafe { store(service) }?.flush()?;
        Ok(SNP_OK)
    })
}

/// Copies the counters into `*out_stats`, up to `out_stats->struct_size`
/// bytes (set it to `sizeof(snp_service_stats)` first).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, struct_size too
/// small), `SNP_ERR_PANIC`.
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
        // SAFETY: per the function's contract.
        let store = unsafe { store(service) }?;
        let s = store.stats();
        let full = snp_service_stats {
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
        };
        // SAFETY: per the function's contract.
        unsafe { crate::write_versioned(out_stats, &full, "out_stats") }
    })
}

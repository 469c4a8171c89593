//! `snp_service`: the service store through the C ABI.

use std::ffi::{c_char, c_void};

use snp::{Error, ServiceStore};

use crate::cast::{free, hand_out, handle, read_arg, Handle, Out};
use crate::event::{copy_out, event_of, kind_of, owned_name, snp_event, snp_stored_event};
use crate::options::{SNP_DURABILITY_SYNC, SNP_LEVEL_FILE, SNP_LEVEL_MEMORY};
use crate::panic::guard;
use crate::record_log::{snp_record_log_vtable, CRecordLog};
use crate::service_options::{read_options, rust_options, snp_service_options};
use crate::status::{snp_status, SNP_OK};
use crate::uuid::snp_uuid;

/// A service store. Opaque; safe to use from several threads at once.
pub struct snp_service {
    /// Shared with the controllers made over it: they keep the store
    /// alive after the handle is closed (their calls then answer
    /// `SNP_ERR_CLOSED`).
    store: std::sync::Arc<ServiceStore>,
}

impl Handle for snp_service {
    const NAME: &'static str = "service";
}

/// The store behind a handle.
///
/// # Safety
/// `service` must be NULL or a live handle from `snp_service_open*`, not
/// closed during the call (the header's contract for every function).
pub(crate) unsafe fn store<'a>(
    service: *const snp_service,
) -> Result<&'a std::sync::Arc<ServiceStore>, Error> {
    // SAFETY: forwarded contract: NULL or a live handle, not closed during
    // the call.
    Ok(&unsafe { handle(service) }?.store)
}

/// The store behind a handle, for a reader: refused with a state error
/// in a forked child on the parent's handle (the Rust readers have no
/// error to return; see `ServiceStore::check_process`).
///
/// # Safety
/// As [`store`].
pub(crate) unsafe fn reader<'a>(
    service: *const snp_service,
) -> Result<&'a std::sync::Arc<ServiceStore>, Error> {
    // SAFETY: forwarded contract.
    let store = unsafe { store(service) }?;
    store.check_process()?;
    Ok(store)
}

/// The store `options` ask for (level 1, or level 2 in their directory).
///
/// # Safety
/// `o.directory` must be NULL or NUL-terminated.
unsafe fn open_by_level(o: &snp_service_options) -> Result<ServiceStore, Error> {
    let rust = rust_options(o)?;
    match o.level {
        SNP_LEVEL_MEMORY => ServiceStore::open_memory(&rust),
        SNP_LEVEL_FILE => {
            // SAFETY: forwarded contract: NULL or NUL-terminated.
            let dir =
                unsafe { crate::cast::c_str(o.directory, "options->directory") }.map_err(|_| {
                    Error::InvalidArgument(
                        "options->directory is NULL or not UTF-8; a level-2 store needs the \
                         directory of its journal (or set level = SNP_LEVEL_MEMORY)"
                            .to_string(),
                    )
                })?;
            ServiceStore::open_file(dir, o.service_uid.into(), &rust)
        }
        other => Err(Error::InvalidArgument(format!(
            "options->level {other} is not SNP_LEVEL_MEMORY (1) or SNP_LEVEL_FILE (2)"
        ))),
    }
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
/// A handle belongs to the process that opened it: after `fork()` every
/// call on it in the child returns `SNP_ERR_STATE` (the child opens a store
/// of its own); `snp_service_close` in the child frees it without writing
/// anything. The file's descriptor is close-on-exec and detached in forked
/// children, so a child never holds the parent's lock.
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
        // SAFETY: `options` points to an initialised struct (the contract).
        let o = unsafe { read_options(options) }?;
        let out = Out::new(out_service, "out_service")?;
        // SAFETY: its `directory` is NULL or NUL-terminated (the contract).
        let store = unsafe { open_by_level(&o) }?;
        // SAFETY: `out_service` is writable (the contract), not NULL (checked).
        unsafe {
            hand_out(
                snp_service {
                    store: std::sync::Arc::new(store),
                },
                out,
            )
        }
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
        // SAFETY: `options` points to an initialised struct (the contract).
        let mut o = unsafe { read_options(options) }?;
        let out = Out::new(out_service, "out_service")?;
        // Durability is the backend's own business (its commit and flush).
        o.durability = SNP_DURABILITY_SYNC;
        let rust = rust_options(&o)?;
        rust.validate()?;
        // Last: from here on the backend is the store's, and its destroy
        // runs when the store lets go of it.
        // SAFETY: `backend` points to an initialised vtable whose functions
        // follow their contract (the function's contract).
        let log = unsafe { CRecordLog::from_vtable(backend) }?;
        let store = ServiceStore::open_custom(Box::new(log), &rust)?;
        // SAFETY: `out_service` is writable (the contract), not NULL (checked).
        unsafe {
            hand_out(
                snp_service {
                    store: std::sync::Arc::new(store),
                },
                out,
            )
        }
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
        // SAFETY: NULL or a live handle closed once, with no call in
        // progress (the contract).
        if let Some(handle) = unsafe { free(service) } {
            let _ = handle.store.close();
        }
        Ok(SNP_OK)
    });
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
        // SAFETY: `service` is NULL or a live handle; `event` is NULL or an
        // initialised event whose buffers hold their lengths (the contract).
        let (store, event) = unsafe { (store(service)?, event_of(event)?) };
        let uid = event.raise(store)?;
        if let Some(o) = Out::optional(out_uid) {
            // SAFETY: `out_uid` is not NULL, so writable (the contract).
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
        // SAFETY: as in `snp_service_raise`; `uid` is NULL or readable.
        let (store, event, uid) =
            unsafe { (store(service)?, event_of(event)?, read_arg(uid, "uid")?) };
        store.raise_event(&event.with_uid(uid.into()))?;
        Ok(SNP_OK)
    })
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
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store(service) }?;
        let o = Out::new(out_event, "out_event")?;
        let event = store.peek()?;
        // SAFETY: `out_event` is writable (the contract), not NULL (checked).
        Ok(unsafe { copy_out(event, o) })
    })
}

/// Calls `visit` once per pending event, in raise order (the order storage
/// mode delivers them), without changing anything: for diagnostics, as
/// `pending()` in Rust and Python (it reads every record). The events are
/// a snapshot taken before the first call; `*event` is valid during the
/// call only, and `visit` may call the store. An event in flight is
/// included.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL), `SNP_ERR_STATE` (a
/// forked child's copy of the handle), `SNP_ERR_CLOSED`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `service` must be a live handle; `visit` must be callable with
/// `user_data`.
#[no_mangle]
pub unsafe extern "C" fn snp_service_for_each_pending(
    service: *const snp_service,
    visit: Option<unsafe extern "C" fn(user_data: *mut c_void, event: *const snp_stored_event)>,
    user_data: *mut c_void,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store(service) }?;
        let visit = visit.ok_or_else(|| Error::InvalidArgument("visit is NULL".to_string()))?;
        for event in store.pending()? {
            let stored = snp_stored_event::of(&event);
            // SAFETY: `visit` is callable with `user_data` (the contract);
            // `stored` is an owned copy, alive during the call.
            unsafe { visit(user_data, &stored) };
        }
        Ok(SNP_OK)
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
        // SAFETY: NULL or a live handle; `uid` NULL or readable (the
        // contract).
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
        // SAFETY: NULL or a live handle; `name` readable for `name_len`
        // bytes when that is within the limit (the contract).
        let (store, name) = unsafe { (store(service)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_event, "out_event")?;
        let event = store.peek_name(kind_of(kind)?, &name)?;
        // SAFETY: `out_event` is writable (the contract), not NULL
        // (checked); the name was copied, so the write may overlap it.
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
        // SAFETY: as in `snp_service_peek_name`; `uid` NULL or readable.
        let (store, name, uid) = unsafe {
            (
                store(service)?,
                owned_name(name, name_len, "name")?,
                read_arg(uid, "uid")?,
            )
        };
        let o = Out::new(out_next, "out_next")?;
        let next = store.ack_name(kind_of(kind)?, &name, uid.into())?;
        // SAFETY: `out_next` is writable (the contract), not NULL (checked);
        // `name` and `uid` were copied, so the write may overlap them.
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
        // SAFETY: NULL or a live handle (the contract).
        unsafe { store(service) }?.set_storage_mode()?;
        Ok(SNP_OK)
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
        // SAFETY: NULL or a live handle (the contract).
        let n = unsafe { store(service) }?.invalidate_ancient()?;
        if let Some(o) = Out::optional(out_count) {
            // SAFETY: `out_count` is not NULL, so writable (the contract).
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
        // SAFETY: NULL or a live handle (the contract).
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
        // SAFETY: NULL or a live handle (the contract).
        unsafe { store(service) }?.flush()?;
        Ok(SNP_OK)
    })
}

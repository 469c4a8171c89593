//! `snp_client`: the client store through the C ABI.

use std::ffi::{c_char, c_void};
use std::ptr;

use crate::custom::{snp_id_store_vtable, CIdStore};
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};
use crate::types::{
    durability_of, failure_callback, snp_failure_fn, SNP_DURABILITY_SYNC, SNP_LEVEL_FILE,
    SNP_LEVEL_MEMORY,
};
use crate::{arg, c_str, guard, owned_name, versioned, Out};
use snp::Error;
use snp::{ClientOptions, ClientStore};

/// A client store. Opaque; safe to use from several threads at once.
pub struct snp_client {
    store: ClientStore,
}

/// How to open a client store. Call `snp_client_options_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_client_options {
    /// `sizeof(snp_client_options)`, set by `_init`. A smaller value is
    /// refused (`SNP_ERR_INVALID_ARGUMENT`); a larger one (a newer caller's
    /// struct) is fine, and only the fields of this header are read.
    pub struct_size: u32,
    /// `SNP_LEVEL_MEMORY` (default: CPL-1) or `SNP_LEVEL_FILE` (CPL-2).
    pub level: i32,
    /// Directory of the file (NUL-terminated; level 2 only).
    pub directory: *const c_char,
    /// The broker's address (NUL-terminated; level 2 only). `:` becomes
    /// `-` in the file name.
    pub server_address: *const c_char,
    /// The client's key (NUL-terminated; level 2 only).
    pub client_key: *const c_char,
    /// `SNP_DURABILITY_SYNC` (default), `_BATCH` or `_NONE`.
    pub durability: i32,
    /// Batch: sync after this many puts (default 64).
    pub batch_max_ops: u32,
    /// Batch: sync when the oldest unsynced put is this old (default 100 ms).
    pub batch_max_delay_ms: u32,
    /// Called with every failure report (may be NULL).
    pub on_failure: snp_failure_fn,
    /// Passed to `on_failure`.
    pub user_data: *mut c_void,
}

impl Default for snp_client_options {
    fn default() -> Self {
        snp_client_options {
            struct_size: std::mem::size_of::<snp_client_options>() as u32,
            level: SNP_LEVEL_MEMORY,
            directory: ptr::null(),
            server_address: ptr::null(),
            client_key: ptr::null(),
            durability: SNP_DURABILITY_SYNC,
            batch_max_ops: 64,
            batch_max_delay_ms: 100,
            on_failure: None,
            user_data: ptr::null_mut(),
        }
    }
}

/// State of a client store. Set `struct_size` to `sizeof(snp_client_stats)`
/// before `snp_client_get_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct snp_client_stats {
    /// `sizeof(snp_client_stats)` as the caller knows it.
    pub struct_size: u32,
    /// 1 or 2 (drops to 1 after a level-2 failure).
    pub level: i32,
    /// Subscriptions with a stored id.
    pub subscriptions: u64,
    /// Failure reports so far.
    pub failures: u64,
}

/// Fills `options` with the defaults (NULL is ignored).
///
/// # Safety
/// `options` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_options_init(options: *mut snp_client_options) {
    guard(|| {
        // SAFETY: NULL or a caller's writable struct.
        if let Some(o) = unsafe { options.as_mut() } {
            *o = snp_client_options::default();
        }
        Ok(SNP_OK)
    });
}

fn rust_options(o: &snp_client_options) -> Result<ClientOptions, Error> {
    Ok(ClientOptions {
        durability: durability_of(o.durability, o.batch_max_ops, o.batch_max_delay_ms)?,
        on_failure: failure_callback(o.on_failure, o.user_data),
        ..ClientOptions::default()
    })
}

/// Copies the caller's options (see `versioned`).
///
/// # Safety
/// `options` must be NULL or readable for its own `struct_size` bytes.
unsafe fn read_options(options: *const snp_client_options) -> Result<snp_client_options, Error> {
    // SAFETY: forwarded contract.
    unsafe {
        versioned(
            options,
            "options",
            "snp_client_options",
            "call snp_client_options_init first (or set struct_size = \
             sizeof(snp_client_options))",
        )
    }
}

/// Writes a new handle for `store` to the caller's `*out_client`.
///
/// # Safety
/// `out_client` must be writable (checked non-null by `Out::new`).
unsafe fn hand_out(
    store: ClientStore,
    out_client: Out<*mut snp_client>,
) -> Result<snp_status, Error> {
    let handle = Box::into_raw(Box::new(snp_client { store }));
    // SAFETY: forwarded contract.
    unsafe { out_client.write(handle) };
    Ok(SNP_OK)
}

/// Opens a client store as `options` say and writes its handle to
/// `*out_client`. A damaged file is salvaged and reported, an I/O error
/// starts the store at level 1 (reported).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, `struct_size` less
/// than `sizeof(snp_client_options)`, a directory, server address or key
/// missing at level 2, characters that cannot be in a file name),
/// `SNP_ERR_LOCKED`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `options` must point to an initialised `snp_client_options` whose
/// strings are NULL or NUL-terminated; `out_client` must be writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_open(
    options: *const snp_client_options,
    out_client: *mut *mut snp_client,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let o = unsafe { read_options(options) }?;
        let out_client = Out::new(out_client, "out_client")?;
        let rust = rust_options(&o)?;
        let store = match o.level {
            SNP_LEVEL_MEMORY => ClientStore::open_memory(&rust),
            SNP_LEVEL_FILE => {
                // SAFETY: per the function's contract.
                let (dir, server, key) = unsafe {
                    (
                        c_str(o.directory, "options->directory")?,
                        c_str(o.server_address, "options->server_address")?,
                        c_str(o.client_key, "options->client_key")?,
                    )
                };
                ClientStore::open_file(dir, server, key, &rust)?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "options->level {other} is not SNP_LEVEL_MEMORY (1) or SNP_LEVEL_FILE (2)"
                )))
            }
        };
        // SAFETY: per the function's contract.
        unsafe { hand_out(store, out_client) }
    })
}

/// Opens a level-2 client store kept by user code (see
/// `snp_id_store_vtable`); the vtable is copied. When this call fails,
/// `destroy` is not called and `ctx` is still yours. A backend error makes
/// the store continue in memory with every id it knows (reported); the
/// store then calls `destroy` as it lets go of the backend.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, a `struct_size`
/// less than the struct's `sizeof`, a required function missing, bad option
/// value), `SNP_ERR_PANIC`.
///
/// # Safety
/// `backend` and `options` must point to initialised structs; the vtable's
/// functions must follow its contract; `out_client` must be writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_open_custom(
    backend: *const snp_id_store_vtable,
    options: *const snp_client_options,
    out_client: *mut *mut snp_client,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let o = unsafe { read_options(options) }?;
        let out_client = Out::new(out_client, "out_client")?;
        let rust = rust_options(&o)?;
        // Last: from here on the backend is the store's.
        // SAFETY: per the function's contract.
        let ids = unsafe { CIdStore::from_vtable(backend) }?;
        let store = ClientStore::open_custom(Box::new(ids), &rust);
        // SAFETY: per the function's contract.
        unsafe { hand_out(store, out_client) }
    })
}

/// Closes the store and frees the handle. NULL is fine.
///
/// # Safety
/// `client` must be NULL or a live handle with no call in progress.
#[no_mangle]
pub unsafe extern "C" fn snp_client_close(client: *mut snp_client) {
    guard(|| {
        if !client.is_null() {
            // SAFETY: a live handle from Box::into_raw, closed once.
            let handle = unsafe { Box::from_raw(client) };
            let _ = handle.store.close();
        }
        Ok(SNP_OK)
    });
}

/// # Safety
/// `client` must be NULL or a live handle.
unsafe fn store<'a>(client: *const snp_client) -> Result<&'a ClientStore, Error> {
    // SAFETY: forwarded contract.
    Ok(&unsafe { arg(client, "client") }?.store)
}

/// Writes the last handled id of `name` to `*out_id`; `SNP_EMPTY` (and
/// nothing written) if none is stored.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT` (NULL, name
/// rules, `name_len` 0 or over `SNP_MAX_NAME_LEN`, checked before `name` is
/// read), `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle, `name` `name_len` readable bytes (when
/// within the limit), `out_id` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_get(
    client: *const snp_client,
    name: *const c_char,
    name_len: usize,
    out_id: *mut i64,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, name) = unsafe { (store(client)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_id, "out_id")?;
        match store.get(&name)? {
            Some(id) => {
                // SAFETY: per the function's contract; the name is a copy.
                unsafe { o.write(id) };
                Ok(SNP_OK)
            }
            None => Ok(SNP_EMPTY),
        }
    })
}

/// Records `id` as the last handled id of `name` (durably at level 2, as
/// the durability setting says).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (name rules, `name_len` 0
/// or over `SNP_MAX_NAME_LEN`, checked before `name` is read),
/// `SNP_ERR_PANIC` (a level-2 failure falls back to memory and is reported,
/// not returned).
///
/// # Safety
/// `client` must be a live handle and `name` `name_len` readable bytes
/// (when within the limit).
#[no_mangle]
pub unsafe extern "C" fn snp_client_put(
    client: *mut snp_client,
    name: *const c_char,
    name_len: usize,
    id: i64,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, name) = unsafe { (store(client)?, owned_name(name, name_len, "name")?) };
        store.put(&name, id)?;
        Ok(SNP_OK)
    })
}

/// Writes whether `id` equals the stored id of `name` (a duplicate to
/// acknowledge without handling).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, name rules,
/// `name_len` 0 or over `SNP_MAX_NAME_LEN`, checked before `name` is read),
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle, `name` `name_len` readable bytes (when
/// within the limit), `out_duplicate` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_is_duplicate(
    client: *const snp_client,
    name: *const c_char,
    name_len: usize,
    id: i64,
    out_duplicate: *mut bool,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let (store, name) = unsafe { (store(client)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_duplicate, "out_duplicate")?;
        let duplicate = store.is_duplicate(&name, id)?;
        // SAFETY: per the function's contract; the name is a copy.
        unsafe { o.write(duplicate) };
        Ok(SNP_OK)
    })
}

/// Calls `visit` once per stored (name, id) pair, in name order (what a
/// stateless client sends when it connects). The name is not
/// NUL-terminated and valid during the call; `visit` may call the store.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle; `visit` must be callable with
/// `user_data`.
#[no_mangle]
pub unsafe extern "C" fn snp_client_for_each(
    client: *const snp_client,
    visit: Option<
        unsafe extern "C" fn(user_data: *mut c_void, name: *const c_char, name_len: usize, id: i64),
    >,
    user_data: *mut c_void,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let store = unsafe { store(client) }?;
        let visit = visit.ok_or_else(|| Error::InvalidArgument("visit is NULL".to_string()))?;
        for (name, id) in store.entries()? {
            // SAFETY: the caller's function with its own pointer and a name
            // buffer valid for the call.
            unsafe { visit(user_data, name.as_ptr().cast(), name.len(), id) };
        }
        Ok(SNP_OK)
    })
}

/// Forgets every stored id.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_client_reset(client: *mut snp_client) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        unsafe { store(client) }?.reset()?;
        Ok(SNP_OK)
    })
}

/// Forces every put to the device.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_client_flush(client: *mut snp_client) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        unsafe { store(client) }?.flush()?;
        Ok(SNP_OK)
    })
}

/// Copies the state into `*out_stats`, up to `out_stats->struct_size`
/// bytes (set it to `sizeof(snp_client_stats)` first).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `client` must be a live handle and `out_stats` writable for its own
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn snp_client_get_stats(
    client: *const snp_client,
    out_stats: *mut snp_client_stats,
) -> snp_status {
    guard(|| {
        // SAFETY: per the function's contract.
        let s = unsafe { store(client) }?.stats();
        let full = snp_client_stats {
            struct_size: std::mem::size_of::<snp_client_stats>() as u32,
            level: i32::from(s.level.number()),
            subscriptions: s.subscriptions,
            failures: s.failures,
        };
        // SAFETY: per the function's contract.
        unsafe { crate::write_versioned(out_stats, &full, "out_stats") }
    })
}

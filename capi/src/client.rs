//! `snp_client`: the client store through the C ABI.

use std::ffi::{c_char, c_void};

use snp::{ClientStore, Error};

use crate::cast::{c_str, free, hand_out, handle, write_versioned, Handle, Out};
use crate::client_options::{read_options, rust_options, snp_client_options};
use crate::client_stats::snp_client_stats;
use crate::event::owned_name;
use crate::id_store::{snp_id_store_vtable, CIdStore};
use crate::options::{SNP_LEVEL_FILE, SNP_LEVEL_MEMORY};
use crate::panic::guard;
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};

/// A client store. Opaque; safe to use from several threads at once.
pub struct snp_client {
    /// Shared with the controllers made over it: they keep the store
    /// alive after the handle is closed (their calls then answer
    /// `SNP_ERR_CLOSED`).
    store: std::sync::Arc<ClientStore>,
}

impl Handle for snp_client {
    const NAME: &'static str = "client";
}

/// The store behind a handle.
///
/// # Safety
/// `client` must be NULL or a live handle from `snp_client_open*`, not
/// closed during the call (the header's contract for every function).
pub(crate) unsafe fn store<'a>(
    client: *const snp_client,
) -> Result<&'a std::sync::Arc<ClientStore>, Error> {
    // SAFETY: forwarded contract: NULL or a live handle, not closed during
    // the call.
    Ok(&unsafe { handle(client) }?.store)
}

/// The store `options` ask for (level 1, or level 2 in their directory).
///
/// # Safety
/// The strings of `o` must be NULL or NUL-terminated.
unsafe fn open_by_level(o: &snp_client_options) -> Result<ClientStore, Error> {
    let rust = rust_options(o)?;
    match o.level {
        SNP_LEVEL_MEMORY => Ok(ClientStore::open_memory(&rust)),
        SNP_LEVEL_FILE => {
            // SAFETY: forwarded contract: NULL or NUL-terminated.
            let (dir, server, key) = unsafe {
                (
                    c_str(o.directory, "options->directory")?,
                    c_str(o.server_address, "options->server_address")?,
                    c_str(o.client_key, "options->client_key")?,
                )
            };
            ClientStore::open_file(dir, server, key, &rust)
        }
        other => Err(Error::InvalidArgument(format!(
            "options->level {other} is not SNP_LEVEL_MEMORY (1) or SNP_LEVEL_FILE (2)"
        ))),
    }
}

/// Opens a client store as `options` say and writes its handle to
/// `*out_client`. A damaged file is salvaged and reported, an I/O error
/// starts the store at level 1 (reported).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, `struct_size` less
/// than `sizeof(snp_client_options)`, a directory, server address or key
/// missing at level 2, characters that cannot be in a file name),
/// `SNP_ERR_LOCKED`, `SNP_ERR_PANIC`.
///
/// A handle belongs to the process that opened it: after `fork()` every
/// call on it in the child returns `SNP_ERR_STATE` (the child opens a store
/// of its own); `snp_client_close` in the child frees it without writing
/// anything. The file's descriptor is close-on-exec and detached in forked
/// children, so a child never holds the parent's lock.
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
        // SAFETY: `options` points to an initialised struct (the contract).
        let o = unsafe { read_options(options) }?;
        let out = Out::new(out_client, "out_client")?;
        // SAFETY: its strings are NULL or NUL-terminated (the contract).
        let store = unsafe { open_by_level(&o) }?;
        // SAFETY: `out_client` is writable (the contract), not NULL (checked).
        unsafe {
            hand_out(
                snp_client {
                    store: std::sync::Arc::new(store),
                },
                out,
            )
        }
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
        // SAFETY: `options` points to an initialised struct (the contract).
        let o = unsafe { read_options(options) }?;
        let out = Out::new(out_client, "out_client")?;
        let rust = rust_options(&o)?;
        // Last: from here on the backend is the store's.
        // SAFETY: `backend` points to an initialised vtable whose functions
        // follow their contract (the function's contract).
        let ids = unsafe { CIdStore::from_vtable(backend) }?;
        let store = ClientStore::open_custom(Box::new(ids), &rust);
        // SAFETY: `out_client` is writable (the contract), not NULL (checked).
        unsafe {
            hand_out(
                snp_client {
                    store: std::sync::Arc::new(store),
                },
                out,
            )
        }
    })
}

/// Closes the store and frees the handle. NULL is fine.
///
/// # Safety
/// `client` must be NULL or a live handle with no call in progress.
#[no_mangle]
pub unsafe extern "C" fn snp_client_close(client: *mut snp_client) {
    guard(|| {
        // SAFETY: NULL or a live handle closed once, with no call in
        // progress (the contract).
        if let Some(handle) = unsafe { free(client) } {
            let _ = handle.store.close();
        }
        Ok(SNP_OK)
    });
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
        // SAFETY: NULL or a live handle; `name` readable for `name_len`
        // bytes when that is within the limit (the contract).
        let (store, name) = unsafe { (store(client)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_id, "out_id")?;
        match store.get(&name)? {
            Some(id) => {
                // SAFETY: `out_id` is writable (the contract), not NULL.
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
        // SAFETY: NULL or a live handle; `name` readable for `name_len`
        // bytes when that is within the limit (the contract).
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
        // SAFETY: NULL or a live handle; `name` readable for `name_len`
        // bytes when that is within the limit (the contract).
        let (store, name) = unsafe { (store(client)?, owned_name(name, name_len, "name")?) };
        let o = Out::new(out_duplicate, "out_duplicate")?;
        let duplicate = store.is_duplicate(&name, id)?;
        // SAFETY: `out_duplicate` is writable (the contract), not NULL.
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
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store(client) }?;
        let visit = visit.ok_or_else(|| Error::InvalidArgument("visit is NULL".to_string()))?;
        for (name, id) in store.entries()? {
            // SAFETY: `visit` is callable with `user_data` (the contract);
            // the name's bytes are an owned copy, alive during the call.
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
        // SAFETY: NULL or a live handle (the contract).
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
        // SAFETY: NULL or a live handle (the contract).
        unsafe { store(client) }?.flush()?;
        Ok(SNP_OK)
    })
}

/// Copies the state into `*out_stats`, up to `out_stats->struct_size`
/// bytes (set it to `sizeof(snp_client_stats)` first).
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_STATE` (a forked
/// child on its parent's handle), `SNP_ERR_PANIC`.
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
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store(client) }?;
        store.check_process()?;
        let stats = store.stats();
        // SAFETY: `out_stats` is NULL or writable for its own struct_size
        // bytes (the contract).
        unsafe { write_versioned(out_stats, &snp_client_stats::of(&stats), "out_stats") }
    })
}

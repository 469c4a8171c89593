//! `snp_client_options`: how a client store is opened.

use std::ffi::{c_char, c_void};
use std::ptr;

use snp::{ClientOptions, Error};

use crate::cast::{init, versioned_since};
use crate::failure::{failure_callback, snp_failure_fn};
use crate::options::{
    durability_of, open_policy_of, SNP_DURABILITY_SYNC, SNP_LEVEL_MEMORY, SNP_OPEN_FALLBACK,
};

/// How to open a client store. Call `snp_client_options_init` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_client_options {
    /// `sizeof(snp_client_options)`, set by `_init`. A larger value (a newer
    /// caller's struct) is fine, and only the fields of this header are
    /// read; a smaller one from an older header (ending before
    /// `open_policy`) is read with the defaults for the fields it lacks;
    /// anything smaller is refused (`SNP_ERR_INVALID_ARGUMENT`).
    pub struct_size: u32,
    /// `SNP_LEVEL_MEMORY` (default: CPL-1) or `SNP_LEVEL_FILE` (CPL-2).
    pub level: i32,
    /// Directory of the file (NUL-terminated; level 2 only).
    pub directory: *const c_char,
    /// The broker's address (NUL-terminated; level 2 only). In the file
    /// name, server address and client key keep `A-Z a-z 0-9 . -` and
    /// write every other byte as `%XX` (`fe80::1` becomes `fe80%3A%3A1`),
    /// so no two pairs share a file; a file named by the earlier rule (`:`
    /// as `-`) is renamed when its header says it is this pair's.
    pub server_address: *const c_char,
    /// The client's key (NUL-terminated; level 2 only).
    pub client_key: *const c_char,
    /// `SNP_DURABILITY_SYNC` (default), `_BATCH` or `_NONE`.
    pub durability: i32,
    /// Batch: sync after this many puts (default 64).
    pub batch_max_ops: u32,
    /// Batch: sync when the oldest unsynced put is this old (default 100 ms).
    pub batch_max_delay_ms: u32,
    /// Called with every failure report (may be NULL). The C library has no
    /// logger of its own: without a callback, failures show only in
    /// `snp_client_get_stats`.
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
            open_policy: SNP_OPEN_FALLBACK,
        }
    }
}

/// Fills `options` with the defaults (NULL is ignored).
///
/// # Safety
/// `options` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_options_init(options: *mut snp_client_options) {
    // SAFETY: `options` is NULL or writable (the function's contract).
    unsafe { init(options) }
}

/// The library's options for the caller's.
pub(crate) fn rust_options(o: &snp_client_options) -> Result<ClientOptions, Error> {
    Ok(ClientOptions {
        durability: durability_of(o.durability, o.batch_max_ops, o.batch_max_delay_ms)?,
        on_failure: failure_callback(o.on_failure, o.user_data),
        open_policy: open_policy_of(o.open_policy)?,
        ..ClientOptions::default()
    })
}

/// Copies the caller's options (see `versioned_since`: the struct of
/// ABI 1.0 ends before `open_policy`).
///
/// # Safety
/// `options` must be NULL or readable for its own `struct_size` bytes.
pub(crate) unsafe fn read_options(
    options: *const snp_client_options,
) -> Result<snp_client_options, Error> {
    // SAFETY: forwarded contract: NULL or readable for its own struct_size.
    unsafe {
        versioned_since(
            options,
            std::mem::offset_of!(snp_client_options, open_policy),
            "options",
            "snp_client_options",
            "call snp_client_options_init first (or set struct_size = \
             sizeof(snp_client_options))",
        )
    }
}

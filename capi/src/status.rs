//! Status codes, their texts, and the one mapping from [`Error`] to a
//! status; the library's versions.

use std::ffi::c_char;

use snp::{Error, ErrorKind};

/// The result of every fallible call: `SNP_OK` (0), `SNP_EMPTY` (1), or a
/// negative `SNP_ERR_*` code. Codes are never reused.
pub type snp_status = i32;

/// Success.
pub const SNP_OK: snp_status = 0;
/// Success, and there is nothing: no pending event to peek, no id stored.
pub const SNP_EMPTY: snp_status = 1;
/// An argument broke a documented rule (NULL pointer, bad length, invalid
/// event name, arguments over 2048 bytes, bad option value...).
pub const SNP_ERR_INVALID_ARGUMENT: snp_status = -1;
/// The operating system refused a file operation (open, map, sync...).
pub const SNP_ERR_IO: snp_status = -2;
/// Stored data is corrupt or foreign.
pub const SNP_ERR_FORMAT: snp_status = -3;
/// The event does not fit and the overflow policy is reject-new.
pub const SNP_ERR_STORAGE_FULL: snp_status = -4;
/// Another process or handle has the file open.
pub const SNP_ERR_LOCKED: snp_status = -5;
/// Not valid now: wrong mode, or an ack whose uid is not the event in
/// flight.
pub const SNP_ERR_STATE: snp_status = -6;
/// The store was closed.
pub const SNP_ERR_CLOSED: snp_status = -7;
/// An internal error (a bug); the call had no effect that can be relied on.
pub const SNP_ERR_PANIC: snp_status = -8;
/// A user-supplied backend or callback reported a failure.
pub const SNP_ERR_CALLBACK: snp_status = -9;

/// The status of an error: the one place that maps them.
pub(crate) fn status_of(e: &Error) -> snp_status {
    match e.kind() {
        ErrorKind::InvalidArgument => SNP_ERR_INVALID_ARGUMENT,
        ErrorKind::Io => SNP_ERR_IO,
        ErrorKind::Format => SNP_ERR_FORMAT,
        ErrorKind::StorageFull => SNP_ERR_STORAGE_FULL,
        ErrorKind::Locked => SNP_ERR_LOCKED,
        ErrorKind::State => SNP_ERR_STATE,
        ErrorKind::Closed => SNP_ERR_CLOSED,
        ErrorKind::Backend => SNP_ERR_CALLBACK,
        // A kind added to the library and not mapped here: a bug of this
        // crate, reported as an internal error rather than guessed.
        _ => SNP_ERR_PANIC,
    }
}

/// The error a custom backend's status becomes inside the library.
pub(crate) fn error_of(status: snp_status, what: &str) -> Error {
    Error::Backend(format!(
        "{what} returned {status} ({})",
        status_text(status).trim_end_matches('\0')
    ))
}

fn status_text(status: snp_status) -> &'static str {
    match status {
        SNP_OK => "ok\0",
        SNP_EMPTY => "empty: nothing to return\0",
        SNP_ERR_INVALID_ARGUMENT => "invalid argument\0",
        SNP_ERR_IO => "I/O error\0",
        SNP_ERR_FORMAT => "corrupt or foreign data\0",
        SNP_ERR_STORAGE_FULL => "storage full\0",
        SNP_ERR_LOCKED => "file locked by another process or handle\0",
        SNP_ERR_STATE => "wrong state (mode, or an ack for another event)\0",
        SNP_ERR_CLOSED => "store closed\0",
        SNP_ERR_PANIC => "internal error\0",
        SNP_ERR_CALLBACK => "user backend or callback failed\0",
        _ => "unknown status\0",
    }
}

/// A fixed text for a status (never NULL, static storage).
#[no_mangle]
pub extern "C" fn snp_status_str(status: snp_status) -> *const c_char {
    status_text(status).as_ptr().cast()
}

/// `SNP_ABI_VERSION`: grows when a symbol or struct layout changes in a way
/// that breaks existing callers.
pub const SNP_ABI_VERSION: u32 = 2;

/// The ABI version of the loaded library (compare with `SNP_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn snp_abi_version() -> u32 {
    SNP_ABI_VERSION
}

/// The library's version, `SNP_ABI_VERSION.minor.patch` (e.g. "2.1.0";
/// static storage): the version it is installed under (the file
/// libsoftnet_persistence.so.2.1.0, `pkg-config --modversion`, the CMake
/// package's version).
#[no_mangle]
pub extern "C" fn snp_version() -> *const c_char {
    LIBRARY_VERSION.as_ptr().cast()
}

/// `SNP_ABI_VERSION`, then the crate's minor and patch (as
/// tools/install.sh names the installed file), NUL-terminated.
static LIBRARY_VERSION: [u8; 32] = library_version();

const fn library_version() -> [u8; 32] {
    let mut out = [0u8; 32];
    // SNP_ABI_VERSION's digits, most significant first.
    let mut digits = [0u8; 10];
    let (mut n, mut count) = (SNP_ABI_VERSION, 0);
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut at = 0;
    while count > 0 {
        count -= 1;
        out[at] = digits[count];
        at += 1;
    }
    let rest = [
        b".".as_slice(),
        env!("CARGO_PKG_VERSION_MINOR").as_bytes(),
        b".".as_slice(),
        env!("CARGO_PKG_VERSION_PATCH").as_bytes(),
    ];
    let mut part = 0;
    while part < rest.len() {
        let mut i = 0;
        while i < rest[part].len() {
            out[at] = rest[part][i];
            at += 1;
            i += 1;
        }
        part += 1;
    }
    out
}

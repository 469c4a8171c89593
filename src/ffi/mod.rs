//! The C ABI: the only `extern "C"` code of the crate.
//!
//! Conventions (README, "C API"):
//! - every function returns an `snp_status` (`SNP_OK == 0`, `SNP_EMPTY == 1`
//!   for "nothing there", negative for errors) unless it cannot fail;
//! - handle first, inputs next, outputs last; every buffer pointer is
//!   followed by its length; outputs are written only on success;
//! - `NULL` where a pointer is required is `SNP_ERR_INVALID_ARGUMENT`;
//!   `*_close(NULL)` is fine;
//! - options and stats structs begin with `struct_size` and have an `_init`
//!   function, so fields can be added without breaking callers;
//! - every body runs inside one panic boundary (`guard`): a panic becomes
//!   `SNP_ERR_PANIC`, never an unwind into C;
//! - `snp_last_error_message` copies the calling thread's last detailed
//!   message.
//!
//! Module layout: `status` (codes, messages, the one error mapping),
//! `types` (shared C structs), `service`, `client`, `custom` (user backends
//! behind vtables).
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod client;
pub mod custom;
pub mod service;
pub mod status;
pub mod types;

use std::panic::{catch_unwind, AssertUnwindSafe};

use self::status::{set_last_error, snp_status, SNP_ERR_PANIC};
use crate::error::Error;

/// Runs an exported body: maps its error to a status (recording the
/// message for `snp_last_error_message`) and turns a panic into
/// `SNP_ERR_PANIC`.
pub(crate) fn guard(body: impl FnOnce() -> Result<snp_status, Error>) -> snp_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            let code = status::status_of(&e);
            set_last_error(e.to_string());
            code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_string());
            set_last_error(format!(
                "internal error (a bug in softnet-persistence, please report it): {what}"
            ));
            SNP_ERR_PANIC
        }
    }
}

/// A required pointer argument, or an invalid-argument error naming it.
///
/// # Safety
/// `ptr` must be NULL or valid for reads as a `T` for the returned lifetime.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Error> {
    // SAFETY: the caller guarantees validity when non-null.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::InvalidArgument(format!("{name} is NULL")))
}

/// A required output pointer.
///
/// # Safety
/// `ptr` must be NULL or valid for writes as a `T` for the returned lifetime.
pub(crate) unsafe fn out<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: the caller guarantees validity when non-null.
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::InvalidArgument(format!("{name} is NULL")))
}

/// A `(pointer, length)` byte buffer; NULL is allowed only with length 0.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes when non-null.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8], Error> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Error::InvalidArgument(format!(
                "{name} is NULL but its length is {len}"
            )))
        };
    }
    if len > isize::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{name} length {len} is impossible"
        )));
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A `(pointer, length)` text argument that must be UTF-8 (names, keys).
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn text<'a>(
    ptr: *const std::ffi::c_char,
    len: usize,
    name: &str,
) -> Result<&'a str, Error> {
    // SAFETY: forwarded contract.
    let raw = unsafe { bytes(ptr.cast(), len, name) }?;
    std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8 text")))
}

/// A NUL-terminated string argument.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(ptr: *const std::ffi::c_char, name: &str) -> Result<&'a str, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated by contract.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Error::InvalidArgument(format!("{name} is not valid UTF-8 text")))
}

/// Reads a caller's versioned struct: copies the first `struct_size` bytes
/// (as the caller's version knows them) over `defaults`, so fields added
/// later keep their defaults for older callers.
///
/// # Safety
/// `ptr` must be valid for reads of its own `struct_size` bytes, which is
/// its first field (`u32`).
pub(crate) unsafe fn versioned<T: Copy>(
    ptr: *const T,
    defaults: T,
    name: &str,
) -> Result<T, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: every versioned struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    if size < std::mem::size_of::<u32>() {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}; call the matching _init function first"
        )));
    }
    let mut value = defaults;
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller's struct has at least `size` readable bytes, ours
    // has `size_of::<T>()`; `T` is plain data (`Copy`, `repr(C)`), so any
    // prefix copied over a valid value leaves the caller's field values.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), n);
    }
    Ok(value)
}

/// Writes a versioned output struct: the fields that fit in the caller's
/// `struct_size` (its first field, left as the caller set it).
///
/// # Safety
/// `ptr` must be NULL or valid for writes of its own `struct_size` bytes.
pub(crate) unsafe fn write_versioned<T: Copy>(
    ptr: *mut T,
    full: &T,
    name: &str,
) -> Result<status::snp_status, Error> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!("{name} is NULL")));
    }
    // SAFETY: every versioned struct starts with `uint32_t struct_size`.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    let header = std::mem::size_of::<u32>();
    if size <= header {
        return Err(Error::InvalidArgument(format!(
            "{name}->struct_size is {size}; set it to the size of the struct first"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: the caller's struct has `size >= n` writable bytes; we skip
    // its struct_size field and copy plain data after it.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (full as *const T).cast::<u8>().add(header),
            ptr.cast::<u8>().add(header),
            n - header,
        );
    }
    Ok(status::SNP_OK)
}

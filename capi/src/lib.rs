//! The C ABI of softnet-persistence: `libsoftnet_persistence.so`/`.a` and
//! `capi/include/softnet_persistence.h` (generated from this crate by
//! `make header`). It uses the Rust library's public API only.
//!
//! API conventions (the README's "C API at a glance" says the same to C
//! programmers):
//! - every function returns an `snp_status` (`SNP_OK == 0`, `SNP_EMPTY == 1`
//!   for "nothing there", negative for errors) unless it cannot fail;
//! - handle first, inputs next, outputs last; every buffer pointer is
//!   followed by its length; outputs are written only on success;
//! - `NULL` where a pointer is required is `SNP_ERR_INVALID_ARGUMENT`;
//!   `*_close(NULL)` is fine;
//! - options, vtables and stats structs begin with `struct_size`, so fields
//!   can be added at the end without breaking callers: an input struct
//!   (options, vtable) must say at least the size of this header's struct
//!   (use the `_init` function or `sizeof`; a larger size from a newer
//!   caller is fine), an output stats struct gets the fields that fit;
//! - every `(pointer, length)` input is checked against its limit before it
//!   is read, and copied into owned values before any output is written;
//! - every body runs inside one panic boundary (`panic::guard`): a panic
//!   becomes `SNP_ERR_PANIC`, never an unwind into C;
//! - `snp_last_error_message` copies the calling thread's last detailed
//!   message.
//!
//! Layout, in the rustls-ffi manner: `cast` is the one place that turns
//! pointers into references and copies; `status` the codes and the one
//! mapping from the library's errors; `panic` the boundary and the last
//! error message; then one file per
//! C type (`uuid`, `event`, `failure`, `options`, `service`,
//! `service_options`, `service_stats`, `service_controller`, `client`,
//! `client_options`, `client_stats`, `client_controller`, `record_log`,
//! `id_store`, with `vtable` shared by the last two). The header follows
//! the order of the modules below.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

mod cast;
mod panic;
mod reentry;

pub mod client;
pub mod client_controller;
pub mod client_options;
pub mod client_stats;
pub mod event;
pub mod failure;
pub mod id_store;
pub mod options;
pub mod record_log;
pub mod service;
pub mod service_controller;
pub mod service_options;
pub mod service_stats;
pub mod status;
pub mod uuid;
mod vtable;

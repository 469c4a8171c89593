//! System calls on journal files that the standard library does not offer.
//! With `mmap.rs`, the only `unsafe` code of the storage layer.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Reserves `len` bytes of disk for `file` without writing them, so a full
/// disk is an `ENOSPC` here rather than a SIGBUS inside a mapped write.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: `posix_fallocate` takes a descriptor and two integers and
    // touches no memory of ours; the descriptor is open for as long as
    // `file` is borrowed.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// The process's effective user id.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: `geteuid` takes no arguments, touches no memory and cannot
    // fail.
    unsafe { libc::geteuid() }
}

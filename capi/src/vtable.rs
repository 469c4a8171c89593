//! What the two custom-backend vtables share: copying one from the caller
//! (checking its required functions), calling its functions, and calling
//! its `destroy` when the store lets go of it.
//!
//! The stores call a backend's functions one at a time (under the store's
//! lock), possibly from different threads. A non-`SNP_OK` status from any of
//! them is a failure of level 2: the store moves to level 1 and reports it.

use std::ffi::c_void;

use snp::{Error, Result};

use crate::cast::versioned;
use crate::status::{error_of, snp_status, SNP_OK};

/// A custom backend's vtable.
pub(crate) trait Vtable: Copy {
    /// Its C type, for messages.
    const C_TYPE: &'static str;
    /// Each required function: whether it is set, and its name.
    fn required(&self) -> Vec<(bool, &'static str)>;
    /// `destroy` and the `ctx` it is called with.
    fn destroy(&self) -> (Option<unsafe extern "C" fn(ctx: *mut c_void)>, *mut c_void);
}

/// The error of a required function that is NULL.
pub(crate) fn missing(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "backend->{what} is NULL; a custom backend must provide it"
    ))
}

/// A C function's status as a result (C does not unwind: nothing to catch).
pub(crate) fn check(status: snp_status, what: &str) -> Result<()> {
    if status == SNP_OK {
        Ok(())
    } else {
        Err(error_of(status, what))
    }
}

/// A caller's vtable, copied; its `destroy` runs when this is dropped.
pub(crate) struct Backend<V: Vtable> {
    pub(crate) vt: V,
}

// SAFETY: the header documents that a backend's functions may be called
// from any thread, one at a time; the store's lock serializes the calls,
// and `ctx` is only ever passed back to them.
unsafe impl<V: Vtable> Send for Backend<V> {}

impl<V: Vtable> Backend<V> {
    /// Copies and checks a caller's vtable.
    ///
    /// # Safety
    /// `vt` must be NULL or point to an initialised vtable at least as
    /// large as its own `struct_size` says.
    pub(crate) unsafe fn from_vtable(vt: *const V) -> Result<Backend<V>> {
        let fix = format!("set struct_size = sizeof({})", V::C_TYPE);
        // SAFETY: forwarded contract.
        let vt = unsafe { versioned(vt, "backend", V::C_TYPE, &fix) }?;
        if let Some((_, name)) = vt.required().into_iter().find(|(set, _)| !set) {
            return Err(missing(name));
        }
        Ok(Backend { vt })
    }
}

impl<V: Vtable> Drop for Backend<V> {
    fn drop(&mut self) {
        if let (Some(destroy), ctx) = self.vt.destroy() {
            // SAFETY: the caller's `destroy`, called once, with its own ctx,
            // as the header promises.
            unsafe { destroy(ctx) };
        }
    }
}

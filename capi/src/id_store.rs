//! `snp_id_store_vtable`: a client store's level 2 kept by C code, behind a
//! vtable.
//!
//! A pair that `load` hands over and that cannot be read (a name over its
//! limit, NULL, not UTF-8) fails the load even if the C code ignores it:
//! the trampoline counts it, and the store continues in memory with the
//! pairs it could read, and reports it.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use snp::{Error, IdStore, Result};

use crate::event::SNP_MAX_NAME_LEN;
use crate::status::snp_status;
use crate::vtable::{check, missing, Backend, Vtable};

/// Visitor given to an id store's `load`: call it once per stored pair.
/// `name` must be UTF-8 and `name_len` at most `SNP_MAX_NAME_LEN` (checked
/// before `name` is read); a pair it cannot read makes the load fail (the
/// store continues in memory with the pairs it could read, and reports it).
pub type snp_id_visit_fn = Option<
    unsafe extern "C" fn(visit_ctx: *mut c_void, name: *const c_char, name_len: usize, id: i64),
>;

/// A client-side level-2 backend: the last id per subscription name.
/// Required: `load`, `put`, `clear`; `flush` and `destroy` may be NULL.
///
/// The store calls these functions with its lock held, one at a time: they
/// must not call the store they belong to. A call that can fail returns
/// `SNP_ERR_STATE` instead of deadlocking; `snp_*_get_stats` and the other
/// readers return `SNP_ERR_PANIC`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_id_store_vtable {
    /// `sizeof(snp_id_store_vtable)`. A smaller value is refused
    /// (`SNP_ERR_INVALID_ARGUMENT`); a larger one (a newer caller's struct) is
    /// fine, and only the fields of this header are read.
    pub struct_size: u32,
    /// Passed to every function.
    pub ctx: *mut c_void,
    /// Calls `visit` once per stored (name, id) pair.
    pub load: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            visit: snp_id_visit_fn,
            visit_ctx: *mut c_void,
        ) -> snp_status,
    >,
    /// Stores `id` for `name`, atomically with respect to crashes.
    pub put: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            name: *const c_char,
            name_len: usize,
            id: i64,
        ) -> snp_status,
    >,
    /// Forgets every pair.
    pub clear: Option<unsafe extern "C" fn(ctx: *mut c_void) -> snp_status>,
    /// Make every put durable now (NULL: nothing to do).
    pub flush: Option<unsafe extern "C" fn(ctx: *mut c_void) -> snp_status>,
    /// Called once when the store no longer needs the backend (NULL: none).
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

impl Vtable for snp_id_store_vtable {
    const C_TYPE: &'static str = "snp_id_store_vtable";

    fn required(&self) -> Vec<(bool, &'static str)> {
        vec![
            (self.load.is_some(), "load"),
            (self.put.is_some(), "put"),
            (self.clear.is_some(), "clear"),
        ]
    }

    fn destroy(&self) -> (Option<unsafe extern "C" fn(ctx: *mut c_void)>, *mut c_void) {
        (self.destroy, self.ctx)
    }
}

/// The Rust side of a C id store.
pub(crate) type CIdStore = Backend<snp_id_store_vtable>;

/// What the load trampoline needs: the Rust visitor, the first error (a
/// pair that cannot be read, a panic) and how many pairs were refused.
struct LoadState<'a> {
    visit: &'a mut dyn FnMut(&str, i64),
    error: Option<Error>,
    refused: u64,
    panicked: bool,
}

/// The name of a pair handed to the load visitor: its length checked
/// before it is read, then UTF-8.
///
/// # Safety
/// `name` must be NULL or readable for `name_len` bytes when `name_len` is
/// within `SNP_MAX_NAME_LEN`.
unsafe fn pair_name<'a>(name: *const c_char, name_len: usize, id: i64) -> Result<&'a str> {
    let refuse = |why: String| Error::Backend(format!("load handed a pair (id {id}) {why}"));
    if name.is_null() {
        return Err(refuse(format!("with a NULL name (name_len {name_len})")));
    }
    if name_len > SNP_MAX_NAME_LEN {
        return Err(refuse(format!(
            "with name_len {name_len}, more than SNP_MAX_NAME_LEN ({SNP_MAX_NAME_LEN})"
        )));
    }
    // SAFETY: non-null, and the C load passes `name_len` readable bytes.
    let raw = unsafe { std::slice::from_raw_parts(name.cast::<u8>(), name_len) };
    std::str::from_utf8(raw).map_err(|_| {
        refuse(format!(
            "whose name is not valid UTF-8 ({:?})",
            String::from_utf8_lossy(raw)
        ))
    })
}

unsafe extern "C" fn load_trampoline(
    visit_ctx: *mut c_void,
    name: *const c_char,
    name_len: usize,
    id: i64,
) {
    let state = visit_ctx.cast::<LoadState<'_>>();
    if state.is_null() {
        return;
    }
    // Never unwind into the C caller.
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: visit_ctx is the LoadState we passed to load, alive for the call; no other
        // reference to it exists during this one.
        let state = unsafe { &mut *state };
        if state.panicked {
            return;
        }
        // SAFETY: the C load passes `name_len` readable bytes at `name`.
        match unsafe { pair_name(name, name_len, id) } {
            // Pairs after a refused one are still loaded: the store keeps
            // every id it can read when it falls back to memory.
            Ok(name) => (state.visit)(name, id),
            Err(e) => {
                state.refused += 1;
                state.error.get_or_insert(e);
            }
        }
    }));
    if let Err(panic) = result {
        // SAFETY: as above; the reference made in the closure is gone.
        let state = unsafe { &mut *state };
        state.panicked = true;
        state.refused += 1;
        state.error.get_or_insert(Error::Backend(format!(
            "loading the pair with id {id} failed: {}",
            crate::panic::panic_message(panic.as_ref())
        )));
    }
}

impl IdStore for CIdStore {
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()> {
        let f = self.vt.load.ok_or_else(|| missing("load"))?;
        let mut state = LoadState {
            visit,
            error: None,
            refused: 0,
            panicked: false,
        };
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract);
        // the trampoline and its state outlive the call.
        let status = unsafe {
            f(
                self.vt.ctx,
                Some(load_trampoline),
                (&mut state as *mut LoadState<'_>).cast(),
            )
        };
        // A refused pair fails the load whatever the C load returned: no
        // pair is dropped without a report.
        if let Some(e) = state.error {
            return Err(match state.refused {
                1 => e,
                n => Error::Backend(format!("{e}, and {} more pair(s) it could not read", n - 1)),
            });
        }
        check(status, "load")
    }

    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        let f = self.vt.put.ok_or_else(|| missing("put"))?;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract) and
        // a valid name buffer.
        check(
            unsafe { f(self.vt.ctx, name.as_ptr().cast(), name.len(), id) },
            "put",
        )
    }

    fn clear(&mut self) -> Result<()> {
        let f = self.vt.clear.ok_or_else(|| missing("clear"))?;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract).
        check(unsafe { f(self.vt.ctx) }, "clear")
    }

    fn flush(&mut self) -> Result<()> {
        match self.vt.flush {
            // SAFETY: the caller's function (set: checked when the vtable was copied) with its own
            // ctx, as the vtable's contract says.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "flush"),
            None => Ok(()),
        }
    }
}

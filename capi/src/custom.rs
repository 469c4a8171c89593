//! User storage behind vtables: a C program keeps level 2 wherever it
//! likes (a database, a flash driver) and the stores keep every rule.
//!
//! The stores call a backend's functions one at a time (under the store's
//! lock), possibly from different threads. A non-`SNP_OK` status from any of
//! them is a failure of level 2: the store moves to level 1 and reports it.
//! So is a record or pair that `scan` or `load` hands over and that cannot
//! be read (a length over its limit, a NULL buffer, a name that is not
//! UTF-8), even if the C code then ignores the visitor's status: the
//! trampolines keep the first such error and `scan`/`load` return it.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{
    error_of, snp_status, SNP_ERR_CALLBACK, SNP_ERR_INVALID_ARGUMENT, SNP_ERR_PANIC, SNP_OK,
};
use crate::types::SNP_MAX_NAME_LEN;
use snp::IdStore;
use snp::{Error, Result};
use snp::{RecordLog, Removal, MAX_METADATA_LEN};

/// Removal reasons passed to `snp_record_log_vtable.remove`.
pub const SNP_REMOVED_ACKNOWLEDGED: i32 = 1;
/// A newer Replacing instance made it obsolete.
pub const SNP_REMOVED_SUPERSEDED: i32 = 2;
/// Dropped to make room.
pub const SNP_REMOVED_DROPPED: i32 = 3;
/// Discarded as ancient data.
pub const SNP_REMOVED_INVALIDATED: i32 = 4;
/// Largest record payload a service store hands its backend.
pub const SNP_MAX_RECORD_LEN: usize = 32 + 256 + 2048;

/// Visitor given to `scan`: call it for every live record in increasing
/// `seq` order; stop and return its status if it is not `SNP_OK`. `len` must
/// be at most `SNP_MAX_RECORD_LEN` (checked before `payload` is read); a
/// record it refuses makes the scan fail (the store falls back to level 1
/// and reports it) even if `scan` goes on and returns `SNP_OK`.
pub type snp_record_visit_fn = Option<
    unsafe extern "C" fn(
        visit_ctx: *mut c_void,
        seq: u64,
        payload: *const u8,
        len: usize,
    ) -> snp_status,
>;

/// A service-side level-2 backend: ordered records with sequence numbers.
/// Required: `append`, `remove`, `read`, `scan`, `clear`, `get_metadata`,
/// `set_metadata`; `commit`, `flush` and `destroy` may be NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_record_log_vtable {
    /// `sizeof(snp_record_log_vtable)`. A smaller value is refused
    /// (`SNP_ERR_INVALID_ARGUMENT`); a larger one (a newer caller's struct) is
    /// fine, and only the fields of this header are read.
    pub struct_size: u32,
    /// Passed to every function.
    pub ctx: *mut c_void,
    /// Stores a record and writes its sequence number, which must be greater
    /// than every number returned before (across restarts and `clear`).
    pub append: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            payload: *const u8,
            len: usize,
            out_seq: *mut u64,
        ) -> snp_status,
    >,
    /// Removes the live record `seq` (`reason`: `SNP_REMOVED_*`, for logs;
    /// 0 for a reason this header does not name).
    pub remove: Option<unsafe extern "C" fn(ctx: *mut c_void, seq: u64, reason: i32) -> snp_status>,
    /// Copies the live record `seq` into `buf` (`buf_len` is
    /// `SNP_MAX_RECORD_LEN`) and writes its length.
    pub read: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            seq: u64,
            buf: *mut u8,
            buf_len: usize,
            out_len: *mut usize,
        ) -> snp_status,
    >,
    /// Calls `visit` for every live record in increasing `seq` order.
    pub scan: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            visit: snp_record_visit_fn,
            visit_ctx: *mut c_void,
        ) -> snp_status,
    >,
    /// End of one store operation: make it durable as you promise (NULL:
    /// nothing to do).
    pub commit: Option<unsafe extern "C" fn(ctx: *mut c_void) -> snp_status>,
    /// Make everything durable now (NULL: nothing to do).
    pub flush: Option<unsafe extern "C" fn(ctx: *mut c_void) -> snp_status>,
    /// Removes every record (sequence numbers keep growing).
    pub clear: Option<unsafe extern "C" fn(ctx: *mut c_void) -> snp_status>,
    /// Copies the metadata blob last set (at most 64 bytes; 0 if never set).
    pub get_metadata: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            buf: *mut u8,
            buf_len: usize,
            out_len: *mut usize,
        ) -> snp_status,
    >,
    /// Replaces the metadata blob (the store's storage uid).
    pub set_metadata:
        Option<unsafe extern "C" fn(ctx: *mut c_void, meta: *const u8, len: usize) -> snp_status>,
    /// Called once when the store no longer needs the backend (NULL: none).
    pub destroy: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

fn missing(what: &str) -> Error {
    Error::InvalidArgument(format!(
        "backend->{what} is NULL; a custom backend must provide it"
    ))
}

/// Calls a C function, catching nothing (C does not unwind) but turning its
/// status into a result.
fn check(status: snp_status, what: &str) -> Result<()> {
    if status == SNP_OK {
        Ok(())
    } else {
        Err(error_of(status, what))
    }
}

/// The Rust side of a C record log.
pub(crate) struct CRecordLog {
    vt: snp_record_log_vtable,
}

// SAFETY: the C API documents that a backend's functions may be called from
// any thread, one at a time; the store's lock serializes the calls.
unsafe impl Send for CRecordLog {}

impl CRecordLog {
    /// Copies and checks a vtable.
    ///
    /// # Safety
    /// `vt` must be NULL or point to an initialised vtable.
    pub(crate) unsafe fn from_vtable(vt: *const snp_record_log_vtable) -> Result<CRecordLog> {
        // SAFETY: forwarded contract.
        let vt = unsafe {
            crate::versioned(
                vt,
                "backend",
                "snp_record_log_vtable",
                "set struct_size = sizeof(snp_record_log_vtable)",
            )
        }?;
        for (present, name) in [
            (vt.append.is_some(), "append"),
            (vt.remove.is_some(), "remove"),
            (vt.read.is_some(), "read"),
            (vt.scan.is_some(), "scan"),
            (vt.clear.is_some(), "clear"),
            (vt.get_metadata.is_some(), "get_metadata"),
            (vt.set_metadata.is_some(), "set_metadata"),
        ] {
            if !present {
                return Err(missing(name));
            }
        }
        Ok(CRecordLog { vt })
    }
}

impl Drop for CRecordLog {
    fn drop(&mut self) {
        if let Some(destroy) = self.vt.destroy {
            // SAFETY: the user's function, called once with its own ctx.
            unsafe { destroy(self.vt.ctx) };
        }
    }
}

/// What the scan trampoline needs: the Rust visitor and the first error
/// (the visitor's, a record that cannot be read, a panic); a C frame cannot
/// carry it, and a C scan may ignore the status it is given.
struct ScanState<'a> {
    visit: &'a mut dyn FnMut(u64, &[u8]) -> Result<()>,
    error: Option<Error>,
}

/// One record handed to the scan visitor: its length checked before the
/// payload is read, then the store's visitor.
///
/// # Safety
/// `payload` must be NULL or readable for `len` bytes when `len` is within
/// `SNP_MAX_RECORD_LEN`.
unsafe fn visit_record(
    state: &mut ScanState<'_>,
    seq: u64,
    payload: *const u8,
    len: usize,
) -> snp_status {
    if len > SNP_MAX_RECORD_LEN {
        state.error = Some(Error::Backend(format!(
            "scan handed record {seq} with len {len}, more than SNP_MAX_RECORD_LEN \
             ({SNP_MAX_RECORD_LEN})"
        )));
        return SNP_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: forwarded contract; the length is within the limit.
    let bytes = match unsafe { crate::bytes(payload, len, "payload") } {
        Ok(b) => b,
        Err(e) => {
            state.error = Some(Error::Backend(format!("scan handed record {seq}: {e}")));
            return SNP_ERR_INVALID_ARGUMENT;
        }
    };
    match (state.visit)(seq, bytes) {
        Ok(()) => SNP_OK,
        Err(e) => {
            state.error = Some(e);
            SNP_ERR_CALLBACK
        }
    }
}

unsafe extern "C" fn scan_trampoline(
    visit_ctx: *mut c_void,
    seq: u64,
    payload: *const u8,
    len: usize,
) -> snp_status {
    let state = visit_ctx.cast::<ScanState<'_>>();
    if state.is_null() {
        return SNP_ERR_INVALID_ARGUMENT;
    }
    // Never unwind into the C caller.
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: visit_ctx is the ScanState we passed to scan, alive for
        // the call; no other reference to it exists during this one.
        let state = unsafe { &mut *state };
        if state.error.is_some() {
            // An earlier record failed and the scan should have stopped:
            // visit nothing more; `scan` returns that error.
            return SNP_ERR_CALLBACK;
        }
        // SAFETY: the C scan passes `len` readable bytes at `payload`.
        unsafe { visit_record(state, seq, payload, len) }
    }));
    result.unwrap_or_else(|panic| {
        // SAFETY: as above; the reference made in the closure is gone.
        let state = unsafe { &mut *state };
        state.error = Some(Error::Backend(format!(
            "visiting record {seq} of the scan failed: {}",
            crate::panic_message(panic.as_ref())
        )));
        SNP_ERR_PANIC
    })
}

impl RecordLog for CRecordLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let f = self.vt.append.ok_or_else(|| missing("append"))?;
        let mut seq = 0u64;
        // SAFETY: the user's function with its ctx, a valid payload and a
        // writable out pointer.
        check(
            unsafe { f(self.vt.ctx, payload.as_ptr(), payload.len(), &mut seq) },
            "append",
        )?;
        Ok(seq)
    }

    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        let f = self.vt.remove.ok_or_else(|| missing("remove"))?;
        let reason = match why {
            Removal::Acknowledged => SNP_REMOVED_ACKNOWLEDGED,
            Removal::Superseded => SNP_REMOVED_SUPERSEDED,
            Removal::Dropped => SNP_REMOVED_DROPPED,
            Removal::Invalidated => SNP_REMOVED_INVALIDATED,
            // A reason this header does not name yet (for logs only).
            _ => 0,
        };
        // SAFETY: the user's function with its ctx.
        check(unsafe { f(self.vt.ctx, seq, reason) }, "remove")
    }

    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        let f = self.vt.read.ok_or_else(|| missing("read"))?;
        out.clear();
        out.resize(SNP_MAX_RECORD_LEN, 0);
        let mut len = 0usize;
        // SAFETY: the user's function with its ctx, a buffer of the size
        // passed and a writable out pointer.
        let status = unsafe { f(self.vt.ctx, seq, out.as_mut_ptr(), out.len(), &mut len) };
        check(status, "read")?;
        if len > SNP_MAX_RECORD_LEN {
            return Err(Error::Backend(format!(
                "read of record {seq} reported {len} bytes, more than the {SNP_MAX_RECORD_LEN} \
                 buffer"
            )));
        }
        out.truncate(len);
        Ok(())
    }

    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let f = self.vt.scan.ok_or_else(|| missing("scan"))?;
        let mut state = ScanState { visit, error: None };
        // SAFETY: the user's function with its ctx; the trampoline and its
        // state outlive the call.
        let status = unsafe {
            f(
                self.vt.ctx,
                Some(scan_trampoline),
                (&mut state as *mut ScanState<'_>).cast(),
            )
        };
        // A record refused by the trampoline fails the scan whatever the C
        // scan returned (it may have ignored the visitor's status).
        if let Some(e) = state.error {
            return Err(e);
        }
        check(status, "scan")
    }

    fn barrier(&mut self) -> Result<()> {
        self.flush()
    }

    fn commit(&mut self) -> Result<()> {
        match self.vt.commit {
            // SAFETY: the user's function with its ctx.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "commit"),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        match self.vt.flush {
            // SAFETY: the user's function with its ctx.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "flush"),
            None => Ok(()),
        }
    }

    fn clear(&mut self) -> Result<()> {
        let f = self.vt.clear.ok_or_else(|| missing("clear"))?;
        // SAFETY: the user's function with its ctx.
        check(unsafe { f(self.vt.ctx) }, "clear")
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        let f = self
            .vt
            .get_metadata
            .ok_or_else(|| missing("get_metadata"))?;
        let mut buf = vec![0u8; MAX_METADATA_LEN];
        let mut len = 0usize;
        // SAFETY: the user's function with its ctx, a buffer of the size
        // passed and a writable out pointer.
        check(
            unsafe { f(self.vt.ctx, buf.as_mut_ptr(), buf.len(), &mut len) },
            "get_metadata",
        )?;
        if len > MAX_METADATA_LEN {
            return Err(Error::Backend(format!(
                "get_metadata reported {len} bytes, more than {MAX_METADATA_LEN}"
            )));
        }
        buf.truncate(len);
        Ok(buf)
    }

    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        let f = self
            .vt
            .set_metadata
            .ok_or_else(|| missing("set_metadata"))?;
        // SAFETY: the user's function with its ctx and a valid buffer.
        check(
            unsafe { f(self.vt.ctx, meta.as_ptr(), meta.len()) },
            "set_metadata",
        )
    }
}

/// Visitor given to an id store's `load`: call it once per stored pair.
/// `name` must be UTF-8 and `name_len` at most `SNP_MAX_NAME_LEN` (checked
/// before `name` is read); a pair it cannot read makes the load fail (the
/// store continues in memory with the pairs it could read, and reports it).
pub type snp_id_visit_fn = Option<
    unsafe extern "C" fn(visit_ctx: *mut c_void, name: *const c_char, name_len: usize, id: i64),
>;

/// A client-side level-2 backend: the last id per subscription name.
/// Required: `load`, `put`, `clear`; `flush` and `destroy` may be NULL.
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

/// The Rust side of a C id store.
pub(crate) struct CIdStore {
    vt: snp_id_store_vtable,
}

// SAFETY: as for CRecordLog: calls are serialized by the store's lock.
unsafe impl Send for CIdStore {}

impl CIdStore {
    /// Copies and checks a vtable.
    ///
    /// # Safety
    /// `vt` must be NULL or point to an initialised vtable.
    pub(crate) unsafe fn from_vtable(vt: *const snp_id_store_vtable) -> Result<CIdStore> {
        // SAFETY: forwarded contract.
        let vt = unsafe {
            crate::versioned(
                vt,
                "backend",
                "snp_id_store_vtable",
                "set struct_size = sizeof(snp_id_store_vtable)",
            )
        }?;
        for (present, name) in [
            (vt.load.is_some(), "load"),
            (vt.put.is_some(), "put"),
            (vt.clear.is_some(), "clear"),
        ] {
            if !present {
                return Err(missing(name));
            }
        }
        Ok(CIdStore { vt })
    }
}

impl Drop for CIdStore {
    fn drop(&mut self) {
        if let Some(destroy) = self.vt.destroy {
            // SAFETY: the user's function, called once with its own ctx.
            unsafe { destroy(self.vt.ctx) };
        }
    }
}

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
        // SAFETY: visit_ctx is the LoadState we passed to load, alive for
        // the call; no other reference to it exists during this one.
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
            crate::panic_message(panic.as_ref())
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
        // SAFETY: the user's function with its ctx; the trampoline and its
        // state outlive the call.
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
        // SAFETY: the user's function with its ctx and a valid name buffer.
        check(
            unsafe { f(self.vt.ctx, name.as_ptr().cast(), name.len(), id) },
            "put",
        )
    }

    fn clear(&mut self) -> Result<()> {
        let f = self.vt.clear.ok_or_else(|| missing("clear"))?;
        // SAFETY: the user's function with its ctx.
        check(unsafe { f(self.vt.ctx) }, "clear")
    }

    fn flush(&mut self) -> Result<()> {
        match self.vt.flush {
            // SAFETY: the user's function with its ctx.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "flush"),
            None => Ok(()),
        }
    }
}

//! `snp_record_log_vtable`: a service store's level 2 kept by C code (a
//! database, a flash driver), behind a vtable; the store keeps every rule.
//!
//! A record that `scan` hands over and that cannot be read (a length over
//! its limit, a NULL buffer) fails the scan even if the C code then ignores
//! the visitor's status: the trampoline keeps the first such error and
//! `scan` returns it.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use snp::{Error, RecordLog, Removal, Result};

use crate::status::{
    snp_status, SNP_ERR_CALLBACK, SNP_ERR_INVALID_ARGUMENT, SNP_ERR_PANIC, SNP_OK,
};
use crate::vtable::{check, missing, Backend, Vtable};

/// Removal reasons passed to `snp_record_log_vtable.remove`.
pub const SNP_REMOVED_ACKNOWLEDGED: i32 = 1;
/// A newer Replacing instance made it obsolete.
pub const SNP_REMOVED_SUPERSEDED: i32 = 2;
/// Dropped to make room.
pub const SNP_REMOVED_DROPPED: i32 = 3;
/// Discarded as ancient data.
pub const SNP_REMOVED_INVALIDATED: i32 = 4;
/// Older than the store's age limit (`max_age_ms`).
pub const SNP_REMOVED_EXPIRED: i32 = 5;
/// Largest record payload a service store hands its backend (ABI 2: 40
/// bytes of fixed fields and raise time, the longest name and arguments).
pub const SNP_MAX_RECORD_LEN: usize = 40 + 256 + 2048;
/// Longest metadata blob a backend must keep (`get_metadata`,
/// `set_metadata`).
pub const SNP_MAX_METADATA_LEN: usize = 64;

// The header's limits are the library's.
const _: () = assert!(SNP_MAX_RECORD_LEN == snp::MAX_RECORD_LEN);
const _: () = assert!(SNP_MAX_METADATA_LEN == snp::MAX_METADATA_LEN);

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
///
/// The store calls these functions with its lock held, one at a time: they
/// must not call the store they belong to. A call that can fail returns
/// `SNP_ERR_STATE` instead of deadlocking; `snp_*_get_stats` and the other
/// readers return `SNP_ERR_PANIC`.
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
    /// Copies the metadata blob last set (at most `SNP_MAX_METADATA_LEN`
    /// bytes; 0 if never set).
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

impl Vtable for snp_record_log_vtable {
    const C_TYPE: &'static str = "snp_record_log_vtable";

    fn required(&self) -> Vec<(bool, &'static str)> {
        vec![
            (self.append.is_some(), "append"),
            (self.remove.is_some(), "remove"),
            (self.read.is_some(), "read"),
            (self.scan.is_some(), "scan"),
            (self.clear.is_some(), "clear"),
            (self.get_metadata.is_some(), "get_metadata"),
            (self.set_metadata.is_some(), "set_metadata"),
        ]
    }

    fn destroy(&self) -> (Option<unsafe extern "C" fn(ctx: *mut c_void)>, *mut c_void) {
        (self.destroy, self.ctx)
    }
}

/// The Rust side of a C record log.
pub(crate) type CRecordLog = Backend<snp_record_log_vtable>;

/// The code of a removal reason.
fn reason_code(why: Removal) -> i32 {
    match why {
        Removal::Acknowledged => SNP_REMOVED_ACKNOWLEDGED,
        Removal::Superseded => SNP_REMOVED_SUPERSEDED,
        Removal::Dropped => SNP_REMOVED_DROPPED,
        Removal::Invalidated => SNP_REMOVED_INVALIDATED,
        Removal::Expired => SNP_REMOVED_EXPIRED,
        // A reason this header does not name yet (for logs only).
        _ => 0,
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
    let bytes = match unsafe { crate::cast::bytes(payload, len, "payload") } {
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
        // SAFETY: visit_ctx is the ScanState we passed to scan, alive for the call; no other
        // reference to it exists during this one.
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
            crate::panic::panic_message(panic.as_ref())
        )));
        SNP_ERR_PANIC
    })
}

impl RecordLog for CRecordLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let f = self.vt.append.ok_or_else(|| missing("append"))?;
        let mut seq = 0u64;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract), a
        // valid payload and a writable out pointer.
        check(
            unsafe { f(self.vt.ctx, payload.as_ptr(), payload.len(), &mut seq) },
            "append",
        )?;
        Ok(seq)
    }

    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        let f = self.vt.remove.ok_or_else(|| missing("remove"))?;
        // SAFETY: the caller's function with its own ctx (the vtable's contract).
        check(unsafe { f(self.vt.ctx, seq, reason_code(why)) }, "remove")
    }

    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        let f = self.vt.read.ok_or_else(|| missing("read"))?;
        out.clear();
        out.resize(SNP_MAX_RECORD_LEN, 0);
        let mut len = 0usize;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract), a
        // buffer of the size passed and a writable out pointer.
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
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract);
        // the trampoline and its state outlive the call.
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
            // SAFETY: the caller's function (set: checked when the vtable was copied) with its own
            // ctx, as the vtable's contract says.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "commit"),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<()> {
        match self.vt.flush {
            // SAFETY: the caller's function (set: checked when the vtable was copied) with its own
            // ctx, as the vtable's contract says.
            Some(f) => check(unsafe { f(self.vt.ctx) }, "flush"),
            None => Ok(()),
        }
    }

    fn clear(&mut self) -> Result<()> {
        let f = self.vt.clear.ok_or_else(|| missing("clear"))?;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract).
        check(unsafe { f(self.vt.ctx) }, "clear")
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        let f = self
            .vt
            .get_metadata
            .ok_or_else(|| missing("get_metadata"))?;
        let mut buf = vec![0u8; SNP_MAX_METADATA_LEN];
        let mut len = 0usize;
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract), a
        // buffer of the size passed and a writable out pointer.
        check(
            unsafe { f(self.vt.ctx, buf.as_mut_ptr(), buf.len(), &mut len) },
            "get_metadata",
        )?;
        if len > SNP_MAX_METADATA_LEN {
            return Err(Error::Backend(format!(
                "get_metadata reported {len} bytes, more than {SNP_MAX_METADATA_LEN}"
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
        // SAFETY: `f` is the caller's function, called with its own ctx (the vtable's contract) and
        // a valid buffer.
        check(
            unsafe { f(self.vt.ctx, meta.as_ptr(), meta.len()) },
            "set_metadata",
        )
    }
}

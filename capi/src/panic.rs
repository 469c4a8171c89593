//! The panic boundary: every exported body runs inside [`guard`], so a
//! panic becomes `SNP_ERR_PANIC` and never unwinds into C; and the thread's
//! last error message, which the boundary records.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use snp::Error;

use crate::status::{snp_status, status_of, SNP_ERR_PANIC, SNP_OK};

/// Runs an exported body: maps its error to a status (recording the
/// message for `snp_last_error_message`) and turns a panic into
/// `SNP_ERR_PANIC`.
pub(crate) fn guard(body: impl FnOnce() -> Result<snp_status, Error>) -> snp_status {
    outcome(catch_unwind(AssertUnwindSafe(body)))
}

/// What [`guard`] returns for a body's outcome. Not inlined: one copy
/// instead of one in each of the 50 exported functions (6 KB of the
/// stripped library).
#[inline(never)]
fn outcome(result: std::thread::Result<Result<snp_status, Error>>) -> snp_status {
    match result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            // Without the category the status already says
            // (`snp_status_str`), so that the usual "%s: %s" pattern does
            // not say it twice.
            set_last_error(e.detail());
            status_of(&e)
        }
        Err(panic) => {
            set_last_error(panic_message(panic.as_ref()));
            SNP_ERR_PANIC
        }
    }
}

/// The message of a caught panic, as reported to the caller.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".to_string());
    format!("internal error (a bug in softnet-persistence, please report it): {what}")
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: String) {
    LAST_ERROR.with(|m| *m.borrow_mut() = message);
}

/// Copies the calling thread's last detailed error message into `buf`
/// (NUL-terminated, truncated to fit `buf_len`; nothing is written when
/// `buf` is NULL or `buf_len` is 0) and returns the message's full length
/// in bytes, without the NUL. The message is set by every call that fails
/// and kept until the next failure on the same thread. It does not repeat
/// the status's text: print both, e.g. `fprintf(stderr, "open: %s: %s\n",
/// snp_status_str(st), message)`.
///
/// # Safety
/// `buf` must be NULL or writable for `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn snp_last_error_message(buf: *mut c_char, buf_len: usize) -> usize {
    let mut full = 0;
    let status = guard(|| {
        LAST_ERROR.with(|m| {
            let m = m.borrow();
            full = m.len();
            if !buf.is_null() && buf_len > 0 {
                let n = m.len().min(buf_len - 1);
                // SAFETY: `buf` is not NULL and, by the function's contract,
                // writable for `buf_len` bytes; `n + 1 <= buf_len` of them are
                // written, from a `String` that does not overlap it.
                unsafe {
                    std::ptr::copy_nonoverlapping(m.as_ptr(), buf.cast::<u8>(), n);
                    *buf.add(n) = 0;
                }
            }
        });
        Ok(SNP_OK)
    });
    if status == SNP_OK {
        full
    } else {
        0
    }
}

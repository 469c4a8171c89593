//! The panic boundary: every exported body runs inside [`guard`], so a
//! panic becomes `SNP_ERR_PANIC` and never unwinds into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use snp::Error;

use crate::status::{set_last_error, snp_status, status_of, SNP_ERR_PANIC};

/// Runs an exported body: maps its error to a status (recording the
/// message for `snp_last_error_message`) and turns a panic into
/// `SNP_ERR_PANIC`.
pub(crate) fn guard(body: impl FnOnce() -> Result<snp_status, Error>) -> snp_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            set_last_error(e.to_string());
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

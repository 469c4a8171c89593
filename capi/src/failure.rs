//! Failure reports: the kinds passed to `on_failure` and the callback
//! itself.

use std::ffi::{c_char, c_void};

use snp::{Failure, FailureCallback, FailureKind};

/// Failure kinds passed to `on_failure`.
pub const SNP_FAILURE_FALLBACK: i32 = 1;
/// A damaged or foreign file was set aside at open.
pub const SNP_FAILURE_CORRUPTION: i32 = 2;
/// Events were dropped to make room.
pub const SNP_FAILURE_CAPACITY_DROP: i32 = 3;
/// A partial record from an interrupted write was discarded at open.
pub const SNP_FAILURE_INTERRUPTED_WRITE: i32 = 4;
/// Reports caused by the callback's own calls while it handled earlier
/// reports were held back to end a loop (they are counted in the stats;
/// this report itself is not counted in `failures`).
pub const SNP_FAILURE_CALLBACK_LOOP: i32 = 5;
/// The capacity asked for at open could not be applied (the journal's
/// rewrite failed, e.g. on a full disk): it keeps its old capacity, nothing
/// was lost.
pub const SNP_FAILURE_CAPACITY_UNCHANGED: i32 = 6;
/// Pending events older than the age limit (`max_age_ms`) were dropped as
/// they came up for delivery. Asked for by the application: not counted in
/// `failures`, `events_lost` is 0; `expired_events` in the stats counts
/// them.
pub const SNP_FAILURE_EXPIRED: i32 = 7;

// The header's codes are the library's.
const _: () = assert!(
    SNP_FAILURE_FALLBACK == FailureKind::Fallback.code()
        && SNP_FAILURE_CORRUPTION == FailureKind::Corruption.code()
        && SNP_FAILURE_CAPACITY_DROP == FailureKind::CapacityDrop.code()
        && SNP_FAILURE_INTERRUPTED_WRITE == FailureKind::InterruptedWrite.code()
        && SNP_FAILURE_CALLBACK_LOOP == FailureKind::CallbackLoop.code()
        && SNP_FAILURE_CAPACITY_UNCHANGED == FailureKind::CapacityUnchanged.code()
        && SNP_FAILURE_EXPIRED == FailureKind::Expired.code()
);

/// `void on_failure(void *user_data, int32_t failure_kind, const char
/// *message, uint64_t events_lost)`: the message is valid during the call.
pub type snp_failure_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        failure_kind: i32,
        message: *const c_char,
        events_lost: u64,
    ),
>;

/// The user's callback and its pointer, callable from any thread the store
/// is used on.
struct CCallback {
    f: unsafe extern "C" fn(*mut c_void, i32, *const c_char, u64),
    user_data: *mut c_void,
}

// SAFETY: the C API documents that `user_data` must be usable from every
// thread that calls into the store; we only pass it back to `f`.
unsafe impl Send for CCallback {}
// SAFETY: as above; the callback is only ever called, never mutated.
unsafe impl Sync for CCallback {}

impl CCallback {
    fn call(&self, failure: &Failure) {
        let mut text = failure.message.replace('\0', " ");
        text.push('\0');
        // SAFETY: the function pointer comes from the caller's options; the
        // message is NUL-terminated and lives for the call.
        unsafe {
            (self.f)(
                self.user_data,
                failure.kind.code(),
                text.as_ptr().cast(),
                failure.events_lost,
            )
        };
    }
}

/// Wraps a C failure callback for the Rust stores.
pub(crate) fn failure_callback(
    f: snp_failure_fn,
    user_data: *mut c_void,
) -> Option<FailureCallback> {
    let cb = CCallback { f: f?, user_data };
    Some(std::sync::Arc::new(move |failure: &Failure| {
        cb.call(failure)
    }))
}

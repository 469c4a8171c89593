//! C structs shared by the service and client functions.

use std::ffi::{c_char, c_void};

use snp::Uuid;

use snp::Durability;
use snp::Error;
use snp::{Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};
use snp::{Failure, FailureCallback};

/// Longest event name in bytes.
pub const SNP_MAX_NAME_LEN: usize = 256;
/// Size of `snp_stored_event.name`: `SNP_MAX_NAME_LEN + 1` (room for the
/// NUL).
pub const SNP_NAME_BUF_LEN: usize = SNP_MAX_NAME_LEN + 1;
/// Longest event arguments in bytes.
pub const SNP_MAX_ARGS_LEN: usize = 2048;

const _: () = assert!(SNP_MAX_NAME_LEN == MAX_NAME_LEN && SNP_MAX_ARGS_LEN == MAX_ARGS_LEN);

/// Event kind: the broker keeps only the newest instance.
pub const SNP_EVENT_REPLACING: i32 = 1;
/// Event kind: FIFO on the broker.
pub const SNP_EVENT_QUEUEING: i32 = 2;
/// Event kind: FIFO per client, with a target client id.
pub const SNP_EVENT_PRIVATE: i32 = 4;
/// Event kind: "condition cleared", same queue as Replacing, no arguments.
pub const SNP_EVENT_REPLACING_NULL: i32 = 5;

/// Level 1: memory.
pub const SNP_LEVEL_MEMORY: i32 = 1;
/// Level 2: a file (or, with the `_open_custom` functions, user storage).
pub const SNP_LEVEL_FILE: i32 = 2;

/// Durability: sync before every call returns (the default).
pub const SNP_DURABILITY_SYNC: i32 = 0;
/// Durability: sync after `batch_max_ops` operations or `batch_max_delay_ms`.
pub const SNP_DURABILITY_BATCH: i32 = 1;
/// Durability: never sync on our own (survives a process crash only).
pub const SNP_DURABILITY_NONE: i32 = 2;

/// Failure kinds passed to `on_failure`.
pub const SNP_FAILURE_FALLBACK: i32 = 1;
/// A damaged or foreign file was set aside at open.
pub const SNP_FAILURE_CORRUPTION: i32 = 2;
/// Events were dropped to make room.
pub const SNP_FAILURE_CAPACITY_DROP: i32 = 3;
/// A partial record from an interrupted write was discarded at open.
pub const SNP_FAILURE_INTERRUPTED_WRITE: i32 = 4;

/// A 16-byte uid (event uid, storage uid, service uid), big-endian as in
/// its text form.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snp_uuid {
    /// The bytes.
    pub bytes: [u8; 16],
}

impl From<Uuid> for snp_uuid {
    fn from(u: Uuid) -> snp_uuid {
        snp_uuid {
            bytes: *u.as_bytes(),
        }
    }
}

impl From<snp_uuid> for Uuid {
    fn from(u: snp_uuid) -> Uuid {
        Uuid::from_bytes(u.bytes)
    }
}

/// An event to raise. Borrowed for the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_event {
    /// `SNP_EVENT_*`.
    pub kind: i32,
    /// The name (not NUL-terminated; `name_len` bytes).
    pub name: *const c_char,
    /// Bytes of `name`, 1..=256 (`SNP_MAX_NAME_LEN`); checked before `name`
    /// is read.
    pub name_len: usize,
    /// The arguments (may be NULL when `args_len` is 0).
    pub args: *const u8,
    /// Bytes of `args`, 0..=2048 (`SNP_MAX_ARGS_LEN`); checked before
    /// `args` is read.
    pub args_len: usize,
    /// Target client of a Private event; ignored for other kinds.
    pub client_id: i64,
}

/// A stored event, copied out (caller-owned, no lifetime rules).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_stored_event {
    /// `SNP_EVENT_*`.
    pub kind: i32,
    /// The name, NUL-terminated.
    pub name: [c_char; SNP_NAME_BUF_LEN],
    /// Bytes of `name` before the NUL.
    pub name_len: usize,
    /// The arguments.
    pub args: [u8; SNP_MAX_ARGS_LEN],
    /// Bytes of `args`.
    pub args_len: usize,
    /// Target client of a Private event; 0 for other kinds.
    pub client_id: i64,
    /// The event's uid (what the broker acknowledges).
    pub uid: snp_uuid,
}

impl snp_stored_event {
    /// The C copy of an event (validated on the way in, so it fits); every
    /// byte past the name's NUL and the arguments is zero. Built whole, then
    /// written to the caller's struct in one go.
    pub(crate) fn of(e: &Event) -> snp_stored_event {
        let mut out = snp_stored_event {
            kind: i32::from(e.kind.code()),
            name: [0; SNP_NAME_BUF_LEN],
            name_len: 0,
            args: [0; SNP_MAX_ARGS_LEN],
            args_len: 0,
            client_id: e.client_id.unwrap_or(0),
            uid: e.uid.into(),
        };
        let name = e.name.as_bytes();
        let n = name.len().min(SNP_MAX_NAME_LEN);
        for (dst, src) in out.name.iter_mut().zip(&name[..n]) {
            *dst = *src as c_char;
        }
        out.name_len = n;
        let a = e.args.len().min(SNP_MAX_ARGS_LEN);
        out.args[..a].copy_from_slice(&e.args[..a]);
        out.args_len = a;
        out
    }
}

/// An event kind from its C code.
pub(crate) fn kind_of(code: i32) -> Result<EventKind, Error> {
    u8::try_from(code)
        .ok()
        .and_then(EventKind::from_code)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "event kind {code} is not one of SNP_EVENT_REPLACING (1), QUEUEING (2), \
                 PRIVATE (4), REPLACING_NULL (5)"
            ))
        })
}

/// The durability setting from its C fields.
pub(crate) fn durability_of(
    code: i32,
    max_ops: u32,
    max_delay_ms: u32,
) -> Result<Durability, Error> {
    match code {
        SNP_DURABILITY_SYNC => Ok(Durability::Sync),
        SNP_DURABILITY_BATCH => Ok(Durability::Batch {
            max_ops,
            max_delay: std::time::Duration::from_millis(u64::from(max_delay_ms)),
        }),
        SNP_DURABILITY_NONE => Ok(Durability::None),
        other => Err(Error::InvalidArgument(format!(
            "durability {other} is not SNP_DURABILITY_SYNC (0), BATCH (1) or NONE (2)"
        ))),
    }
}

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

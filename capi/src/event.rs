//! `snp_event` and `snp_stored_event`: events in and out, with their kinds
//! and limits.

use std::ffi::c_char;

use snp::{Error, Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};

use crate::cast::{bytes, check_len, read_arg, Out};
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};
use crate::uuid::snp_uuid;

/// Longest event name in bytes.
pub const SNP_MAX_NAME_LEN: usize = 256;
/// Size of `snp_stored_event.name`: `SNP_MAX_NAME_LEN + 1` (room for the
/// NUL).
pub const SNP_NAME_BUF_LEN: usize = SNP_MAX_NAME_LEN + 1;
/// Longest event arguments in bytes.
pub const SNP_MAX_ARGS_LEN: usize = 2048;

// The header's limits are the library's.
const _: () = assert!(SNP_MAX_NAME_LEN == MAX_NAME_LEN && SNP_MAX_ARGS_LEN == MAX_ARGS_LEN);
const _: () = assert!(
    SNP_EVENT_REPLACING == EventKind::Replacing.code() as i32
        && SNP_EVENT_QUEUEING == EventKind::Queueing.code() as i32
        && SNP_EVENT_PRIVATE == EventKind::Private.code() as i32
        && SNP_EVENT_REPLACING_NULL == EventKind::ReplacingNull.code() as i32
);

/// Event kind: the broker keeps only the newest instance.
pub const SNP_EVENT_REPLACING: i32 = 1;
/// Event kind: FIFO on the broker.
pub const SNP_EVENT_QUEUEING: i32 = 2;
/// Event kind: FIFO per client, with a target client id.
pub const SNP_EVENT_PRIVATE: i32 = 4;
/// Event kind: "condition cleared", same queue as Replacing, no arguments.
pub const SNP_EVENT_REPLACING_NULL: i32 = 5;

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
    /// Its sequence number in the store: greater than that of every event
    /// raised before it into the same store, kept across restarts and a
    /// fallback to level 1 (ABI 2).
    pub seq: u64,
    /// When it was raised: wall clock, milliseconds since the Unix epoch;
    /// 0 when unknown (stored by a release before raise times; ABI 2).
    pub raised_at_ms: u64,
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
            seq: e.seq,
            raised_at_ms: e.raised_at_ms.unwrap_or(0),
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

/// A caller's `(pointer, length)` event or subscription name, its length
/// checked (1..=`SNP_MAX_NAME_LEN`) before anything is read, as text (the
/// store checks the name's characters). `field` names the pointer (`name`,
/// `event->name`); the length is `{field}_len`. Copy it before the caller's
/// memory may change (before calling the store).
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes when non-null and `len` is
/// within the limit, for as long as the result is used.
pub(crate) unsafe fn name_text<'a>(
    ptr: *const std::ffi::c_char,
    len: usize,
    field: &str,
) -> Result<&'a str, Error> {
    check_len(len, 1, SNP_MAX_NAME_LEN, field, "SNP_MAX_NAME_LEN")?;
    // SAFETY: forwarded contract; the length is within the limit.
    let raw = unsafe { bytes(ptr.cast(), len, field) }?;
    std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidArgument(format!("{field} is not valid UTF-8 text")))
}

/// [`name_text`], copied into an owned string.
///
/// # Safety
/// As [`name_text`].
pub(crate) unsafe fn owned_name(
    ptr: *const std::ffi::c_char,
    len: usize,
    field: &str,
) -> Result<String, Error> {
    // SAFETY: forwarded contract.
    unsafe { name_text(ptr, len, field) }.map(str::to_owned)
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

/// Copies a C event into an owned one: the struct first, then its name and
/// arguments, their lengths checked against `SNP_MAX_NAME_LEN` and
/// `SNP_MAX_ARGS_LEN` before anything is read. The store checks the rest
/// (name characters, arguments on ReplacingNull) and names the rule broken.
///
/// # Safety
/// `event` must be NULL or point to an `snp_event` whose buffers hold
/// their lengths in readable bytes (when within the limits).
pub(crate) unsafe fn event_of(event: *const snp_event) -> Result<EventIn, Error> {
    // SAFETY: forwarded contract: NULL or an initialised `snp_event`.
    let e = unsafe { read_arg(event, "event") }?;
    let kind = kind_of(e.kind)?;
    // (No spare once the thread's locals are gone: in a destructor that
    // runs at thread exit.)
    let spare = SPARE.try_with(std::cell::Cell::take).ok().flatten();
    let (mut name, mut args) = spare.unwrap_or_default();
    name.clear();
    args.clear();
    let mut copy = EventIn {
        kind,
        client_id: (kind == EventKind::Private).then_some(e.client_id),
        name,
        args,
    };
    // SAFETY: forwarded contract: `name` holds `name_len` readable bytes
    // when that is within the limit (checked first); copied at once.
    copy.name
        .push_str(unsafe { name_text(e.name, e.name_len, "event->name") }?);
    // Errors name the event, as the store's own checks do.
    let named = |err: Error, name: &str| match err {
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("event '{name}': {m}")),
        other => other,
    };
    check_len(
        e.args_len,
        0,
        SNP_MAX_ARGS_LEN,
        "event->args",
        "SNP_MAX_ARGS_LEN",
    )
    .map_err(|err| named(err, &copy.name))?;
    // SAFETY: forwarded contract: `args` holds `args_len` readable bytes
    // when that is within the limit (checked first).
    let raw = unsafe { bytes(e.args, e.args_len, "event->args") }
        .map_err(|err| named(err, &copy.name))?;
    copy.args.extend_from_slice(raw);
    Ok(copy)
}

thread_local! {
    /// The buffers of this thread's last event copy, kept for its next one:
    /// a raise through the C ABI allocates nothing for its input once the
    /// thread has raised. A raise made while one is copied (from a failure
    /// callback) finds none and allocates its own.
    static SPARE: std::cell::Cell<Option<(String, Vec<u8>)>> =
        const { std::cell::Cell::new(None) };
}

/// A caller's event, copied: everything but the uid. The caller's memory
/// is not borrowed past the copy, so a failure callback or custom backend
/// that changes it meanwhile changes nothing here.
pub(crate) struct EventIn {
    kind: EventKind,
    client_id: Option<i64>,
    name: String,
    args: Vec<u8>,
}

impl Drop for EventIn {
    fn drop(&mut self) {
        let buffers = (
            std::mem::take(&mut self.name),
            std::mem::take(&mut self.args),
        );
        // A thread that is exiting has no spare any more: drop them then.
        let _ = SPARE.try_with(|spare| spare.set(Some(buffers)));
    }
}

impl EventIn {
    /// Stores it with a new uid from the store (fork-safe); returns the uid.
    pub(crate) fn raise(&self, store: &snp::ServiceStore) -> Result<snp::Uuid, Error> {
        match self.client_id {
            Some(client) => store.raise_private(&self.name, &self.args, client),
            None => store.raise(self.kind, &self.name, &self.args),
        }
    }

    /// Raises it through a controller, with a new uid; returns the uid.
    pub(crate) fn raise_through(
        &self,
        ctl: &mut snp::ServiceController,
    ) -> Result<snp::Uuid, Error> {
        let event = Event::new(self.kind, &self.name, &self.args, self.client_id)?;
        ctl.raise_event(&event)
    }

    /// The event with the caller's uid.
    /// (Copies the buffers, which stay the thread's spare.)
    pub(crate) fn with_uid(&self, uid: snp::Uuid) -> Event {
        Event {
            kind: self.kind,
            name: self.name.clone(),
            args: self.args.clone(),
            client_id: self.client_id,
            uid,
            seq: 0,
            raised_at_ms: None,
        }
    }
}

/// Writes an event to the caller's output (`SNP_OK`), or nothing
/// (`SNP_EMPTY`).
///
/// # Safety
/// `out_event` must be writable; no input may be borrowed from caller
/// memory any more (copy inputs first: the output may overlap them).
pub(crate) unsafe fn copy_out(
    event: Option<Event>,
    out_event: Out<snp_stored_event>,
) -> snp_status {
    match event {
        Some(e) => {
            // SAFETY: forwarded contract: `out_event` is writable and no
            // input borrows caller memory any more.
            unsafe { out_event.write(snp_stored_event::of(&e)) };
            SNP_OK
        }
        None => SNP_EMPTY,
    }
}

//! `snp_service_controller`: the service side of the delivery protocol
//! (docs/PROTOCOL.md section 2) through the C ABI. It does no I/O and
//! reads no clock: the caller feeds in what happened and sends what
//! `snp_service_controller_next_output` hands out.

use std::collections::VecDeque;
use std::time::Duration;

use snp::{Error, Event, ServiceController, ServiceOutput};

use crate::cast::{free, hand_out, handle, read_arg, write_versioned, Handle, Out};
use crate::event::{event_of, snp_event, snp_stored_event};
use crate::panic::guard;
use crate::reentry::Guarded;
use crate::service::{snp_service, store as store_of};
use crate::status::{snp_status, SNP_EMPTY, SNP_OK};
use crate::uuid::snp_uuid;

/// Output kind: send `event` to the broker (again, with the same uid, on a
/// resend).
pub const SNP_OUTPUT_SEND_EVENT: i32 = 1;
/// Output kind: tell the broker `storage_uid`.
pub const SNP_OUTPUT_SEND_STORAGE_UID: i32 = 2;
/// Output kind: `event` was refused by the broker and dropped (for the
/// log).
pub const SNP_OUTPUT_REJECTED: i32 = 3;

/// One thing the controller asks the caller to do. Set `struct_size` to
/// `sizeof(snp_service_output)` before `snp_service_controller_next_output`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct snp_service_output {
    /// Set by the caller: `sizeof(snp_service_output)`.
    pub struct_size: u32,
    /// `SNP_OUTPUT_*`.
    pub kind: i32,
    /// `SNP_OUTPUT_SEND_EVENT`, `SNP_OUTPUT_REJECTED`: the event.
    pub event: snp_stored_event,
    /// `SNP_OUTPUT_SEND_STORAGE_UID`: the storage uid.
    pub storage_uid: snp_uuid,
}

impl snp_service_output {
    fn of(output: &ServiceOutput) -> snp_service_output {
        let blank = snp_stored_event::of(&Event {
            kind: snp::EventKind::Queueing,
            name: String::new(),
            args: Vec::new(),
            client_id: None,
            uid: snp::Uuid::nil(),
            seq: 0,
            raised_at_ms: None,
        });
        let (kind, event, storage_uid) = match output {
            ServiceOutput::SendEvent(e) => (
                SNP_OUTPUT_SEND_EVENT,
                snp_stored_event::of(e),
                snp_uuid::default(),
            ),
            ServiceOutput::SendStorageUid(u) => (SNP_OUTPUT_SEND_STORAGE_UID, blank, (*u).into()),
            ServiceOutput::Rejected(e) => (
                SNP_OUTPUT_REJECTED,
                snp_stored_event::of(e),
                snp_uuid::default(),
            ),
        };
        snp_service_output {
            struct_size: std::mem::size_of::<snp_service_output>() as u32,
            kind,
            event,
            storage_uid,
        }
    }
}

/// The controller and the outputs it produced that the caller has not
/// taken yet.
struct State {
    ctl: ServiceController,
    queued: VecDeque<ServiceOutput>,
}

/// A service controller. Opaque; safe to use from several threads at once
/// (each call takes its lock). A failure callback of its store must not
/// call it: such a call returns `SNP_ERR_STATE`.
pub struct snp_service_controller {
    state: Guarded<State>,
}

impl Handle for snp_service_controller {
    const NAME: &'static str = "controller";
}

/// Runs `op` on the controller behind a handle, refusing every call once
/// its store was closed.
///
/// # Safety
/// `controller` must be NULL or a live handle from
/// `snp_service_controller_new`, not freed during the call.
unsafe fn with<T>(
    controller: *const snp_service_controller,
    op: impl FnOnce(&mut State) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: forwarded contract: NULL or a live handle.
    let handle = unsafe { handle(controller) }?;
    let mut state = handle.state.lock()?;
    if state.ctl.store().is_closed() {
        return Err(Error::Closed);
    }
    op(&mut state)
}

/// Makes a controller over `store`, offline, and writes its handle to
/// `*out`. `resend_timeout_ms` is how long an event waits for its ack
/// before it is sent again (0: 30,000). The controller keeps the store
/// alive: `snp_service_close` may come first, and the controller's calls
/// then answer `SNP_ERR_CLOSED`. The store may still be used directly for
/// `snp_service_get_stats` and the like, but not for peek and ack, which
/// are the controller's. Free it with `snp_service_controller_free`.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL), `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `store` must be NULL or a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_new(
    store: *mut snp_service,
    resend_timeout_ms: u64,
    out: *mut *mut snp_service_controller,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store_of(store) }?.clone();
        let out = Out::new(out, "out")?;
        if store.is_closed() {
            return Err(Error::Closed);
        }
        let timeout = match resend_timeout_ms {
            0 => snp::DEFAULT_RESEND_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        let state = State {
            ctl: ServiceController::with_timeout(store, timeout),
            queued: VecDeque::new(),
        };
        let controller = snp_service_controller {
            state: Guarded::new(state),
        };
        // SAFETY: `out` is writable (the contract), not NULL (checked).
        unsafe { hand_out(controller, out) }
    })
}

/// Frees a controller. NULL is fine. The store it was made over stays
/// open until its own handle is closed.
///
/// # Safety
/// `controller` must be NULL or a live handle, with no call on it in
/// progress; it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_free(controller: *mut snp_service_controller) {
    guard(|| {
        // SAFETY: NULL or a live handle freed once (the contract).
        drop(unsafe { free(controller) });
        Ok(SNP_OK)
    });
}

/// Stores an event (a new uid, written to `*out_uid` unless it is NULL)
/// and sends it now if the protocol allows (see `next_output`). As
/// `snp_service_raise` otherwise: the same checks and statuses, plus
/// `SNP_ERR_CLOSED`.
///
/// # Safety
/// `controller` must be a live handle, `event` an initialised `snp_event`
/// whose buffers hold their lengths, `out_uid` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_raise(
    controller: *mut snp_service_controller,
    event: *const snp_event,
    out_uid: *mut snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or an initialised event whose buffers hold their
        // lengths (the contract).
        let event = unsafe { event_of(event) }?;
        // SAFETY: NULL or a live handle (the contract).
        let uid = unsafe { with(controller, |s| event.raise_through(&mut s.ctl)) }?;
        if let Some(o) = Out::optional(out_uid) {
            // SAFETY: `out_uid` is not NULL, so writable (the contract).
            unsafe { o.write(uid.into()) };
        }
        Ok(SNP_OK)
    })
}

/// Runs a controller input that takes no argument.
///
/// # Safety
/// As `with`.
unsafe fn input(
    controller: *mut snp_service_controller,
    op: impl FnOnce(&mut ServiceController) -> Result<(), Error>,
) -> snp_status {
    guard(|| {
        // SAFETY: forwarded contract.
        unsafe { with(controller, |s| op(&mut s.ctl)) }?;
        Ok(SNP_OK)
    })
}

/// The transport is up; the broker's "online" comes next.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_connected(
    controller: *mut snp_service_controller,
) -> snp_status {
    // SAFETY: forwarded contract.
    unsafe {
        input(controller, |c| {
            c.connected();
            Ok(())
        })
    }
}

/// The broker is ready and remembers `*broker_storage_uid` for this
/// service (NULL: it remembers none): the storage-uid handshake, then the
/// events that were in flight when the link went down, then the drain. A
/// second `online` without `disconnected` starts a new session as if the
/// link had gone down in between.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle; `broker_storage_uid` NULL or
/// readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_online(
    controller: *mut snp_service_controller,
    broker_storage_uid: *const snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or readable (the contract); copied at once.
        let theirs = unsafe { broker_storage_uid.as_ref() }.map(|u| snp::Uuid::from(*u));
        // SAFETY: NULL or a live handle (the contract).
        unsafe { with(controller, |s| s.ctl.online(theirs)) }?;
        Ok(SNP_OK)
    })
}

/// The broker acknowledged `*uid`. Only the event in flight counts; a
/// stale or repeated ack is `SNP_OK` and counted.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle, `uid` readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_ack(
    controller: *mut snp_service_controller,
    uid: *const snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or readable (the contract).
        let uid = unsafe { read_arg(uid, "uid") }?;
        // SAFETY: NULL or a live handle (the contract).
        unsafe { with(controller, |s| s.ctl.ack(uid.into())) }?;
        Ok(SNP_OK)
    })
}

/// The broker refused the name of the event `*uid`: it is dropped and
/// handed out as `SNP_OUTPUT_REJECTED`.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle, `uid` readable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_rejected(
    controller: *mut snp_service_controller,
    uid: *const snp_uuid,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or readable (the contract).
        let uid = unsafe { read_arg(uid, "uid") }?;
        // SAFETY: NULL or a live handle (the contract).
        unsafe { with(controller, |s| s.ctl.rejected(uid.into())) }?;
        Ok(SNP_OK)
    })
}

/// The transport is gone: what was in flight is sent again first after the
/// next online.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_disconnected(
    controller: *mut snp_service_controller,
) -> snp_status {
    // SAFETY: forwarded contract.
    unsafe { input(controller, |c| c.disconnected()) }
}

/// The time is `now_ms` (monotonic milliseconds, any origin): events whose
/// ack is overdue are sent again. Call it by `next_deadline`. Until the
/// first tick the controller's time is 0; the first tick moves the
/// deadlines of events sent before it by `now_ms`, so a clock far from 0
/// (`CLOCK_MONOTONIC`) does not make them overdue at once.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_tick(
    controller: *mut snp_service_controller,
    now_ms: u64,
) -> snp_status {
    // SAFETY: forwarded contract.
    unsafe {
        input(controller, |c| {
            c.tick(Duration::from_millis(now_ms));
            Ok(())
        })
    }
}

/// Writes the next thing to do to `*out` (its `struct_size` set by the
/// caller to `sizeof(snp_service_output)`): `SNP_OK`, or `SNP_EMPTY`
/// (nothing written) when there is nothing to do. Take every output after
/// each input, in order. An output refused (a bad `out`) stays queued.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT` (NULL,
/// `struct_size` too small), `SNP_ERR_CLOSED`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle and `out` writable for its own
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_next_output(
    controller: *mut snp_service_controller,
    out: *mut snp_service_output,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or writable for its own struct_size bytes (the
        // contract).
        unsafe { check_output_size(out) }?;
        // SAFETY: NULL or a live handle (the contract).
        let next = unsafe {
            with(controller, |s| {
                if s.queued.is_empty() {
                    s.queued.extend(s.ctl.drain_outputs());
                }
                Ok(s.queued.pop_front())
            })
        }?;
        let Some(next) = next else {
            return Ok(SNP_EMPTY);
        };
        // SAFETY: `out` is writable for its own struct_size bytes (the
        // contract), checked above to hold the whole struct: this write
        // cannot fail, so the output taken is never lost.
        unsafe { write_versioned(out, &snp_service_output::of(&next), "out") }
    })
}

/// Refuses an output struct too small for a whole `snp_service_output`
/// (checked before an output is taken from the queue, so none is lost).
///
/// # Safety
/// `out` must be NULL or readable for its first 4 bytes.
unsafe fn check_output_size(out: *const snp_service_output) -> Result<(), Error> {
    if out.is_null() {
        return Err(Error::InvalidArgument("out is NULL".to_string()));
    }
    // SAFETY: not NULL, and readable for its `struct_size` field (the
    // contract).
    let size = unsafe { out.cast::<u32>().read_unaligned() } as usize;
    let need = std::mem::size_of::<snp_service_output>();
    if size < need {
        return Err(Error::InvalidArgument(format!(
            "out->struct_size is {size}; set it to sizeof(snp_service_output) ({need}) first"
        )));
    }
    Ok(())
}

/// Writes when `tick` must be called next (the earliest resend, in the
/// clock of the times given to `tick`): `SNP_OK`, or `SNP_EMPTY` (nothing
/// written) when nothing is in flight.
/// Returns `SNP_OK`, `SNP_EMPTY`, `SNP_ERR_INVALID_ARGUMENT`,
/// `SNP_ERR_CLOSED`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle and `out_ms` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_next_deadline(
    controller: *const snp_service_controller,
    out_ms: *mut u64,
) -> snp_status {
    guard(|| {
        let o = Out::new(out_ms, "out_ms")?;
        // SAFETY: NULL or a live handle (the contract).
        let deadline = unsafe { with(controller, |s| Ok(s.ctl.next_deadline())) }?;
        match deadline {
            Some(d) => {
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                // SAFETY: `out_ms` is writable (the contract), not NULL.
                unsafe { o.write(ms) };
                Ok(SNP_OK)
            }
            None => Ok(SNP_EMPTY),
        }
    })
}

/// The state of a service controller. Set `struct_size` to
/// `sizeof(snp_service_controller_stats)` before
/// `snp_service_controller_get_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct snp_service_controller_stats {
    /// `sizeof(snp_service_controller_stats)` as the caller knows it.
    pub struct_size: u32,
    /// 1 between `online` and `disconnected`, else 0.
    pub online: i32,
    /// Events sent and not yet acknowledged.
    pub in_flight: u64,
    /// Acks that matched no event in flight (stale or repeated), ignored.
    pub stale_acks: u64,
    /// Events the broker refused (handed out as `SNP_OUTPUT_REJECTED`).
    pub rejected: u64,
}

/// Copies the controller's state into `*out_stats`, up to
/// `out_stats->struct_size` bytes.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, struct_size too
/// small), `SNP_ERR_CLOSED`, `SNP_ERR_STATE` (from its store's failure
/// callback), `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle and `out_stats` writable for its own
/// `struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn snp_service_controller_get_stats(
    controller: *const snp_service_controller,
    out_stats: *mut snp_service_controller_stats,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let stats = unsafe {
            with(controller, |s| {
                Ok(snp_service_controller_stats {
                    struct_size: std::mem::size_of::<snp_service_controller_stats>() as u32,
                    online: i32::from(s.ctl.is_online()),
                    in_flight: s.ctl.in_flight().len() as u64,
                    stale_acks: s.ctl.stale_acks(),
                    rejected: s.ctl.rejected_count(),
                })
            })
        }?;
        // SAFETY: `out_stats` is NULL or writable for its own struct_size
        // bytes (the contract).
        unsafe { write_versioned(out_stats, &stats, "out_stats") }
    })
}

//! `snp_client_controller`: the client side of the delivery protocol
//! (docs/PROTOCOL.md section 3) through the C ABI: which incoming events
//! reach the application, and when their ids are recorded.

use std::ffi::c_char;

use snp::{ClientController, ClientDecision, ClientKind, Error, HandlerOrder};

use crate::cast::{free, hand_out, handle, Handle, Out};
use crate::client::{snp_client, store as store_of};
use crate::event::owned_name;
use crate::panic::guard;
use crate::reentry::Guarded;
use crate::status::{snp_status, SNP_OK};

/// Client kind: the broker remembers the client and resumes each
/// subscription after the last event it delivered.
pub const SNP_CLIENT_STATEFUL: i32 = 0;
/// Client kind: the broker remembers nothing; on connect the client sends
/// the last id it holds per subscription (`snp_client_for_each` over its
/// store gives them).
pub const SNP_CLIENT_STATELESS: i32 = 1;
/// Handler order: handle, then record the id (at least once; the default).
pub const SNP_ORDER_RECORD_AFTER_HANDLE: i32 = 0;
/// Handler order: record the id, then handle (at most once).
pub const SNP_ORDER_RECORD_BEFORE_HANDLE: i32 = 1;
/// Decision: hand the event to the application, then call
/// `snp_client_controller_handled`.
pub const SNP_DECISION_HANDLE: i32 = 0;
/// Decision: already handled: acknowledge it to the broker without handing
/// it to the application.
pub const SNP_DECISION_ACK_DUPLICATE: i32 = 1;

/// A client controller. Opaque; safe to use from several threads at once
/// (each call takes its lock). A failure callback of its store must not
/// call it: such a call returns `SNP_ERR_STATE`.
pub struct snp_client_controller {
    ctl: Guarded<ClientController>,
}

impl Handle for snp_client_controller {
    const NAME: &'static str = "controller";
}

/// Runs `op` on the controller behind a handle, refusing every call once
/// its store was closed.
///
/// # Safety
/// `controller` must be NULL or a live handle from
/// `snp_client_controller_new`, not freed during the call.
unsafe fn with<T>(
    controller: *const snp_client_controller,
    op: impl FnOnce(&mut ClientController) -> Result<T, Error>,
) -> Result<T, Error> {
    // SAFETY: forwarded contract: NULL or a live handle.
    let handle = unsafe { handle(controller) }?;
    let mut ctl = handle.ctl.lock()?;
    if ctl.store().is_closed() {
        return Err(Error::Closed);
    }
    op(&mut ctl)
}

/// Makes a controller over `store` and writes its handle to `*out`.
/// `client_kind` is `SNP_CLIENT_STATEFUL` or `SNP_CLIENT_STATELESS` (a
/// stateless client's hello is `snp_client_for_each` over its store);
/// `handler_order` is `SNP_ORDER_RECORD_AFTER_HANDLE` or
/// `SNP_ORDER_RECORD_BEFORE_HANDLE`. The controller keeps the store alive:
/// `snp_client_close` may come first, and the controller's calls then
/// answer `SNP_ERR_CLOSED`. Free it with `snp_client_controller_free`.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, bad kind or order),
/// `SNP_ERR_CLOSED`, `SNP_ERR_PANIC`.
///
/// # Safety
/// `store` must be NULL or a live handle; `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_controller_new(
    store: *mut snp_client,
    client_kind: i32,
    handler_order: i32,
    out: *mut *mut snp_client_controller,
) -> snp_status {
    guard(|| {
        // SAFETY: NULL or a live handle (the contract).
        let store = unsafe { store_of(store) }?.clone();
        let out = Out::new(out, "out")?;
        let kind = match client_kind {
            SNP_CLIENT_STATEFUL => ClientKind::Stateful,
            SNP_CLIENT_STATELESS => ClientKind::Stateless,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "client_kind {other} is not SNP_CLIENT_STATEFUL (0) or SNP_CLIENT_STATELESS (1)"
                )))
            }
        };
        let order = match handler_order {
            SNP_ORDER_RECORD_AFTER_HANDLE => HandlerOrder::RecordAfterHandle,
            SNP_ORDER_RECORD_BEFORE_HANDLE => HandlerOrder::RecordBeforeHandle,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "handler_order {other} is not SNP_ORDER_RECORD_AFTER_HANDLE (0) or \
                     SNP_ORDER_RECORD_BEFORE_HANDLE (1)"
                )))
            }
        };
        if store.is_closed() {
            return Err(Error::Closed);
        }
        let controller = snp_client_controller {
            ctl: Guarded::new(ClientController::new(store, kind, order)),
        };
        // SAFETY: `out` is writable (the contract), not NULL (checked).
        unsafe { hand_out(controller, out) }
    })
}

/// Frees a controller. NULL is fine.
///
/// # Safety
/// `controller` must be NULL or a live handle, with no call on it in
/// progress; it must not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn snp_client_controller_free(controller: *mut snp_client_controller) {
    guard(|| {
        // SAFETY: NULL or a live handle freed once (the contract).
        drop(unsafe { free(controller) });
        Ok(SNP_OK)
    });
}

/// An event `id` of subscription `name` arrived: writes what to do with it
/// (`SNP_DECISION_HANDLE` or `SNP_DECISION_ACK_DUPLICATE`). With
/// `SNP_ORDER_RECORD_BEFORE_HANDLE` the id is recorded here, before the
/// application sees the event.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT` (NULL, name rules,
/// `name_len` 0 or over `SNP_MAX_NAME_LEN`), `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle, `name` `name_len` readable bytes
/// (when within the limit), `out_decision` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_controller_incoming(
    controller: *mut snp_client_controller,
    name: *const c_char,
    name_len: usize,
    id: i64,
    out_decision: *mut i32,
) -> snp_status {
    guard(|| {
        // SAFETY: `name` readable for `name_len` bytes when that is within
        // the limit (the contract).
        let name = unsafe { owned_name(name, name_len, "name") }?;
        let o = Out::new(out_decision, "out_decision")?;
        // SAFETY: NULL or a live handle (the contract).
        let decision = unsafe { with(controller, |c| c.incoming(&name, id)) }?;
        let code = match decision {
            ClientDecision::Handle => SNP_DECISION_HANDLE,
            ClientDecision::AckDuplicate => SNP_DECISION_ACK_DUPLICATE,
        };
        // SAFETY: `out_decision` is writable (the contract), not NULL.
        unsafe { o.write(code) };
        Ok(SNP_OK)
    })
}

/// The application finished handling event `id` of `name`: with
/// `SNP_ORDER_RECORD_AFTER_HANDLE` the id is recorded now. Then acknowledge
/// the event to the broker.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle and `name` `name_len` readable bytes
/// (when within the limit).
#[no_mangle]
pub unsafe extern "C" fn snp_client_controller_handled(
    controller: *mut snp_client_controller,
    name: *const c_char,
    name_len: usize,
    id: i64,
) -> snp_status {
    guard(|| {
        // SAFETY: as in `snp_client_controller_incoming`.
        let name = unsafe { owned_name(name, name_len, "name") }?;
        // SAFETY: NULL or a live handle (the contract).
        unsafe { with(controller, |c| c.handled(&name, id).map(|_| ())) }?;
        Ok(SNP_OK)
    })
}

/// Writes how many duplicates were acknowledged without reaching the
/// application.
/// Returns `SNP_OK`, `SNP_ERR_INVALID_ARGUMENT`, `SNP_ERR_CLOSED`,
/// `SNP_ERR_PANIC`.
///
/// # Safety
/// `controller` must be a live handle and `out` writable.
#[no_mangle]
pub unsafe extern "C" fn snp_client_controller_duplicates(
    controller: *const snp_client_controller,
    out: *mut u64,
) -> snp_status {
    guard(|| {
        let o = Out::new(out, "out")?;
        // SAFETY: NULL or a live handle (the contract).
        let n = unsafe { with(controller, |c| Ok(c.duplicates())) }?;
        // SAFETY: `out` is writable (the contract), not NULL.
        unsafe { o.write(n) };
        Ok(SNP_OK)
    })
}

//! `ServiceController`: the service side of the delivery protocol
//! (docs/PROTOCOL.md section 2) over a `ServiceStore`, wrapping the core
//! crate's [`softnet_persistence::ServiceController`]. It does no I/O and
//! reads no clock: the caller feeds in what happened and sends what
//! `drain_outputs` returns.
//!
//! Locking and the GIL: see the `lock` module. The controller keeps a
//! reference to its Python store (and so the core store alive); once that
//! store is closed every method raises `StoreClosedError`, while the
//! properties stay readable.
//!
//! Time: the caller's clock is seconds as a float, any origin (negative
//! too). The core controller counts a `Duration` from zero; the first
//! `tick` fixes which caller time that zero is (`origin`), so the time
//! before the first tick counts as the time of the first tick.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use softnet_persistence as core;
use softnet_persistence::{Error, Event, ServiceOutput};

use crate::convert::{event_kind_from_py, uuid_from_py, uuid_to_py};
use crate::errors::{to_py_err, IntoPyResult};
use crate::event::StoredEvent;
use crate::lock::{Guarded, Work};
use crate::service::PyServiceStore;

/// The controller and the caller's time of its zero.
struct State {
    ctl: core::ServiceController,
    /// The caller's time of the first `tick`: the controller's zero.
    origin: Option<f64>,
}

impl State {
    /// The caller's time of a controller time.
    fn caller_time(&self, at: Duration) -> f64 {
        self.origin.unwrap_or(0.0) + at.as_secs_f64()
    }
}

/// Drives a :class:`ServiceStore` through the delivery protocol
/// (docs/PROTOCOL.md section 2): the storage-uid handshake, the strict
/// in-order drain of the backlog with one event in flight, then one event
/// in flight per name, resends after ``resend_timeout`` seconds with the
/// same uid, acks accepted only for an event in flight, and back to storage
/// mode on a disconnect (the events that were in flight are sent again
/// first).
///
/// It does no I/O and reads no clock. Feed it what happened
/// (:meth:`raise_event`, :meth:`connected`, :meth:`online`, :meth:`ack`,
/// :meth:`rejected`, :meth:`disconnected`) and the time (:meth:`tick`),
/// then send what :meth:`drain_outputs` returns, in order, and call
/// :meth:`tick` again by :meth:`next_deadline`.
///
/// The controller takes over the store's delivery calls (``peek``,
/// ``ack``, ``peek_name``, ``ack_name``, ``set_storage_mode``); the store
/// may still be read directly (``stats``, ``pending``...). The controller
/// keeps the store object alive; once the store is closed every method
/// raises :class:`StoreClosedError` (the properties stay readable).
///
/// Thread safety: each call takes the controller's lock, so one controller
/// may be shared between threads (calls are serialized; a thread waiting
/// for the lock does not hold the GIL). Calls on a file or custom store
/// release the GIL. A failure callback (or custom backend) of the store
/// must not call the controller: such a call raises
/// :class:`InvalidStateError` instead of deadlocking.
#[pyclass(frozen, module = "softnet_persistence", name = "ServiceController")]
pub struct PyServiceController {
    store: Py<PyServiceStore>,
    /// Release the GIL around store work (file and custom stores).
    detach: bool,
    /// The resend timeout in seconds, as given.
    timeout: f64,
    state: Guarded<State>,
}

/// A duration argument in seconds: finite and > 0.
fn positive_seconds(value: f64, what: &str) -> Result<Duration, Error> {
    match Duration::try_from_secs_f64(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::InvalidArgument(format!(
            "{what} must be a finite number of seconds > 0, got {value}"
        ))),
    }
}

/// The Python classes of the outputs (`softnet_persistence._outputs`).
struct OutputTypes {
    send_event: Py<PyAny>,
    send_storage_uid: Py<PyAny>,
    rejected: Py<PyAny>,
}

static OUTPUT_TYPES: PyOnceLock<OutputTypes> = PyOnceLock::new();

fn output_to_py(py: Python<'_>, output: ServiceOutput) -> PyResult<Py<PyAny>> {
    let types = OUTPUT_TYPES.get_or_try_init(py, || -> PyResult<OutputTypes> {
        let module = py.import("softnet_persistence._outputs")?;
        Ok(OutputTypes {
            send_event: module.getattr("SendEvent")?.unbind(),
            send_storage_uid: module.getattr("SendStorageUid")?.unbind(),
            rejected: module.getattr("Rejected")?.unbind(),
        })
    })?;
    let made = match output {
        ServiceOutput::SendEvent(e) => types
            .send_event
            .bind(py)
            .call1((StoredEvent::new(py, e)?,))?,
        ServiceOutput::SendStorageUid(u) => types
            .send_storage_uid
            .bind(py)
            .call1((uuid_to_py(py, u)?,))?,
        ServiceOutput::Rejected(e) => types.rejected.bind(py).call1((StoredEvent::new(py, e)?,))?,
    };
    Ok(made.unbind())
}

impl PyServiceController {
    /// Runs a controller call: refused once the store is closed.
    fn call<R: Send>(
        &self,
        py: Python<'_>,
        work: Work,
        op: impl FnOnce(&mut State) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        let store = self.store.get().core_handle();
        self.state.call(py, work, self.detach, |s| {
            // The Python store's flag is set before its core store closes.
            if store.is_closed() {
                return Err(Error::Closed);
            }
            op(s)
        })
    }

    /// Reads the controller's state (also once the store is closed).
    fn read<R: Send>(&self, py: Python<'_>, op: impl FnOnce(&State) -> R + Send) -> PyResult<R> {
        self.state.call(py, Work::Local, self.detach, |s| Ok(op(s)))
    }
}

#[pymethods]
impl PyServiceController {
    /// A controller over ``store``, offline. ``resend_timeout``: seconds an
    /// event waits for its ack before it is sent again (default 30; finite
    /// and > 0, else :class:`InvalidArgumentError`). Raises
    /// :class:`StoreClosedError` if the store is closed.
    #[new]
    #[pyo3(
        signature = (store, resend_timeout = 30.0),
        text_signature = "(store, resend_timeout=30.0)"
    )]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyServiceStore>,
        resend_timeout: f64,
    ) -> PyResult<PyServiceController> {
        let timeout = positive_seconds(resend_timeout, "resend_timeout").into_py_result(py)?;
        let handle = store.get().core_handle();
        if handle.is_closed() {
            return Err(to_py_err(py, Error::Closed));
        }
        let ctl = core::ServiceController::with_timeout(handle.shared(), timeout);
        Ok(PyServiceController {
            store: store.clone().unbind(),
            detach: handle.detaches(),
            timeout: resend_timeout,
            state: Guarded::new(State { ctl, origin: None }),
        })
    }

    /// The application raised an event: stores it (as
    /// :meth:`ServiceStore.raise_event`, with the same arguments, checks and
    /// exceptions) and sends it now if the protocol allows (see
    /// :meth:`drain_outputs`). Returns its uid (:class:`uuid.UUID`).
    #[pyo3(
        signature = (kind, name, args = b"".as_slice(), client_id = None, *, uid = None),
        text_signature = "(self, /, kind, name, args=b'', client_id=None, *, uid=None)"
    )]
    fn raise_event(
        &self,
        py: Python<'_>,
        kind: &Bound<'_, PyAny>,
        name: PyBackedStr,
        args: &[u8],
        client_id: Option<i64>,
        uid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let kind = event_kind_from_py(kind)?;
        let uid = uid.map(uuid_from_py).transpose()?;
        let name: &str = &name;
        let event = match (client_id, uid) {
            (None, None) => None,
            // A new uid from the library's fork-safe generator.
            (client_id, None) => Some(Event::new(kind, name, args, client_id).into_py_result(py)?),
            (client_id, Some(uid)) => Some(Event {
                uid,
                ..Event::new(kind, name, args, client_id).into_py_result(py)?
            }),
        };
        let raised = self.call(py, Work::Store, |s| match &event {
            None => s.ctl.raise(kind, name, args),
            Some(event) => s.ctl.raise_event(event),
        })?;
        uuid_to_py(py, raised)
    }

    /// The transport to the broker is up; the broker's "online" (with the
    /// storage uid it remembers) comes next: call :meth:`online` then.
    fn connected(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, Work::Local, |s| {
            s.ctl.connected();
            Ok(())
        })
    }

    /// The broker is ready and remembers ``broker_storage_uid`` for this
    /// service (a :class:`uuid.UUID` or its text, or None: it remembers
    /// none). Performs the storage-uid handshake (docs/PROTOCOL.md section
    /// 2.1): if the broker remembers another uid than the store's (or than
    /// its previous one, after a fallback), the events stored before the
    /// store was opened are discarded (``invalidate_ancient``); the store's
    /// uid is sent unless the broker has it. Then the events that were in
    /// flight at the last disconnect are sent again, then the drain starts.
    #[pyo3(signature = (broker_storage_uid))]
    fn online(
        &self,
        py: Python<'_>,
        broker_storage_uid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let theirs = broker_storage_uid.map(uuid_from_py).transpose()?;
        self.call(py, Work::Store, |s| s.ctl.online(theirs))
    }

    /// The broker acknowledged the event ``uid``. Only an event in flight
    /// counts: it is removed from the store and what comes next is sent.
    /// Any other ack (late, repeated, unknown) is ignored and counted in
    /// :attr:`stale_acks`.
    fn ack(&self, py: Python<'_>, uid: &Bound<'_, PyAny>) -> PyResult<()> {
        let uid = uuid_from_py(uid)?;
        self.call(py, Work::Store, |s| s.ctl.ack(uid))
    }

    /// The broker refused the name of the event ``uid`` (in flight): it is
    /// removed from the store, reported as :class:`Rejected` by
    /// :meth:`drain_outputs` and counted in :attr:`rejected_count`; the
    /// next event is sent. For a uid not in flight it is a stale ack.
    fn rejected(&self, py: Python<'_>, uid: &Bound<'_, PyAny>) -> PyResult<()> {
        let uid = uuid_from_py(uid)?;
        self.call(py, Work::Store, |s| s.ctl.rejected(uid))
    }

    /// The transport is gone: nothing is in flight any more, events raised
    /// meanwhile are stored, and what was in flight is sent again first
    /// after the next :meth:`online`.
    fn disconnected(&self, py: Python<'_>) -> PyResult<()> {
        self.call(py, Work::Store, |s| s.ctl.disconnected())
    }

    /// The time is ``now``: seconds on a monotonic clock
    /// (:func:`time.monotonic` is the natural one), any origin. Events in
    /// flight whose ack is overdue are sent again with the same uid, oldest
    /// first (while online). The controller's clock starts at the first
    /// tick: call ``tick(time.monotonic())`` once after making it (the time
    /// before the first tick counts as the time of the first tick). A time
    /// earlier than one already given changes nothing. Raises
    /// :class:`InvalidArgumentError` for a NaN or infinite ``now``.
    fn tick(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        if !now.is_finite() {
            return Err(to_py_err(
                py,
                Error::InvalidArgument(format!(
                    "now must be a finite number of seconds, got {now}"
                )),
            ));
        }
        self.call(py, Work::Local, |s| {
            let origin = *s.origin.get_or_insert(now);
            let mut since = Duration::try_from_secs_f64((now - origin).max(0.0)).map_err(|_| {
                Error::InvalidArgument(format!(
                    "now ({now}) is too far from the first tick's time ({origin})"
                ))
            })?;
            // `next_deadline` returned `origin + deadline` as a float; a
            // tick at that value must reach the deadline even when the
            // float arithmetic rounded it down.
            if let Some(due) = s.ctl.next_deadline() {
                if s.caller_time(due) <= now {
                    since = since.max(due);
                }
            }
            s.ctl.tick(since);
            Ok(())
        })
    }

    /// What to do, in order, since the last call (the queue is emptied):
    /// :class:`SendStorageUid` (tell the broker our storage uid),
    /// :class:`SendEvent` (send the event; a resend has the same uid) and
    /// :class:`Rejected` (an event the broker refused, dropped; for the
    /// log). Send them in this order: a storage uid comes before the events
    /// that depend on it.
    fn drain_outputs(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let outputs = self.call(py, Work::Local, |s| Ok(s.ctl.drain_outputs()))?;
        outputs
            .into_iter()
            .map(|output| output_to_py(py, output))
            .collect()
    }

    /// When to call :meth:`tick` next, in the caller's seconds (the clock
    /// :meth:`tick` is given; before the first tick, seconds after it): the
    /// earliest resend deadline of the events in flight, or None when
    /// nothing is in flight.
    fn next_deadline(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        self.call(py, Work::Local, |s| {
            Ok(s.ctl.next_deadline().map(|d| s.caller_time(d)))
        })
    }

    /// True between :meth:`online` and :meth:`disconnected`. (A property
    /// named ``online`` would hide the method :meth:`online`.)
    #[getter]
    fn is_online(&self, py: Python<'_>) -> PyResult<bool> {
        self.read(py, |s| s.ctl.is_online())
    }

    /// The uids (:class:`uuid.UUID`) of the events in flight (sent, not yet
    /// acknowledged), in no particular order.
    #[getter]
    fn in_flight(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let uids = self.read(py, |s| s.ctl.in_flight())?;
        uids.into_iter().map(|u| uuid_to_py(py, u)).collect()
    }

    /// Acks ignored because their uid was not in flight (late, repeated,
    /// after a disconnect, or for an event dropped for capacity meanwhile).
    #[getter]
    fn stale_acks(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |s| s.ctl.stale_acks())
    }

    /// Events dropped because the broker refused their name.
    #[getter]
    fn rejected_count(&self, py: Python<'_>) -> PyResult<u64> {
        self.read(py, |s| s.ctl.rejected_count())
    }

    /// The :class:`ServiceStore` the controller drives.
    #[getter]
    fn store(&self, py: Python<'_>) -> Py<PyServiceStore> {
        self.store.clone_ref(py)
    }

    /// The resend timeout in seconds.
    #[getter]
    fn resend_timeout(&self) -> f64 {
        self.timeout
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (online, in_flight, stale, rejected) = self.read(py, |s| {
            (
                s.ctl.is_online(),
                s.ctl.in_flight().len(),
                s.ctl.stale_acks(),
                s.ctl.rejected_count(),
            )
        })?;
        let online = if online { "True" } else { "False" };
        Ok(format!(
            "<ServiceController online={online} in_flight={in_flight} stale_acks={stale} \
             rejected_count={rejected}>"
        ))
    }
}

/// Adds the service controller to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyServiceController>()?;
    Ok(())
}

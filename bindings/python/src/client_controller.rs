//! `ClientController`: the client side of the delivery protocol
//! (docs/PROTOCOL.md section 3) over a `ClientStore`, wrapping the core
//! crate's [`softnet_persistence::ClientController`]: the hello to send on
//! connect, and which incoming events reach the application.
//!
//! Locking, the GIL and a closed store: as for `ServiceController` (see the
//! `lock` and `service_controller` modules).

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use softnet_persistence as core;
use softnet_persistence::{ClientHello, ClientKind, Error, HandlerOrder};

use crate::client::{handler_order, PyClientStore};
use crate::convert::decision_to_py;
use crate::errors::{to_py_err, IntoPyResult};
use crate::lock::{Guarded, Work};

/// `kind="stateful" | "stateless"`.
fn client_kind(name: &str) -> Result<ClientKind, Error> {
    match name {
        "stateful" => Ok(ClientKind::Stateful),
        "stateless" => Ok(ClientKind::Stateless),
        other => Err(Error::InvalidArgument(format!(
            "kind must be \"stateful\" or \"stateless\", got {other:?}"
        ))),
    }
}

fn kind_name(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Stateful => "stateful",
        ClientKind::Stateless => "stateless",
    }
}

fn order_name(order: HandlerOrder) -> &'static str {
    match order {
        HandlerOrder::RecordBeforeHandle => "record_before_handle",
        _ => "record_after_handle",
    }
}

/// Decides, with a :class:`ClientStore`, which incoming events reach the
/// application, and says what to tell the broker on connect
/// (docs/PROTOCOL.md section 3).
///
/// ``kind``: "stateful" (the broker remembers the client and resumes each
/// subscription after the last event it acknowledged) or "stateless" (it
/// remembers nothing; the client says on connect the last id it holds per
/// subscription).
///
/// ``order`` (as in :meth:`ClientStore.handle`): "record_after_handle"
/// (default, at least once: :meth:`incoming` decides, the application
/// handles, :meth:`handled` records the id; a crash in between hands the
/// event to the application again after the restart) or
/// "record_before_handle" (at most once: :meth:`incoming` records the id
/// before the application sees the event; a crash in between loses it for
/// the application).
///
/// For each event the broker delivers::
///
///     if ctl.incoming(name, instance_id) is Decision.HANDLE:
///         handle(...)                      # the application's work
///         ctl.handled(name, instance_id)
///     send_ack(name, instance_id)          # in both cases
///
/// If the handler fails, skip :meth:`handled` and the ack: the broker
/// sends the event again.
///
/// Thread safety, a closed store and failure callbacks: as for
/// :class:`ServiceController` (internally locked; every method raises
/// :class:`StoreClosedError` once the store is closed; a failure callback
/// calling the controller gets :class:`InvalidStateError`).
#[pyclass(frozen, module = "softnet_persistence", name = "ClientController")]
pub struct PyClientController {
    store: Py<PyClientStore>,
    /// Release the GIL around store work (file and custom stores).
    detach: bool,
    kind: ClientKind,
    order: HandlerOrder,
    state: Guarded<core::ClientController>,
}

impl PyClientController {
    /// Runs a controller call: refused once the store is closed.
    fn call<R: Send>(
        &self,
        py: Python<'_>,
        work: Work,
        op: impl FnOnce(&mut core::ClientController) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        let store = self.store.get().core_handle();
        self.state.call(py, work, self.detach, |ctl| {
            // The Python store's flag is set before its core store closes.
            if store.is_closed() {
                return Err(Error::Closed);
            }
            op(ctl)
        })
    }
}

#[pymethods]
impl PyClientController {
    /// A controller over ``store``. ``kind``: "stateful" or "stateless";
    /// ``order``: "record_after_handle" or "record_before_handle" (anything
    /// else is an :class:`InvalidArgumentError`). Raises
    /// :class:`StoreClosedError` if the store is closed.
    #[new]
    #[pyo3(
        signature = (
            store,
            kind = Cow::Borrowed("stateful"),
            order = Cow::Borrowed("record_after_handle"),
        ),
        text_signature = "(store, kind='stateful', order='record_after_handle')"
    )]
    fn new(
        py: Python<'_>,
        store: &Bound<'_, PyClientStore>,
        kind: Cow<'_, str>,
        order: Cow<'_, str>,
    ) -> PyResult<PyClientController> {
        let kind = client_kind(&kind).into_py_result(py)?;
        let order = handler_order(&order).into_py_result(py)?;
        let handle = store.get().core_handle();
        if handle.is_closed() {
            return Err(to_py_err(py, Error::Closed));
        }
        let ctl = core::ClientController::new(handle.shared(), kind, order);
        Ok(PyClientController {
            store: store.clone().unbind(),
            detach: handle.detaches(),
            kind,
            order,
            state: Guarded::new(ctl),
        })
    }

    /// The transport to the broker is up: returns the hello to send.
    ///
    /// - stateful: ``None``, meaning "resume where you stopped" (the broker
    ///   remembers the last event acknowledged per subscription);
    /// - stateless: a list of ``(subscription name, last instance id)``
    ///   tuples, sorted by name, one per subscription the store holds an id
    ///   for (the broker starts after those ids, and at the head of the
    ///   queue for a subscription not in the list). An empty list is a
    ///   valid hello: nothing handled yet.
    fn connected(&self, py: Python<'_>) -> PyResult<Option<Vec<(String, i64)>>> {
        let hello = self.call(py, Work::Store, |ctl| ctl.connected())?;
        Ok(match hello {
            ClientHello::Stateful => None,
            ClientHello::Stateless { last_ids } => Some(last_ids),
        })
    }

    /// Event ``instance_id`` of subscription ``name`` arrived: returns
    /// :attr:`Decision.HANDLE` (hand it to the application, then call
    /// :meth:`handled`; under "record_before_handle" the id is recorded
    /// now) or :attr:`Decision.ACK_DUPLICATE` (handled already: only
    /// acknowledge it; counted in :attr:`duplicates`). Raises
    /// :class:`InvalidArgumentError` for an invalid event name.
    fn incoming(&self, py: Python<'_>, name: PyBackedStr, instance_id: i64) -> PyResult<Py<PyAny>> {
        let name: &str = &name;
        let decision = self.call(py, Work::Store, |ctl| ctl.incoming(name, instance_id))?;
        decision_to_py(py, decision)
    }

    /// The application finished handling event ``instance_id`` of
    /// ``name``: under "record_after_handle" the id is recorded now (durably
    /// at level 2, as the store's durability says). Then acknowledge
    /// ``(name, instance_id)`` to the broker.
    fn handled(&self, py: Python<'_>, name: PyBackedStr, instance_id: i64) -> PyResult<()> {
        let name: &str = &name;
        self.call(py, Work::Store, |ctl| {
            ctl.handled(name, instance_id).map(drop)
        })
    }

    /// Duplicates acknowledged without reaching the application.
    #[getter]
    fn duplicates(&self, py: Python<'_>) -> PyResult<u64> {
        self.state
            .call(py, Work::Local, self.detach, |ctl| Ok(ctl.duplicates()))
    }

    /// "stateful" or "stateless".
    #[getter]
    fn kind(&self) -> &'static str {
        kind_name(self.kind)
    }

    /// "record_after_handle" or "record_before_handle".
    #[getter]
    fn order(&self) -> &'static str {
        order_name(self.order)
    }

    /// The :class:`ClientStore` the controller uses.
    #[getter]
    fn store(&self, py: Python<'_>) -> Py<PyClientStore> {
        self.store.clone_ref(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let duplicates = self.duplicates(py)?;
        Ok(format!(
            "<ClientController kind='{}' order='{}' duplicates={duplicates}>",
            self.kind(),
            self.order()
        ))
    }
}

/// Adds the client controller to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClientController>()?;
    Ok(())
}

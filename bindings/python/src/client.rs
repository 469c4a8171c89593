//! `ClientStore`: the id of the last event handled per subscription, so a
//! client hands each event to its application once (docs/BEHAVIOUR.md section 4), over
//! the core crate's [`softnet_persistence::ClientStore`].
//!
//! GIL: as for the service store, file and custom stores release it around
//! every call; a memory store keeps it.

use std::borrow::Cow;
use std::path::PathBuf;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::types::PyDict;
use softnet_persistence as core;
use softnet_persistence::{ClientOptions, Delivery, Error, HandleError, HandlerOrder};

use crate::backend::{check_methods, PyIdStore, ID_STORE_METHODS};
use crate::callback::failure_callback;
use crate::convert;
use crate::errors::{to_py_err, IntoPyResult};
use crate::store::StoreHandle;

/// Keeps the instance id of the last event handled per subscription (event
/// name), so duplicates are dropped after reconnects and restarts.
///
/// Open one with :meth:`open_memory` (level 1), :meth:`open_file` (level 2,
/// a crash-safe file) or :meth:`open_custom` (level 2 kept by a Python
/// object). For each incoming event: if :meth:`is_duplicate`, acknowledge it
/// without handling it; otherwise handle it, :meth:`put` its id, and
/// acknowledge (or let :meth:`handle` do this in the order you choose, or a
/// :class:`ClientController`, which also makes the hello to the broker).
///
/// A store may be shared between threads. Use it as a context manager, or
/// call :meth:`close`; any later call raises :class:`StoreClosedError`.
#[pyclass(frozen, module = "softnet_persistence", name = "ClientStore")]
pub struct PyClientStore {
    store: StoreHandle<core::ClientStore>,
}

impl PyClientStore {
    fn new(store: core::ClientStore, detach: bool) -> PyClientStore {
        PyClientStore {
            store: StoreHandle::new(store, detach),
        }
    }

    /// The core store with its closed flag (for `ClientController`).
    pub(crate) fn core_handle(&self) -> &StoreHandle<core::ClientStore> {
        &self.store
    }
}

/// `order="record_after_handle" | "record_before_handle"`, as
/// `ClientStore.handle` and `ClientController` spell it.
pub(crate) fn handler_order(name: &str) -> Result<HandlerOrder, Error> {
    match name {
        "record_after_handle" => Ok(HandlerOrder::RecordAfterHandle),
        "record_before_handle" => Ok(HandlerOrder::RecordBeforeHandle),
        other => Err(Error::InvalidArgument(format!(
            "order must be \"record_after_handle\" or \"record_before_handle\", got {other:?}"
        ))),
    }
}

#[pymethods]
impl PyClientStore {
    /// Opens a level-1 (memory) store: it survives reconnects, not
    /// restarts. ``on_failure(kind, message, events_lost)`` receives every
    /// failure report.
    #[staticmethod]
    #[pyo3(signature = (on_failure = None))]
    fn open_memory(py: Python<'_>, on_failure: Option<Py<PyAny>>) -> PyResult<PyClientStore> {
        let options = ClientOptions {
            on_failure: failure_callback(py, on_failure)?,
            ..ClientOptions::default()
        };
        Ok(PyClientStore::new(
            core::ClientStore::open_memory(&options),
            false,
        ))
    }

    /// Opens a level-2 store in the file
    /// ``softnet.client.persistence_<server_address>_<client_key>.scp`` in
    /// ``directory``. ``durability`` as in :meth:`ServiceStore.open_file`.
    ///
    /// A damaged file is salvaged and reported; if the file cannot be
    /// opened the store runs at level 1 (reported). Raises
    /// :class:`StoreLockedError` if another store has the file, and
    /// :class:`InvalidArgumentError` for a server address or key that cannot
    /// be part of a file name.
    #[staticmethod]
    #[pyo3(signature = (
        directory,
        server_address,
        client_key,
        durability = Cow::Borrowed("sync"),
        on_failure = None,
        *,
        batch_max_ops = 64,
        batch_max_delay = 0.1,
        strict = false,
    ),
    text_signature = "(directory, server_address, client_key, durability='sync', on_failure=None, \
                      *, batch_max_ops=64, batch_max_delay=0.1, strict=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn open_file(
        py: Python<'_>,
        directory: PathBuf,
        server_address: PyBackedStr,
        client_key: PyBackedStr,
        durability: Cow<'_, str>,
        on_failure: Option<Py<PyAny>>,
        batch_max_ops: u32,
        batch_max_delay: f64,
        strict: bool,
    ) -> PyResult<PyClientStore> {
        let on_failure = failure_callback(py, on_failure)?;
        let options = ClientOptions {
            durability: convert::durability(&durability, batch_max_ops, batch_max_delay)
                .into_py_result(py)?,
            on_failure,
            open_policy: convert::open_policy(strict),
            ..ClientOptions::default()
        };
        let (server, key): (&str, &str) = (&server_address, &client_key);
        let store = py
            .detach(|| core::ClientStore::open_file(&directory, server, key, &options))
            .into_py_result(py)?;
        Ok(PyClientStore::new(store, true))
    }

    /// Opens a level-2 store kept by ``backend``, any object with the
    /// methods of :class:`IdStoreBackend` (load, put, clear, flush). An
    /// exception raised by a backend method makes the store continue in
    /// memory with every id it knows (reported to ``on_failure``); the
    /// caller's call succeeds.
    #[staticmethod]
    #[pyo3(signature = (backend, on_failure = None))]
    fn open_custom(
        py: Python<'_>,
        backend: &Bound<'_, PyAny>,
        on_failure: Option<Py<PyAny>>,
    ) -> PyResult<PyClientStore> {
        let on_failure = failure_callback(py, on_failure)?;
        check_methods(backend, ID_STORE_METHODS, "client").into_py_result(py)?;
        let options = ClientOptions {
            on_failure,
            ..ClientOptions::default()
        };
        let ids = Box::new(PyIdStore::new(backend.clone().unbind()));
        let store = py.detach(|| core::ClientStore::open_custom(ids, &options));
        Ok(PyClientStore::new(store, true))
    }

    /// The last handled instance id of subscription ``name``, or None.
    fn get(&self, py: Python<'_>, name: PyBackedStr) -> PyResult<Option<i64>> {
        let name: &str = &name;
        self.store.run(py, |s| s.get(name))
    }

    /// Records ``instance_id`` as the last handled id of ``name`` (durably
    /// at level 2, as the durability says). Raises
    /// :class:`InvalidArgumentError` for an invalid event name.
    fn put(&self, py: Python<'_>, name: PyBackedStr, instance_id: i64) -> PyResult<()> {
        let name: &str = &name;
        self.store.run(py, |s| s.put(name, instance_id))
    }

    /// True when ``instance_id`` equals the stored id of ``name``: the event
    /// was handled already; acknowledge it without handling it again.
    fn is_duplicate(&self, py: Python<'_>, name: PyBackedStr, instance_id: i64) -> PyResult<bool> {
        let name: &str = &name;
        self.store.run(py, |s| s.is_duplicate(name, instance_id))
    }

    /// Every stored id by subscription name (what a stateless client sends
    /// the broker when it connects).
    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let entries = self.store.run(py, |s| s.entries())?;
        let dict = PyDict::new(py);
        for (name, id) in entries {
            dict.set_item(name, id)?;
        }
        Ok(dict)
    }

    /// Handles an incoming event once: returns False for a duplicate
    /// (``handler`` is not called), else calls ``handler()``, records the
    /// id and returns True. Either way, acknowledge the event to the broker
    /// afterwards.
    ///
    /// ``order`` decides what a crash between the two steps costs:
    /// "record_after_handle" (default, at least once: the handler may run
    /// again after a crash; if it raises, the id is not recorded and its
    /// exception propagates) or "record_before_handle" (at most once: a
    /// crash may mean the handler never ran; if it raises, the id stays
    /// recorded and its exception propagates).
    #[pyo3(
        signature = (name, instance_id, handler, order = Cow::Borrowed("record_after_handle")),
        text_signature = "(self, /, name, instance_id, handler, order='record_after_handle')"
    )]
    fn handle(
        &self,
        py: Python<'_>,
        name: PyBackedStr,
        instance_id: i64,
        handler: Py<PyAny>,
        order: Cow<'_, str>,
    ) -> PyResult<bool> {
        let order = handler_order(&order).into_py_result(py)?;
        if !handler.bind(py).is_callable() {
            return Err(PyTypeError::new_err("handler must be a callable"));
        }
        let name: &str = &name;
        let call = || Python::attach(|py| handler.bind(py).call0().map(drop));
        let result = self
            .store
            .call(py, |s| s.handle(name, instance_id, order, call));
        match result {
            Ok(Delivery::Duplicate) => Ok(false),
            Ok(Delivery::Handled) => Ok(true),
            Err(HandleError::Handler(err)) => Err(err),
            Err(HandleError::Store(err)) => Err(to_py_err(py, err)),
        }
    }

    /// Forgets every stored id.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.store.run(py, |s| s.reset())
    }

    /// Forces every put so far to the device.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.store.run(py, |s| s.flush())
    }

    /// State and counters (:class:`ClientStats`).
    fn stats(&self, py: Python<'_>) -> PyResult<ClientStats> {
        let s = self.store.read(py, |s| s.stats())?;
        Ok(ClientStats {
            level: s.level.number(),
            subscriptions: s.subscriptions,
            failures: s.failures,
        })
    }

    /// The persistence level: 2 (file or custom backend), or 1 (memory,
    /// also after a level-2 failure).
    #[getter]
    fn level(&self, py: Python<'_>) -> PyResult<u8> {
        self.store.read(py, |s| s.level().number())
    }

    /// The client file (:class:`pathlib.Path`) while at level 2 on a file,
    /// else None.
    #[getter]
    fn file_path(&self, py: Python<'_>) -> PyResult<Option<PathBuf>> {
        self.store.read(py, |s| s.file_path())
    }

    /// True once :meth:`close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Flushes and releases the file; later calls raise
    /// :class:`StoreClosedError`. Closing again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.store.close(py)
    }

    /// Returns the store itself.
    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Closes the store; exceptions propagate.
    #[pyo3(signature = (_exc_type = None, _exc_value = None, _traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        if self.closed() {
            return Ok("<ClientStore closed>".to_owned());
        }
        let (stats, path) = self.store.run(py, |s| Ok((s.stats(), s.file_path())))?;
        let at = match path {
            Some(p) => format!(" file='{}'", p.display()),
            None => String::new(),
        };
        Ok(format!(
            "<ClientStore level={} subscriptions={}{at}>",
            stats.level.number(),
            stats.subscriptions,
        ))
    }
}

/// A snapshot of a client store's state (from :meth:`ClientStore.stats`).
#[pyclass(frozen, get_all, module = "softnet_persistence", name = "ClientStats")]
pub struct ClientStats {
    /// Current level: 2, or 1 (memory, also after a level-2 failure).
    level: u8,
    /// Subscriptions with a stored id.
    subscriptions: u64,
    /// Failure reports so far (fallback, corruption, interrupted writes).
    failures: u64,
}

#[pymethods]
impl ClientStats {
    fn __repr__(&self) -> String {
        format!(
            "ClientStats(level={}, subscriptions={}, failures={})",
            self.level, self.subscriptions, self.failures
        )
    }
}

/// Adds the client classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyClientStore>()?;
    m.add_class::<ClientStats>()?;
    Ok(())
}

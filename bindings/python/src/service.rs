//! `ServiceStore`: keeps a service's raised events until the broker
//! acknowledges them (docs/BEHAVIOUR.md section 3), over the core crate's
//! [`softnet_persistence::ServiceStore`].
//!
//! GIL: every call into a file or custom store runs with the GIL released
//! (journal writes, `msync`, recovery at open, and waiting for the store's
//! lock while another thread syncs). A memory store does no I/O and its
//! calls never wait on a thread without the GIL, so it keeps the GIL and
//! saves the switch.

use std::borrow::Cow;
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use softnet_persistence as core;
use softnet_persistence::Event;

use crate::backend::{check_methods, PyRecordLog, RECORD_LOG_METHODS};
use crate::callback::failure_callback;
use crate::convert::{self, event_kind_from_py, uuid_from_py, uuid_to_py};
use crate::errors::IntoPyResult;
use crate::event::StoredEvent;
use crate::service_stats::ServiceStats;
use crate::store::StoreHandle;

/// Keeps a service's raised events until the broker acknowledges them.
///
/// Open one with :meth:`open_memory` (level 1), :meth:`open_file` (level 2,
/// a crash-safe journal file) or :meth:`open_custom` (level 2 kept by a
/// Python object). Drain the backlog in storage mode with :meth:`peek` /
/// :meth:`ack`; once :meth:`peek` returns None the store is in cache mode,
/// served per name by :meth:`peek_name` / :meth:`ack_name`. A
/// :class:`ServiceController` runs this whole delivery protocol over a
/// store.
///
/// A store may be shared between threads. Use it as a context manager, or
/// call :meth:`close`; any later call raises :class:`StoreClosedError`.
#[pyclass(frozen, module = "softnet_persistence", name = "ServiceStore")]
pub struct PyServiceStore {
    store: StoreHandle<core::ServiceStore>,
}

impl PyServiceStore {
    fn new(store: core::ServiceStore, detach: bool) -> PyServiceStore {
        PyServiceStore {
            store: StoreHandle::new(store, detach),
        }
    }

    /// The core store with its closed flag (for `ServiceController`).
    pub(crate) fn core_handle(&self) -> &StoreHandle<core::ServiceStore> {
        &self.store
    }
}

#[pymethods]
impl PyServiceStore {
    /// Opens a level-1 (memory) store: it survives a network outage, not a
    /// restart. ``capacity`` is in bytes of stored records (0 means 16 KiB;
    /// smaller values are raised to 4 KiB). ``overflow`` is "drop_oldest"
    /// (default: the oldest pending events make room, reported) or
    /// "reject_new" (:class:`StorageFullError`). ``on_failure(kind,
    /// message, events_lost)`` receives every failure report. ``max_age``:
    /// seconds; a pending event raised longer ago is dropped when it would
    /// next be delivered, reported as EXPIRED (None, the default: no limit;
    /// an event whose raise time is unknown, from a clock not yet set, or
    /// ahead of the clock now never expires).
    #[staticmethod]
    #[pyo3(
        signature = (capacity = 16 * 1024, overflow = Cow::Borrowed("drop_oldest"), on_failure = None, *, max_age = None),
        text_signature = "(capacity=16384, overflow='drop_oldest', on_failure=None, *, max_age=None)"
    )]
    fn open_memory(
        py: Python<'_>,
        capacity: i64,
        overflow: Cow<'_, str>,
        on_failure: Option<Py<PyAny>>,
        max_age: Option<f64>,
    ) -> PyResult<PyServiceStore> {
        let on_failure = failure_callback(py, on_failure)?;
        let mut options =
            convert::service_options(0, capacity, &overflow, on_failure).into_py_result(py)?;
        options.max_age = convert::max_age(max_age).into_py_result(py)?;
        let store = core::ServiceStore::open_memory(&options).into_py_result(py)?;
        Ok(PyServiceStore::new(store, false))
    }

    /// Opens a level-2 store in the journal file
    /// ``softnet.service.persistence_<service_uid>.ssp`` in ``directory``
    /// (which must exist).
    ///
    /// ``capacity``: level-2 bytes (0 means 1 MiB; at least 8 KiB).
    /// ``memory_capacity``: level-1 bytes used if the file fails (0 means
    /// 16 KiB). ``durability``: "sync" (every call is on the device when it
    /// returns; survives power loss), "batch" (sync after
    /// ``batch_max_ops`` operations or ``batch_max_delay`` seconds, checked
    /// on each call and by :meth:`flush`) or "none" (survives a process
    /// crash, not a power cut). ``overflow``, ``on_failure`` and
    /// ``max_age`` as in :meth:`open_memory`.
    ///
    /// A damaged or foreign file is set aside and reported, not raised; if
    /// the file cannot be opened the store runs at level 1 (reported), or
    /// with ``strict=True`` :class:`PersistenceIOError` (naming the fix).
    /// Raises :class:`StoreLockedError` if another store has the file, and
    /// :class:`InvalidArgumentError` for bad options.
    #[staticmethod]
    #[pyo3(signature = (
        directory,
        service_uid,
        capacity = 1 << 20,
        memory_capacity = 16 * 1024,
        durability = Cow::Borrowed("sync"),
        overflow = Cow::Borrowed("drop_oldest"),
        on_failure = None,
        *,
        batch_max_ops = 64,
        batch_max_delay = 0.1,
        strict = false,
        max_age = None,
    ),
    text_signature = "(directory, service_uid, capacity=1048576, memory_capacity=16384, \
                      durability='sync', overflow='drop_oldest', on_failure=None, *, \
                      batch_max_ops=64, batch_max_delay=0.1, strict=False, max_age=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn open_file(
        py: Python<'_>,
        directory: PathBuf,
        service_uid: &Bound<'_, PyAny>,
        capacity: i64,
        memory_capacity: i64,
        durability: Cow<'_, str>,
        overflow: Cow<'_, str>,
        on_failure: Option<Py<PyAny>>,
        batch_max_ops: u32,
        batch_max_delay: f64,
        strict: bool,
        max_age: Option<f64>,
    ) -> PyResult<PyServiceStore> {
        let on_failure = failure_callback(py, on_failure)?;
        let service_uid = uuid_from_py(service_uid)?;
        let mut options =
            convert::service_options(capacity, memory_capacity, &overflow, on_failure)
                .into_py_result(py)?;
        options.durability =
            convert::durability(&durability, batch_max_ops, batch_max_delay).into_py_result(py)?;
        options.open_policy = convert::open_policy(strict);
        options.max_age = convert::max_age(max_age).into_py_result(py)?;
        let store = py
            .detach(|| core::ServiceStore::open_file(&directory, service_uid, &options))
            .into_py_result(py)?;
        Ok(PyServiceStore::new(store, true))
    }

    /// Opens a level-2 store kept by ``backend``, any object with the
    /// methods of :class:`RecordLogBackend` (append, remove, read, scan,
    /// commit, flush, clear, metadata, set_metadata).
    ///
    /// An exception raised by a backend method (or a wrong return type) is
    /// a failure of level 2: the store moves the events it can still read
    /// to level 1 (``memory_capacity`` bytes), reports it to ``on_failure``
    /// and goes on; the caller's call succeeds. ``capacity``, ``overflow``,
    /// ``on_failure`` and ``max_age`` as in :meth:`open_file`.
    #[staticmethod]
    #[pyo3(signature = (
        backend,
        memory_capacity = 16 * 1024,
        on_failure = None,
        capacity = 1 << 20,
        overflow = Cow::Borrowed("drop_oldest"),
        *,
        max_age = None,
    ),
    text_signature = "(backend, memory_capacity=16384, on_failure=None, capacity=1048576, \
                      overflow='drop_oldest', *, max_age=None)"
    )]
    fn open_custom(
        py: Python<'_>,
        backend: &Bound<'_, PyAny>,
        memory_capacity: i64,
        on_failure: Option<Py<PyAny>>,
        capacity: i64,
        overflow: Cow<'_, str>,
        max_age: Option<f64>,
    ) -> PyResult<PyServiceStore> {
        let on_failure = failure_callback(py, on_failure)?;
        check_methods(backend, RECORD_LOG_METHODS, "service").into_py_result(py)?;
        let mut options =
            convert::service_options(capacity, memory_capacity, &overflow, on_failure)
                .into_py_result(py)?;
        options.max_age = convert::max_age(max_age).into_py_result(py)?;
        let log = Box::new(PyRecordLog::new(backend.clone().unbind()));
        let store = py
            .detach(|| core::ServiceStore::open_custom(log, &options))
            .into_py_result(py)?;
        Ok(PyServiceStore::new(store, true))
    }

    /// Stores an event and returns its uid (:class:`uuid.UUID`).
    ///
    /// ``kind``: an :class:`EventKind`. ``name``: 1..256 characters,
    /// starting with an ASCII letter. ``args``: 0..2048 bytes (none for
    /// REPLACING_NULL). ``client_id``: the target client, required for
    /// PRIVATE events and refused for the others. ``uid``: the event's uid
    /// if the caller already made one (default: a new random one).
    ///
    /// Raises :class:`InvalidArgumentError` for a broken rule,
    /// :class:`StorageFullError` when full under "reject_new".
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
        let uid = match uid {
            Some(u) => Some(uuid_from_py(u)?),
            None => None,
        };
        let name: &str = &name;
        let raised = match (client_id, uid) {
            (None, None) => self.store.run(py, |s| s.raise(kind, name, args))?,
            (client_id, None) => {
                // A new uid from the library's fork-safe generator.
                let event = Event::new(kind, name, args, client_id).into_py_result(py)?;
                self.store.run(py, |s| s.raise_event(&event))?
            }
            (client_id, Some(uid)) => {
                let event = Event {
                    uid,
                    ..Event::new(kind, name, args, client_id).into_py_result(py)?
                };
                self.store.run(py, |s| s.raise_event(&event))?
            }
        };
        uuid_to_py(py, raised)
    }

    /// Storage mode: the oldest pending event (the same one until it is
    /// acknowledged), or None when nothing is pending; the store is then in
    /// cache mode. Raises :class:`InvalidStateError` in cache mode.
    fn peek(&self, py: Python<'_>) -> PyResult<Option<StoredEvent>> {
        let event = self.store.run(py, |s| s.peek())?;
        StoredEvent::from_option(py, event)
    }

    /// Storage mode: removes the oldest pending event if ``uid`` is its
    /// uid. Raises :class:`InvalidStateError` for any other uid (a late or
    /// repeated ack) and in cache mode.
    fn ack(&self, py: Python<'_>, uid: &Bound<'_, PyAny>) -> PyResult<()> {
        let uid = uuid_from_py(uid)?;
        self.store.run(py, |s| s.ack(uid))
    }

    /// Cache mode: the oldest pending event of this kind and name (now in
    /// flight), or None. Raises :class:`InvalidStateError` in storage mode.
    fn peek_name(
        &self,
        py: Python<'_>,
        kind: &Bound<'_, PyAny>,
        name: PyBackedStr,
    ) -> PyResult<Option<StoredEvent>> {
        let kind = event_kind_from_py(kind)?;
        let name: &str = &name;
        let event = self.store.run(py, |s| s.peek_name(kind, name))?;
        StoredEvent::from_option(py, event)
    }

    /// Cache mode: removes this name's event in flight if ``uid`` matches
    /// and returns the name's next event (now in flight), or None. Raises
    /// :class:`InvalidStateError` for another uid and in storage mode.
    fn ack_name(
        &self,
        py: Python<'_>,
        kind: &Bound<'_, PyAny>,
        name: PyBackedStr,
        uid: &Bound<'_, PyAny>,
    ) -> PyResult<Option<StoredEvent>> {
        let kind = event_kind_from_py(kind)?;
        let uid = uuid_from_py(uid)?;
        let name: &str = &name;
        let event = self.store.run(py, |s| s.ack_name(kind, name, uid))?;
        StoredEvent::from_option(py, event)
    }

    /// Every pending event in raise order, changing nothing (diagnostics;
    /// it reads every record).
    fn pending(&self, py: Python<'_>) -> PyResult<Vec<StoredEvent>> {
        let events = self.store.run(py, |s| s.pending())?;
        events
            .into_iter()
            .map(|e| StoredEvent::new(py, e))
            .collect()
    }

    /// Back to storage mode (call it when the endpoint disconnects);
    /// nothing is in flight afterwards.
    fn set_storage_mode(&self, py: Python<'_>) -> PyResult<()> {
        self.store.run(py, |s| s.set_storage_mode())
    }

    /// The delivery mode: "storage" or "cache".
    #[getter]
    fn mode(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.store.read(py, |s| convert::mode_name(s.mode()))
    }

    /// The storage uid (:class:`uuid.UUID`) the broker's duplicate
    /// detection is tied to.
    #[getter]
    fn storage_uid(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let uid = self.store.read(py, |s| s.storage_uid())?;
        uuid_to_py(py, uid)
    }

    /// The storage uid (:class:`uuid.UUID`) the store had before a level-2
    /// failure moved it to level 1 with a new one, or ``None``. When going
    /// online, a broker that remembers this uid knows the delivery state of
    /// the moved events: invalidate nothing, and send it the new uid.
    #[getter]
    fn previous_storage_uid(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.store.read(py, |s| s.previous_storage_uid())? {
            Some(uid) => Ok(Some(uuid_to_py(py, uid)?)),
            None => Ok(None),
        }
    }

    /// The persistence level: 2 (file or custom backend), or 1 (memory,
    /// also after a level-2 failure).
    #[getter]
    fn level(&self, py: Python<'_>) -> PyResult<u8> {
        self.store.read(py, |s| s.level().number())
    }

    /// The journal file (:class:`pathlib.Path`) while at level 2 on a file,
    /// else None.
    #[getter]
    fn journal_path(&self, py: Python<'_>) -> PyResult<Option<PathBuf>> {
        self.store.read(py, |s| s.journal_path())
    }

    /// True once :meth:`close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Discards the events that were pending when the store was opened
    /// ("ancient data": the broker remembers another storage uid) and keeps
    /// those raised since. Returns how many were discarded.
    fn invalidate_ancient(&self, py: Python<'_>) -> PyResult<u64> {
        self.store.run(py, |s| s.invalidate_ancient())
    }

    /// Discards every pending event; keeps the storage uid.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.store.run(py, |s| s.reset())
    }

    /// Forces everything written so far to the device, whatever the
    /// durability.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.store.run(py, |s| s.flush())
    }

    /// State and counters (:class:`ServiceStats`).
    fn stats(&self, py: Python<'_>) -> PyResult<ServiceStats> {
        let stats = self.store.read(py, |s| s.stats())?;
        ServiceStats::new(py, &stats)
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
            return Ok("<ServiceStore closed>".to_owned());
        }
        let (stats, path) = self.store.run(py, |s| Ok((s.stats(), s.journal_path())))?;
        let at = match path {
            Some(p) => format!(" journal='{}'", p.display()),
            None => String::new(),
        };
        Ok(format!(
            "<ServiceStore level={} mode='{}' pending_events={}{at}>",
            stats.level.number(),
            convert::mode_name(stats.mode),
            stats.pending_events,
        ))
    }
}

/// Adds the service classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyServiceStore>()?;
    m.add_class::<ServiceStats>()?;
    m.add_class::<StoredEvent>()?;
    Ok(())
}

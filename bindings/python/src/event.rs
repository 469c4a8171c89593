//! `StoredEvent`: a pending event as `peek` returns it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use softnet_persistence::Event;

use crate::convert::{event_kind_to_py, uuid_to_py};

/// A pending event as the store returns it from ``peek``, ``peek_name``,
/// ``ack_name`` and ``pending``.
///
/// Attributes: ``kind`` (:class:`EventKind`), ``name`` (str), ``args``
/// (bytes), ``client_id`` (int for a PRIVATE event, else None) and ``uid``
/// (:class:`uuid.UUID`, what ``ack`` takes), ``seq`` (int: its sequence
/// number in the store) and ``raised_at_ms`` (int, ms since the Unix epoch,
/// or None when unknown). Immutable; two events are equal when they are the
/// same event: the same uid, kind, name, arguments and client id (``seq``
/// and ``raised_at_ms`` say where and when it was stored, and are not
/// compared).
#[pyclass(frozen, module = "softnet_persistence", name = "StoredEvent")]
pub struct StoredEvent {
    event: Event,
    kind: Py<PyAny>,
    name: Py<PyString>,
    args: Py<PyBytes>,
    uid: Py<PyAny>,
}

impl StoredEvent {
    /// Converts a core event (each attribute is built once, here).
    pub fn new(py: Python<'_>, event: Event) -> PyResult<StoredEvent> {
        Ok(StoredEvent {
            kind: event_kind_to_py(py, event.kind)?,
            name: PyString::new(py, &event.name).unbind(),
            args: PyBytes::new(py, &event.args).unbind(),
            uid: uuid_to_py(py, event.uid)?,
            event,
        })
    }

    /// `None` stays `None`.
    pub fn from_option(py: Python<'_>, event: Option<Event>) -> PyResult<Option<StoredEvent>> {
        event.map(|e| StoredEvent::new(py, e)).transpose()
    }
}

#[pymethods]
impl StoredEvent {
    /// The event kind (an :class:`EventKind`).
    #[getter]
    fn kind(&self, py: Python<'_>) -> Py<PyAny> {
        self.kind.clone_ref(py)
    }

    /// The event name.
    #[getter]
    fn name(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// The event arguments: opaque application bytes (empty for
    /// REPLACING_NULL).
    #[getter]
    fn args(&self, py: Python<'_>) -> Py<PyBytes> {
        self.args.clone_ref(py)
    }

    /// The target client of a PRIVATE event; None for the other kinds.
    #[getter]
    fn client_id(&self) -> Option<i64> {
        self.event.client_id
    }

    /// The event's uid (:class:`uuid.UUID`): pass it to ``ack``/``ack_name``.
    #[getter]
    fn uid(&self, py: Python<'_>) -> Py<PyAny> {
        self.uid.clone_ref(py)
    }

    /// Its sequence number in the store: greater than that of every event
    /// raised before it into the same store, kept across restarts and a
    /// fallback to level 1.
    #[getter]
    fn seq(&self) -> u64 {
        self.event.seq
    }

    /// When it was raised: wall clock, milliseconds since the Unix epoch;
    /// None when unknown (stored by a release before raise times).
    #[getter]
    fn raised_at_ms(&self) -> Option<u64> {
        self.event.raised_at_ms
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<StoredEvent>()
            .is_ok_and(|o| o.get().event == self.event)
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.event.uid.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "StoredEvent(kind={}, name={}, args={}, client_id={}, uid={}, seq={}, \
             raised_at_ms={})",
            self.kind.bind(py).repr()?,
            self.name.bind(py).repr()?,
            self.args.bind(py).repr()?,
            match self.event.client_id {
                Some(id) => id.to_string(),
                None => "None".to_owned(),
            },
            self.uid.bind(py).repr()?,
            self.event.seq,
            match self.event.raised_at_ms {
                Some(ms) => ms.to_string(),
                None => "None".to_owned(),
            },
        ))
    }
}

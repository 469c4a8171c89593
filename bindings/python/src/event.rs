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
/// (:class:`uuid.UUID`, what ``ack`` takes). Immutable; two events are equal
/// when every attribute is.
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
            "StoredEvent(kind={}, name={}, args={}, client_id={}, uid={})",
            self.kind.bind(py).repr()?,
            self.name.bind(py).repr()?,
            self.args.bind(py).repr()?,
            match self.event.client_id {
                Some(id) => id.to_string(),
                None => "None".to_owned(),
            },
            self.uid.bind(py).repr()?,
        ))
    }
}

//! `ServiceStats`: what `ServiceStore.stats()` returns.

use pyo3::prelude::*;
use softnet_persistence as core;

use crate::convert::{self, uuid_to_py};

/// A snapshot of a service store's state and counters (from
/// :meth:`ServiceStore.stats`).
#[pyclass(frozen, get_all, module = "softnet_persistence", name = "ServiceStats")]
pub struct ServiceStats {
    /// Current level: 2, or 1 (memory, also after a level-2 failure).
    level: u8,
    /// "storage" or "cache".
    mode: &'static str,
    /// Events stored and not yet acknowledged.
    pending_events: u64,
    /// Bytes of stored records.
    used_bytes: u64,
    /// Capacity of the current level in bytes.
    capacity_bytes: u64,
    /// Events dropped to make room ("drop_oldest").
    dropped_events: u64,
    /// Raises refused as storage full ("reject_new").
    rejected_events: u64,
    /// REPLACING instances superseded by newer ones (not lost: by design).
    superseded_events: u64,
    /// Ancient events discarded by ``invalidate_ancient``.
    invalidated_events: u64,
    /// Events dropped for being older than ``max_age`` (not counted in
    /// ``failures`` or ``events_lost``).
    expired_events: u64,
    /// Failure reports other than capacity drops (fallback, corruption,
    /// interrupted writes).
    failures: u64,
    /// Events lost through those failures.
    events_lost: u64,
    /// The storage uid (:class:`uuid.UUID`).
    storage_uid: Py<PyAny>,
}

impl ServiceStats {
    pub fn new(py: Python<'_>, s: &core::ServiceStats) -> PyResult<ServiceStats> {
        Ok(ServiceStats {
            level: s.level.number(),
            mode: convert::mode_name(s.mode),
            pending_events: s.pending_events,
            used_bytes: s.used_bytes,
            capacity_bytes: s.capacity_bytes,
            dropped_events: s.dropped_events,
            rejected_events: s.rejected_events,
            superseded_events: s.superseded_events,
            invalidated_events: s.invalidated_events,
            expired_events: s.expired_events,
            failures: s.failures,
            events_lost: s.events_lost,
            storage_uid: uuid_to_py(py, s.storage_uid)?,
        })
    }
}

#[pymethods]
impl ServiceStats {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ServiceStats(level={}, mode='{}', pending_events={}, used_bytes={}, \
             capacity_bytes={}, dropped_events={}, rejected_events={}, superseded_events={}, \
             invalidated_events={}, expired_events={}, failures={}, events_lost={}, \
             storage_uid={})",
            self.level,
            self.mode,
            self.pending_events,
            self.used_bytes,
            self.capacity_bytes,
            self.dropped_events,
            self.rejected_events,
            self.superseded_events,
            self.invalidated_events,
            self.expired_events,
            self.failures,
            self.events_lost,
            self.storage_uid.bind(py).repr()?,
        ))
    }
}

//! The failure callback: a Python callable `on_failure(kind, message,
//! events_lost)` behind the core crate's [`FailureCallback`].
//!
//! The store calls it after releasing its lock, on the thread whose call
//! caused the failure, usually with the GIL released; it takes the GIL for
//! the call. An exception inside it is logged with `logging` (logger
//! `"softnet_persistence"`) and goes no further: a report must never turn a
//! store call into a failure.

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use softnet_persistence::{Failure, FailureCallback, FailureKind};

use crate::convert::failure_kind_to_py;
use crate::log::{log_exception, log_message};

/// Wraps an optional Python callable (a store's `on_failure`); refuses one
/// that cannot be called. Without one, every report is logged instead
/// (logger `"softnet_persistence"`: `error` for a fallback to level 1 or a
/// report that lost events, `warning` for the others), so that a store
/// whose events will not survive a restart does not say so to nobody.
pub fn failure_callback(
    py: Python<'_>,
    callable: Option<Py<PyAny>>,
) -> PyResult<Option<FailureCallback>> {
    let Some(callable) = callable else {
        return Ok(Some(Arc::new(|failure: &Failure| {
            let level = if failure.kind == FailureKind::Fallback || failure.events_lost > 0 {
                "error"
            } else {
                "warning"
            };
            // At interpreter shutdown there is nobody left to tell.
            let _ = Python::try_attach(|py| log_message(py, level, &failure.to_string()));
        })));
    };
    if !callable.bind(py).is_callable() {
        return Err(PyTypeError::new_err(
            "on_failure must be a callable (kind, message, events_lost) -> None, or None",
        ));
    }
    Ok(Some(Arc::new(move |failure: &Failure| {
        // At interpreter shutdown there is nobody left to tell.
        let _ = Python::try_attach(|py| deliver(py, callable.bind(py), failure));
    })))
}

fn deliver(py: Python<'_>, callable: &Bound<'_, PyAny>, failure: &Failure) {
    let called = failure_kind_to_py(py, failure.kind)
        .and_then(|kind| callable.call1((kind, failure.message.as_str(), failure.events_lost)));
    if let Err(err) = called {
        log_failure(py, err, callable, failure);
    }
}

/// Logs the callback's exception; if even that fails, `sys.unraisablehook`.
fn log_failure(py: Python<'_>, err: PyErr, callable: &Bound<'_, PyAny>, failure: &Failure) {
    let message = format!(
        "the on_failure callback raised an exception (ignored; the store goes on). The report \
         was: {failure}"
    );
    if log_exception(py, "error", &message, &err).is_err() {
        err.write_unraisable(py, Some(callable));
    }
}

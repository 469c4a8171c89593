//! Logging through Python's `logging` module, logger `"softnet_persistence"`:
//! where the exceptions go that must not propagate (a failure callback's,
//! a custom backend's).

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Logs `message` at `level` ("error", "warning"...).
pub fn log_message(py: Python<'_>, level: &str, message: &str) -> PyResult<()> {
    py.import("logging")?
        .call_method1("getLogger", ("softnet_persistence",))?
        .call_method1(level, ("%s", message))?;
    Ok(())
}

/// Logs `message` at `level` ("error", "warning"...) with `err`'s traceback.
pub fn log_exception(py: Python<'_>, level: &str, message: &str, err: &PyErr) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .call_method1("getLogger", ("softnet_persistence",))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("exc_info", err.value(py))?;
    logger.call_method(level, ("%s", message), Some(&kwargs))?;
    Ok(())
}

//! Custom level-2 backends written in Python: any object with the methods of
//! [`RecordLog`] (service) or [`IdStore`] (client) keeps the bytes, and the
//! core crate keeps every rule.
//!
//! The store calls a backend one call at a time, under its own lock and with
//! the GIL released (every store call on a custom store detaches first, so
//! no thread ever waits for the store's lock while holding the GIL); each
//! method call here takes the GIL for the call. A Python exception, or a
//! return value of the wrong type, becomes [`Error::Backend`]: the store
//! falls back to level 1 and reports it. The exception is also logged with
//! its traceback (logger `"softnet_persistence"`, level WARNING), and never
//! propagates to the caller of the store.

use pyo3::call::PyCallArgs;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyDict, PyString};
use softnet_persistence::{Error, IdStore, RecordLog, Removal, Result};

use crate::log::log_exception;

/// The methods a service backend must have.
pub const RECORD_LOG_METHODS: &[&str] = &[
    "append",
    "remove",
    "read",
    "scan",
    "commit",
    "flush",
    "clear",
    "metadata",
    "set_metadata",
];

/// The methods a client backend must have.
pub const ID_STORE_METHODS: &[&str] = &["load", "put", "clear", "flush"];

/// Refuses an object that lacks one of `methods`, naming every missing one.
pub fn check_methods(obj: &Bound<'_, PyAny>, methods: &[&str], what: &str) -> Result<()> {
    let missing: Vec<&str> = methods
        .iter()
        .copied()
        .filter(|m| !obj.getattr(*m).map(|a| a.is_callable()).unwrap_or(false))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    Err(Error::InvalidArgument(format!(
        "a custom {what} backend needs the method(s) {}; {type_name} lacks {}",
        methods.join(", "),
        missing.join(", ")
    )))
}

/// Turns what a backend method raised into a backend error, and logs it.
fn failed(py: Python<'_>, method: &str, err: PyErr) -> Error {
    let type_name = err
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "exception".to_owned());
    let text = err
        .value(py)
        .str()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let message = format!("{method}() raised {type_name}: {text}");
    // The report says what failed; the log keeps the traceback. A logging
    // failure must not turn the backend failure into another one.
    let _ = log_exception(
        py,
        "warning",
        &format!("custom backend method {method}() raised; the store falls back to level 1"),
        &err,
    );
    Error::Backend(message)
}

fn wrong_type(py: Python<'_>, method: &str, expected: &str, got: &Bound<'_, PyAny>) -> Error {
    let got = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    failed(
        py,
        method,
        PyTypeError::new_err(format!("{method}() must return {expected}, not {got}")),
    )
}

fn removal_name(why: Removal) -> &'static str {
    match why {
        Removal::Acknowledged => "acknowledged",
        Removal::Superseded => "superseded",
        Removal::Dropped => "dropped",
        Removal::Invalidated => "invalidated",
        Removal::Expired => "expired",
        _ => "removed",
    }
}

/// Calls `obj.method(*args)`; an exception is a backend failure.
fn call<'py>(
    obj: &Bound<'py, PyAny>,
    method: &str,
    args: impl PyCallArgs<'py>,
) -> Result<Bound<'py, PyAny>> {
    obj.call_method1(method, args)
        .map_err(|e| failed(obj.py(), method, e))
}

/// Calls a method whose return value does not matter.
fn call_unit(obj: &Py<PyAny>, method: &str) -> Result<()> {
    Python::attach(|py| call(obj.bind(py), method, ()).map(drop))
}

/// Calls a method that must return bytes.
fn call_bytes<'py>(
    obj: &Bound<'py, PyAny>,
    method: &str,
    args: impl PyCallArgs<'py>,
) -> Result<PyBackedBytes> {
    let value = call(obj, method, args)?;
    value
        .extract::<PyBackedBytes>()
        .map_err(|_| wrong_type(obj.py(), method, "bytes", &value))
}

/// A Python object used as a service store's level 2.
pub struct PyRecordLog {
    obj: Py<PyAny>,
}

impl PyRecordLog {
    /// Wraps `obj` (check it with [`check_methods`] first).
    pub fn new(obj: Py<PyAny>) -> PyRecordLog {
        PyRecordLog { obj }
    }
}

impl RecordLog for PyRecordLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        Python::attach(|py| {
            let value = call(self.obj.bind(py), "append", (PyBytes::new(py, payload),))?;
            value
                .extract::<u64>()
                .map_err(|_| wrong_type(py, "append", "an int >= 0 (the sequence number)", &value))
        })
    }

    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        Python::attach(|py| {
            let reason = PyString::new(py, removal_name(why));
            call(self.obj.bind(py), "remove", (seq, reason)).map(drop)
        })
    }

    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        Python::attach(|py| {
            let bytes = call_bytes(self.obj.bind(py), "read", (seq,))?;
            out.clear();
            out.extend_from_slice(&bytes);
            Ok(())
        })
    }

    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        Python::attach(|py| {
            let records = call(self.obj.bind(py), "scan", ())?
                .try_iter()
                .map_err(|e| failed(py, "scan", e))?;
            for record in records {
                let record = record.map_err(|e| failed(py, "scan", e))?;
                let (seq, payload) = record
                    .extract::<(u64, PyBackedBytes)>()
                    .map_err(|_| wrong_type(py, "scan", "an iterable of (int, bytes)", &record))?;
                visit(seq, &payload)?;
            }
            Ok(())
        })
    }

    fn commit(&mut self) -> Result<()> {
        call_unit(&self.obj, "commit")
    }

    fn flush(&mut self) -> Result<()> {
        call_unit(&self.obj, "flush")
    }

    fn clear(&mut self) -> Result<()> {
        call_unit(&self.obj, "clear")
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        Python::attach(|py| Ok(call_bytes(self.obj.bind(py), "metadata", ())?.to_vec()))
    }

    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        Python::attach(|py| {
            call(self.obj.bind(py), "set_metadata", (PyBytes::new(py, meta),)).map(drop)
        })
    }
}

/// A Python object used as a client store's level 2.
pub struct PyIdStore {
    obj: Py<PyAny>,
}

impl PyIdStore {
    /// Wraps `obj` (check it with [`check_methods`] first).
    pub fn new(obj: Py<PyAny>) -> PyIdStore {
        PyIdStore { obj }
    }
}

impl IdStore for PyIdStore {
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()> {
        Python::attach(|py| {
            let mut pairs = call(self.obj.bind(py), "load", ())?;
            // A dict is accepted as well as an iterable of pairs.
            if let Ok(dict) = pairs.cast::<PyDict>() {
                pairs = dict.items().into_any();
            }
            let pairs = pairs.try_iter().map_err(|e| failed(py, "load", e))?;
            for pair in pairs {
                let pair = pair.map_err(|e| failed(py, "load", e))?;
                let (name, id) = pair
                    .extract::<(PyBackedStr, i64)>()
                    .map_err(|_| wrong_type(py, "load", "an iterable of (str, int)", &pair))?;
                visit(&name, id);
            }
            Ok(())
        })
    }

    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        Python::attach(|py| call(self.obj.bind(py), "put", (name, id)).map(drop))
    }

    fn clear(&mut self) -> Result<()> {
        call_unit(&self.obj, "clear")
    }

    fn flush(&mut self) -> Result<()> {
        call_unit(&self.obj, "flush")
    }
}

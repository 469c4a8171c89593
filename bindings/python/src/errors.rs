//! The exception hierarchy, and the one place where the core crate's
//! [`ErrorKind`] becomes a Python exception.
//!
//! ```text
//! PersistenceError(Exception)
//! ├── PersistenceIOError(PersistenceError, OSError)     ErrorKind::Io
//! ├── PersistenceFormatError                            ErrorKind::Format
//! ├── StorageFullError                                  ErrorKind::StorageFull
//! ├── StoreLockedError                                  ErrorKind::Locked
//! ├── InvalidStateError                                 ErrorKind::State
//! ├── InvalidArgumentError(PersistenceError, ValueError) ErrorKind::InvalidArgument
//! ├── StoreClosedError                                  ErrorKind::Closed
//! └── BackendError                                      ErrorKind::Backend
//! ```
//!
//! The message is the core error's detail: what happened, to which file and
//! what to do, without the category its `Display` text starts with
//! ("invalid argument: ..."), which the exception's class already says.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use softnet_persistence::{Error, ErrorKind};

create_exception!(
    softnet_persistence,
    PersistenceError,
    PyException,
    "Base class of every error raised by softnet_persistence."
);
create_exception!(
    softnet_persistence,
    PersistenceFormatError,
    PersistenceError,
    "Stored data is corrupt, truncated or belongs to something else."
);
create_exception!(
    softnet_persistence,
    StorageFullError,
    PersistenceError,
    "The event does not fit and the store's overflow policy is \"reject_new\"."
);
create_exception!(
    softnet_persistence,
    StoreLockedError,
    PersistenceError,
    "Another process or store holds the file; only one writer may open it."
);
create_exception!(
    softnet_persistence,
    InvalidStateError,
    PersistenceError,
    "The call is not valid in the store's current state (wrong mode, or an ack \
     whose uid is not the event in flight)."
);
create_exception!(
    softnet_persistence,
    StoreClosedError,
    PersistenceError,
    "The store was closed; open a new one."
);
create_exception!(
    softnet_persistence,
    BackendError,
    PersistenceError,
    "A custom backend failed in a way the store could not absorb by falling back \
     to level 1."
);

const IO_ERROR_DOC: &str = "The operating system refused a file operation. Also an OSError: \
                            `errno` is set when the system gave one.";
const INVALID_ARGUMENT_DOC: &str = "An argument broke a documented rule (event name, argument \
                                    size, capacity, option value). Also a ValueError.";

static IO_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INVALID_ARGUMENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `class <name>(PersistenceError, <second>)`: `create_exception!` takes one
/// base, so the two exceptions that are also builtin ones are made with
/// `type()`.
fn two_bases<'py>(
    py: Python<'py>,
    name: &str,
    doc: &str,
    second: Bound<'py, PyType>,
) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(py, [py.get_type::<PersistenceError>(), second])?;
    let namespace = PyDict::new(py);
    namespace.set_item("__doc__", doc)?;
    namespace.set_item("__module__", "softnet_persistence")?;
    let class = py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?;
    Ok(class.unbind())
}

/// `PersistenceIOError`, also an `OSError`.
pub fn io_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    IO_ERROR
        .get_or_try_init(py, || {
            two_bases(
                py,
                "PersistenceIOError",
                IO_ERROR_DOC,
                py.get_type::<PyOSError>(),
            )
        })
        .map(|t| t.bind(py))
}

/// `InvalidArgumentError`, also a `ValueError`.
pub fn invalid_argument_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_ARGUMENT
        .get_or_try_init(py, || {
            two_bases(
                py,
                "InvalidArgumentError",
                INVALID_ARGUMENT_DOC,
                py.get_type::<PyValueError>(),
            )
        })
        .map(|t| t.bind(py))
}

/// The exception for a core error: the one mapping of [`ErrorKind`].
pub fn to_py_err(py: Python<'_>, err: Error) -> PyErr {
    let message = err.detail();
    match err.kind() {
        ErrorKind::Io => {
            let errno = match &err {
                Error::Io { source, .. } => source.raw_os_error(),
                _ => None,
            };
            instance(io_error_type(py), message, errno)
        }
        ErrorKind::InvalidArgument => instance(invalid_argument_type(py), message, None),
        ErrorKind::Format => PersistenceFormatError::new_err(message),
        ErrorKind::StorageFull => StorageFullError::new_err(message),
        ErrorKind::Locked => StoreLockedError::new_err(message),
        ErrorKind::State => InvalidStateError::new_err(message),
        ErrorKind::Closed => StoreClosedError::new_err(message),
        ErrorKind::Backend => BackendError::new_err(message),
        _ => PersistenceError::new_err(message),
    }
}

/// An instance of a `type()`-made class. `errno` goes into `OSError.errno`
/// only (setting `strerror` would make `str()` drop the file name).
fn instance(class: PyResult<&Bound<'_, PyType>>, message: String, errno: Option<i32>) -> PyErr {
    let made = class.and_then(|class| {
        let exc = class.call1((message.as_str(),))?;
        if let Some(errno) = errno {
            exc.setattr("errno", errno)?;
        }
        Ok(exc)
    });
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(_) => PersistenceError::new_err(message),
    }
}

/// Converts the core crate's results at the Python boundary.
pub trait IntoPyResult<T> {
    /// The value, or the mapped exception.
    fn into_py_result(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn into_py_result(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, e))
    }
}

/// Raises the exception that an error of `kind` maps to, with `message`
/// (tests use it to check the mapping of kinds no public call can produce
/// on demand, such as an I/O error).
#[pyfunction]
#[pyo3(signature = (kind, message = "test"))]
fn _raise_error_kind(py: Python<'_>, kind: &str, message: &str) -> PyResult<()> {
    let err = match kind {
        "invalid_argument" => Error::InvalidArgument(message.to_owned()),
        "io" => Error::Io {
            context: message.to_owned(),
            source: std::io::Error::from_raw_os_error(EIO),
        },
        "format" => Error::Format(message.to_owned()),
        "storage_full" => Error::StorageFull {
            needed: 100,
            available: 10,
            capacity: 4096,
        },
        "locked" => Error::Locked {
            path: message.into(),
        },
        "state" => Error::State(message.to_owned()),
        "closed" => Error::Closed,
        "backend" => Error::Backend(message.to_owned()),
        other => Error::InvalidArgument(format!("unknown error kind {other:?}")),
    };
    Err(to_py_err(py, err))
}

/// `EIO` on every Unix the crate supports.
const EIO: i32 = 5;

/// Adds the exception classes (and the test hook) to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PersistenceError", py.get_type::<PersistenceError>())?;
    m.add("PersistenceIOError", io_error_type(py)?)?;
    m.add(
        "PersistenceFormatError",
        py.get_type::<PersistenceFormatError>(),
    )?;
    m.add("StorageFullError", py.get_type::<StorageFullError>())?;
    m.add("StoreLockedError", py.get_type::<StoreLockedError>())?;
    m.add("InvalidStateError", py.get_type::<InvalidStateError>())?;
    m.add("InvalidArgumentError", invalid_argument_type(py)?)?;
    m.add("StoreClosedError", py.get_type::<StoreClosedError>())?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add_function(wrap_pyfunction!(_raise_error_kind, m)?)?;
    Ok(())
}

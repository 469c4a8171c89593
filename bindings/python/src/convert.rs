//! Conversions between Python values and the core crate's types: uuids,
//! event kinds, failure kinds, and the option strings of the `open_*`
//! functions. Every argument that names a choice is a short string
//! (`durability="sync"`) so the Python API reads like its documentation.

use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};
use softnet_persistence::{
    ClientDecision, Durability, Error, EventKind, FailureKind, Mode, Overflow, Uuid,
};

/// `uuid.UUID` and what building one quickly takes.
struct UuidParts {
    ty: Py<PyType>,
    /// `object.__new__`: makes an empty `UUID` without running `__init__`.
    new: Py<PyAny>,
    /// `object.__setattr__`: `UUID` forbids `setattr` on purpose.
    set: Py<PyAny>,
    /// `uuid.SafeUUID.unknown`, what `UUID(int=...)` stores in `is_safe`.
    unknown: Py<PyAny>,
}

static UUID_PARTS: PyOnceLock<UuidParts> = PyOnceLock::new();

fn uuid_parts(py: Python<'_>) -> PyResult<&UuidParts> {
    UUID_PARTS.get_or_try_init(py, || {
        let uuid = py.import("uuid")?;
        let object = py.get_type::<pyo3::types::PyAny>();
        Ok(UuidParts {
            ty: uuid.getattr("UUID")?.cast_into::<PyType>()?.unbind(),
            new: object.getattr("__new__")?.unbind(),
            set: object.getattr("__setattr__")?.unbind(),
            unknown: uuid.getattr("SafeUUID")?.getattr("unknown")?.unbind(),
        })
    })
}

/// A `uuid.UUID` equal to `UUID(int=uid.as_u128())`.
///
/// `UUID.__init__` parses and checks its arguments in Python (about 0.5 µs);
/// a peek and an ack each need one, so this fills the two slots `UUID`
/// declares (`int`, `is_safe`) directly, which is what `__init__` ends with,
/// and falls back to the constructor if that ever stops working.
pub fn uuid_to_py(py: Python<'_>, uid: Uuid) -> PyResult<Py<PyAny>> {
    let parts = uuid_parts(py)?;
    let ty = parts.ty.bind(py);
    let value = uid.as_u128();
    let fast = || -> PyResult<Bound<'_, PyAny>> {
        let obj = parts.new.bind(py).call1((ty,))?;
        let set = parts.set.bind(py);
        set.call1((&obj, pyo3::intern!(py, "int"), value))?;
        set.call1((&obj, pyo3::intern!(py, "is_safe"), parts.unknown.bind(py)))?;
        Ok(obj)
    };
    match fast() {
        Ok(obj) => Ok(obj.unbind()),
        Err(_) => {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("int", value)?;
            Ok(ty.call((), Some(&kwargs))?.unbind())
        }
    }
}

/// A uid argument: a `uuid.UUID`, or its text form.
pub fn uuid_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Uuid> {
    let py = obj.py();
    let parts = uuid_parts(py)?;
    if obj.is_instance(parts.ty.bind(py))? {
        let value: u128 = obj.getattr(pyo3::intern!(py, "int"))?.extract()?;
        return Ok(Uuid::from_u128(value));
    }
    if let Ok(text) = obj.cast::<PyString>() {
        let text = text.to_cow()?;
        return Uuid::parse_str(&text).map_err(|e| {
            crate::errors::to_py_err(
                py,
                Error::InvalidArgument(format!("'{text}' is not a uuid: {e}")),
            )
        });
    }
    Err(PyTypeError::new_err(format!(
        "expected a uuid.UUID (or its text form), got {}",
        obj.get_type().name()?
    )))
}

/// `EventKind` members by wire code (index 0 unused), `FailureKind` and
/// `Decision` members by stable code, from the pure-Python `_enums` module.
struct Enums {
    event_kinds: Vec<Option<Py<PyAny>>>,
    failure_kinds: Vec<Option<Py<PyAny>>>,
    decisions: Vec<Option<Py<PyAny>>>,
}

static ENUMS: PyOnceLock<Enums> = PyOnceLock::new();

fn members(py: Python<'_>, class: &str, codes: &[u8]) -> PyResult<Vec<Option<Py<PyAny>>>> {
    let class = py.import("softnet_persistence._enums")?.getattr(class)?;
    let len = usize::from(codes.iter().copied().max().unwrap_or(0)) + 1;
    let mut out: Vec<Option<Py<PyAny>>> = (0..len).map(|_| None).collect();
    for &code in codes {
        out[usize::from(code)] = Some(class.call1((code,))?.unbind());
    }
    Ok(out)
}

fn enums(py: Python<'_>) -> PyResult<&Enums> {
    ENUMS.get_or_try_init(py, || {
        Ok(Enums {
            event_kinds: members(py, "EventKind", &[1, 2, 4, 5])?,
            failure_kinds: members(py, "FailureKind", &[1, 2, 3, 4, 5, 6])?,
            decisions: members(py, "Decision", &[0, 1])?,
        })
    })
}

/// The `EventKind` member for a kind.
pub fn event_kind_to_py(py: Python<'_>, kind: EventKind) -> PyResult<Py<PyAny>> {
    let code = kind.code();
    match enums(py)?.event_kinds.get(usize::from(code)) {
        Some(Some(member)) => Ok(member.clone_ref(py)),
        _ => Ok(code.into_pyobject(py)?.into_any().unbind()),
    }
}

/// The `FailureKind` member for a failure kind (a plain int for a kind this
/// module does not know yet).
pub fn failure_kind_to_py(py: Python<'_>, kind: FailureKind) -> PyResult<Py<PyAny>> {
    let code = kind.code();
    let known = usize::try_from(code)
        .ok()
        .and_then(|i| enums(py).ok()?.failure_kinds.get(i)?.as_ref())
        .map(|member| member.clone_ref(py));
    match known {
        Some(member) => Ok(member),
        None => Ok(code.into_pyobject(py)?.into_any().unbind()),
    }
}

/// The `Decision` member for a client controller's decision (the codes of
/// the C ABI's `SNP_DECISION_*`).
pub fn decision_to_py(py: Python<'_>, decision: ClientDecision) -> PyResult<Py<PyAny>> {
    let code: usize = match decision {
        ClientDecision::Handle => 0,
        ClientDecision::AckDuplicate => 1,
    };
    match enums(py)?.decisions.get(code) {
        Some(Some(member)) => Ok(member.clone_ref(py)),
        _ => Ok(code.into_pyobject(py)?.into_any().unbind()),
    }
}

/// An event kind argument: an `EventKind` or its int code. Any other int
/// is an invalid argument; a non-int is a `TypeError`.
pub fn event_kind_from_py(obj: &Bound<'_, PyAny>) -> PyResult<EventKind> {
    let code = match obj.extract::<i64>() {
        Ok(code) => Some(code),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => None,
        Err(e) => return Err(e),
    };
    code.and_then(|c| u8::try_from(c).ok())
        .and_then(EventKind::from_code)
        .ok_or_else(|| {
            let shown = obj.repr().map(|r| r.to_string()).unwrap_or_default();
            crate::errors::to_py_err(
                obj.py(),
                Error::InvalidArgument(format!(
                    "{shown} is not an event kind (REPLACING=1, QUEUEING=2, PRIVATE=4, \
                     REPLACING_NULL=5)"
                )),
            )
        })
}

/// `durability="sync" | "batch" | "none"`.
pub fn durability(
    name: &str,
    batch_max_ops: u32,
    batch_max_delay: f64,
) -> Result<Durability, Error> {
    match name {
        "sync" => Ok(Durability::Sync),
        "none" => Ok(Durability::None),
        "batch" => {
            let max_delay = Duration::try_from_secs_f64(batch_max_delay).map_err(|_| {
                Error::InvalidArgument(format!(
                    "batch_max_delay must be a number of seconds >= 0, got {batch_max_delay}"
                ))
            })?;
            Ok(Durability::Batch {
                max_ops: batch_max_ops,
                max_delay,
            })
        }
        other => Err(Error::InvalidArgument(format!(
            "durability must be \"sync\", \"batch\" or \"none\", got {other:?}"
        ))),
    }
}

/// `overflow="drop_oldest" | "reject_new"`.
pub fn overflow(name: &str) -> Result<Overflow, Error> {
    match name {
        "drop_oldest" => Ok(Overflow::DropOldest),
        "reject_new" => Ok(Overflow::RejectNew),
        other => Err(Error::InvalidArgument(format!(
            "overflow must be \"drop_oldest\" or \"reject_new\", got {other:?}"
        ))),
    }
}

/// `"storage"` or `"cache"`.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Storage => "storage",
        Mode::Cache => "cache",
    }
}

/// A capacity argument in bytes (0 means the default).
pub fn capacity(given: i64, what: &str) -> Result<usize, Error> {
    usize::try_from(given).map_err(|_| {
        Error::InvalidArgument(format!(
            "{what} must be a number of bytes >= 0 (0 means the default), got {given}"
        ))
    })
}

/// `strict=True` of the `open_file` functions.
pub fn open_policy(strict: bool) -> softnet_persistence::OpenPolicy {
    if strict {
        softnet_persistence::OpenPolicy::Strict
    } else {
        softnet_persistence::OpenPolicy::Fallback
    }
}

/// The options the service store's `open_*` functions share.
/// `max_age=` in seconds (None: no age limit).
pub fn max_age(
    seconds: Option<f64>,
) -> Result<Option<std::time::Duration>, softnet_persistence::Error> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e15 => {
            Ok(Some(std::time::Duration::from_secs_f64(s)))
        }
        Some(s) => Err(softnet_persistence::Error::InvalidArgument(format!(
            "max_age={s}: give a positive number of seconds, or None for no age limit"
        ))),
    }
}

pub fn service_options(
    capacity: i64,
    memory_capacity: i64,
    overflow: &str,
    on_failure: Option<softnet_persistence::FailureCallback>,
) -> Result<softnet_persistence::ServiceOptions, softnet_persistence::Error> {
    Ok(softnet_persistence::ServiceOptions {
        capacity: self::capacity(capacity, "capacity")?,
        memory_capacity: self::capacity(memory_capacity, "memory_capacity")?,
        overflow: self::overflow(overflow)?,
        on_failure,
        ..Default::default()
    })
}

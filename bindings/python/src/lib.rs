//! The `softnet_persistence._native` Python extension: pyo3 bindings of the
//! softnet-persistence Rust API. This file only registers the classes; the
//! Python package `softnet_persistence` (python/) re-exports them next to
//! its pure-Python parts (`EventKind`, `FailureKind`, `Decision`, the
//! controllers' outputs, the backend protocols).

mod backend;
mod callback;
mod client;
mod client_controller;
mod convert;
mod errors;
mod event;
mod lock;
mod log;
mod service;
mod service_controller;
mod service_stats;
mod store;

use pyo3::prelude::*;

/// Native part of softnet_persistence; import the package instead.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    service::register(m)?;
    client::register(m)?;
    service_controller::register(m)?;
    client_controller::register(m)?;
    Ok(())
}

//! What `ServiceStore` and `ClientStore` share: a core store, whether its
//! calls release the GIL (file and custom stores: see the service module),
//! and the closed flag (`close`, the check of the accessors, the close on
//! drop).
//!
//! The core store is held in an [`Arc`] so that a controller
//! (`ServiceController`, `ClientController`) can share it: the controller
//! also keeps a reference to the Python store object, so the store stays
//! open while a controller uses it, and closing the Python store closes the
//! core store under the controller (whose calls then raise
//! `StoreClosedError`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use softnet_persistence as core;
use softnet_persistence::Error;

use crate::errors::{to_py_err, IntoPyResult};

/// A core store wrapped by a Python store class.
pub trait CoreStore: Send + Sync {
    /// Flushes and releases the store.
    fn close(&self) -> Result<(), Error>;
    /// Refuses a forked child's use of its parent's store.
    fn check_process(&self) -> Result<(), Error>;
}

impl CoreStore for core::ServiceStore {
    fn close(&self) -> Result<(), Error> {
        core::ServiceStore::close(self)
    }

    fn check_process(&self) -> Result<(), Error> {
        core::ServiceStore::check_process(self)
    }
}

impl CoreStore for core::ClientStore {
    fn close(&self) -> Result<(), Error> {
        core::ClientStore::close(self)
    }

    fn check_process(&self) -> Result<(), Error> {
        core::ClientStore::check_process(self)
    }
}

/// A core store with its closed flag, as a Python store class holds it.
pub struct StoreHandle<S: CoreStore> {
    store: Arc<S>,
    /// Release the GIL around calls (file and custom stores).
    detach: bool,
    closed: AtomicBool,
}

impl<S: CoreStore> StoreHandle<S> {
    /// Wraps an open store; `detach` for file and custom stores.
    pub fn new(store: S, detach: bool) -> StoreHandle<S> {
        StoreHandle {
            store: Arc::new(store),
            detach,
            closed: AtomicBool::new(false),
        }
    }

    /// The core store, shared (for a controller).
    pub fn shared(&self) -> Arc<S> {
        Arc::clone(&self.store)
    }

    /// True for file and custom stores: their calls release the GIL.
    pub fn detaches(&self) -> bool {
        self.detach
    }

    /// Runs a store call, without the GIL unless this is a memory store,
    /// and returns what it returns.
    pub fn call<R: Send>(&self, py: Python<'_>, op: impl FnOnce(&S) -> R + Send) -> R {
        let store = &*self.store;
        if self.detach {
            py.detach(|| op(store))
        } else {
            op(store)
        }
    }

    /// Runs a store call, without the GIL unless this is a memory store.
    pub fn run<T: Send>(
        &self,
        py: Python<'_>,
        op: impl FnOnce(&S) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        self.call(py, op).into_py_result(py)
    }

    /// For the accessors the core answers even when closed: raises
    /// `StoreClosedError` once closed, `InvalidStateError` in a forked
    /// child on the parent's store, else runs `op` as [`Self::run`] does.
    pub fn read<T: Send>(&self, py: Python<'_>, op: impl FnOnce(&S) -> T + Send) -> PyResult<T> {
        if self.is_closed() {
            return Err(to_py_err(py, Error::Closed));
        }
        self.run(py, |s| {
            s.check_process()?;
            Ok(op(s))
        })
    }

    /// True once [`Self::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the store the first time; closing again does nothing.
    pub fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.run(py, |s| s.close())
    }
}

/// A store dropped without `close()` is closed here, still without the GIL
/// (its last sync, a custom backend's flush); at interpreter shutdown it is
/// just dropped (the journal still syncs on drop).
impl<S: CoreStore> Drop for StoreHandle<S> {
    fn drop(&mut self) {
        if self.detach && !*self.closed.get_mut() {
            let store = &*self.store;
            let _ = Python::try_attach(|py| py.detach(|| store.close()));
        }
    }
}

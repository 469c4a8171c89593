//! The lock of a controller (`ServiceController`, `ClientController`), and
//! how a controller call takes it with respect to the GIL.
//!
//! A controller calls its store, and the store may call the application's
//! failure callback (or a custom backend's methods) on the same thread. A
//! callback that calls the same controller would wait for a lock its own
//! thread holds: that call is refused with `InvalidStateError` instead (as
//! the C ABI does, capi/src/reentry.rs).
//!
//! GIL: no thread ever waits for the lock while holding the GIL (the holder
//! may need the GIL to run a failure callback). A call first tries the lock
//! with the GIL held; if another thread has it, the whole call runs with
//! the GIL released. Calls that do store work on a file or custom store run
//! without the GIL anyway, as the store classes' calls do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use pyo3::prelude::*;
use softnet_persistence::Error;

use crate::errors::IntoPyResult;

/// A value behind a lock that knows which thread holds it.
pub struct Guarded<T> {
    inner: Mutex<T>,
    /// The token of the thread holding the lock; 0 when none.
    owner: AtomicUsize,
}

thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A number unique to the calling thread among live threads (never 0).
fn token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Clears the owner when the call ends, also by a panic.
struct Owned<'a>(&'a AtomicUsize);

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// How a controller call uses its store, which decides whether it releases
/// the GIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// It calls the store: released for file and custom stores.
    Store,
    /// It only reads or changes the controller's own state: the GIL is
    /// kept unless another thread holds the lock.
    Local,
}

impl<T: Send> Guarded<T> {
    /// A new lock around `value`.
    pub fn new(value: T) -> Guarded<T> {
        Guarded {
            inner: Mutex::new(value),
            owner: AtomicUsize::new(0),
        }
    }

    /// Refuses a call from the thread that holds the lock.
    fn check_reentry(&self) -> Result<(), Error> {
        // Only this thread stores its own token, so reading it back means
        // this thread holds the lock.
        if self.owner.load(Ordering::Relaxed) == token() {
            return Err(Error::State(
                "the controller was called from inside a call it is making (a failure \
                 callback or custom backend of its store calling the controller): that \
                 would deadlock; queue the work and do it after the callback returns"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    fn with_guard<R>(
        &self,
        mut guard: MutexGuard<'_, T>,
        op: impl FnOnce(&mut T) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.owner.store(token(), Ordering::Relaxed);
        // Declared after the guard: the owner is cleared before the lock is
        // released.
        let _owned = Owned(&self.owner);
        op(&mut guard)
    }

    /// Runs `op` with the lock held, waiting for it.
    fn run<R>(&self, op: impl FnOnce(&mut T) -> Result<R, Error>) -> Result<R, Error> {
        self.check_reentry()?;
        // A panic in an earlier call left the value as it was then; the
        // controller's state stays usable.
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        self.with_guard(guard, op)
    }

    /// Runs `op` if the lock is free now; hands `op` back if another thread
    /// holds it.
    fn try_run<R, F: FnOnce(&mut T) -> Result<R, Error>>(
        &self,
        op: F,
    ) -> Result<Result<R, Error>, F> {
        if let Err(e) = self.check_reentry() {
            return Ok(Err(e));
        }
        let guard = match self.inner.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(op),
        };
        Ok(self.with_guard(guard, op))
    }

    /// Runs `op` with the lock held: see the module's comment for the GIL.
    /// `detach` is true for file and custom stores.
    pub fn call<R: Send>(
        &self,
        py: Python<'_>,
        work: Work,
        detach: bool,
        op: impl FnOnce(&mut T) -> Result<R, Error> + Send,
    ) -> PyResult<R> {
        let result = if work == Work::Store && detach {
            py.detach(|| self.run(op))
        } else {
            match self.try_run(op) {
                Ok(result) => result,
                Err(op) => py.detach(|| self.run(op)),
            }
        };
        result.into_py_result(py)
    }
}

//! The store shell shared by [`ServiceStore`](crate::ServiceStore) and
//! [`ClientStore`](crate::ClientStore): the lock around a store's state, and
//! the reports that state queues, handed to the failure callback once the
//! lock is released (so the callback may call the store).

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::report::{Failure, FailureCallback};

/// What the shell needs from a store's state.
pub(crate) trait StoreState {
    /// The reports queued since the last call, removed from the queue.
    fn take_reports(&mut self) -> Vec<Failure>;
    /// True once the store was closed.
    fn is_closed(&self) -> bool;
}

/// A store's state behind its lock, with its failure callback.
pub(crate) struct Shell<S> {
    state: Mutex<S>,
    on_failure: Option<FailureCallback>,
}

impl<S: StoreState> Shell<S> {
    /// Wraps `state`, handing the reports it queued while opening to the
    /// callback.
    pub fn new(state: S, on_failure: Option<FailureCallback>) -> Shell<S> {
        let shell = Shell {
            state: Mutex::new(state),
            on_failure,
        };
        let reports = shell.state.lock().take_reports();
        shell.dispatch(reports);
        shell
    }

    fn dispatch(&self, reports: Vec<Failure>) {
        if let Some(callback) = &self.on_failure {
            for report in &reports {
                callback(report);
            }
        }
    }

    /// Runs `op` under the lock (refused with [`Error::Closed`] once the
    /// store is closed), then hands the reports it queued to the callback.
    pub fn with<T>(&self, op: impl FnOnce(&mut S) -> Result<T>) -> Result<T> {
        self.with_any(|state| {
            if state.is_closed() {
                Err(Error::Closed)
            } else {
                op(state)
            }
        })
    }

    /// As [`Shell::with`], also when the store is closed (for `close`).
    pub fn with_any<T>(&self, op: impl FnOnce(&mut S) -> T) -> T {
        let (result, reports) = {
            let mut state = self.state.lock();
            let result = op(&mut state);
            (result, state.take_reports())
        };
        self.dispatch(reports);
        result
    }

    /// Reads the state under the lock (counters, mode: also once closed).
    pub fn read<T>(&self, op: impl FnOnce(&S) -> T) -> T {
        op(&self.state.lock())
    }
}

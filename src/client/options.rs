//! How a client store is opened, what it reports, and how an incoming event
//! is handed to the application.

use std::fmt;

use crate::backend::Level;
use crate::error::Error;
use crate::journal::{DeviceLayer, Durability, LayerPresence};
use crate::report::{FailureCallback, OpenPolicy};

/// How to open a client store.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// When the file forces puts to the device (file level only).
    pub durability: Durability,
    /// Called with every failure report, after the store's lock is released.
    pub on_failure: Option<FailureCallback>,
    /// Wraps the client file's device (file level only; see
    /// [`DeviceLayer`]).
    pub device_layer: Option<std::sync::Arc<dyn DeviceLayer>>,
    /// What `open_file` does when the file cannot be opened: fall back to
    /// level 1 (default) or fail (see [`OpenPolicy`]).
    pub open_policy: OpenPolicy,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("durability", &self.durability)
            .field("on_failure", &self.on_failure.is_some())
            .field("device_layer", &LayerPresence(&self.device_layer))
            .field("open_policy", &self.open_policy)
            .finish()
    }
}

/// A snapshot of a client store's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// Current level (it drops to 1 after a level-2 failure).
    pub level: Level,
    /// Subscriptions with a stored id.
    pub subscriptions: u64,
    /// Failure reports so far (fallback, corruption, interrupted writes).
    pub failures: u64,
}

/// In which order [`ClientStore::handle`](crate::ClientStore::handle)
/// records an event and hands it to the application; it decides what a
/// crash between the two costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandlerOrder {
    /// Handle, then record the id (the Softnet behaviour): at least once. A
    /// crash after the handler ran and before the id is stored hands the
    /// event to the application again after the restart (one duplicate per
    /// subscription at most). A handler error leaves the id unrecorded, so
    /// the event is handled again when the broker redelivers it.
    #[default]
    RecordAfterHandle,
    /// Record the id, then handle: at most once. A crash after the id is
    /// stored and before the handler finished means the application never
    /// sees that event. A handler error does not unrecord it.
    RecordBeforeHandle,
}

/// What [`ClientStore::handle`](crate::ClientStore::handle) did with an
/// incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Its id equals the stored one: acknowledge it to the broker without
    /// handing it to the application.
    Duplicate,
    /// The handler ran and succeeded; acknowledge it.
    Handled,
}

/// A failure of [`ClientStore::handle`](crate::ClientStore::handle).
#[derive(Debug)]
pub enum HandleError<E> {
    /// The application's handler failed (see [`HandlerOrder`] for whether
    /// the id was recorded).
    Handler(E),
    /// The store refused (invalid name, closed).
    Store(Error),
}

impl<E: fmt::Display> fmt::Display for HandleError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Handler(e) => write!(f, "event handler failed: {e}"),
            HandleError::Store(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for HandleError<E> {}

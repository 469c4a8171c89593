//! softnet-persistence keeps a Softnet endpoint's events safe across network
//! outages, application restarts and power loss.
//!
//! - [`ServiceStore`] keeps raised events until the broker acknowledges
//!   them: in memory (SPL-1), in a crash-safe memory-mapped journal file
//!   (SPL-2), or in a [`RecordLog`] you supply.
//! - [`ClientStore`] keeps the id of the last event handled per
//!   subscription, so duplicates are dropped after reconnects and restarts:
//!   in memory (CPL-1), in a file (CPL-2), or in an [`IdStore`] you supply.
//! - [`controller`] runs the Softnet delivery protocol over the stores, as
//!   state machines without I/O.
//! - [`ffi`] is the C ABI (`include/softnet_persistence.h`).
//!
//! ```
//! use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore};
//! # let dir = tempfile::tempdir().unwrap();
//! let service_uid = uuid::Uuid::new_v4();
//! let options = ServiceOptions { durability: Durability::Sync, ..Default::default() };
//! let store = ServiceStore::open_file(dir.path(), service_uid, &options)?;
//! store.raise(EventKind::Queueing, "Temperature", b"21.5")?;
//!
//! // Later, online: drain the backlog in raise order.
//! while let Some(event) = store.peek()? {
//!     // ... send `event` to the broker, wait for its ack ...
//!     store.ack(event.uid)?;
//! }
//! # Ok::<(), softnet_persistence::Error>(())
//! ```

pub mod client;
pub mod controller;
pub mod error;
pub mod event;
pub mod ffi;
pub mod journal;
pub mod report;
pub mod service;

pub use client::backend::IdStore;
pub use client::{ClientOptions, ClientStats, ClientStore, Delivery, HandleError, HandlerOrder};
pub use error::{Error, ErrorKind, Result};
pub use event::{Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};
pub use journal::{Durability, Journal};
pub use report::{Failure, FailureCallback, FailureKind};
pub use service::backend::{RecordLog, Removal};
pub use service::memory::MemoryLog;
pub use service::{Level, Mode, Overflow, ServiceOptions, ServiceStats, ServiceStore};
pub use uuid::Uuid;

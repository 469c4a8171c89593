//! softnet-persistence keeps a Softnet endpoint's events safe across network
//! outages, application restarts and power loss.
//!
//! - [`ServiceStore`] keeps raised events until the broker acknowledges
//!   them: in memory (level 1), in a crash-safe memory-mapped journal file
//!   (level 2), or in a [`RecordLog`] you supply.
//! - [`ClientStore`] keeps the id of the last event handled per
//!   subscription, so duplicates are dropped after reconnects and restarts:
//!   in memory (level 1), in a file (level 2), or in an [`IdStore`] you
//!   supply.
//! - [`ServiceController`] and [`ClientController`] run the Softnet delivery
//!   protocol over the stores, as state machines without I/O.
//!
//! What the stores promise is written in `docs/BEHAVIOUR.md`, the delivery
//! protocol in `docs/PROTOCOL.md`, the file format in `docs/FORMAT.md`, and
//! how the code is laid out in `docs/ARCHITECTURE.md`. The C ABI is a crate
//! of its own (`softnet-persistence-capi`).
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

// Layers, lowest first (docs/ARCHITECTURE.md; tests/architecture checks
// that no module imports a higher one): error, report, event; backend;
// journal; shell; service, client; controller, inspect.
mod backend;
mod client;
mod controller;
mod error;
mod event;
mod inspect;
mod journal;
mod report;
mod service;
mod shell;

pub use backend::{
    IdStore, Level, MemoryLog, RecordLog, Removal, MAX_METADATA_LEN, MAX_RECORD_LEN,
};
pub use client::{ClientOptions, ClientStats, ClientStore, Delivery, HandleError, HandlerOrder};
pub use controller::{
    ClientAck, ClientController, ClientDecision, ClientHello, ClientKind, ServiceController,
    ServiceOutput, DEFAULT_RESEND_TIMEOUT,
};
pub use error::{Error, ErrorKind, Result};
pub use event::{validate_name, Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};
pub use inspect::{
    inspect_journal, salvage_journal, HeaderSlot, InspectedRecord, JournalDamage,
    JournalInspection, JournalKind, RecordContent,
};
pub use journal::{Device, DeviceLayer, Durability, Syncer};
pub use report::{Failure, FailureCallback, FailureKind, OpenPolicy};
pub use service::{
    Mode, Overflow, ServiceOptions, ServiceStats, ServiceStore, DEFAULT_FILE_CAPACITY,
    DEFAULT_MEMORY_CAPACITY, MAX_CAPACITY, MIN_FILE_CAPACITY, MIN_MEMORY_CAPACITY,
};
pub use uuid::Uuid;

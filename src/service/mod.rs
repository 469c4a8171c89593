//! Service persistence: keeps raised events until the broker acknowledges
//! them (SPEC section 3).

pub mod backend;
mod codec;
mod core;
mod index;
mod level;
mod load;
pub mod memory;

use std::fmt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use uuid::Uuid;

use self::backend::RecordLog;
use self::core::Core;
use self::level::Backend;
use self::memory::MemoryLog;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::journal::{
    format::SERVICE_MAGIC, service_journal_path, Durability, Journal, JournalConfig,
};
use crate::report::{Failure, FailureCallback};

/// Level-1 capacity when 0 is given.
pub const DEFAULT_MEMORY_CAPACITY: usize = 16 * 1024;
/// Smallest level-1 capacity; smaller non-zero values are raised to it.
pub const MIN_MEMORY_CAPACITY: usize = 4 * 1024;
/// Level-2 capacity when 0 is given.
pub const DEFAULT_FILE_CAPACITY: usize = 1024 * 1024;
/// Smallest level-2 capacity; smaller non-zero values are raised to it.
pub const MIN_FILE_CAPACITY: usize = 8 * 1024;
/// Largest capacity at either level.
pub const MAX_CAPACITY: usize = 1 << 32;

/// The persistence level a store runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// SPL-1: memory. Survives an outage, not a restart.
    Memory = 1,
    /// SPL-2: the journal file or a custom backend. Survives restarts and,
    /// with [`Durability::Sync`], power loss.
    Persistent = 2,
}

impl Level {
    /// 1 or 2.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// The store's delivery mode (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One global FIFO in raise order: `peek`/`ack`.
    Storage = 0,
    /// One pipeline per event name: `peek_name`/`ack_name`.
    Cache = 1,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Storage => "storage-mode",
            Mode::Cache => "cache-mode",
        })
    }
}

/// What happens when a new event does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Overflow {
    /// Drop the oldest pending events to make room; each drop is counted and
    /// reported (the default, as the Softnet documentation promises).
    #[default]
    DropOldest = 0,
    /// Refuse the new event with [`Error::StorageFull`].
    RejectNew = 1,
}

/// How to open a service store.
#[derive(Clone, Default)]
pub struct ServiceOptions {
    /// Level-2 capacity in bytes of stored records (file or custom backend):
    /// 0 means 1 MiB, smaller values are raised to 8 KiB.
    pub capacity: usize,
    /// Level-1 capacity (memory store, and fallback from level 2): 0 means
    /// 16 KiB, smaller values are raised to 4 KiB.
    pub memory_capacity: usize,
    /// When the journal forces writes to the device (journal only).
    pub durability: Durability,
    /// Drop the oldest (default) or reject the new event when full.
    pub overflow: Overflow,
    /// Called with every failure report, after the store's lock is released.
    pub on_failure: Option<FailureCallback>,
}

impl fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("capacity", &self.capacity)
            .field("memory_capacity", &self.memory_capacity)
            .field("durability", &self.durability)
            .field("overflow", &self.overflow)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

fn effective_capacity(given: usize, default: usize, min: usize, what: &str) -> Result<u64> {
    if given > MAX_CAPACITY {
        return Err(Error::invalid(format!(
            "{what} capacity {given} exceeds the limit of {MAX_CAPACITY} bytes"
        )));
    }
    Ok(match given {
        0 => default,
        n => n.max(min),
    } as u64)
}

impl ServiceOptions {
    /// Checks the options (capacities in range) without opening anything.
    pub fn validate(&self) -> Result<()> {
        self.memory_capacity()?;
        self.file_capacity()?;
        Ok(())
    }

    fn memory_capacity(&self) -> Result<u64> {
        effective_capacity(
            self.memory_capacity,
            DEFAULT_MEMORY_CAPACITY,
            MIN_MEMORY_CAPACITY,
            "memory",
        )
    }

    fn file_capacity(&self) -> Result<u64> {
        effective_capacity(
            self.capacity,
            DEFAULT_FILE_CAPACITY,
            MIN_FILE_CAPACITY,
            "level-2",
        )
    }
}

/// A snapshot of a store's state and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceStats {
    /// Current level (it drops to 1 after a level-2 failure).
    pub level: Level,
    /// Current mode.
    pub mode: Mode,
    /// Events stored and not yet acknowledged.
    pub pending_events: u64,
    /// Bytes of stored records.
    pub used_bytes: u64,
    /// Capacity of the current level in bytes.
    pub capacity_bytes: u64,
    /// Events dropped to make room (drop-oldest policy).
    pub dropped_events: u64,
    /// Raises refused as storage full (reject-new policy).
    pub rejected_events: u64,
    /// Replacing instances superseded by newer ones (not lost: by design).
    pub superseded_events: u64,
    /// Ancient events discarded by `invalidate_ancient`.
    pub invalidated_events: u64,
    /// Failure reports other than capacity drops (fallback, corruption,
    /// interrupted writes).
    pub failures: u64,
    /// Events lost through those failures.
    pub events_lost: u64,
    /// The storage uid the broker's duplicate detection is tied to.
    pub storage_uid: Uuid,
}

/// Keeps a service's raised events until the broker acknowledges them.
///
/// `Send + Sync`: share it between threads behind an `Arc`; each call
/// takes an internal lock. See the crate docs and the README for the
/// delivery protocol (storage mode, cache mode) it serves.
pub struct ServiceStore {
    core: Mutex<Core>,
    on_failure: Option<FailureCallback>,
}

impl fmt::Debug for ServiceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ServiceStore {
    fn from_core(core: Core, options: &ServiceOptions) -> ServiceStore {
        let store = ServiceStore {
            core: Mutex::new(core),
            on_failure: options.on_failure.clone(),
        };
        let reports = std::mem::take(&mut store.core.lock().reports);
        store.dispatch(reports);
        store
    }

    /// A level-1 (memory) store with `options.memory_capacity`.
    pub fn open_memory(options: &ServiceOptions) -> Result<ServiceStore> {
        let memory = options.memory_capacity()?;
        let mut core = Core::new(
            Backend::Memory(MemoryLog::new()),
            memory,
            memory,
            options.overflow,
        );
        core.save_storage_uid()?;
        Ok(ServiceStore::from_core(core, options))
    }

    /// A level-2 store in the journal file
    /// `softnet.service.persistence_<service_uid>.ssp` in `dir`.
    ///
    /// A damaged or foreign file is set aside and reported, not an error. If
    /// the file cannot be opened or created (I/O error), the store starts at
    /// level 1 and reports the fallback. Errors: [`Error::Locked`] if another
    /// handle has the file, [`Error::InvalidArgument`] for bad options.
    pub fn open_file(
        dir: impl AsRef<Path>,
        service_uid: Uuid,
        options: &ServiceOptions,
    ) -> Result<ServiceStore> {
        let capacity = options.file_capacity()?;
        let memory = options.memory_capacity()?;
        if service_uid.is_nil() {
            return Err(Error::invalid(
                "the service uid is nil (all zeros): every service that forgets to set it \
                 would share one journal; give the service's own uid",
            ));
        }
        let path = service_journal_path(dir.as_ref(), service_uid);
        let config = JournalConfig {
            magic: SERVICE_MAGIC,
            owner: service_uid,
            capacity,
            durability: options.durability,
        };
        let core = match Journal::open(&path, &config) {
            Ok((journal, reports)) => {
                let mut core = Core::new(
                    Backend::Journal(Box::new(journal)),
                    capacity,
                    memory,
                    options.overflow,
                );
                for r in reports {
                    core.report(r.kind, r.message, r.events_lost);
                }
                ServiceStore::load(core)?
            }
            Err(e @ (Error::Locked { .. } | Error::InvalidArgument(_))) => return Err(e),
            Err(e) => {
                let mut core = Core::new(
                    Backend::Memory(MemoryLog::new()),
                    memory,
                    memory,
                    options.overflow,
                );
                core.save_storage_uid()?;
                core.report(
                    crate::report::FailureKind::Fallback,
                    format!(
                        "opening journal {} failed ({e}); running at level 1 (memory, {} \
                         bytes) with storage uid {}: events raised now survive an outage but \
                         not a restart. Events already in that file, if any, stay there and are \
                         delivered once it opens again (fix the cause, then reopen the store)",
                        path.display(),
                        core.capacity,
                        core.storage_uid
                    ),
                    0,
                );
                core
            }
        };
        Ok(ServiceStore::from_core(core, options))
    }

    /// A level-2 store kept by user code. `options.capacity` applies;
    /// `durability` is the backend's business. A backend error at open or
    /// later makes the store fall back to level 1 (reported).
    pub fn open_custom(
        backend: Box<dyn RecordLog>,
        options: &ServiceOptions,
    ) -> Result<ServiceStore> {
        let capacity = options.file_capacity()?;
        let memory = options.memory_capacity()?;
        let core = Core::new(Backend::Custom(backend), capacity, memory, options.overflow);
        let core = ServiceStore::load(core)?;
        Ok(ServiceStore::from_core(core, options))
    }

    fn load(mut core: Core) -> Result<Core> {
        core.load()?;
        Ok(core)
    }

    fn dispatch(&self, reports: Vec<Failure>) {
        if let Some(callback) = &self.on_failure {
            for report in &reports {
                callback(report);
            }
        }
    }

    /// Runs `op` under the lock (refused once closed), then hands queued
    /// reports to the callback.
    fn with<T>(&self, op: impl FnOnce(&mut Core) -> Result<T>) -> Result<T> {
        let (result, reports) = {
            let mut core = self.core.lock();
            let result = core.check_open().and_then(|()| op(&mut core));
            (result, std::mem::take(&mut core.reports))
        };
        self.dispatch(reports);
        result
    }

    /// Stores an event; returns its new uid. Errors: invalid name or
    /// arguments, storage full (reject-new policy), closed.
    pub fn raise(&self, kind: EventKind, name: &str, args: &[u8]) -> Result<Uuid> {
        let uid = Uuid::new_v4();
        self.with(|c| c.raise(kind, name, args, None, uid))?;
        Ok(uid)
    }

    /// Stores a Private event for `client_id`; returns its new uid.
    pub fn raise_private(&self, name: &str, args: &[u8], client_id: i64) -> Result<Uuid> {
        let uid = Uuid::new_v4();
        self.with(|c| c.raise(EventKind::Private, name, args, Some(client_id), uid))?;
        Ok(uid)
    }

    /// Stores an event with the caller's uid (`event.uid`).
    pub fn raise_event(&self, event: &Event) -> Result<Uuid> {
        self.with(|c| {
            c.raise(
                event.kind,
                &event.name,
                &event.args,
                event.client_id,
                event.uid,
            )
        })?;
        Ok(event.uid)
    }

    /// Storage mode: the oldest pending event, the same one until it is
    /// acknowledged. `None` when nothing is pending; the store is then in
    /// cache mode.
    pub fn peek(&self) -> Result<Option<Event>> {
        self.with(|c| c.peek())
    }

    /// Storage mode: removes the oldest pending event if `uid` is its uid;
    /// otherwise [`Error::State`] (a late or repeated ack).
    pub fn ack(&self, uid: Uuid) -> Result<()> {
        self.with(|c| c.ack(uid))
    }

    /// Cache mode: the oldest pending event of this name (now in flight).
    pub fn peek_name(&self, kind: EventKind, name: &str) -> Result<Option<Event>> {
        self.with(|c| c.peek_name(kind, name))
    }

    /// Cache mode: removes this name's event in flight if `uid` matches and
    /// returns the name's next event (now in flight), if any.
    pub fn ack_name(&self, kind: EventKind, name: &str, uid: Uuid) -> Result<Option<Event>> {
        self.with(|c| c.ack_name(kind, name, uid))
    }

    /// Every pending event in raise order, without changing anything (for
    /// diagnostics; it reads every record).
    pub fn pending(&self) -> Result<Vec<Event>> {
        self.with(|c| c.pending())
    }

    /// Back to storage mode (on disconnect); nothing is in flight after it.
    pub fn set_storage_mode(&self) -> Result<()> {
        self.with(|c| {
            c.set_storage_mode();
            Ok(())
        })
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.core.lock().mode
    }

    /// The storage uid.
    pub fn storage_uid(&self) -> Uuid {
        self.core.lock().storage_uid
    }

    /// The storage uid the store had before a level-2 failure moved it to
    /// level 1 with a new one; `None` if that never happened (for a store
    /// that started at level 1, or opened its journal without trouble).
    ///
    /// The events moved from level 2 were stored under this uid. When going
    /// online, a broker that remembers it knows their delivery state: treat
    /// it like our own uid (invalidate nothing) and tell the broker the new
    /// one. [`ServiceController`](crate::controller::ServiceController)
    /// does this.
    pub fn previous_storage_uid(&self) -> Option<Uuid> {
        self.core.lock().previous_storage_uid
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.core.lock().level()
    }

    /// The journal file, while at level 2 on a file.
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.core.lock().backend.journal_path()
    }

    /// Fault injection: the journal, while at level 2 on a file.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn with_journal<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> Option<T> {
        match &mut self.core.lock().backend {
            Backend::Journal(j) => Some(f(j)),
            _ => None,
        }
    }

    /// Discards the events that were stored when the store was opened
    /// ("ancient data", whose delivery state the broker no longer knows);
    /// keeps events raised since. Returns how many were discarded.
    pub fn invalidate_ancient(&self) -> Result<u64> {
        self.with(|c| c.invalidate_ancient())
    }

    /// Discards every pending event; keeps the storage uid.
    pub fn reset(&self) -> Result<()> {
        self.with(|c| c.reset())
    }

    /// Forces everything written to the device (whatever the durability).
    pub fn flush(&self) -> Result<()> {
        self.with(|c| c.flush())
    }

    /// Counters and state.
    pub fn stats(&self) -> ServiceStats {
        self.core.lock().stats()
    }

    /// Flushes and releases the file; later calls return [`Error::Closed`]
    /// (closing again is fine). Dropping the store releases it too.
    pub fn close(&self) -> Result<()> {
        let (result, reports) = {
            let mut core = self.core.lock();
            if core.closed {
                return Ok(());
            }
            let flushed = core.flush();
            core.closed = true;
            core.backend = Backend::Memory(MemoryLog::new());
            (flushed, std::mem::take(&mut core.reports))
        };
        self.dispatch(reports);
        result
    }
}

//! Service persistence: keeps raised events until the broker acknowledges
//! them (docs/BEHAVIOUR.md section 3).
//!
//! - `options`: how a store is opened, its capacities, modes, statistics;
//! - `core`: the semantics, once for every level, behind the lock;
//! - `index`: the in-memory index of pending events;
//! - `codec`: the bytes of one stored event, as every backend keeps them.

mod codec;
mod core;
mod index;
mod options;

use std::fmt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use self::codec::Stamp;
use self::core::{Core, Limits};
use crate::backend::{Level, RecordLog};
use crate::error::{Error, Result};
use crate::event::{now_ms, validate};
use crate::event::{Event, EventKind};
use crate::journal::{new_uid, Journal, JournalConfig};
use crate::report::OpenPolicy;
use crate::shell::Shell;

// For tools that read a journal's bytes (`inspect`).
pub(crate) use self::codec::decode as decode_stored_event;
pub use self::options::{
    Mode, Overflow, ServiceOptions, ServiceStats, DEFAULT_FILE_CAPACITY, DEFAULT_MEMORY_CAPACITY,
    MAX_CAPACITY, MIN_FILE_CAPACITY, MIN_MEMORY_CAPACITY,
};

// Here rather than beside `Event`: a new event's uid comes from the
// fork-safe generator of the journal layer (`journal/fork.rs`), which the
// vocabulary below it may not use.
impl Event {
    /// A new event with a fresh random uid, after checking every rule of
    /// docs/BEHAVIOUR.md section 2. `client_id` must be `Some` exactly for Private events.
    pub fn new(kind: EventKind, name: &str, args: &[u8], client_id: Option<i64>) -> Result<Event> {
        validate(kind, name, args, client_id)?;
        Ok(Event {
            kind,
            name: name.to_owned(),
            args: args.to_vec(),
            client_id,
            uid: new_uid(),
            seq: 0,
            raised_at_ms: None,
        })
    }
}

/// Magic of a service journal (`.ssp`, docs/FORMAT.md).
pub(crate) const SERVICE_MAGIC: [u8; 8] = *b"SNPSVCJ1";

/// Where the journal of a service lives: `softnet.service.persistence_<uid>.ssp`.
fn journal_path(dir: &Path, service_uid: Uuid) -> PathBuf {
    dir.join(format!(
        "softnet.service.persistence_{}.ssp",
        service_uid.hyphenated()
    ))
}

/// Keeps a service's raised events until the broker acknowledges them.
///
/// `Send + Sync`: share it between threads behind an `Arc`; each call
/// takes an internal lock. See the crate docs and the README for the
/// delivery protocol (storage mode, cache mode) it serves.
pub struct ServiceStore {
    shell: Shell<Core>,
}

impl fmt::Debug for ServiceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceStore")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The capacities and policy the options ask for.
fn limits(options: &ServiceOptions, level_2: bool) -> Result<Limits> {
    let memory_capacity = options.memory_capacity_bytes()?;
    let capacity = if level_2 {
        options.file_capacity_bytes()?
    } else {
        memory_capacity
    };
    Ok(Limits {
        capacity,
        memory_capacity,
        overflow: options.overflow,
        max_age_ms: options
            .max_age
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

impl ServiceStore {
    fn from_core(core: Core, options: &ServiceOptions) -> ServiceStore {
        ServiceStore {
            shell: Shell::new(core, options.on_failure.clone()),
        }
    }

    /// A level-1 (memory) store with `options.memory_capacity`.
    pub fn open_memory(options: &ServiceOptions) -> Result<ServiceStore> {
        let core = Core::memory(limits(options, false)?)?;
        Ok(ServiceStore::from_core(core, options))
    }

    /// A level-2 store in the journal file
    /// `softnet.service.persistence_<service_uid>.ssp` in `dir`.
    ///
    /// A damaged or foreign file is set aside and reported, not an error. If
    /// the file cannot be opened or created (I/O error), the store starts at
    /// level 1 and reports the fallback, or, with [`OpenPolicy::Strict`],
    /// the open fails with that error. Errors: [`Error::Locked`] if another
    /// handle has the file, [`Error::InvalidArgument`] for bad options.
    pub fn open_file(
        dir: impl AsRef<Path>,
        service_uid: Uuid,
        options: &ServiceOptions,
    ) -> Result<ServiceStore> {
        let limits = limits(options, true)?;
        if service_uid.is_nil() {
            return Err(Error::invalid(
                "the service uid is nil (all zeros): every service that forgets to set it \
                 would share one journal; give the service's own uid",
            ));
        }
        if dir.as_ref().as_os_str().is_empty() {
            return Err(Error::invalid(
                "the journal's directory is empty (\"\"): give the directory the journal is \
                 kept in (an empty path would put it in whatever the current directory is)",
            ));
        }
        let path = journal_path(dir.as_ref(), service_uid);
        let config = JournalConfig {
            kind: "service journal",
            magic: SERVICE_MAGIC,
            owner: service_uid,
            capacity: limits.capacity,
            durability: options.durability,
            device_layer: options.device_layer.clone(),
        };
        let core = match Journal::open(&path, &config) {
            Ok((journal, reports)) => Core::journal(journal, reports, limits)?,
            Err(e @ (Error::Locked { .. } | Error::InvalidArgument(_))) => return Err(e),
            // The error names the file or directory, the cause and the fix.
            Err(e) if options.open_policy == OpenPolicy::Strict => return Err(e),
            Err(e) => {
                let what = format!("opening journal {}", path.display());
                Core::without_level_2(&what, &e, limits)?
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
        let core = Core::custom(backend, limits(options, true)?)?;
        Ok(ServiceStore::from_core(core, options))
    }

    /// Stores an event; returns its new uid. Errors: invalid name or
    /// arguments, storage full (reject-new policy), closed.
    pub fn raise(&self, kind: EventKind, name: &str, args: &[u8]) -> Result<Uuid> {
        let stamp = Stamp::now(new_uid());
        self.shell
            .with(|c| c.raise(kind, name, args, None, stamp))?;
        Ok(stamp.uid)
    }

    /// Stores a Private event for `client_id`; returns its new uid.
    pub fn raise_private(&self, name: &str, args: &[u8], client_id: i64) -> Result<Uuid> {
        let stamp = Stamp::now(new_uid());
        self.shell
            .with(|c| c.raise(EventKind::Private, name, args, Some(client_id), stamp))?;
        Ok(stamp.uid)
    }

    /// Stores an event with the caller's uid (`event.uid`), and its raise
    /// time if it has one (an event relayed from another store keeps its
    /// age); otherwise the clock's. `event.seq` is ignored.
    pub fn raise_event(&self, event: &Event) -> Result<Uuid> {
        let stamp = Stamp {
            uid: event.uid,
            raised_at_ms: event.raised_at_ms.or_else(now_ms),
        };
        self.shell
            .with(|c| c.raise(event.kind, &event.name, &event.args, event.client_id, stamp))?;
        Ok(event.uid)
    }

    /// Storage mode: the oldest pending event, the same one until it is
    /// acknowledged. `None` when nothing is pending; the store is then in
    /// cache mode.
    pub fn peek(&self) -> Result<Option<Event>> {
        self.shell.with(|c| c.peek())
    }

    /// Storage mode: removes the oldest pending event if `uid` is its uid;
    /// otherwise [`Error::State`] (a late or repeated ack).
    pub fn ack(&self, uid: Uuid) -> Result<()> {
        self.shell.with(|c| c.ack(uid))
    }

    /// Cache mode: the oldest pending event of this name (now in flight).
    pub fn peek_name(&self, kind: EventKind, name: &str) -> Result<Option<Event>> {
        self.shell.with(|c| c.peek_name(kind, name))
    }

    /// Cache mode: removes this name's event in flight if `uid` matches and
    /// returns the name's next event (now in flight), if any.
    pub fn ack_name(&self, kind: EventKind, name: &str, uid: Uuid) -> Result<Option<Event>> {
        self.shell.with(|c| c.ack_name(kind, name, uid))
    }

    /// Every pending event in raise order, without changing anything (for
    /// diagnostics; it reads every record).
    pub fn pending(&self) -> Result<Vec<Event>> {
        self.shell.with(|c| c.pending())
    }

    /// Back to storage mode (on disconnect); nothing is in flight after it.
    pub fn set_storage_mode(&self) -> Result<()> {
        self.shell.with(|c| {
            c.set_storage_mode();
            Ok(())
        })
    }

    /// Nothing is in flight any more (the link went down), and the mode
    /// stays: in cache mode the events that were in flight stay the oldest
    /// of their names, to be sent again first (`ServiceController` does
    /// this). A Replacing raise may supersede them meanwhile.
    pub fn release_in_flight(&self) -> Result<()> {
        self.shell.with(|c| {
            c.release_in_flight();
            Ok(())
        })
    }

    /// Takes the event of `name` out of flight (the controller took it and
    /// did not send it).
    pub(crate) fn release_name(&self, kind: EventKind, name: &str) -> Result<()> {
        self.shell.with(|c| c.release_name(kind, name))
    }

    /// Whether an event stored under the previous storage uid is pending.
    pub(crate) fn has_pending_under_previous_uid(&self) -> Result<bool> {
        self.shell.with(|c| Ok(c.has_pending_under_previous_uid()))
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shell.read(|v| v.stats.mode)
    }

    /// The storage uid.
    pub fn storage_uid(&self) -> Uuid {
        self.shell.read(|v| v.stats.storage_uid)
    }

    /// The storage uid the store had before a level-2 failure moved it to
    /// level 1 with a new one; `None` if that never happened (for a store
    /// that started at level 1, or opened its journal without trouble).
    ///
    /// The events moved from level 2 were stored under this uid. When going
    /// online, a broker that remembers it knows their delivery state: treat
    /// it like our own uid (invalidate nothing) and tell the broker the new
    /// one. [`ServiceController`](crate::ServiceController) does this.
    pub fn previous_storage_uid(&self) -> Option<Uuid> {
        self.shell.read(|v| v.previous_storage_uid)
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.shell.read(|v| v.stats.level)
    }

    /// The journal file, while at level 2 on a file.
    pub fn journal_path(&self) -> Option<PathBuf> {
        self.shell.read_path()
    }

    /// Discards the events that were stored when the store was opened
    /// ("ancient data", whose delivery state the broker no longer knows);
    /// keeps events raised since. Returns how many were discarded.
    pub fn invalidate_ancient(&self) -> Result<u64> {
        self.shell.with(|c| c.invalidate_ancient())
    }

    /// Discards every pending event; keeps the storage uid.
    pub fn reset(&self) -> Result<()> {
        self.shell.with(|c| c.reset())
    }

    /// Forces everything written to the device (whatever the durability).
    pub fn flush(&self) -> Result<()> {
        self.shell.with(|c| c.flush())
    }

    /// Counters and state.
    pub fn stats(&self) -> ServiceStats {
        self.shell.read(|v| v.stats)
    }

    /// `Err(`[`Error::State`]`)` in a forked child on its parent's handle,
    /// where every call but `close` is refused (docs/BEHAVIOUR.md section
    /// 5.8). The readers (`stats`, `level`...) have no error to return:
    /// there they return the parent's values as of the fork. Bindings call
    /// this first to refuse them too.
    pub fn check_process(&self) -> Result<()> {
        self.shell.check_process()
    }

    /// True once the store was closed.
    pub fn is_closed(&self) -> bool {
        self.shell.read(|v| v.closed)
    }

    /// Flushes and releases the file; later calls return [`Error::Closed`]
    /// (closing again is fine). In a forked child on the parent's handle it
    /// does nothing (the file is the parent's) and succeeds. Dropping the store releases it too.
    pub fn close(&self) -> Result<()> {
        self.shell.close(Ok(()), |c| c.close())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_get_distinct_uids() {
        let a = Event::new(EventKind::Queueing, "A", b"1", None).unwrap();
        let b = Event::new(EventKind::Queueing, "A", b"1", None).unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(a.uid.get_version_num(), 4);
    }
}

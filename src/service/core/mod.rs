//! The semantics of docs/BEHAVIOUR.md section 3, once, for every level:
//! storage and cache mode, Replacing collapse, capacity, ancient data.
//! `Core` is the state behind the [`ServiceStore`](super::ServiceStore)
//! lock; its fields are private to this module.
//!
//! - `level`: which backend holds the records, and falling back from
//!   level 2 to level 1 (the only place the level changes);
//! - `load`: building the index when a store opens;
//! - `records`: reading, removing and indexing pending records;
//! - `raise`: storing events, Replacing collapse, capacity drops;
//! - `deliver`: storage and cache mode (peek, ack), ancient data, reset.
//!
//! The store owns the capacity: it counts every record's
//! [`stored_size`](crate::backend::stored_size) against it and never asks a
//! backend to hold more (the journal trusts it).

mod deliver;
mod expire;
mod level;
mod load;
mod raise;
mod records;

use std::path::PathBuf;

use uuid::Uuid;

use crate::backend::{Level, MemoryLog};
use crate::error::Result;
use crate::journal::{Journal, SyncTicket};
use crate::report::{Failure, FailureKind};
use crate::service::index::Index;
use crate::service::options::{Mode, Overflow, ServiceStats};
use crate::shell::StoreState;

use self::level::Backend;

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    dropped: u64,
    rejected: u64,
    superseded: u64,
    invalidated: u64,
    expired: u64,
    failures: u64,
    lost: u64,
}

/// The capacities and policy a store runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Capacity of level 2 (or of level 1, for a memory store).
    pub capacity: u64,
    /// Capacity of level 1 (a memory store, or after a fallback).
    pub memory_capacity: u64,
    /// What a raise into a full store does.
    pub overflow: Overflow,
    /// Pending events older than this many ms are dropped when they would
    /// next be delivered (`ServiceOptions::max_age`).
    pub max_age_ms: Option<u64>,
}

/// The state of a service store. See the module docs.
pub(crate) struct Core {
    backend: Backend,
    storage_uid: Uuid,
    /// The storage uid before a fallback to level 1 (see
    /// `ServiceStore::previous_storage_uid`).
    previous_storage_uid: Option<Uuid>,
    /// The highest id stored under the previous storage uid: the events up
    /// to it were moved at the fallback (0: none).
    previous_uid_max_id: u64,
    /// Capacity of the current level.
    capacity: u64,
    memory_capacity: u64,
    overflow: Overflow,
    max_age_ms: Option<u64>,
    mode: Mode,
    index: Index,
    counters: Counters,
    reports: Vec<Failure>,
    closed: bool,
    buf: Vec<u8>,
    /// Bytes the store may stand over its capacity while a raise is in
    /// progress (its record is stored, what it displaces not yet removed).
    raise_slack: u64,
    /// The record a removal is removing: a fallback during it leaves the
    /// record behind (and clears this), rather than count it unreadable.
    removing: Option<u64>,
}

/// Metadata blob: version byte, then the storage uid.
const META_VERSION: u8 = 1;

impl Core {
    fn new(backend: Backend, limits: Limits) -> Core {
        Core {
            backend,
            storage_uid: crate::journal::new_uid(),
            previous_storage_uid: None,
            previous_uid_max_id: 0,
            removing: None,
            capacity: limits.capacity,
            memory_capacity: limits.memory_capacity,
            overflow: limits.overflow,
            max_age_ms: limits.max_age_ms,
            mode: Mode::Storage,
            index: Index::default(),
            counters: Counters::default(),
            reports: Vec::new(),
            closed: false,
            buf: Vec::new(),
            raise_slack: 0,
        }
    }

    /// A level-1 store.
    pub fn memory(limits: Limits) -> Result<Core> {
        let mut core = Core::new(Backend::Memory(MemoryLog::new()), limits);
        core.save_storage_uid()?;
        Ok(core)
    }

    /// A level-2 store on an open journal; `reports` are what opening it
    /// found.
    pub fn journal(journal: Journal, reports: Vec<Failure>, limits: Limits) -> Result<Core> {
        let mut core = Core::new(Backend::Journal(Box::new(journal)), limits);
        for r in reports {
            core.report(r.kind, r.message, r.events_lost);
        }
        core.load()?;
        Ok(core)
    }

    /// A level-2 store kept by user code.
    pub fn custom(log: Box<dyn crate::backend::RecordLog>, limits: Limits) -> Result<Core> {
        let mut core = Core::new(Backend::Custom(log), limits);
        core.load()?;
        Ok(core)
    }

    /// A store whose level 2 (`what`) could not even be opened: it starts
    /// at level 1 and reports why.
    pub fn without_level_2(
        what: &str,
        cause: &crate::error::Error,
        limits: Limits,
    ) -> Result<Core> {
        let limits = Limits {
            capacity: limits.memory_capacity,
            ..limits
        };
        let mut core = Core::memory(limits)?;
        core.report_fallback(what, cause, 0, 0);
        Ok(core)
    }

    /// Queues a report for the callback and counts it.
    fn report(&mut self, kind: FailureKind, message: String, events_lost: u64) {
        if !matches!(kind, FailureKind::CapacityDrop | FailureKind::Expired) {
            self.counters.failures += 1;
            self.counters.lost += events_lost;
        }
        self.reports.push(Failure {
            kind,
            message,
            events_lost,
        });
    }

    pub fn level(&self) -> Level {
        self.backend.level()
    }

    pub fn journal_path(&self) -> Option<PathBuf> {
        self.backend.journal_path()
    }

    pub fn stats(&self) -> ServiceStats {
        ServiceStats {
            level: self.level(),
            mode: self.mode,
            pending_events: self.index.live(),
            used_bytes: self.index.used(),
            capacity_bytes: self.capacity,
            dropped_events: self.counters.dropped,
            rejected_events: self.counters.rejected,
            superseded_events: self.counters.superseded,
            invalidated_events: self.counters.invalidated,
            expired_events: self.counters.expired,
            failures: self.counters.failures,
            events_lost: self.counters.lost,
            storage_uid: self.storage_uid,
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.call(|log| log.flush())
    }

    /// Flushes and lets go of the backend; later calls are refused.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.flush();
        self.closed = true;
        self.backend = Backend::Memory(MemoryLog::new());
        flushed
    }
}

/// What a service store's readers return, as of the last call that
/// finished (see `shell.rs`).
#[derive(Debug, Clone)]
pub(crate) struct ServiceView {
    pub stats: ServiceStats,
    pub previous_storage_uid: Option<Uuid>,
    pub journal_path: Option<PathBuf>,
    pub closed: bool,
}

impl StoreState for Core {
    type View = ServiceView;

    fn take_reports(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.reports)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn view(&self) -> ServiceView {
        ServiceView {
            stats: self.stats(),
            previous_storage_uid: self.previous_storage_uid,
            journal_path: self.journal_path(),
            closed: self.closed,
        }
    }

    fn take_ticket(&mut self) -> Option<SyncTicket> {
        match &mut self.backend {
            Backend::Journal(j) => j.take_ticket(),
            _ => None,
        }
    }

    fn sync_failed(&mut self, ticket: &SyncTicket, error: std::io::Error) {
        self.handed_over_sync_failed(ticket, error);
    }

    fn refresh(&self, view: &mut ServiceView) {
        view.stats = self.stats();
        view.previous_storage_uid = self.previous_storage_uid;
        view.closed = self.closed;
        crate::shell::refresh_path(&mut view.journal_path, self.backend.journal_path_ref());
    }
}

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

use std::path::Path;

use uuid::Uuid;

use crate::backend::{Level, MemoryLog};
use crate::error::Result;
use crate::event::Validator;
use crate::journal::{Journal, SyncTicket};
use crate::report::{Failure, FailureKind};
use crate::service::index::Index;
use crate::service::options::{Mode, Overflow, ServiceStats};
use crate::shell::{uuid_of_words, uuid_words, StoreState, Words};

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
    /// Checks raised events (and keeps the last valid name).
    validator: Validator,
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
            validator: Validator::default(),
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
/// finished (see `shell.rs`; the journal's path is published beside it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceView {
    pub stats: ServiceStats,
    pub previous_storage_uid: Option<Uuid>,
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
            closed: self.closed,
        }
    }

    fn to_words(view: &ServiceView, w: &mut Words) {
        let s = &view.stats;
        w[0] = u64::from(s.level.number());
        w[1] = s.mode as u64;
        w[2..12].copy_from_slice(&[
            s.pending_events,
            s.used_bytes,
            s.capacity_bytes,
            s.dropped_events,
            s.rejected_events,
            s.superseded_events,
            s.invalidated_events,
            s.expired_events,
            s.failures,
            s.events_lost,
        ]);
        (w[12], w[13]) = uuid_words(s.storage_uid);
        w[14] = u64::from(view.previous_storage_uid.is_some());
        (w[15], w[16]) = uuid_words(view.previous_storage_uid.unwrap_or_default());
        w[17] = u64::from(view.closed);
    }

    fn from_words(w: &Words) -> ServiceView {
        let stats = ServiceStats {
            level: Level::of_number(w[0]),
            mode: if w[1] == Mode::Cache as u64 {
                Mode::Cache
            } else {
                Mode::Storage
            },
            pending_events: w[2],
            used_bytes: w[3],
            capacity_bytes: w[4],
            dropped_events: w[5],
            rejected_events: w[6],
            superseded_events: w[7],
            invalidated_events: w[8],
            expired_events: w[9],
            failures: w[10],
            events_lost: w[11],
            storage_uid: uuid_of_words(w[12], w[13]),
        };
        ServiceView {
            stats,
            previous_storage_uid: (w[14] == 1).then(|| uuid_of_words(w[15], w[16])),
            closed: w[17] == 1,
        }
    }

    fn path(&self) -> Option<&Path> {
        self.backend.journal_path_ref()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_comes_back_from_its_words_as_it_went_in() {
        for (level, mode, previous, closed) in [
            (Level::Memory, Mode::Storage, None, false),
            (
                Level::Persistent,
                Mode::Cache,
                Some(Uuid::from_u128(u128::MAX - 7)),
                true,
            ),
        ] {
            let view = ServiceView {
                stats: ServiceStats {
                    level,
                    mode,
                    pending_events: 1,
                    used_bytes: 2,
                    capacity_bytes: 3,
                    dropped_events: 4,
                    rejected_events: 5,
                    superseded_events: 6,
                    invalidated_events: 7,
                    expired_events: 8,
                    failures: 9,
                    events_lost: u64::MAX,
                    storage_uid: Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
                },
                previous_storage_uid: previous,
                closed,
            };
            let mut words = [0; crate::shell::VIEW_WORDS];
            Core::to_words(&view, &mut words);
            let back = Core::from_words(&words);
            assert_eq!(back.stats, view.stats);
            assert_eq!(back.previous_storage_uid, view.previous_storage_uid);
            assert_eq!(back.closed, view.closed);
        }
    }
}

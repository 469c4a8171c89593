//! The semantics of SPEC section 3, once, for every level: storage and
//! cache mode, Replacing collapse, capacity, ancient data. `Core` is the
//! state behind the [`ServiceStore`](super::ServiceStore) lock.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{validate, validate_name, Event, EventKind};
use crate::journal::format::record_len;
use crate::report::{Failure, FailureKind};
use crate::service::backend::{RecordLog, Removal};
use crate::service::codec;
use crate::service::index::{Entry, Index};
use crate::service::level::Backend;
use crate::service::{Level, Mode, Overflow, ServiceStats};

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub dropped: u64,
    pub rejected: u64,
    pub superseded: u64,
    pub invalidated: u64,
    pub failures: u64,
    pub lost: u64,
}

pub(crate) struct Core {
    pub backend: Backend,
    pub storage_uid: Uuid,
    /// The storage uid before a fallback to level 1 (see
    /// `ServiceStore::previous_storage_uid`).
    pub previous_storage_uid: Option<Uuid>,
    pub capacity: u64,
    pub memory_capacity: u64,
    pub overflow: Overflow,
    pub mode: Mode,
    pub index: Index,
    pub counters: Counters,
    pub reports: Vec<Failure>,
    pub closed: bool,
    pub buf: Vec<u8>,
    /// Bytes the store may stand over its capacity while a raise is in
    /// progress (its record is stored, what it displaces not yet removed).
    pub raise_slack: u64,
}

/// Metadata blob: version byte, then the storage uid.
pub(super) const META_VERSION: u8 = 1;

impl Core {
    pub fn new(backend: Backend, capacity: u64, memory_capacity: u64, overflow: Overflow) -> Core {
        Core {
            backend,
            storage_uid: Uuid::new_v4(),
            previous_storage_uid: None,
            capacity,
            memory_capacity,
            overflow,
            mode: Mode::Storage,
            index: Index::default(),
            counters: Counters::default(),
            reports: Vec::new(),
            closed: false,
            buf: Vec::new(),
            raise_slack: 0,
        }
    }

    pub fn log(&mut self) -> &mut dyn RecordLog {
        self.backend.log()
    }

    pub fn level(&self) -> Level {
        self.backend.level()
    }

    /// Queues a report for the callback and counts it.
    pub fn report(&mut self, kind: FailureKind, message: String, events_lost: u64) {
        if kind != FailureKind::CapacityDrop {
            self.counters.failures += 1;
            self.counters.lost += events_lost;
        }
        self.reports.push(Failure {
            kind,
            message,
            events_lost,
        });
    }

    /// Refuses every operation once the store is closed.
    pub fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Makes one backend call. If level 2 fails it, the store falls back to
    /// level 1 (moving what it can read) and makes the same call there, so
    /// an operation never runs twice: it continues where it was, at level 1.
    pub(super) fn call<T>(&mut self, f: impl Fn(&mut dyn RecordLog) -> Result<T>) -> Result<T> {
        match f(self.log()) {
            Err(e) if self.level() == Level::Persistent => {
                self.fall_back(&e);
                f(self.log())
            }
            result => result,
        }
    }

    // ----- helpers ---------------------------------------------------

    /// Removes a pending event. `false` if it was no longer pending (a
    /// fallback in between found it unreadable and reported it lost).
    pub(super) fn remove(&mut self, id: u64, why: Removal) -> Result<bool> {
        if self.index.get(id).is_none() {
            return Ok(false);
        }
        let removed = self.call(|log| log.remove(id, why));
        if removed.is_err() && self.index.get(id).is_none() {
            return Ok(false);
        }
        removed?;
        Ok(self.index.remove(id).is_some())
    }

    /// Drops the oldest pending events until `extra` more bytes fit.
    /// Returns how many were dropped.
    pub(super) fn drop_oldest_until(&mut self, extra: u64) -> Result<u64> {
        let mut dropped = 0;
        while self.index.used() + extra > self.capacity {
            let Some(front) = self.index.front() else {
                break;
            };
            if self.remove(front.id, Removal::Dropped)? {
                self.counters.dropped += 1;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Removes a record that cannot be decoded, and reports it.
    pub(super) fn discard_corrupt(&mut self, id: u64, why: &str) -> Result<()> {
        if !self.remove(id, Removal::Dropped)? {
            return Ok(());
        }
        let at = self.backend.describe();
        self.report(
            FailureKind::Corruption,
            format!("pending record {id} in {at} is unreadable ({why}); it was discarded"),
            1,
        );
        Ok(())
    }

    /// Reads and decodes a pending event; `None` if it was corrupt (then it
    /// is discarded and reported) or lost in a fallback (reported there).
    fn load_event(&mut self, id: u64) -> Result<Option<Event>> {
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.read_into(id, &mut buf);
        let decoded = read.map(|found| found.then(|| codec::decode(&buf)));
        self.buf = buf;
        match decoded? {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(e)) => {
                self.discard_corrupt(id, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Reads a pending record into `buf`; `false` if a fallback during the
    /// read found it unreadable (it is then no longer pending).
    fn read_into(&mut self, id: u64, buf: &mut Vec<u8>) -> Result<bool> {
        let cell = std::cell::RefCell::new(std::mem::take(buf));
        let read = self.call(|log| log.read(id, &mut cell.borrow_mut()));
        *buf = cell.into_inner();
        match read {
            Ok(()) => Ok(true),
            Err(_) if self.index.get(id).is_none() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Builds the name index on first need (it is not needed to open the
    /// store and drain it in storage mode).
    pub(super) fn ensure_names(&mut self) -> Result<()> {
        if self.index.names_built() {
            return Ok(());
        }
        self.index.start_names();
        let result = self.assign_names();
        if result.is_err() {
            self.index.drop_names();
        }
        result
    }

    fn assign_names(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.index.entries().map(|e| e.id).collect();
        let mut buf = std::mem::take(&mut self.buf);
        let mut corrupt = Vec::new();
        let mut result = Ok(());
        for id in ids {
            match self.read_into(id, &mut buf) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            match codec::decode_key(&buf) {
                Ok((kind, name)) => {
                    let pipe = self.index.intern(kind, name);
                    self.index.assign(id, pipe);
                }
                Err(e) => corrupt.push((id, e.to_string())),
            }
        }
        self.buf = buf;
        result?;
        for (id, why) in corrupt {
            self.discard_corrupt(id, &why)?;
        }
        Ok(())
    }

    fn require_mode(&self, wanted: Mode, op: &str) -> Result<()> {
        if self.mode == wanted {
            return Ok(());
        }
        let hint = match wanted {
            Mode::Storage => {
                "the store is in cache mode (peek() found the backlog drained); use \
                 peek_name/ack_name, or set_storage_mode() after a disconnect"
            }
            Mode::Cache => {
                "the store is in storage mode until peek() finds the backlog drained; use \
                 peek/ack"
            }
        };
        Err(Error::state(format!(
            "{op} is a {wanted} operation: {hint}"
        )))
    }

    // ----- operations ------------------------------------------------

    pub fn raise(
        &mut self,
        kind: EventKind,
        name: &str,
        args: &[u8],
        client_id: Option<i64>,
        uid: Uuid,
    ) -> Result<()> {
        validate(kind, name, args, client_id)?;
        let mut buf = std::mem::take(&mut self.buf);
        codec::encode(&mut buf, kind, name, args, client_id, uid);
        let result = self.store_encoded(kind, name, &buf);
        self.raise_slack = 0;
        self.buf = buf;
        result
    }

    /// Pending instances of a Replacing name that a new raise supersedes:
    /// all but the one in flight, oldest first.
    fn supersede_candidates(&mut self, name: &str) -> Result<Vec<Entry>> {
        self.ensure_names()?;
        let Some(pipe) = self
            .index
            .pipe_of(EventKind::Replacing, name)
            .and_then(|p| self.index.pipe(p))
        else {
            return Ok(Vec::new());
        };
        let cache_flight = pipe.in_flight.and(pipe.ids.front().copied());
        let storage_flight = self.index.storage_in_flight.map(|f| f.0);
        let ids: Vec<u64> = pipe
            .ids
            .iter()
            .copied()
            .filter(|&id| Some(id) != cache_flight && Some(id) != storage_flight)
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.index.get(id))
            .collect())
    }

    /// Drops the oldest pending events until the store is back within its
    /// capacity, and reports the drops. Never drops the newest event (one
    /// record is always smaller than the capacity).
    fn drop_to_capacity(&mut self, name: &str) -> Result<()> {
        let dropped = self.drop_oldest_until(0)?;
        if dropped > 0 {
            self.report(
                FailureKind::CapacityDrop,
                format!(
                    "capacity of {} bytes reached: dropped the {dropped} oldest pending \
                     event(s) to store '{name}'",
                    self.capacity
                ),
                dropped,
            );
        }
        Ok(())
    }

    /// Stores one encoded event. The new record is written first and made
    /// durable before anything it displaces (superseded instances, the
    /// oldest events when full) is removed, so a crash or power cut in
    /// between leaves both, never neither: the store is then one record over
    /// its capacity until the next raise or open settles it (the journal
    /// keeps room for that record).
    fn store_encoded(&mut self, kind: EventKind, name: &str, payload: &[u8]) -> Result<()> {
        let size = record_len(payload.len());
        let candidates = if kind.is_replacing() {
            self.supersede_candidates(name)?
        } else {
            Vec::new()
        };
        let freed: u64 = candidates.iter().map(|e| u64::from(e.size)).sum();
        let used = self.index.used();
        let over = used - freed + size > self.capacity;
        if over && self.overflow == Overflow::RejectNew {
            self.counters.rejected += 1;
            return Err(Error::StorageFull {
                needed: size,
                available: self.capacity.saturating_sub(used),
                capacity: self.capacity,
            });
        }
        let mut id = self.call(|log| log.append(payload))?;
        if id <= self.index.max_id() {
            let broken = Error::Backend(format!(
                "append returned sequence {id}, not above {}",
                self.index.max_id()
            ));
            if self.level() == Level::Memory {
                return Err(broken);
            }
            self.fall_back(&broken);
            id = self.call(|log| log.append(payload))?;
        }
        let pipe = self.index.intern(kind, name);
        self.index.push(id, size as u32, pipe);
        // Stored: from here until what it displaces is gone, a fallback
        // leaves this much over the capacity for drop_to_capacity below.
        self.raise_slack = size;
        if !candidates.is_empty() || self.index.used() > self.capacity {
            self.call(|log| log.barrier())?;
        }
        for c in &candidates {
            if self.remove(c.id, Removal::Superseded)? {
                self.counters.superseded += 1;
            }
        }
        // Also settles a capacity that a fallback above made smaller.
        self.drop_to_capacity(name)?;
        self.call(|log| log.commit())?;
        if self.index.get(id).is_none() {
            // Level 2 died after taking the event and before it could be read
            // back into level 1: the event is still in hand, store it again.
            let again = self.call(|log| log.append(payload))?;
            self.index.push(again, size as u32, pipe);
            self.drop_to_capacity(name)?;
        }
        Ok(())
    }

    pub fn peek(&mut self) -> Result<Option<Event>> {
        self.require_mode(Mode::Storage, "peek")?;
        loop {
            let Some(front) = self.index.front() else {
                self.mode = Mode::Cache;
                self.index.storage_in_flight = None;
                return Ok(None);
            };
            if let Some(event) = self.load_event(front.id)? {
                self.index.storage_in_flight = Some((front.id, event.uid));
                return Ok(Some(event));
            }
        }
    }

    /// The uid of a pending event: from the flight record if known.
    fn uid_of(&mut self, id: u64, known: Option<Uuid>) -> Result<Option<Uuid>> {
        match known {
            Some(uid) => Ok(Some(uid)),
            None => Ok(self.load_event(id)?.map(|e| e.uid)),
        }
    }

    fn refuse_ack(uid: Uuid, expected: Option<Uuid>) -> Error {
        let msg = match expected {
            Some(e) => format!(
                "ack for event {uid} refused: the event in flight is {e} (a late or repeated \
                 ack is ignored)"
            ),
            None => format!("ack for event {uid} refused: no event is pending"),
        };
        Error::state(msg)
    }

    pub fn ack(&mut self, uid: Uuid) -> Result<()> {
        self.require_mode(Mode::Storage, "ack")?;
        let Some(front) = self.index.front() else {
            return Err(Core::refuse_ack(uid, None));
        };
        let known = self
            .index
            .storage_in_flight
            .filter(|f| f.0 == front.id)
            .map(|f| f.1);
        let front_uid = self.uid_of(front.id, known)?;
        if front_uid != Some(uid) {
            return Err(Core::refuse_ack(uid, front_uid));
        }
        self.remove(front.id, Removal::Acknowledged)?;
        self.call(|log| log.commit())
    }

    fn pipe_front(&mut self, kind: EventKind, name: &str) -> Result<Option<(u32, u64)>> {
        validate_name(name)?;
        self.ensure_names()?;
        let pipe = self.index.pipe_of(kind, name);
        Ok(pipe.and_then(|p| Some((p, *self.index.pipe(p)?.ids.front()?))))
    }

    pub fn peek_name(&mut self, kind: EventKind, name: &str) -> Result<Option<Event>> {
        self.require_mode(Mode::Cache, "peek_name")?;
        loop {
            let Some((pipe, id)) = self.pipe_front(kind, name)? else {
                return Ok(None);
            };
            if let Some(event) = self.load_event(id)? {
                if let Some(p) = self.index.pipe_mut(pipe) {
                    p.in_flight = Some(event.uid);
                }
                return Ok(Some(event));
            }
        }
    }

    pub fn ack_name(&mut self, kind: EventKind, name: &str, uid: Uuid) -> Result<Option<Event>> {
        self.require_mode(Mode::Cache, "ack_name")?;
        let Some((pipe, id)) = self.pipe_front(kind, name)? else {
            return Err(Core::refuse_ack(uid, None));
        };
        let known = self.index.pipe(pipe).and_then(|p| p.in_flight);
        let front_uid = self.uid_of(id, known)?;
        if front_uid != Some(uid) {
            return Err(Core::refuse_ack(uid, front_uid));
        }
        self.remove(id, Removal::Acknowledged)?;
        self.call(|log| log.commit())?;
        self.peek_name(kind, name)
    }

    /// Every pending event in raise order, without changing anything.
    pub fn pending(&mut self) -> Result<Vec<Event>> {
        let ids: Vec<u64> = self.index.entries().map(|e| e.id).collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.load_event(id)?);
        }
        Ok(out)
    }

    pub fn set_storage_mode(&mut self) {
        self.mode = Mode::Storage;
        self.index.clear_in_flight();
    }

    pub fn invalidate_ancient(&mut self) -> Result<u64> {
        let limit = self.index.ancient_max;
        let ancient: Vec<u64> = self
            .index
            .entries()
            .take_while(|e| e.id <= limit)
            .map(|e| e.id)
            .collect();
        let mut invalidated = 0;
        for id in ancient {
            if self.remove(id, Removal::Invalidated)? {
                invalidated += 1;
            }
        }
        self.counters.invalidated += invalidated;
        self.index.ancient_max = 0;
        self.call(|log| log.commit())?;
        Ok(invalidated)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.call(|log| log.clear())?;
        self.index.clear();
        self.call(|log| log.commit())
    }

    pub fn flush(&mut self) -> Result<()> {
        self.call(|log| log.flush())
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
            failures: self.counters.failures,
            events_lost: self.counters.lost,
            storage_uid: self.storage_uid,
        }
    }
}

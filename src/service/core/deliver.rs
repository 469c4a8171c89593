//! Delivery: storage mode (the global FIFO, one event in flight), cache
//! mode (one pipeline per name), ancient data and reset.

use uuid::Uuid;

use crate::backend::Removal;
use crate::error::{Error, Result};
use crate::event::{validate_name, Event, EventKind};
use crate::service::core::expire::Expired;
use crate::service::core::Core;
use crate::service::options::Mode;

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

impl Core {
    pub fn peek(&mut self) -> Result<Option<Event>> {
        self.require_mode(Mode::Storage, "peek")?;
        let mut expired = Expired::default();
        let found = loop {
            let Some(front) = self.index.front() else {
                self.mode = Mode::Cache;
                self.index.storage_in_flight = None;
                break None;
            };
            let Some(event) = self.load_event(front.id)? else {
                continue;
            };
            let in_flight = self.index.storage_in_flight.map(|f| f.0) == Some(front.id);
            if !in_flight && self.expire(front.id, &event, &mut expired)? {
                continue;
            }
            self.index.storage_in_flight = Some((front.id, event.uid));
            break Some(event);
        };
        self.report_expired(expired)?;
        Ok(found)
    }

    pub fn ack(&mut self, uid: Uuid) -> Result<()> {
        self.require_mode(Mode::Storage, "ack")?;
        let Some(front) = self.index.front() else {
            return Err(refuse_ack(uid, None));
        };
        let known = self
            .index
            .storage_in_flight
            .filter(|f| f.0 == front.id)
            .map(|f| f.1);
        let front_uid = self.uid_of(front.id, known)?;
        if front_uid != Some(uid) {
            return Err(refuse_ack(uid, front_uid));
        }
        self.remove(front.id, Removal::Acknowledged)?;
        self.commit()
    }

    fn pipe_front(&mut self, kind: EventKind, name: &str) -> Result<Option<(u32, u64)>> {
        validate_name(name)?;
        self.ensure_names()?;
        let pipe = self.index.pipe_of(kind, name);
        Ok(pipe.and_then(|p| Some((p, *self.index.pipe(p)?.ids.front()?))))
    }

    pub fn peek_name(&mut self, kind: EventKind, name: &str) -> Result<Option<Event>> {
        self.require_mode(Mode::Cache, "peek_name")?;
        let mut expired = Expired::default();
        let found = loop {
            let Some((pipe, id)) = self.pipe_front(kind, name)? else {
                break None;
            };
            let Some(event) = self.load_event(id)? else {
                continue;
            };
            let in_flight = self.index.pipe(pipe).and_then(|p| p.in_flight) == Some(event.uid);
            if !in_flight && self.expire(id, &event, &mut expired)? {
                continue;
            }
            if let Some(p) = self.index.pipe_mut(pipe) {
                p.in_flight = Some(event.uid);
            }
            break Some(event);
        };
        self.report_expired(expired)?;
        Ok(found)
    }

    pub fn ack_name(&mut self, kind: EventKind, name: &str, uid: Uuid) -> Result<Option<Event>> {
        self.require_mode(Mode::Cache, "ack_name")?;
        let Some((pipe, id)) = self.pipe_front(kind, name)? else {
            return Err(refuse_ack(uid, None));
        };
        let known = self.index.pipe(pipe).and_then(|p| p.in_flight);
        let front_uid = self.uid_of(id, known)?;
        if front_uid != Some(uid) {
            return Err(refuse_ack(uid, front_uid));
        }
        self.remove(id, Removal::Acknowledged)?;
        self.commit()?;
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

    pub fn release_in_flight(&mut self) {
        self.index.clear_in_flight();
    }

    /// The event of `name` in flight is not in flight any more (it was
    /// taken, not sent).
    pub fn release_name(&mut self, kind: EventKind, name: &str) -> Result<()> {
        if let Some((pipe, _)) = self.pipe_front(kind, name)? {
            if let Some(p) = self.index.pipe_mut(pipe) {
                p.in_flight = None;
            }
        }
        Ok(())
    }

    /// Whether an event stored under the previous storage uid (moved at a
    /// fallback) is still pending: they are the oldest, ids in raise order.
    pub fn has_pending_under_previous_uid(&self) -> bool {
        self.index
            .front()
            .is_some_and(|front| front.id <= self.previous_uid_max_id)
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
        self.commit()?;
        Ok(invalidated)
    }

    pub fn reset(&mut self) -> Result<()> {
        self.call(|log| log.clear())?;
        self.index.clear();
        self.commit()
    }
}

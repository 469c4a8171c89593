//! What the service controller sends and when: the events that were in
//! flight at a disconnect first, then the strict drain in raise order
//! (storage mode, one event in flight), then one event in flight per name
//! (cache mode); and a new storage uid only once nothing stored under the
//! old one is in flight.

use uuid::Uuid;

use crate::controller::service::{key, Flight, Link, ServiceController, ServiceOutput};
use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::service::Mode;

impl ServiceController {
    /// Tells the broker `uid`.
    pub(super) fn announce(&mut self, uid: Uuid) {
        self.announced = Some(uid);
        self.outputs.push(ServiceOutput::SendStorageUid(uid));
    }

    /// True when the broker knows the store's current storage uid.
    pub(super) fn uid_current(&self) -> bool {
        self.announced == Some(self.store.storage_uid())
    }

    /// Whether sending may go on. A new storage uid (a level-2 failure gave
    /// the store one) is told to the broker only once no event stored under
    /// the uid it knows is pending: the broker's duplicate detection starts
    /// afresh with the new uid, and an event it queued already (in flight,
    /// or sent by an earlier process whose ack was lost) would be queued
    /// twice. So the events moved at the fallback (the oldest) are drained
    /// first, strictly in raise order under the old uid, once nothing is in
    /// flight; then the new uid is told and the drain goes on.
    fn uid_settled(&mut self) -> Result<bool> {
        if self.uid_current() {
            return Ok(true);
        }
        if !self.flights.is_empty() || self.replaying {
            return Ok(false);
        }
        let old_uid_known =
            self.announced.is_some() && self.announced == self.store.previous_storage_uid();
        if old_uid_known && self.store.has_pending_under_previous_uid()? {
            if self.store.mode() != Mode::Storage {
                self.store.set_storage_mode()?;
            }
            return Ok(true);
        }
        self.announce(self.store.storage_uid());
        self.store.set_storage_mode()?;
        Ok(true)
    }

    pub(super) fn send(&mut self, event: Event) {
        self.outputs.push(ServiceOutput::SendEvent(event.clone()));
        let deadline = self.now + self.timeout;
        self.sent += 1;
        let order = self.sent;
        self.flights.insert(
            key(&event),
            Flight {
                event,
                deadline,
                order,
            },
        );
    }

    /// After the handshake: the events in flight at the disconnect first,
    /// or else a fresh drain from the oldest pending event, whatever mode
    /// an earlier controller left the store in.
    pub(super) fn start_session(&mut self) -> Result<()> {
        if self.resend_first.is_empty() || self.store.mode() != Mode::Cache {
            self.resend_first.clear();
            self.store.set_storage_mode()?;
            return self.pump();
        }
        self.replaying = true;
        self.replay_next()
    }

    /// Sends again the next event that was in flight when the link went
    /// down, if it is still the oldest pending event of its name (it may
    /// have been dropped or invalidated since). When none is left, the
    /// drain starts.
    fn replay_next(&mut self) -> Result<()> {
        while let Some(event) = self.resend_first.pop_front() {
            match self.store.peek_name(event.kind, &event.name)? {
                Some(front) if front.uid == event.uid => {
                    self.send(front);
                    return Ok(());
                }
                // Gone, or superseded: the store took the name's front for
                // in flight, which it is not.
                Some(_) => self.store.release_in_flight()?,
                None => {}
            }
        }
        self.replaying = false;
        self.store.set_storage_mode()?;
        self.pump()
    }

    /// Storage mode with nothing in flight: send the oldest pending event;
    /// if there is none the store is now in cache mode.
    pub(super) fn pump(&mut self) -> Result<()> {
        if self.link != Link::Online || self.replaying || !self.uid_settled()? {
            return Ok(());
        }
        if self.store.mode() != Mode::Storage || !self.flights.is_empty() {
            return Ok(());
        }
        if let Some(event) = self.store.peek()? {
            self.send(event);
        }
        Ok(())
    }

    /// Cache mode: send the name's next event if the name has none in
    /// flight.
    fn pump_name(&mut self, kind: EventKind, name: &str) -> Result<()> {
        if self.link != Link::Online
            || self.replaying
            || self.store.mode() != Mode::Cache
            || self
                .flights
                .contains_key(&(kind.pipeline(), name.to_string()))
            || !self.uid_settled()?
            || self.store.mode() != Mode::Cache
        {
            return Ok(());
        }
        if let Some(event) = self.store.peek_name(kind, name)? {
            self.send(event);
        }
        Ok(())
    }

    pub(super) fn after_raise(&mut self, kind: EventKind, name: &str) -> Result<()> {
        match self.store.mode() {
            Mode::Storage => self.pump(),
            Mode::Cache => self.pump_name(kind, name),
        }
    }

    /// After an event in flight was acknowledged or rejected: the next one
    /// to send again, or the name's next event, and the drain.
    pub(super) fn after_settle(&mut self, event: &Event) -> Result<()> {
        if self.replaying {
            // The store took the name's next event for in flight; it is not
            // sent until the drain reaches it.
            self.store.release_in_flight()?;
            return self.replay_next();
        }
        if self.store.mode() == Mode::Cache {
            // The name's next event, if the store holds one that was raised
            // while this one was in flight but is not in flight yet.
            self.pump_name(event.kind, &event.name)?;
        }
        self.pump()
    }
}

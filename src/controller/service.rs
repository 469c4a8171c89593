//! The service side of the delivery protocol (docs/PROTOCOL.md section 2),
//! sans I/O: the controller's inputs and outputs. How it decides what to
//! send is in `drain.rs`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{ErrorKind, Result};
use crate::event::{Event, EventKind};
use crate::service::{Mode, ServiceStore};

/// How long an event waits for its ack before it is sent again.
pub const DEFAULT_RESEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the controller asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOutput {
    /// Send this event to the broker (again, with the same uid, on a
    /// resend).
    SendEvent(Event),
    /// Tell the broker our storage uid (its duplicate detection is tied to
    /// it).
    SendStorageUid(Uuid),
    /// The broker refused this event's name; the event was dropped from the
    /// store. For the application's log.
    Rejected(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// No transport.
    Offline,
    /// Transport up, waiting for the broker's "online" with its uid.
    Connected,
    /// Handshake done: delivering.
    Online,
}

#[derive(Debug, Clone)]
pub(super) struct Flight {
    pub(super) event: Event,
    pub(super) deadline: Duration,
    /// When it was first sent, in this controller's order of sends: ties
    /// between resends due at the same moment go oldest first.
    pub(super) order: u64,
}

/// Drives a [`ServiceStore`] through the delivery protocol: the storage-uid
/// handshake, the strict in-order drain of the backlog with one event in
/// flight, then one event in flight per name, resends after a timeout with
/// the same uid, acks only for the event in flight, and back to storage
/// mode on disconnect.
///
/// It does no I/O and reads no clock: feed it what happened
/// ([`raise`](Self::raise), [`connected`](Self::connected),
/// [`online`](Self::online), [`ack`](Self::ack),
/// [`rejected`](Self::rejected), [`disconnected`](Self::disconnected)) and
/// the time ([`tick`](Self::tick): the time of every later input is the
/// last one ticked), then send what [`drain_outputs`](Self::drain_outputs)
/// returns and call `tick` again by [`next_deadline`](Self::next_deadline).
///
/// After a disconnect, the events that were in flight are sent first (each
/// name's events stay in raise order), then the drain goes on from the
/// oldest pending event in raise order. A new storage uid (after a level-2
/// failure) is told to the broker only once no event stored under the old
/// one is in flight, so no event reaches the broker twice because its
/// duplicate detection started afresh.
#[derive(Debug)]
pub struct ServiceController {
    pub(super) store: Arc<ServiceStore>,
    pub(super) link: Link,
    pub(super) now: Duration,
    pub(super) timeout: Duration,
    /// In flight, keyed by pipeline: in storage mode only the key of the
    /// one event in flight is used.
    pub(super) flights: HashMap<(EventKind, String), Flight>,
    /// The events that were in flight when the link went down, to send
    /// again first after the next `online`, in the order they were sent.
    pub(super) resend_first: VecDeque<Event>,
    /// True while those are being sent again: nothing else is sent.
    pub(super) replaying: bool,
    pub(super) outputs: Vec<ServiceOutput>,
    /// The storage uid the broker was last told about in this session.
    pub(super) announced: Option<Uuid>,
    pub(super) sent: u64,
    /// Whether `tick` was called yet (see [`tick`](Self::tick)).
    pub(super) ticked: bool,
    pub(super) stale_acks: u64,
    pub(super) rejected: u64,
}

pub(super) fn key(e: &Event) -> (EventKind, String) {
    (e.kind.pipeline(), e.name.clone())
}

impl ServiceController {
    /// A controller over `store`, offline, with the default resend timeout.
    pub fn new(store: Arc<ServiceStore>) -> ServiceController {
        ServiceController::with_timeout(store, DEFAULT_RESEND_TIMEOUT)
    }

    /// A controller with a resend timeout of its own.
    pub fn with_timeout(store: Arc<ServiceStore>, timeout: Duration) -> ServiceController {
        ServiceController {
            store,
            link: Link::Offline,
            now: Duration::ZERO,
            timeout,
            flights: HashMap::new(),
            resend_first: VecDeque::new(),
            replaying: false,
            outputs: Vec::new(),
            announced: None,
            sent: 0,
            ticked: false,
            stale_acks: 0,
            rejected: 0,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<ServiceStore> {
        &self.store
    }

    /// True between `online` and `disconnected`.
    pub fn is_online(&self) -> bool {
        self.link == Link::Online
    }

    /// Events in flight (sent, not yet acknowledged).
    pub fn in_flight(&self) -> Vec<Uuid> {
        self.flights.values().map(|f| f.event.uid).collect()
    }

    /// Acks ignored because their uid was not in flight (late, repeated).
    pub fn stale_acks(&self) -> u64 {
        self.stale_acks
    }

    /// Events dropped because the broker refused their name.
    pub fn rejected_count(&self) -> u64 {
        self.rejected
    }

    /// What to send (and report), in order; empties the queue.
    pub fn drain_outputs(&mut self) -> Vec<ServiceOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// When `tick` must be called next (the earliest resend), if anything is
    /// in flight.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.flights.values().map(|f| f.deadline).min()
    }

    /// The application raised an event: store it, and send it now if the
    /// protocol allows. Returns its uid.
    pub fn raise(&mut self, kind: EventKind, name: &str, args: &[u8]) -> Result<Uuid> {
        let uid = self.store.raise(kind, name, args)?;
        self.after_raise(kind, name)?;
        Ok(uid)
    }

    /// As [`raise`](Self::raise) for a prepared event (its own uid, or a
    /// Private event's client id).
    pub fn raise_event(&mut self, event: &Event) -> Result<Uuid> {
        let uid = self.store.raise_event(event)?;
        self.after_raise(event.kind, &event.name)?;
        Ok(uid)
    }

    /// The transport is up; the broker's `online` (with the storage uid it
    /// remembers) comes next.
    pub fn connected(&mut self) {
        if self.link == Link::Offline {
            self.link = Link::Connected;
        }
    }

    /// The broker is ready and remembers `broker_storage_uid` for us (None:
    /// nothing). Performs the storage-uid handshake (invalidating ancient
    /// data when the broker remembers another uid than ours, or than the one
    /// we had before a fallback), sends again what was in flight when the
    /// link went down, and starts the drain.
    ///
    /// A second `online` without `disconnected` in between starts a new
    /// session as if the link had gone down in between: what was in flight
    /// is sent again first.
    pub fn online(&mut self, broker_storage_uid: Option<Uuid>) -> Result<()> {
        if self.link == Link::Online {
            self.disconnected()?;
        }
        self.link = Link::Online;
        let ours = self.store.storage_uid();
        match broker_storage_uid {
            Some(theirs) if theirs == ours => self.announced = Some(ours),
            Some(theirs) if Some(theirs) == self.store.previous_storage_uid() => {
                // A level-2 failure gave the store a new uid after the
                // broker last saw it; the events it moved were stored under
                // the uid the broker remembers, so they are not ancient to
                // it. The new uid is told once what was in flight under
                // the old one is acknowledged (`pump`).
                self.announced = Some(theirs);
            }
            Some(_) => {
                self.store.invalidate_ancient()?;
                self.announce(ours);
            }
            None => self.announce(ours),
        }
        self.start_session()
    }

    /// The broker acknowledged `uid`. Counts only if it is in flight;
    /// anything else (late, repeated) is ignored.
    pub fn ack(&mut self, uid: Uuid) -> Result<()> {
        self.settle(uid, false)
    }

    /// The broker refused the event name of `uid`: the event is dropped and
    /// reported as [`ServiceOutput::Rejected`].
    pub fn rejected(&mut self, uid: Uuid) -> Result<()> {
        self.settle(uid, true)
    }

    fn settle(&mut self, uid: Uuid, rejected: bool) -> Result<()> {
        let Some(k) = self
            .flights
            .iter()
            .find(|(_, f)| f.event.uid == uid)
            .map(|(k, _)| k.clone())
        else {
            self.stale_acks += 1;
            return Ok(());
        };
        let Some(flight) = self.flights.remove(&k) else {
            return Ok(());
        };
        let settled = match self.store.mode() {
            Mode::Storage => self.store.ack(uid).map(|()| None),
            Mode::Cache => self
                .store
                .ack_name(flight.event.kind, &flight.event.name, uid),
        };
        // The rejection is reported before anything it lets go out next.
        let failed = matches!(&settled, Err(e) if e.kind() != ErrorKind::State);
        if rejected && !failed {
            self.rejected += 1;
            self.outputs
                .push(ServiceOutput::Rejected(flight.event.clone()));
        }
        match settled {
            // Cache mode: the name's next event, under the uid the broker
            // knows (else the drain starts again once it is told).
            Ok(Some(next)) if !self.replaying && self.uid_current() => self.send(next),
            // Not sent now: the store must not keep it in flight (a newer
            // Replacing instance must still supersede it).
            Ok(Some(next)) if !self.replaying => self.store.release_name(next.kind, &next.name)?,
            Ok(_) => {}
            // The store no longer holds it (dropped for capacity while in
            // flight): nothing to remove.
            Err(e) if e.kind() == ErrorKind::State => self.stale_acks += 1,
            Err(e) => return Err(e),
        }
        self.after_settle(&flight.event)
    }

    /// The transport is gone: what was in flight is sent again first after
    /// the next `online`.
    pub fn disconnected(&mut self) -> Result<()> {
        self.link = Link::Offline;
        self.announced = None;
        let mut flights: Vec<Flight> = self.flights.drain().map(|(_, f)| f).collect();
        flights.sort_by_key(|f| f.order);
        let mut again: VecDeque<Event> = flights.into_iter().map(|f| f.event).collect();
        // What was left to send again from an earlier session goes first.
        again.extend(std::mem::take(&mut self.resend_first));
        let mut seen = std::collections::HashSet::new();
        again.retain(|e| seen.insert(e.uid));
        self.resend_first = again;
        self.replaying = false;
        if self.store.mode() == Mode::Storage || self.resend_first.is_empty() {
            // In storage mode the one event in flight is the oldest: the
            // drain sends it first anyway.
            self.resend_first.clear();
            return self.store.set_storage_mode();
        }
        // Cache mode stays until the events in flight were sent again:
        // each is still the oldest pending event of its name (unless a
        // newer Replacing instance supersedes it meanwhile).
        self.store.release_in_flight()
    }

    /// The time is `now` (monotonic, from any epoch the caller likes):
    /// events whose ack is overdue are sent again, with the same uid.
    ///
    /// The clock's origin is the caller's: until the first `tick` the
    /// controller's time is 0, and the first `tick` moves the deadlines
    /// of events sent before it by the time it gives, so a clock that
    /// does not start at 0 (`CLOCK_MONOTONIC`, `time.monotonic()`) does
    /// not make them overdue at once.
    pub fn tick(&mut self, now: Duration) {
        if !self.ticked {
            self.ticked = true;
            for f in self.flights.values_mut() {
                f.deadline += now;
            }
        }
        self.now = self.now.max(now);
        if self.link != Link::Online {
            return;
        }
        let mut due: Vec<&mut Flight> = self
            .flights
            .values_mut()
            .filter(|f| f.deadline <= now)
            .collect();
        // Oldest first, so resends keep the order they were sent in.
        due.sort_by_key(|f| (f.deadline, f.order));
        for f in due {
            f.deadline = now + self.timeout;
            self.outputs.push(ServiceOutput::SendEvent(f.event.clone()));
        }
    }
}

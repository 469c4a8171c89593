//! A model of the Softnet broker, for tests only (not part of the product).
//!
//! What it models (docs/BEHAVIOUR.md sections 2 and 4 and docs/PROTOCOL.md):
//! - one queue per event defined on the site: Replacing (and Replacing
//!   null) keeps only the newest instance; Queueing is a FIFO with a maximum
//!   length (1..1000, oldest evicted) and a lifetime (taken from the
//!   caller's clock); Private is a FIFO of 1000 per client, for stateful
//!   clients only;
//! - increasing i64 instance ids per event queue;
//! - the service agent: the storage-uid handshake (the broker remembers the
//!   service's storage uid and tells it on `online`), name rejection for
//!   events not defined on the site, and the duplicate rule: a repeat of the
//!   last acknowledged uid of a name, scoped to the remembered storage uid,
//!   is acknowledged again and not enqueued;
//! - client agents: a stateful client is remembered (the last instance id
//!   it acknowledged per subscription; delivery resumes after it), a
//!   stateless client says on connect the last id it holds per subscription
//!   (without one, delivery starts at the head of the queue); one event in
//!   flight per subscription, resent after a timeout.
//!
//! It is sans I/O like the controllers: the simulator feeds it messages and
//! the time, and routes what [`Broker::drain_outputs`] returns. What it did
//! to events (accepted, acked again, rejected, replaced, evicted) is told
//! through [`Broker::drain_notes`], for the simulator's accounting.

use std::collections::HashMap;
use std::time::Duration;

use softnet_persistence::{ClientAck, ClientHello};
use softnet_persistence::{Event, Uuid};

use client_agent::ClientAgent;
use queues::Queue;
use service_agent::ServiceAgent;

mod client_agent;
mod queues;
mod service_agent;

/// Length of a Private queue (per client).
pub const PRIVATE_QUEUE_LEN: usize = 1000;

/// How the site defines an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// Replacing and Replacing null: only the newest instance is kept.
    Replacing,
    /// FIFO, oldest evicted beyond `max_len`, expired after `lifetime`.
    Queueing {
        /// 1..=1000.
        max_len: usize,
        /// 60 s..30 days in Softnet; any duration here.
        lifetime: Duration,
    },
    /// FIFO of [`PRIVATE_QUEUE_LEN`] per target client.
    Private,
}

/// A client the broker knows.
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec {
    /// Its id (the target of Private events).
    pub client_id: i64,
    /// Remembered by the broker between connections.
    pub stateful: bool,
}

/// Service to broker.
#[derive(Debug, Clone)]
pub enum FromService {
    /// An event (new or resent, same uid).
    Event(Event),
    /// The service's storage uid.
    StorageUid(Uuid),
}

/// Broker to service.
#[derive(Debug, Clone)]
pub enum ToService {
    /// Ready; the storage uid the broker remembers for the service.
    Online(Option<Uuid>),
    /// The event is in its queue (or was already).
    Ack(Uuid),
    /// The event's name is not defined on the site.
    Rejected(Uuid),
}

/// Client to broker.
#[derive(Debug, Clone)]
pub enum FromClient {
    /// First message of a connection.
    Hello(ClientHello),
    /// The client handled (or dropped as a duplicate) an event.
    Ack(ClientAck),
}

/// Broker to client.
#[derive(Debug, Clone)]
pub struct Deliver {
    /// Subscription.
    pub name: String,
    /// Instance id.
    pub id: i64,
    /// The event's uid (for the simulator's accounting only).
    pub uid: Uuid,
}

/// A message from the broker.
#[derive(Debug, Clone)]
pub enum Out {
    /// To the service.
    Service(ToService),
    /// To client number `.0` (index in the broker's client list).
    Client(usize, Deliver),
}

/// Why an instance left its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// A newer instance of a Replacing event took its place.
    Replaced,
    /// Evicted from a full Queueing or Private queue.
    Evicted,
    /// Its Queueing lifetime ran out.
    Expired,
}

/// What the broker did, for the simulator's accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A new event entered its queue.
    Accepted {
        /// Event uid.
        uid: Uuid,
        /// Event name.
        name: String,
        /// Instance id given to it.
        id: i64,
        /// Target client index for a Private event.
        target: Option<usize>,
    },
    /// A repeat of the name's last acknowledged uid: acked again, not
    /// enqueued.
    DuplicateAcked(Uuid),
    /// Name not defined on the site.
    Rejected(Uuid),
    /// An instance left its queue (not by delivery).
    Removed(Uuid, Gone),
    /// A stateless client connected: these events (the current queue of
    /// each subscription it sent no id for) are delivered from the head.
    Redeliverable {
        /// Client index.
        client: usize,
        /// The events that will be delivered again.
        uids: Vec<Uuid>,
    },
}

/// Counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerStats {
    /// Events accepted into a queue.
    pub accepted: u64,
    /// Repeats acknowledged again (not enqueued).
    pub duplicate_acks: u64,
    /// Events refused (name not on the site).
    pub rejected: u64,
    /// Client deliveries sent again after the timeout.
    pub client_resends: u64,
    /// Client acks that did not match the event in flight.
    pub stale_client_acks: u64,
}

/// The broker model.
#[derive(Debug)]
pub struct Broker {
    now: Duration,
    timeout: Duration,
    /// Site event definitions, in a stable order.
    names: Vec<String>,
    queues: HashMap<String, Queue>,
    service: ServiceAgent,
    clients: Vec<ClientAgent>,
    outputs: Vec<Out>,
    notes: Vec<Note>,
    /// Counters.
    pub stats: BrokerStats,
}

impl Broker {
    /// A broker for `site` (event name, definition) and `clients` (all
    /// subscribed to every event of the site; Private events reach stateful
    /// clients only). Instance ids of each queue start at `first_id`.
    /// Client deliveries are resent after `timeout`.
    pub fn new(
        site: &[(String, SiteKind)],
        clients: &[ClientSpec],
        timeout: Duration,
        first_id: i64,
    ) -> Broker {
        Broker {
            now: Duration::ZERO,
            timeout,
            names: site.iter().map(|(n, _)| n.clone()).collect(),
            queues: site
                .iter()
                .map(|(name, kind)| (name.clone(), Queue::new(*kind, first_id)))
                .collect(),
            service: ServiceAgent::default(),
            clients: clients.iter().map(|&spec| ClientAgent::new(spec)).collect(),
            outputs: Vec::new(),
            notes: Vec::new(),
            stats: BrokerStats::default(),
        }
    }

    /// The time (monotonic); later inputs happen at it.
    pub fn set_now(&mut self, now: Duration) {
        self.now = self.now.max(now);
    }

    /// Messages to route, in order.
    pub fn drain_outputs(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.outputs)
    }

    /// What happened to events since the last call.
    pub fn drain_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The storage uid remembered for the service.
    pub fn remembered_storage_uid(&self) -> Option<Uuid> {
        self.service.storage_uid
    }
}

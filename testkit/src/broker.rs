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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use softnet_persistence::{ClientAck, ClientHello};
use softnet_persistence::{Event, EventKind, Uuid};

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

impl SiteKind {
    fn accepts(self, kind: EventKind) -> bool {
        matches!(
            (self, kind),
            (
                SiteKind::Replacing,
                EventKind::Replacing | EventKind::ReplacingNull
            ) | (SiteKind::Queueing { .. }, EventKind::Queueing)
                | (SiteKind::Private, EventKind::Private)
        )
    }
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

#[derive(Debug, Clone, Copy)]
struct Instance {
    id: i64,
    uid: Uuid,
    at: Duration,
}

#[derive(Debug)]
struct Queue {
    kind: SiteKind,
    next_id: i64,
    /// Replacing (at most one) and Queueing instances, oldest first.
    items: VecDeque<Instance>,
    /// Private: per client index.
    private: BTreeMap<usize, VecDeque<Instance>>,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    id: i64,
    deadline: Duration,
}

#[derive(Debug)]
struct ClientAgent {
    spec: ClientSpec,
    /// Said hello on the current connection.
    connected: bool,
    /// Last acknowledged id per subscription (stateful: kept across
    /// connections; stateless: from the hello, for this connection).
    last: BTreeMap<String, i64>,
    flights: BTreeMap<String, Flight>,
}

#[derive(Debug, Default)]
struct ServiceAgent {
    storage_uid: Option<Uuid>,
    /// Last acknowledged uid per name, for `storage_uid`.
    last_acked: HashMap<String, Uuid>,
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
                .map(|(name, kind)| {
                    let queue = Queue {
                        kind: *kind,
                        next_id: first_id,
                        items: VecDeque::new(),
                        private: BTreeMap::new(),
                    };
                    (name.clone(), queue)
                })
                .collect(),
            service: ServiceAgent::default(),
            clients: clients
                .iter()
                .map(|&spec| ClientAgent {
                    spec,
                    connected: false,
                    last: BTreeMap::new(),
                    flights: BTreeMap::new(),
                })
                .collect(),
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

    // ----- service agent ----------------------------------------------

    /// The service connected: tell it the storage uid we remember.
    pub fn service_connected(&mut self) {
        self.outputs
            .push(Out::Service(ToService::Online(self.service.storage_uid)));
    }

    /// A message from the service.
    pub fn service_message(&mut self, msg: FromService) {
        match msg {
            FromService::StorageUid(uid) => {
                if self.service.storage_uid != Some(uid) {
                    // Duplicate detection belongs to a storage uid: a new
                    // one starts it afresh.
                    self.service.storage_uid = Some(uid);
                    self.service.last_acked.clear();
                }
            }
            FromService::Event(event) => self.service_event(event),
        }
    }

    fn service_event(&mut self, event: Event) {
        let uid = event.uid;
        let defined = self
            .queues
            .get(&event.name)
            .is_some_and(|q| q.kind.accepts(event.kind));
        if !defined {
            self.stats.rejected += 1;
            self.notes.push(Note::Rejected(uid));
            self.outputs.push(Out::Service(ToService::Rejected(uid)));
            return;
        }
        if self.service.last_acked.get(&event.name) == Some(&uid) {
            self.stats.duplicate_acks += 1;
            self.notes.push(Note::DuplicateAcked(uid));
            self.outputs.push(Out::Service(ToService::Ack(uid)));
            return;
        }
        let target = match event.kind {
            EventKind::Private => {
                let wanted = event.client_id;
                match self
                    .clients
                    .iter()
                    .position(|c| Some(c.spec.client_id) == wanted && c.spec.stateful)
                {
                    Some(c) => Some(c),
                    None => {
                        // No such stateful client: the name is fine but
                        // there is nobody to queue it for.
                        self.stats.rejected += 1;
                        self.notes.push(Note::Rejected(uid));
                        self.outputs.push(Out::Service(ToService::Rejected(uid)));
                        return;
                    }
                }
            }
            _ => None,
        };
        self.expire(&event.name);
        let now = self.now;
        let queue = self.queues.get_mut(&event.name).expect("defined");
        let id = queue.next_id;
        queue.next_id += 1;
        let instance = Instance { id, uid, at: now };
        let mut removed = Vec::new();
        match queue.kind {
            SiteKind::Replacing => {
                removed.extend(queue.items.drain(..).map(|i| (i.uid, Gone::Replaced)));
                queue.items.push_back(instance);
            }
            SiteKind::Queueing { max_len, .. } => {
                while queue.items.len() >= max_len.max(1) {
                    let old = queue.items.pop_front().expect("non-empty");
                    removed.push((old.uid, Gone::Evicted));
                }
                queue.items.push_back(instance);
            }
            SiteKind::Private => {
                let q = queue.private.entry(target.expect("private")).or_default();
                while q.len() >= PRIVATE_QUEUE_LEN {
                    let old = q.pop_front().expect("non-empty");
                    removed.push((old.uid, Gone::Evicted));
                }
                q.push_back(instance);
            }
        }
        self.notes
            .extend(removed.into_iter().map(|(u, g)| Note::Removed(u, g)));
        self.stats.accepted += 1;
        self.notes.push(Note::Accepted {
            uid,
            name: event.name.clone(),
            id,
            target,
        });
        self.service.last_acked.insert(event.name.clone(), uid);
        self.outputs.push(Out::Service(ToService::Ack(uid)));
        match target {
            Some(c) => self.pump(c, &event.name),
            None => {
                for c in 0..self.clients.len() {
                    self.pump(c, &event.name);
                }
            }
        }
    }

    // ----- client agents ----------------------------------------------

    /// Client `c`'s connection is gone: nothing is in flight any more; a
    /// stateless client is forgotten.
    pub fn client_disconnected(&mut self, c: usize) {
        let agent = &mut self.clients[c];
        agent.connected = false;
        agent.flights.clear();
        if !agent.spec.stateful {
            agent.last.clear();
        }
    }

    /// A message from client `c`.
    pub fn client_message(&mut self, c: usize, msg: FromClient) {
        match msg {
            FromClient::Hello(hello) => self.hello(c, hello),
            FromClient::Ack(ack) => {
                let agent = &mut self.clients[c];
                match agent.flights.get(&ack.name) {
                    Some(f) if f.id == ack.id && agent.connected => {
                        agent.flights.remove(&ack.name);
                        agent.last.insert(ack.name.clone(), ack.id);
                        self.pump(c, &ack.name);
                    }
                    _ => self.stats.stale_client_acks += 1,
                }
            }
        }
    }

    fn subscribed(&self, c: usize, name: &str) -> bool {
        match self.queues.get(name) {
            Some(q) => q.kind != SiteKind::Private || self.clients[c].spec.stateful,
            None => false,
        }
    }

    fn hello(&mut self, c: usize, hello: ClientHello) {
        let stateful = self.clients[c].spec.stateful;
        match hello {
            ClientHello::Stateful => {
                assert!(stateful, "client {c} is stateless but said Stateful");
            }
            ClientHello::Stateless { last_ids } => {
                assert!(!stateful, "client {c} is stateful but said Stateless");
                for name in self.names.clone() {
                    self.expire(&name);
                }
                let last: BTreeMap<String, i64> = last_ids
                    .into_iter()
                    .filter(|(name, _)| self.subscribed(c, name))
                    .collect();
                // Subscriptions without an id start at the head: their
                // whole current queue is delivered (again).
                let mut uids = Vec::new();
                for name in &self.names {
                    if self.subscribed(c, name) && !last.contains_key(name) {
                        uids.extend(self.items_for(c, name).iter().map(|i| i.uid));
                    }
                }
                self.notes.push(Note::Redeliverable { client: c, uids });
                self.clients[c].last = last;
            }
        }
        let agent = &mut self.clients[c];
        agent.connected = true;
        agent.flights.clear();
        for name in self.names.clone() {
            self.pump(c, &name);
        }
    }

    fn items_for(&self, c: usize, name: &str) -> &VecDeque<Instance> {
        static EMPTY: VecDeque<Instance> = VecDeque::new();
        let Some(q) = self.queues.get(name) else {
            return &EMPTY;
        };
        match q.kind {
            SiteKind::Private => q.private.get(&c).unwrap_or(&EMPTY),
            _ => &q.items,
        }
    }

    /// Drops expired Queueing instances of `name`.
    fn expire(&mut self, name: &str) {
        let now = self.now;
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        if let SiteKind::Queueing { lifetime, .. } = q.kind {
            while q.items.front().is_some_and(|i| i.at + lifetime <= now) {
                let old = q.items.pop_front().expect("non-empty");
                self.notes.push(Note::Removed(old.uid, Gone::Expired));
            }
        }
    }

    /// Sends client `c` the next event of `name` if nothing is in flight.
    fn pump(&mut self, c: usize, name: &str) {
        let agent = &self.clients[c];
        if !agent.connected || agent.flights.contains_key(name) || !self.subscribed(c, name) {
            return;
        }
        self.expire(name);
        let last = self.clients[c].last.get(name).copied();
        let next = self
            .items_for(c, name)
            .iter()
            .find(|i| last.is_none_or(|l| i.id > l))
            .copied();
        if let Some(i) = next {
            self.outputs.push(Out::Client(
                c,
                Deliver {
                    name: name.to_string(),
                    id: i.id,
                    uid: i.uid,
                },
            ));
            let deadline = self.now + self.timeout;
            self.clients[c]
                .flights
                .insert(name.to_string(), Flight { id: i.id, deadline });
        }
    }

    /// Resends overdue deliveries (or moves on if the instance left its
    /// queue meanwhile) and expires old instances.
    pub fn tick(&mut self) {
        for name in self.names.clone() {
            self.expire(&name);
        }
        let now = self.now;
        for c in 0..self.clients.len() {
            let due: Vec<(String, Flight)> = self.clients[c]
                .flights
                .iter()
                .filter(|(_, f)| f.deadline <= now)
                .map(|(n, f)| (n.clone(), *f))
                .collect();
            for (name, flight) in due {
                let still = self
                    .items_for(c, &name)
                    .iter()
                    .find(|i| i.id == flight.id)
                    .copied();
                match still {
                    Some(i) => {
                        self.stats.client_resends += 1;
                        self.outputs.push(Out::Client(
                            c,
                            Deliver {
                                name: name.clone(),
                                id: i.id,
                                uid: i.uid,
                            },
                        ));
                        let deadline = now + self.timeout;
                        self.clients[c]
                            .flights
                            .insert(name, Flight { id: i.id, deadline });
                    }
                    None => {
                        self.clients[c].flights.remove(&name);
                        self.pump(c, &name);
                    }
                }
            }
        }
    }

    /// When `tick` must run next (the earliest client resend), if anything
    /// is in flight.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.clients
            .iter()
            .flat_map(|a| a.flights.values().map(|f| f.deadline))
            .min()
    }

    /// True when every connected client has nothing in flight and nothing
    /// left to receive, and every client is connected.
    pub fn caught_up(&self) -> bool {
        (0..self.clients.len()).all(|c| {
            let agent = &self.clients[c];
            agent.connected
                && agent.flights.is_empty()
                && self.names.iter().all(|name| {
                    !self.subscribed(c, name) || {
                        let last = agent.last.get(name).copied();
                        self.items_for(c, name)
                            .iter()
                            .all(|i| last.is_some_and(|l| i.id <= l))
                    }
                })
        })
    }
}

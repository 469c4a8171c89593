//! The client agents: connections and hellos, one delivery in flight per
//! subscription, acks, resends after the timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use softnet_persistence::{ClientHello, Uuid};

use super::queues::Instance;
use super::{Broker, ClientSpec, Deliver, FromClient, Note, Out, SiteKind};

#[derive(Debug, Clone, Copy)]
struct Flight {
    id: i64,
    deadline: Duration,
}

#[derive(Debug)]
pub(super) struct ClientAgent {
    pub(super) spec: ClientSpec,
    /// Said hello on the current connection.
    connected: bool,
    /// Last acknowledged id per subscription (stateful: kept across
    /// connections; stateless: from the hello, for this connection).
    last: BTreeMap<String, i64>,
    flights: BTreeMap<String, Flight>,
}

impl ClientAgent {
    /// A client not connected yet, with nothing acknowledged.
    pub(super) fn new(spec: ClientSpec) -> ClientAgent {
        ClientAgent {
            spec,
            connected: false,
            last: BTreeMap::new(),
            flights: BTreeMap::new(),
        }
    }
}

impl Broker {
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
                self.stateless_hello(c, last_ids);
            }
        }
        let agent = &mut self.clients[c];
        agent.connected = true;
        agent.flights.clear();
        for name in self.names.clone() {
            self.pump(c, &name);
        }
    }

    /// A stateless client starts each subscription after the id it says
    /// it holds; the broker remembers nothing of it.
    fn stateless_hello(&mut self, c: usize, last_ids: Vec<(String, i64)>) {
        self.expire_all();
        let last: BTreeMap<String, i64> = last_ids
            .into_iter()
            .filter(|(name, _)| self.subscribed(c, name))
            .collect();
        // Subscriptions without an id start at the head: their
        // whole current queue is delivered (again).
        let mut uids: Vec<Uuid> = Vec::new();
        for name in &self.names {
            if self.subscribed(c, name) && !last.contains_key(name) {
                uids.extend(self.items_for(c, name).iter().map(|i| i.uid));
            }
        }
        self.notes.push(Note::Redeliverable { client: c, uids });
        self.clients[c].last = last;
    }

    /// Sends client `c` the next event of `name` if nothing is in flight.
    pub(super) fn pump(&mut self, c: usize, name: &str) {
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
            self.deliver(c, name, i);
        }
    }

    /// Sends instance `i` of `name` to client `c`; it is in flight until
    /// acked, and resent at the deadline.
    fn deliver(&mut self, c: usize, name: &str, i: Instance) {
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

    /// Resends overdue deliveries (or moves on if the instance left its
    /// queue meanwhile) and expires old instances.
    pub fn tick(&mut self) {
        self.expire_all();
        let now = self.now;
        for c in 0..self.clients.len() {
            let due: Vec<(String, Flight)> = self.clients[c]
                .flights
                .iter()
                .filter(|(_, f)| f.deadline <= now)
                .map(|(n, f)| (n.clone(), *f))
                .collect();
            for (name, flight) in due {
                self.resend_or_move_on(c, name, flight);
            }
        }
    }

    /// An overdue delivery of `name` to client `c`: sent again if the
    /// instance is still queued, else the next one is sent.
    fn resend_or_move_on(&mut self, c: usize, name: String, flight: Flight) {
        let still = self
            .items_for(c, &name)
            .iter()
            .find(|i| i.id == flight.id)
            .copied();
        match still {
            Some(i) => {
                self.stats.client_resends += 1;
                self.deliver(c, &name, i);
            }
            None => {
                self.clients[c].flights.remove(&name);
                self.pump(c, &name);
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

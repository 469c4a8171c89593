//! The service agent: the storage-uid handshake, name rejection, the
//! duplicate rule, and queueing what the service sends.

use std::collections::HashMap;

use softnet_persistence::{Event, EventKind, Uuid};

use super::{Broker, FromService, Note, Out, ToService};

#[derive(Debug, Default)]
pub(super) struct ServiceAgent {
    pub(super) storage_uid: Option<Uuid>,
    /// Last acknowledged uid per name, for `storage_uid`.
    last_acked: HashMap<String, Uuid>,
}

impl Broker {
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

    /// An event from the service: rejected, acked again (a repeat of the
    /// name's last acknowledged uid), or queued, acked and offered to the
    /// clients.
    fn service_event(&mut self, event: Event) {
        let uid = event.uid;
        let defined = self
            .queues
            .get(&event.name)
            .is_some_and(|q| q.kind.accepts(event.kind));
        if !defined {
            self.reject(uid);
            return;
        }
        if self.service.last_acked.get(&event.name) == Some(&uid) {
            self.stats.duplicate_acks += 1;
            self.notes.push(Note::DuplicateAcked(uid));
            self.outputs.push(Out::Service(ToService::Ack(uid)));
            return;
        }
        let target = match event.kind {
            EventKind::Private => match self.private_target(event.client_id) {
                Some(c) => Some(c),
                None => {
                    // No such stateful client: the name is fine but
                    // there is nobody to queue it for.
                    self.reject(uid);
                    return;
                }
            },
            _ => None,
        };
        let id = self.enqueue(&event.name, uid, target);
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

    /// The index of the stateful client with id `wanted`: only stateful
    /// clients have Private queues.
    fn private_target(&self, wanted: Option<i64>) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| Some(c.spec.client_id) == wanted && c.spec.stateful)
    }

    /// Refuses event `uid`: it is not queued, and the service is told.
    fn reject(&mut self, uid: Uuid) {
        self.stats.rejected += 1;
        self.notes.push(Note::Rejected(uid));
        self.outputs.push(Out::Service(ToService::Rejected(uid)));
    }
}

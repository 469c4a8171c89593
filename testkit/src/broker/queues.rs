//! The event queues of the site: one per event definition, what each kind
//! keeps (Replacing: the newest instance; Queueing: a bounded FIFO with a
//! lifetime; Private: a bounded FIFO per client) and what leaves them
//! other than by delivery (replaced, evicted, expired).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use softnet_persistence::{EventKind, Uuid};

use super::{Broker, Gone, Note, SiteKind, PRIVATE_QUEUE_LEN};

impl SiteKind {
    /// Whether an event of `kind` fits this definition (a mismatch is
    /// rejected like an undefined name).
    pub(super) fn accepts(self, kind: EventKind) -> bool {
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

#[derive(Debug, Clone, Copy)]
pub(super) struct Instance {
    pub(super) id: i64,
    pub(super) uid: Uuid,
    /// When it entered its queue (the start of its Queueing lifetime).
    pub(super) at: Duration,
}

#[derive(Debug)]
pub(super) struct Queue {
    pub(super) kind: SiteKind,
    /// The id the next instance gets: ids only increase.
    next_id: i64,
    /// Replacing (at most one) and Queueing instances, oldest first.
    items: VecDeque<Instance>,
    /// Private: per client index.
    private: BTreeMap<usize, VecDeque<Instance>>,
}

impl Queue {
    /// An empty queue of `kind` whose first instance gets `first_id`.
    pub(super) fn new(kind: SiteKind, first_id: i64) -> Queue {
        Queue {
            kind,
            next_id: first_id,
            items: VecDeque::new(),
            private: BTreeMap::new(),
        }
    }

    /// Puts `instance` at the back (of `target`'s queue, for Private),
    /// after making room: what left the queue for it, and why.
    fn push(&mut self, instance: Instance, target: Option<usize>) -> Vec<(Uuid, Gone)> {
        let mut removed = Vec::new();
        match self.kind {
            SiteKind::Replacing => {
                removed.extend(self.items.drain(..).map(|i| (i.uid, Gone::Replaced)));
                self.items.push_back(instance);
            }
            SiteKind::Queueing { max_len, .. } => {
                while self.items.len() >= max_len.max(1) {
                    let old = self.items.pop_front().expect("non-empty");
                    removed.push((old.uid, Gone::Evicted));
                }
                self.items.push_back(instance);
            }
            SiteKind::Private => {
                let q = self.private.entry(target.expect("private")).or_default();
                while q.len() >= PRIVATE_QUEUE_LEN {
                    let old = q.pop_front().expect("non-empty");
                    removed.push((old.uid, Gone::Evicted));
                }
                q.push_back(instance);
            }
        }
        removed
    }
}

impl Broker {
    /// Enqueues event `uid` of the defined `name` (for client `target`
    /// if Private) and returns the instance id it got. Expired instances
    /// leave first, so that they do not take room from it.
    pub(super) fn enqueue(&mut self, name: &str, uid: Uuid, target: Option<usize>) -> i64 {
        self.expire(name);
        let now = self.now;
        let queue = self.queues.get_mut(name).expect("defined");
        let id = queue.next_id;
        queue.next_id += 1;
        let removed = queue.push(Instance { id, uid, at: now }, target);
        self.notes
            .extend(removed.into_iter().map(|(u, g)| Note::Removed(u, g)));
        id
    }

    /// What client `c` receives of `name`, oldest first (empty for a name
    /// not on the site).
    pub(super) fn items_for(&self, c: usize, name: &str) -> &VecDeque<Instance> {
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
    pub(super) fn expire(&mut self, name: &str) {
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

    /// Drops expired Queueing instances of every name, in site order.
    pub(super) fn expire_all(&mut self) {
        for name in self.names.clone() {
            self.expire(&name);
        }
    }
}

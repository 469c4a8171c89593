//! The client side of the delivery protocol (docs/BEHAVIOUR.md section 4), sans I/O.

use std::sync::Arc;

use crate::client::{ClientStore, HandlerOrder};
use crate::error::Result;

/// Whether the broker remembers the client between connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The broker keeps the last event delivered per subscription and
    /// resumes after it. Private events are for stateful clients only.
    Stateful,
    /// The broker keeps nothing: on connect the client says, per
    /// subscription, the last id it holds (without one the broker starts
    /// from the head of the queue).
    Stateless,
}

/// What the client tells the broker when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// "Resume where you stopped."
    Stateful,
    /// The last handled id per subscription, sorted by name.
    Stateless {
        /// (subscription name, last handled instance id).
        last_ids: Vec<(String, i64)>,
    },
}

/// What to do with an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientDecision {
    /// Hand it to the application, then call
    /// [`ClientController::handled`].
    Handle,
    /// Already handled: acknowledge it to the broker without handing it to
    /// the application.
    AckDuplicate,
}

/// An acknowledgement to send to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAck {
    /// Subscription (event name).
    pub name: String,
    /// Instance id acknowledged.
    pub id: i64,
}

/// Decides, with a [`ClientStore`], which incoming events reach the
/// application, in the order chosen by [`HandlerOrder`]:
/// - `RecordAfterHandle` (at least once): `incoming` decides, the
///   application handles, `handled` records the id and yields the ack. A
///   crash in between hands the event to the application again after the
///   restart.
/// - `RecordBeforeHandle` (at most once): `incoming` records the id before
///   the application sees the event; `handled` yields the ack. A crash in
///   between loses the event for the application.
#[derive(Debug)]
pub struct ClientController {
    store: Arc<ClientStore>,
    kind: ClientKind,
    order: HandlerOrder,
    duplicates: u64,
}

impl ClientController {
    /// A controller over `store`.
    pub fn new(store: Arc<ClientStore>, kind: ClientKind, order: HandlerOrder) -> ClientController {
        ClientController {
            store,
            kind,
            order,
            duplicates: 0,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<ClientStore> {
        &self.store
    }

    /// Duplicates acknowledged without reaching the application.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// What to tell the broker on connect.
    pub fn connected(&self) -> Result<ClientHello> {
        Ok(match self.kind {
            ClientKind::Stateful => ClientHello::Stateful,
            ClientKind::Stateless => ClientHello::Stateless {
                last_ids: self.store.entries()?,
            },
        })
    }

    /// An event `id` of subscription `name` arrived: handle it or ack it as
    /// a duplicate (then send `ClientAck { name, id }`).
    pub fn incoming(&mut self, name: &str, id: i64) -> Result<ClientDecision> {
        if self.store.is_duplicate(name, id)? {
            self.duplicates += 1;
            return Ok(ClientDecision::AckDuplicate);
        }
        if self.order == HandlerOrder::RecordBeforeHandle {
            self.store.put(name, id)?;
        }
        Ok(ClientDecision::Handle)
    }

    /// The application finished handling event `id` of `name`: record it
    /// (at-least-once order) and get the ack to send.
    pub fn handled(&mut self, name: &str, id: i64) -> Result<ClientAck> {
        if self.order == HandlerOrder::RecordAfterHandle {
            self.store.put(name, id)?;
        } else {
            // The same rules in both orders (the store checks them on put).
            crate::event::validate_name(name)?;
            if self.store.is_closed() {
                return Err(crate::error::Error::Closed);
            }
        }
        Ok(ClientAck {
            name: name.to_string(),
            id,
        })
    }
}

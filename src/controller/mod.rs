//! Delivery controllers: the Softnet delivery protocol as state machines
//! over the stores, with no I/O, clocks or threads inside (docs/BEHAVIOUR.md
//! section 4, docs/PROTOCOL.md). The caller owns the sockets and the time: it feeds in what
//! happened and sends what comes out.

mod client;
mod drain;
mod service;
#[cfg(test)]
mod tests;

pub use client::{ClientAck, ClientController, ClientDecision, ClientHello, ClientKind};
pub use service::{ServiceController, ServiceOutput, DEFAULT_RESEND_TIMEOUT};

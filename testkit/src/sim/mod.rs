//! A deterministic simulator of one service and several clients talking to
//! the broker model through an in-memory network, with injected faults.
//!
//! Everything is driven by one seeded xorshift generator and a simulated
//! clock (milliseconds); there are no threads and no real time. The pieces:
//! - the **service app** raises events (bursts now and then) through a
//!   [`ServiceController`] over a [`ServiceStore`] (SPL-1 memory or SPL-2
//!   file) and feeds it what arrives from the broker;
//! - each **client app** runs a [`ClientController`] over a [`ClientStore`]
//!   (CPL-1 memory or CPL-2 file), stateful or stateless, and handles every
//!   event the controller says to handle (handle, then record: the default
//!   order), acknowledging it to the broker;
//! - the **network**: one connection per endpoint, FIFO in each direction,
//!   1..250 ms per message and now and then a 31..70 s stall (beyond the
//!   30 s resend timeouts). When a connection breaks, what is in transit to
//!   the endpoint is lost, and a random prefix of what is in transit to the
//!   broker still reaches it (the kernel had sent it);
//! - **faults**, per endpoint, at random times: network outages (0.5 s to
//!   2 min), application restarts (every in-memory object is dropped:
//!   controllers, stores; stores are reopened from their files, level-1
//!   stores start empty) and reboots (power cuts: like a restart, but each
//!   file is replaced by the image a power cut leaves: each 512-byte sector
//!   written since its last sync is kept or lost at random). A power cut of
//!   the service can also strike inside a store call, at one of its syncs
//!   (`mid_op_cuts`); that call never returns, so its event is "in doubt";
//!   and, for the service only, level-2 failures: while it is online with
//!   events in flight, the device under its journal starts failing and the
//!   store falls back to level 1 with a new storage uid.
//!
//! It counts, per event: raised, accepted into a broker queue (delivered to
//! the broker; a repeat acked again is not an acceptance), handled per
//! client, duplicates and losses, with the exclusions docs/BEHAVIOUR.md
//! section 6 makes:
//! Replacing instances superseded by design (in the store, or replaced in
//! the broker queue before a client got them) and events evicted or expired
//! from a broker queue are not "lost"; they are counted apart.
//!
//! Power cuts are simulated by [`PowerCut`](crate::PowerCut) under each
//! store's files.
//!
//! [`ServiceController`]: softnet_persistence::ServiceController
//! [`ServiceStore`]: softnet_persistence::ServiceStore
//! [`ClientController`]: softnet_persistence::ClientController
//! [`ClientStore`]: softnet_persistence::ClientStore

mod accounting;
mod clients;
mod config;
mod engine;
mod fallback;
mod faults;
mod network;
mod runner;
mod service;
mod service_ops;
mod site;
mod store_view;
mod tally;

pub use self::{
    config::{ClientConfig, Fault, SimConfig},
    runner::{run, run_many, run_seeds},
    site::UNKNOWN,
    tally::{ClientTally, RunStats, ServiceTally, Totals},
};

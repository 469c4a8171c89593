//! What to simulate: the faults to inject, the clients, the run's settings.

use std::time::Duration;

use softnet_persistence::Durability;

/// A fault the simulator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The endpoint's connection breaks for a while; the application keeps
    /// running.
    Outage,
    /// The application restarts: all in-memory state is gone; stores are
    /// reopened from their files.
    Restart,
    /// Reboot by power loss: a restart where each file holds only what the
    /// device had (unsynced writes lost at random, sector by sector).
    PowerCut,
    /// Level 2 fails while the service is online with events in flight:
    /// the device under the SPL-2 journal starts failing, and the store
    /// falls back to level 1 with a new storage uid (until the app next
    /// opens it). Service only; not in [`Fault::ALL`].
    Level2Failure,
}

impl Fault {
    /// The three of the table's columns.
    pub const ALL: [Fault; 3] = [Fault::Outage, Fault::Restart, Fault::PowerCut];
}

/// One client of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Remembered by the broker (else stateless).
    pub stateful: bool,
    /// CPL-2 (a file) rather than CPL-1 (memory).
    pub file: bool,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of everything random.
    pub seed: u64,
    /// SPL-2 (a journal file) rather than SPL-1 (memory).
    pub service_file: bool,
    /// Durability of every file (service and clients).
    pub durability: Durability,
    /// SPL-2 capacity in bytes (0: the default 1 MiB).
    pub capacity: usize,
    /// SPL-1 capacity in bytes (0: the default 16 KiB).
    pub memory_capacity: usize,
    /// The clients.
    pub clients: Vec<ClientConfig>,
    /// Fault kinds to inject (each fault picks one).
    pub faults: Vec<Fault>,
    /// Faults per endpoint, on average.
    pub faults_per_endpoint: u32,
    /// Events the service raises (about; none while it is down).
    pub events: u32,
    /// Mean time between raises (bursts aside).
    pub mean_gap_ms: u64,
    /// Max length of the Queueing queues (1..=1000).
    pub queue_len: usize,
    /// Lifetime of Queueing instances.
    pub queue_lifetime: Duration,
    /// Power cuts of the service may strike inside a store call.
    pub mid_op_cuts: bool,
    /// Now and then raise an event whose name the site does not define.
    pub unknown_names: bool,
    /// Compare the simulator's view of the store with `pending()` every
    /// this many raises (0: only at restarts and at the end).
    pub check_every: u32,
    /// Print what happens to the service store (for debugging one seed).
    pub trace: bool,
}

impl SimConfig {
    /// SPL-2 with sync durability, one client of each kind, every fault,
    /// 2000 events: the configuration of the table, with long queues.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            service_file: true,
            durability: Durability::Sync,
            capacity: 0,
            memory_capacity: 256 * 1024,
            clients: vec![
                ClientConfig {
                    stateful: true,
                    file: false,
                },
                ClientConfig {
                    stateful: true,
                    file: true,
                },
                ClientConfig {
                    stateful: false,
                    file: false,
                },
                ClientConfig {
                    stateful: false,
                    file: true,
                },
            ],
            faults: Fault::ALL.to_vec(),
            faults_per_endpoint: 8,
            events: 2000,
            mean_gap_ms: 1500,
            queue_len: 1000,
            queue_lifetime: Duration::from_secs(30 * 24 * 3600),
            mid_op_cuts: true,
            unknown_names: true,
            check_every: 0,
            trace: false,
        }
    }
}

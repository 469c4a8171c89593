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
//!   (`mid_op_cuts`); that call never returns, so its event is "in doubt".
//!
//! It counts, per event: raised, accepted into a broker queue (delivered to
//! the broker; a repeat acked again is not an acceptance), handled per
//! client, duplicates and losses, with the exclusions SPEC section 6 makes:
//! Replacing instances superseded by design (in the store, or replaced in
//! the broker queue before a client got them) and events evicted or expired
//! from a broker queue are not "lost"; they are counted apart.
//!
//! Power cuts need the `fault-injection` feature; without it a reboot is a
//! plain restart (the files keep everything written) and
//! [`RunStats::power_cut_images`] is false.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::controller::{
    ClientAck, ClientController, ClientDecision, ClientKind, ServiceController, ServiceOutput,
    DEFAULT_RESEND_TIMEOUT,
};
use softnet_persistence::{
    ClientOptions, ClientStore, Durability, Event, EventKind, FailureCallback, FailureKind,
    HandlerOrder, Mode, Overflow, ServiceOptions, ServiceStore, Uuid,
};

use super::broker::{
    self, Broker, Deliver, FromClient, FromService, Gone, Note, Out, SiteKind, ToService,
};

// ----- random numbers ------------------------------------------------------

/// Xorshift64, seeded through splitmix64 so that nearby seeds differ.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability num/den.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Log-uniform in lo..=hi: mostly short, sometimes long.
    pub fn spread(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
        let x = l + (h - l) * (self.below(1 << 24) as f64 / (1u64 << 24) as f64);
        (x.exp() as u64).clamp(lo, hi)
    }
}

// ----- configuration ---------------------------------------------------------

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
}

impl Fault {
    /// All three.
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

// ----- results ---------------------------------------------------------------

/// The service-to-broker path of one or more runs.
#[derive(Debug, Default, Clone)]
pub struct ServiceTally {
    /// Events raised whose name the site defines (raise returned).
    pub raised: u64,
    /// Of those, accepted into a broker queue at least once.
    pub delivered: u64,
    /// Extra acceptances of an event already accepted.
    pub duplicates: u64,
    /// Never accepted and not excluded below.
    pub lost: u64,
    /// Of `lost`: pending in the store when the application restarted or
    /// the device rebooted (what SPL-1 is allowed to lose).
    pub lost_pending_at_restart: u64,
    /// Excluded: Replacing instances superseded in the store by design.
    pub superseded: u64,
    /// Excluded: the raise call was interrupted by a power cut (it never
    /// returned) and the event is not in the store after the reboot.
    pub in_doubt: u64,
    /// Dropped for capacity (drop-oldest) and never accepted.
    pub dropped: u64,
    /// Dropped for capacity (and reported lost), but the broker had it
    /// already: it was in flight, or its ack was lost in an outage.
    pub dropped_yet_delivered: u64,
    /// Of those, in flight when dropped.
    pub dropped_in_flight: u64,
    /// Dropped for capacity by a raise that a power cut interrupted after
    /// the new event was stored: the drop report died with the process.
    /// (Included in `dropped` or `dropped_yet_delivered`.)
    pub dropped_unreported: u64,
    /// Capacity drops reported through the failure callback (events_lost).
    pub reported_drops: u64,
    /// Capacity drops in the stores' statistics.
    pub stats_drops: u64,
    /// Ancient events invalidated by the storage-uid handshake.
    pub invalidated: u64,
    /// Raises of names the site does not define.
    pub unknown_raised: u64,
    /// Of those, reported as rejected by the controller.
    pub unknown_rejected: u64,
    /// Of those, pending at a restart (SPL-1) and gone, or in a call a
    /// power cut interrupted.
    pub unknown_lost_at_restart: u64,
    /// Of those, dropped for capacity before the broker could reject them.
    pub unknown_dropped: u64,
    /// Repeats the broker acked again without enqueueing.
    pub broker_duplicate_acks: u64,
    /// Events found in the store after a reboot that had been acknowledged
    /// or superseded before it (sent again; the broker's uid rule must drop
    /// them).
    pub resurrected: u64,
}

/// The broker-to-client path of one client (or a sum).
#[derive(Debug, Default, Clone)]
pub struct ClientTally {
    /// Events queued for this client.
    pub expected: u64,
    /// Of those, handled at least once.
    pub handled: u64,
    /// Extra handlings of an event already handled.
    pub duplicates: u64,
    /// Still in the broker's queue, never handled.
    pub lost: u64,
    /// Excluded: replaced in the broker queue (Replacing) before this
    /// client handled them.
    pub replaced: u64,
    /// Excluded: evicted (queue full) or expired before this client
    /// handled them.
    pub evicted: u64,
    /// Application restarts and reboots of this client.
    pub restarts: u64,
    /// Stateless: events the broker redelivered from the head of a queue
    /// after a restart (the bound for duplicates).
    pub redeliverable: u64,
    /// Duplicates a restart does not explain: for a stateful client, a
    /// second duplicate in a subscription since the last restart, or one
    /// before any restart; for a stateless client, one that was not in a
    /// queue redelivered from the head since the last restart.
    pub unexplained_duplicates: u64,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct RunStats {
    /// The run's seed.
    pub seed: u64,
    /// The service-to-broker path.
    pub service: ServiceTally,
    /// Per client, in configuration order.
    pub clients: Vec<(ClientConfig, ClientTally)>,
    /// Faults injected, by kind (restarts and power cuts count only when
    /// the application was up).
    pub faults: BTreeMap<Fault, u64>,
    /// Service power cuts that struck inside a store call.
    pub mid_op_cuts: u64,
    /// Power cuts used real power-cut images (`fault-injection` feature).
    pub power_cut_images: bool,
    /// Failure reports other than capacity drops (kind: message).
    pub failures: Vec<String>,
    /// Broken invariants of the simulation itself (the store's contents
    /// disagreeing with what its calls said, an event invented, the run not
    /// draining, duplicates no fault explains), each with its context.
    pub violations: Vec<String>,
    /// Simulated time at the end.
    pub sim_time: Duration,
}

impl ServiceTally {
    /// Adds another tally.
    pub fn add(&mut self, o: &ServiceTally) {
        self.raised += o.raised;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
        self.lost_pending_at_restart += o.lost_pending_at_restart;
        self.superseded += o.superseded;
        self.in_doubt += o.in_doubt;
        self.dropped += o.dropped;
        self.dropped_yet_delivered += o.dropped_yet_delivered;
        self.dropped_in_flight += o.dropped_in_flight;
        self.dropped_unreported += o.dropped_unreported;
        self.reported_drops += o.reported_drops;
        self.stats_drops += o.stats_drops;
        self.invalidated += o.invalidated;
        self.unknown_raised += o.unknown_raised;
        self.unknown_rejected += o.unknown_rejected;
        self.unknown_lost_at_restart += o.unknown_lost_at_restart;
        self.unknown_dropped += o.unknown_dropped;
        self.broker_duplicate_acks += o.broker_duplicate_acks;
        self.resurrected += o.resurrected;
    }
}

impl ClientTally {
    /// Adds another tally.
    pub fn add(&mut self, o: &ClientTally) {
        self.expected += o.expected;
        self.handled += o.handled;
        self.duplicates += o.duplicates;
        self.lost += o.lost;
        self.replaced += o.replaced;
        self.evicted += o.evicted;
        self.restarts += o.restarts;
        self.redeliverable += o.redeliverable;
        self.unexplained_duplicates += o.unexplained_duplicates;
    }
}

// ----- the site ----------------------------------------------------------------

const QUEUEING: [&str; 6] = ["Temp0", "Temp1", "Temp2", "Temp3", "Temp4", "Temp5"];
const REPLACING: [&str; 3] = ["Door", "Alarm", "Mode"];
const PRIVATE: &str = "Notice";
/// Not defined on the site: the broker rejects it.
pub const UNKNOWN: &str = "Bogus";
const SERVER: &str = "broker.example.net";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

fn site(cfg: &SimConfig) -> Vec<(String, SiteKind)> {
    let mut site: Vec<(String, SiteKind)> = QUEUEING
        .iter()
        .map(|n| {
            (
                n.to_string(),
                SiteKind::Queueing {
                    max_len: cfg.queue_len,
                    lifetime: cfg.queue_lifetime,
                },
            )
        })
        .collect();
    site.extend(
        REPLACING
            .iter()
            .map(|n| (n.to_string(), SiteKind::Replacing)),
    );
    site.push((PRIVATE.to_string(), SiteKind::Private));
    site
}

// ----- the simulation ------------------------------------------------------------

#[derive(Debug)]
enum Ev {
    Raise,
    Arrive { ep: usize, epoch: u64, up: bool },
    Connect { ep: usize, epoch: u64 },
    ServiceTimer,
    BrokerTimer,
    OutageStart(usize),
    OutageEnd(usize),
    Down(usize, Fault),
    AppUp(usize),
    CutNow(u64),
}

struct Item {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Item {
    fn eq(&self, o: &Item) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Item) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Item) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: the earliest item is the greatest.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

enum Up {
    Service(FromService),
    Client(FromClient),
}

enum Down {
    Service(ToService),
    Client(Deliver),
}

#[derive(Default)]
struct Link {
    app_up: bool,
    outages: u32,
    connected: bool,
    epoch: u64,
    up: VecDeque<Up>,
    down: VecDeque<Down>,
    up_last: u64,
    down_last: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// In the store (as far as its calls said).
    Pending,
    Acked,
    Rejected,
    Superseded,
    Dropped,
    LostAtRestart,
    InDoubt,
    Invalidated,
    /// Gone from the store without any call saying so.
    Vanished,
}

struct Info {
    kind: EventKind,
    name: String,
    known: bool,
    status: Status,
    accepted: u32,
    dropped_in_flight: bool,
    rejected_reported: bool,
    target: Option<usize>,
}

/// What an interrupted store call was doing.
#[derive(Default, Debug)]
struct InDoubt {
    raise: Option<Uuid>,
    older: Vec<Uuid>,
    newest: Option<Uuid>,
    ack: Option<Uuid>,
    reject: Option<Uuid>,
    /// Dropped for capacity by the interrupted raise (its report never
    /// reached the application: the process died in the call).
    dropped: Vec<Uuid>,
}

struct ServiceSide {
    dir: tempfile::TempDir,
    uid: Uuid,
    options: ServiceOptions,
    ctl: Option<ServiceController>,
    /// Capacity drops reported through the callback.
    drops: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    /// What the store holds, in raise order, as its calls said.
    pending: Vec<Uuid>,
    /// Pending when the store was opened.
    ancient: HashSet<Uuid>,
    /// A power cut is armed: service calls left before it strikes between
    /// calls anyway.
    armed: Option<u32>,
    cut_id: u64,
    in_doubt: InDoubt,
    stats_drops: u64,
    /// Drops counted in the statistics by calls a power cut interrupted.
    struck_stats_drops: u64,
    raises: u32,
}

struct ClientSide {
    cfg: ClientConfig,
    client_id: i64,
    dir: tempfile::TempDir,
    key: String,
    options: ClientOptions,
    ctl: Option<ClientController>,
    handled: HashMap<Uuid, u32>,
    restarts: u32,
    /// Stateful: duplicates per (restart number, subscription).
    dup_since_restart: HashMap<(u32, String), u32>,
    /// Stateless: events the broker redelivered from the head since the
    /// last restart.
    allowed: HashSet<Uuid>,
    tally: ClientTally,
}

struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    seq: u64,
    heap: BinaryHeap<Item>,
    links: Vec<Link>,
    broker: Broker,
    svc: ServiceSide,
    clients: Vec<ClientSide>,
    events: HashMap<Uuid, Info>,
    order: Vec<Uuid>,
    accepted_order: Vec<Uuid>,
    gone: HashMap<Uuid, Gone>,
    raised_seq: u64,
    service_timer: Option<u64>,
    broker_timer: Option<u64>,
    faults_end: u64,
    stats: RunStats,
    broker_dup_acks: u64,
    resurrected: u64,
    invalidated: u64,
    struck_drops: u64,
    /// Per name, the raise number of the last event accepted.
    last_accepted: HashMap<String, u64>,
    /// The raise number of the last event sent in storage mode since the
    /// drain began.
    drain_last: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn scratch_dir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().expect("temporary directory"),
    }
}

fn recorder(failures: &Arc<Mutex<Vec<String>>>, drops: Option<&Arc<AtomicU64>>) -> FailureCallback {
    let failures = failures.clone();
    let drops = drops.cloned();
    Arc::new(move |f| {
        if f.kind == FailureKind::CapacityDrop {
            if let Some(d) = &drops {
                d.fetch_add(f.events_lost, Ordering::SeqCst);
            }
        } else {
            failures
                .lock()
                .unwrap()
                .push(format!("{}: {}", f.kind, f.message));
        }
    })
}

/// Runs one simulation.
pub fn run(cfg: &SimConfig) -> RunStats {
    let mut sim = Sim::new(cfg.clone());
    sim.start();
    sim.main_loop();
    sim.finish()
}

/// Runs each configuration (in parallel, one worker per CPU); results in
/// the order given.
pub fn run_many(cfgs: &[SimConfig]) -> Vec<RunStats> {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(cfgs.len()));
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers.min(cfgs.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                let Some(cfg) = cfgs.get(i) else {
                    break;
                };
                let stats = run(cfg);
                results.lock().unwrap().push((i, stats));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, s)| s).collect()
}

/// The sum of many runs.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Runs summed.
    pub runs: u64,
    /// The service-to-broker path.
    pub service: ServiceTally,
    /// Per client configuration (stateful, file).
    pub clients: BTreeMap<(bool, bool), ClientTally>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// Service power cuts inside a store call.
    pub mid_op_cuts: u64,
    /// Every run used real power-cut images.
    pub power_cut_images: bool,
    /// Failure reports by kind (capacity drops aside).
    pub failures: BTreeMap<String, u64>,
    /// Every violation of every run.
    pub violations: Vec<String>,
}

impl Totals {
    /// Sums `runs`.
    pub fn of(runs: &[RunStats]) -> Totals {
        let mut t = Totals {
            power_cut_images: true,
            ..Totals::default()
        };
        for r in runs {
            t.runs += 1;
            t.service.add(&r.service);
            for (cfg, tally) in &r.clients {
                t.clients
                    .entry((cfg.stateful, cfg.file))
                    .or_default()
                    .add(tally);
            }
            for (f, n) in &r.faults {
                *t.faults.entry(*f).or_default() += n;
            }
            t.mid_op_cuts += r.mid_op_cuts;
            t.power_cut_images &= r.power_cut_images;
            for f in &r.failures {
                let kind = f.split(':').next().unwrap_or("?").to_string();
                *t.failures.entry(kind).or_default() += 1;
            }
            t.violations.extend(r.violations.iter().cloned());
        }
        t
    }

    /// The tally of the clients with this configuration.
    pub fn client(&self, stateful: bool, file: bool) -> ClientTally {
        self.clients
            .get(&(stateful, file))
            .cloned()
            .unwrap_or_default()
    }
}

/// Runs `seeds` simulations of `base` (seeds 1..=seeds) and sums them.
pub fn run_seeds(base: &SimConfig, seeds: u64) -> Totals {
    let cfgs: Vec<SimConfig> = (1..=seeds)
        .map(|seed| SimConfig {
            seed: base.seed.wrapping_mul(1_000_003).wrapping_add(seed),
            ..base.clone()
        })
        .collect();
    Totals::of(&run_many(&cfgs))
}

impl Sim {
    fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let failures = Arc::new(Mutex::new(Vec::new()));
        let drops = Arc::new(AtomicU64::new(0));
        let options = ServiceOptions {
            capacity: cfg.capacity,
            memory_capacity: cfg.memory_capacity,
            durability: cfg.durability,
            overflow: Overflow::DropOldest,
            on_failure: Some(recorder(&failures, Some(&drops))),
        };
        let svc = ServiceSide {
            dir: scratch_dir(),
            uid: Uuid::from_u128(0x5e55_0000 ^ u128::from(cfg.seed)),
            options,
            ctl: None,
            drops,
            failures: failures.clone(),
            pending: Vec::new(),
            ancient: HashSet::new(),
            armed: None,
            cut_id: 0,
            in_doubt: InDoubt::default(),
            stats_drops: 0,
            struck_stats_drops: 0,
            raises: 0,
        };
        let clients: Vec<ClientSide> = cfg
            .clients
            .iter()
            .enumerate()
            .map(|(i, &c)| ClientSide {
                cfg: c,
                // Client ids and instance ids use the full i64 range.
                client_id: i64::MIN + 7 + i as i64,
                dir: scratch_dir(),
                key: format!("client-{i}"),
                options: ClientOptions {
                    durability: cfg.durability,
                    on_failure: Some(recorder(&failures, None)),
                },
                ctl: None,
                handled: HashMap::new(),
                restarts: 0,
                dup_since_restart: HashMap::new(),
                allowed: HashSet::new(),
                tally: ClientTally::default(),
            })
            .collect();
        let specs: Vec<broker::ClientSpec> = clients
            .iter()
            .map(|c| broker::ClientSpec {
                client_id: c.client_id,
                stateful: c.cfg.stateful,
            })
            .collect();
        let first_id = (1i64 << 40) + rng.below(1 << 40) as i64;
        let broker = Broker::new(&site(&cfg), &specs, CLIENT_TIMEOUT, first_id);
        let links = (0..=clients.len()).map(|_| Link::default()).collect();
        let faults_end = u64::from(cfg.events) * cfg.mean_gap_ms;
        Sim {
            stats: RunStats {
                seed: cfg.seed,
                service: ServiceTally::default(),
                clients: Vec::new(),
                faults: BTreeMap::new(),
                mid_op_cuts: 0,
                power_cut_images: cfg!(feature = "fault-injection"),
                failures: Vec::new(),
                violations: Vec::new(),
                sim_time: Duration::ZERO,
            },
            cfg,
            rng,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            links,
            broker,
            svc,
            clients,
            events: HashMap::new(),
            order: Vec::new(),
            accepted_order: Vec::new(),
            gone: HashMap::new(),
            raised_seq: 0,
            service_timer: None,
            broker_timer: None,
            faults_end,
            broker_dup_acks: 0,
            resurrected: 0,
            invalidated: 0,
            struck_drops: 0,
            last_accepted: HashMap::new(),
            drain_last: None,
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            println!("{:>9} {}", self.now, what());
        }
    }

    fn violation(&mut self, what: String) {
        let msg = format!("seed {} at {} ms: {what}", self.cfg.seed, self.now);
        self.stats.violations.push(msg);
    }

    fn start(&mut self) {
        for ep in 0..self.links.len() {
            let n = self.rng.range(
                u64::from(self.cfg.faults_per_endpoint / 2),
                u64::from(self.cfg.faults_per_endpoint * 3 / 2),
            );
            for _ in 0..n {
                if self.cfg.faults.is_empty() {
                    break;
                }
                let at = self.rng.range(1000, self.faults_end.max(1001));
                let fault = self.cfg.faults[self.rng.below(self.cfg.faults.len() as u64) as usize];
                match fault {
                    Fault::Outage => {
                        let length = self.rng.spread(500, 120_000);
                        self.push(at, Ev::OutageStart(ep));
                        self.push(at + length, Ev::OutageEnd(ep));
                    }
                    other => self.push(at, Ev::Down(ep, other)),
                }
            }
            self.app_up(ep);
        }
        self.push(0, Ev::Raise);
    }

    fn main_loop(&mut self) {
        let limit = self.faults_end + 6 * 3600 * 1000;
        while let Some(item) = self.heap.pop() {
            if item.at > limit {
                break;
            }
            self.now = self.now.max(item.at);
            self.broker.set_now(Duration::from_millis(self.now));
            match item.ev {
                Ev::Raise => self.raise_tick(),
                Ev::Arrive { ep, epoch, up } => self.arrive(ep, epoch, up),
                Ev::Connect { ep, epoch } => self.connect(ep, epoch),
                Ev::ServiceTimer => {
                    if self.service_timer == Some(item.at) {
                        self.service_timer = None;
                        self.svc_op(SvcOp::Tick);
                    }
                }
                Ev::BrokerTimer => {
                    if self.broker_timer == Some(item.at) {
                        self.broker_timer = None;
                        self.broker.tick();
                        self.after_broker();
                    }
                }
                Ev::OutageStart(ep) => {
                    *self.stats.faults.entry(Fault::Outage).or_default() += 1;
                    self.links[ep].outages += 1;
                    if self.links[ep].outages == 1 {
                        self.teardown(ep, false);
                    }
                }
                Ev::OutageEnd(ep) => {
                    self.links[ep].outages -= 1;
                    self.maybe_connect(ep);
                }
                Ev::Down(ep, fault) => self.fault_down(ep, fault),
                Ev::AppUp(ep) => self.app_up(ep),
                Ev::CutNow(id) => {
                    if self.svc.armed.is_some() && self.svc.cut_id == id {
                        self.bring_down(0, Fault::PowerCut, None, InDoubt::default());
                    }
                }
            }
        }
        self.stats.sim_time = Duration::from_millis(self.now);
    }

    // ----- network ---------------------------------------------------------

    fn delay(&mut self) -> u64 {
        if self.rng.chance(1, 300) {
            self.rng.range(31_000, 70_000)
        } else {
            self.rng.range(1, 250)
        }
    }

    fn send_up(&mut self, ep: usize, msg: Up) {
        if !self.links[ep].connected {
            return;
        }
        let d = self.delay();
        let l = &mut self.links[ep];
        let at = (self.now + d).max(l.up_last);
        l.up_last = at;
        l.up.push_back(msg);
        let epoch = l.epoch;
        self.push(
            at,
            Ev::Arrive {
                ep,
                epoch,
                up: true,
            },
        );
    }

    fn send_down(&mut self, ep: usize, msg: Down) {
        if !self.links[ep].connected {
            return;
        }
        let d = self.delay();
        let l = &mut self.links[ep];
        let at = (self.now + d).max(l.down_last);
        l.down_last = at;
        l.down.push_back(msg);
        let epoch = l.epoch;
        self.push(
            at,
            Ev::Arrive {
                ep,
                epoch,
                up: false,
            },
        );
    }

    fn arrive(&mut self, ep: usize, epoch: u64, up: bool) {
        let l = &mut self.links[ep];
        if l.epoch != epoch || !l.connected {
            return;
        }
        if up {
            let msg = l.up.pop_front().expect("message in transit");
            self.deliver_to_broker(ep, msg);
        } else {
            match l.down.pop_front().expect("message in transit") {
                Down::Service(m) => match m {
                    ToService::Online(uid) => self.svc_op(SvcOp::Online(uid)),
                    ToService::Ack(uid) => self.svc_op(SvcOp::Ack(uid)),
                    ToService::Rejected(uid) => self.svc_op(SvcOp::Rejected(uid)),
                },
                Down::Client(d) => self.client_deliver(ep - 1, d),
            }
        }
    }

    fn deliver_to_broker(&mut self, ep: usize, msg: Up) {
        match msg {
            Up::Service(m) => self.broker.service_message(m),
            Up::Client(m) => self.broker.client_message(ep - 1, m),
        }
        self.after_broker();
    }

    fn after_broker(&mut self) {
        for out in self.broker.drain_outputs() {
            match out {
                Out::Service(m) => self.send_down(0, Down::Service(m)),
                Out::Client(c, d) => self.send_down(c + 1, Down::Client(d)),
            }
        }
        for note in self.broker.drain_notes() {
            match note {
                Note::Accepted {
                    uid, target, name, ..
                } => {
                    let info = self.events.get_mut(&uid).expect("accepted a raised event");
                    info.accepted += 1;
                    info.target = target;
                    if info.accepted == 1 {
                        self.accepted_order.push(uid);
                    }
                    // Each name's events reach its queue in raise order
                    // (uids carry the raise number in their low bits).
                    let seq = uid.as_u128() as u64;
                    let last = self.last_accepted.entry(name.clone()).or_insert(0);
                    if seq < *last {
                        let before = *last;
                        self.violation(format!(
                            "'{name}': event {uid} (raise #{seq}) entered the queue after raise \
                             #{before}"
                        ));
                    } else {
                        *last = seq;
                    }
                }
                Note::DuplicateAcked(_) => self.broker_dup_acks += 1,
                Note::Rejected(_) => {}
                Note::Removed(uid, why) => {
                    self.gone.entry(uid).or_insert(why);
                }
                Note::Redeliverable { client, uids } => {
                    let cs = &mut self.clients[client];
                    for uid in uids {
                        if cs.allowed.insert(uid) && cs.restarts > 0 {
                            cs.tally.redeliverable += 1;
                        }
                    }
                }
            }
        }
        if let Some(d) = self.broker.next_deadline() {
            let at = ms(d).max(self.now);
            if self.broker_timer.is_none_or(|t| at < t) {
                self.broker_timer = Some(at);
                self.push(at, Ev::BrokerTimer);
            }
        }
    }

    /// Breaks endpoint `ep`'s connection, if it has one. `app_gone`: the
    /// application is going down too (else it is told it is offline).
    fn teardown(&mut self, ep: usize, app_gone: bool) {
        let l = &mut self.links[ep];
        if !l.connected {
            return;
        }
        l.connected = false;
        l.epoch += 1;
        let ups: Vec<Up> = l.up.drain(..).collect();
        l.down.clear();
        // The kernel had sent some of it: a prefix still reaches the broker
        // (its replies are lost with the connection).
        let reach = if self.rng.chance(1, 2) {
            self.rng.below(ups.len() as u64 + 1) as usize
        } else {
            0
        };
        for msg in ups.into_iter().take(reach) {
            self.deliver_to_broker(ep, msg);
        }
        if ep > 0 {
            self.broker.client_disconnected(ep - 1);
            self.after_broker();
        }
        if !app_gone && ep == 0 {
            self.svc_op(SvcOp::Disconnected);
        }
    }

    fn maybe_connect(&mut self, ep: usize) {
        let l = &self.links[ep];
        if l.app_up && l.outages == 0 && !l.connected {
            let epoch = l.epoch;
            let at = self.now + self.rng.range(20, 2000);
            self.push(at, Ev::Connect { ep, epoch });
        }
    }

    fn connect(&mut self, ep: usize, epoch: u64) {
        let l = &mut self.links[ep];
        if l.epoch != epoch || l.connected || !l.app_up || l.outages > 0 {
            return;
        }
        l.connected = true;
        l.epoch += 1;
        if ep == 0 {
            if let Some(ctl) = self.svc.ctl.as_mut() {
                ctl.connected();
            }
            self.broker.service_connected();
            self.after_broker();
        } else {
            let cs = &self.clients[ep - 1];
            let hello = cs
                .ctl
                .as_ref()
                .expect("client app is up")
                .connected()
                .expect("client hello");
            self.send_up(ep, Up::Client(FromClient::Hello(hello)));
        }
    }

    // ----- faults ----------------------------------------------------------

    fn fault_down(&mut self, ep: usize, fault: Fault) {
        if !self.links[ep].app_up {
            return;
        }
        *self.stats.faults.entry(fault).or_default() += 1;
        if ep == 0
            && fault == Fault::PowerCut
            && self.cfg.mid_op_cuts
            && self.cfg.service_file
            && self.svc.armed.is_none()
            && self.arm_cut()
        {
            return;
        }
        self.bring_down(ep, fault, None, InDoubt::default());
    }

    /// Arms a power cut at one of the next syncs of the service journal.
    #[cfg(feature = "fault-injection")]
    fn arm_cut(&mut self) -> bool {
        let k = self.rng.range(1, 4);
        let seed = self.rng.next_u64();
        let Some(ctl) = self.svc.ctl.as_ref() else {
            return false;
        };
        let armed = ctl
            .store()
            .with_journal(|j| {
                let at = j.sync_count() + k;
                j.arm_power_cut(at, seed);
            })
            .is_some();
        if armed {
            self.svc.armed = Some(6);
            self.svc.cut_id += 1;
            let id = self.svc.cut_id;
            let at = self.now + self.rng.range(100, 5000);
            self.push(at, Ev::CutNow(id));
        }
        armed
    }

    #[cfg(not(feature = "fault-injection"))]
    fn arm_cut(&mut self) -> bool {
        false
    }

    /// The image an armed cut captured during the last call, if it struck.
    #[cfg(feature = "fault-injection")]
    fn cut_struck(&mut self) -> Option<Vec<u8>> {
        self.svc.armed?;
        let ctl = self.svc.ctl.as_ref()?;
        ctl.store()
            .with_journal(|j| j.take_power_cut_image())
            .flatten()
    }

    #[cfg(not(feature = "fault-injection"))]
    fn cut_struck(&mut self) -> Option<Vec<u8>> {
        None
    }

    #[cfg(feature = "fault-injection")]
    fn service_cut_image(&mut self, store: &ServiceStore) -> Option<Vec<u8>> {
        let mut keep = Rng::new(self.rng.next_u64());
        store.with_journal(|j| j.power_cut_image(&mut |_| keep.chance(1, 2)))
    }

    #[cfg(not(feature = "fault-injection"))]
    fn service_cut_image(&mut self, _store: &ServiceStore) -> Option<Vec<u8>> {
        None
    }

    #[cfg(feature = "fault-injection")]
    fn client_cut_image(&mut self, store: &ClientStore) -> Option<Vec<u8>> {
        let mut keep = Rng::new(self.rng.next_u64());
        store.with_journal(|j| j.power_cut_image(&mut |_| keep.chance(1, 2)))
    }

    #[cfg(not(feature = "fault-injection"))]
    fn client_cut_image(&mut self, _store: &ClientStore) -> Option<Vec<u8>> {
        None
    }

    /// The application of `ep` goes down (restart or reboot); `image` is
    /// the service journal a mid-call power cut left.
    fn bring_down(&mut self, ep: usize, fault: Fault, image: Option<Vec<u8>>, doubt: InDoubt) {
        self.teardown(ep, true);
        self.links[ep].app_up = false;
        if ep == 0 {
            self.service_down(fault, image, doubt);
        } else {
            self.client_down(ep - 1, fault);
        }
        let downtime = match fault {
            Fault::PowerCut => self.rng.range(2_000, 30_000),
            _ => self.rng.range(200, 10_000),
        };
        self.push(self.now + downtime, Ev::AppUp(ep));
    }

    fn app_up(&mut self, ep: usize) {
        if self.links[ep].app_up {
            return;
        }
        if ep == 0 {
            self.service_up();
        } else {
            self.client_up(ep - 1);
        }
        self.links[ep].app_up = true;
        self.maybe_connect(ep);
    }

    fn service_down(&mut self, fault: Fault, image: Option<Vec<u8>>, doubt: InDoubt) {
        self.trace(|| format!("service {fault:?} (image {}) {doubt:?}", image.is_some()));
        let ctl = self.svc.ctl.take().expect("service app is up");
        let store = ctl.store().clone();
        let struck = image.is_some();
        if !struck {
            self.check_store(&store, "before the restart");
        }
        let image = match image {
            Some(i) => Some(i),
            None if fault == Fault::PowerCut && self.cfg.service_file => {
                self.service_cut_image(&store)
            }
            None => None,
        };
        self.svc.stats_drops += store.stats().dropped_events;
        let path = store.journal_path();
        drop(ctl);
        drop(store);
        if let (Some(image), Some(path)) = (image, path) {
            std::fs::write(path, image).expect("write the power-cut image");
        }
        self.svc.armed = None;
        self.svc.in_doubt = doubt;
        self.drain_last = None;
    }

    fn service_up(&mut self) {
        let store = if self.cfg.service_file {
            ServiceStore::open_file(self.svc.dir.path(), self.svc.uid, &self.svc.options)
        } else {
            ServiceStore::open_memory(&self.svc.options)
        }
        .expect("open the service store");
        self.reconcile(&store);
        self.svc.ctl = Some(ServiceController::with_timeout(
            Arc::new(store),
            DEFAULT_RESEND_TIMEOUT,
        ));
    }

    /// After a reopen: what the store holds now against what it held.
    fn reconcile(&mut self, store: &ServiceStore) {
        let now: Vec<Uuid> = store
            .pending()
            .expect("pending after reopen")
            .iter()
            .map(|e| e.uid)
            .collect();
        let now_set: HashSet<Uuid> = now.iter().copied().collect();
        let before = std::mem::take(&mut self.svc.pending);
        let before_set: HashSet<Uuid> = before.iter().copied().collect();
        let doubt = std::mem::take(&mut self.svc.in_doubt);
        let stats = store.stats();
        self.trace(|| {
            format!(
                "service reopened: {} pending, was {}; {stats:?}",
                now.len(),
                before.len()
            )
        });
        let mut superseded_left = stats.superseded_events;
        let mut dropped_left = stats.dropped_events;
        for uid in before {
            if now_set.contains(&uid) {
                continue;
            }
            let (kind, name) = {
                let i = &self.events[&uid];
                (i.kind, i.name.clone())
            };
            let newer_same_name = now.iter().any(|u| {
                let i = &self.events[u];
                i.kind.is_replacing() && i.name == name && u.as_u128() > uid.as_u128()
            });
            let status = if doubt.older.contains(&uid) {
                Status::Superseded
            } else if doubt.newest == Some(uid) {
                if doubt.raise.is_some_and(|r| now_set.contains(&r)) {
                    Status::Superseded
                } else {
                    self.violation(format!(
                        "a power cut during the raise of {:?} lost both it and the instance \
                         {uid} it supersedes ('{name}')",
                        doubt.raise
                    ));
                    Status::LostAtRestart
                }
            } else if doubt.dropped.contains(&uid) {
                if doubt.raise.is_some_and(|r| now_set.contains(&r)) {
                    self.struck_drops += 1;
                    Status::Dropped
                } else {
                    self.violation(format!(
                        "a power cut during the raise of {:?} lost {uid} ('{name}'), which that \
                         raise dropped to make room, though the new event was not stored: \
                         nothing was reported",
                        doubt.raise
                    ));
                    Status::LostAtRestart
                }
            } else if doubt.ack == Some(uid) {
                Status::Acked
            } else if doubt.reject == Some(uid) {
                // The rejection was being recorded: its report never came.
                Status::InDoubt
            } else if !self.cfg.service_file {
                Status::LostAtRestart
            } else if superseded_left > 0 && kind.is_replacing() && newer_same_name {
                superseded_left -= 1;
                Status::Superseded
            } else if dropped_left > 0 {
                dropped_left -= 1;
                Status::Dropped
            } else {
                self.violation(format!(
                    "event {uid} ('{name}') was pending in the SPL-2 store and is gone after the \
                     reopen"
                ));
                Status::LostAtRestart
            };
            self.events.get_mut(&uid).expect("known").status = status;
        }
        if let Some(r) = doubt.raise {
            if !now_set.contains(&r) {
                self.events.get_mut(&r).expect("known").status = Status::InDoubt;
            }
        }
        for uid in &now {
            if before_set.contains(uid) {
                continue;
            }
            match self.events.get_mut(uid) {
                None => {
                    let uid = *uid;
                    self.violation(format!("the store holds {uid}, which was never raised"));
                }
                Some(info) => {
                    if doubt.raise != Some(*uid) {
                        self.resurrected += 1;
                    }
                    info.status = Status::Pending;
                }
            }
        }
        self.svc.pending = now;
        self.svc.ancient = now_set;
    }

    /// Compares the simulator's view of the store with the store.
    fn check_store(&mut self, store: &ServiceStore, when: &str) {
        let actual: Vec<Uuid> = store
            .pending()
            .expect("pending")
            .iter()
            .map(|e| e.uid)
            .collect();
        if actual == self.svc.pending {
            return;
        }
        let actual_set: HashSet<Uuid> = actual.iter().copied().collect();
        let view_set: HashSet<Uuid> = self.svc.pending.iter().copied().collect();
        let vanished: Vec<Uuid> = self
            .svc
            .pending
            .iter()
            .filter(|u| !actual_set.contains(u))
            .copied()
            .collect();
        let extra: Vec<Uuid> = actual
            .iter()
            .filter(|u| !view_set.contains(u))
            .copied()
            .collect();
        self.violation(format!(
            "{when}: the store holds {} events, its calls said {}; gone without a word: \
             {vanished:?}; there without a word: {extra:?}",
            actual.len(),
            self.svc.pending.len()
        ));
        for uid in vanished {
            self.events.get_mut(&uid).expect("known").status = Status::Vanished;
        }
        self.svc.pending = actual;
    }

    fn client_down(&mut self, c: usize, fault: Fault) {
        let cs = &mut self.clients[c];
        let ctl = cs.ctl.take().expect("client app is up");
        let store = ctl.store().clone();
        let image = if fault == Fault::PowerCut && cs.cfg.file {
            self.client_cut_image(&store)
        } else {
            None
        };
        let path = store.file_path();
        drop(ctl);
        drop(store);
        if let (Some(image), Some(path)) = (image, path) {
            std::fs::write(path, image).expect("write the power-cut image");
        }
        let cs = &mut self.clients[c];
        cs.restarts += 1;
        cs.tally.restarts += 1;
        cs.allowed.clear();
    }

    fn client_up(&mut self, c: usize) {
        let cs = &mut self.clients[c];
        let store = if cs.cfg.file {
            ClientStore::open_file(cs.dir.path(), SERVER, &cs.key, &cs.options)
                .expect("open the client store")
        } else {
            ClientStore::open_memory(&cs.options)
        };
        let kind = if cs.cfg.stateful {
            ClientKind::Stateful
        } else {
            ClientKind::Stateless
        };
        cs.ctl = Some(ClientController::new(
            Arc::new(store),
            kind,
            HandlerOrder::RecordAfterHandle,
        ));
    }

    // ----- the service app -------------------------------------------------

    fn raise_tick(&mut self) {
        if self.now >= self.faults_end || self.svc.raises >= self.cfg.events {
            return;
        }
        let burst = if self.rng.chance(1, 25) {
            self.rng.range(2, 12)
        } else {
            1
        };
        for _ in 0..burst {
            if self.svc.raises >= self.cfg.events {
                break;
            }
            let event = self.next_event();
            if self.links[0].app_up {
                self.svc.raises += 1;
                self.svc_op(SvcOp::Raise(event));
            }
        }
        let gap = self.rng.range(1, 2 * self.cfg.mean_gap_ms);
        self.push(self.now + gap, Ev::Raise);
    }

    fn next_event(&mut self) -> Event {
        self.raised_seq += 1;
        let n = self.raised_seq;
        let uid = Uuid::from_u128((u128::from(self.cfg.seed) << 64) | u128::from(n));
        let stateful: Vec<i64> = self
            .clients
            .iter()
            .filter(|c| c.cfg.stateful)
            .map(|c| c.client_id)
            .collect();
        let r = self.rng.below(1000);
        let (kind, name, client_id) = if self.cfg.unknown_names && r < 5 {
            (EventKind::Queueing, UNKNOWN, None)
        } else if r < 600 {
            let name = QUEUEING[self.rng.below(QUEUEING.len() as u64) as usize];
            (EventKind::Queueing, name, None)
        } else if r < 880 || stateful.is_empty() {
            let kind = if self.rng.chance(1, 4) {
                EventKind::ReplacingNull
            } else {
                EventKind::Replacing
            };
            let name = REPLACING[self.rng.below(REPLACING.len() as u64) as usize];
            (kind, name, None)
        } else {
            let target = stateful[self.rng.below(stateful.len() as u64) as usize];
            (EventKind::Private, PRIVATE, Some(target))
        };
        let args = if kind == EventKind::ReplacingNull {
            Vec::new()
        } else {
            let len = self.rng.below(48);
            (0..len).map(|i| (n as u8) ^ (i as u8)).collect()
        };
        Event {
            kind,
            name: name.to_string(),
            args,
            client_id,
            uid,
        }
    }

    fn svc_op(&mut self, op: SvcOp) {
        let now = Duration::from_millis(self.now);
        let Some(ctl) = self.svc.ctl.as_mut() else {
            return;
        };
        ctl.tick(now);
        let store = ctl.store().clone();
        let op_kind = match &op {
            SvcOp::Online(_) => OpKind::Online,
            SvcOp::Disconnected => OpKind::Disconnected,
            _ => OpKind::Other,
        };
        match op {
            SvcOp::Raise(event) => {
                let uid = event.uid;
                let known = event.name != UNKNOWN;
                self.order.push(uid);
                self.events.insert(
                    uid,
                    Info {
                        kind: event.kind,
                        name: event.name.clone(),
                        known,
                        status: Status::Pending,
                        accepted: 0,
                        dropped_in_flight: false,
                        rejected_reported: false,
                        target: None,
                    },
                );
                let in_flight = ctl.in_flight();
                let candidates: Vec<Uuid> = if event.kind.is_replacing() {
                    self.svc
                        .pending
                        .iter()
                        .filter(|u| {
                            let i = &self.events[u];
                            i.kind.is_replacing() && i.name == event.name && !in_flight.contains(u)
                        })
                        .copied()
                        .collect()
                } else {
                    Vec::new()
                };
                let s0 = store.stats();
                let d0 = self.svc.drops.load(Ordering::SeqCst);
                ctl.raise_event(&event).expect("raise");
                if let Some(image) = self.cut_struck() {
                    let (newest, older) = match candidates.split_last() {
                        Some((n, o)) => (Some(*n), o.to_vec()),
                        None => (None, Vec::new()),
                    };
                    // The call ran to its end in memory: its drop report
                    // reached the callback, but the process died in the
                    // call, so it never did.
                    let dropped_now = self.svc.drops.load(Ordering::SeqCst) - d0;
                    self.svc.drops.fetch_sub(dropped_now, Ordering::SeqCst);
                    self.svc.struck_stats_drops += store.stats().dropped_events - s0.dropped_events;
                    let dropped = self
                        .svc
                        .pending
                        .iter()
                        .filter(|u| !candidates.contains(u))
                        .take(dropped_now as usize)
                        .copied()
                        .collect();
                    let doubt = InDoubt {
                        raise: Some(uid),
                        older,
                        newest,
                        dropped,
                        ..InDoubt::default()
                    };
                    self.struck(image, doubt);
                    return;
                }
                let s1 = store.stats();
                let dropped = self.svc.drops.load(Ordering::SeqCst) - d0;
                self.trace(|| {
                    format!(
                        "raise {uid} {:?} '{}' -> {} pending, mode {:?}, superseded {}, dropped \
                         {}, in flight {in_flight:?}",
                        event.kind,
                        event.name,
                        s1.pending_events,
                        s1.mode,
                        s1.superseded_events - s0.superseded_events,
                        s1.dropped_events - s0.dropped_events
                    )
                });
                let superseded = s1.superseded_events - s0.superseded_events;
                if s1.dropped_events - s0.dropped_events != dropped {
                    self.violation(format!(
                        "raise of {uid}: {} drops in the statistics, {dropped} reported",
                        s1.dropped_events - s0.dropped_events
                    ));
                }
                if superseded != candidates.len() as u64 {
                    self.violation(format!(
                        "raise of {uid} ('{}'): {superseded} superseded, expected {} \
                         ({candidates:?}; in flight {in_flight:?})",
                        event.name,
                        candidates.len()
                    ));
                }
                for c in &candidates {
                    self.svc.pending.retain(|u| u != c);
                    self.events.get_mut(c).expect("known").status = Status::Superseded;
                }
                for _ in 0..dropped {
                    if self.svc.pending.is_empty() {
                        break;
                    }
                    let gone = self.svc.pending.remove(0);
                    let info = self.events.get_mut(&gone).expect("known");
                    info.status = Status::Dropped;
                    info.dropped_in_flight = in_flight.contains(&gone);
                }
                self.svc.pending.push(uid);
                if self.cfg.check_every > 0 && self.svc.raises.is_multiple_of(self.cfg.check_every)
                {
                    self.check_store(&store, "during the run");
                }
            }
            SvcOp::Online(broker_uid) => {
                let before = store.stats().invalidated_events;
                ctl.online(broker_uid).expect("online");
                if let Some(image) = self.cut_struck() {
                    self.struck(image, InDoubt::default());
                    return;
                }
                let invalidated = store.stats().invalidated_events - before;
                if invalidated > 0 {
                    let ancient: Vec<Uuid> = self
                        .svc
                        .pending
                        .iter()
                        .filter(|u| self.svc.ancient.contains(u))
                        .copied()
                        .collect();
                    if ancient.len() as u64 != invalidated {
                        self.violation(format!(
                            "{invalidated} ancient events invalidated, {} were ancient",
                            ancient.len()
                        ));
                    }
                    for u in &ancient {
                        self.events.get_mut(u).expect("known").status = Status::Invalidated;
                    }
                    self.svc.pending.retain(|u| !ancient.contains(u));
                    self.invalidated += invalidated;
                }
                self.svc.ancient.clear();
            }
            SvcOp::Ack(uid) | SvcOp::Rejected(uid) => {
                let stale = ctl.stale_acks();
                if matches!(op, SvcOp::Ack(_)) {
                    ctl.ack(uid).expect("ack");
                } else {
                    ctl.rejected(uid).expect("rejected");
                }
                if let Some(image) = self.cut_struck() {
                    let doubt = if matches!(op, SvcOp::Ack(_)) {
                        InDoubt {
                            ack: Some(uid),
                            ..InDoubt::default()
                        }
                    } else {
                        InDoubt {
                            reject: Some(uid),
                            ..InDoubt::default()
                        }
                    };
                    self.struck(image, doubt);
                    return;
                }
                let ctl = self.svc.ctl.as_ref().expect("up");
                let is_stale = ctl.stale_acks() != stale;
                self.trace(|| format!("ack {uid} stale {is_stale}"));
                let ctl = self.svc.ctl.as_ref().expect("up");
                if ctl.stale_acks() == stale && self.svc.pending.contains(&uid) {
                    self.svc.pending.retain(|u| *u != uid);
                    self.events.get_mut(&uid).expect("known").status =
                        if matches!(op, SvcOp::Ack(_)) {
                            Status::Acked
                        } else {
                            Status::Rejected
                        };
                }
            }
            SvcOp::Tick => {}
            SvcOp::Disconnected => ctl.disconnected().expect("disconnected"),
        }
        let ctl = self.svc.ctl.as_mut().expect("up");
        let outputs = ctl.drain_outputs();
        let deadline = ctl.next_deadline();
        let in_flight = ctl.in_flight();
        let storage_mode = ctl.store().mode() == Mode::Storage;
        if matches!(op_kind, OpKind::Online | OpKind::Disconnected) {
            self.drain_last = None;
        }
        // SPEC 7: one event in flight while draining; then one per name.
        if storage_mode && in_flight.len() > 1 {
            self.violation(format!(
                "storage mode with {} events in flight",
                in_flight.len()
            ));
        }
        let mut names = HashSet::new();
        for u in &in_flight {
            if let Some(i) = self.events.get(u) {
                let pipeline = (i.kind.is_replacing(), i.kind == EventKind::Private, &i.name);
                if !names.insert(pipeline) {
                    let name = i.name.clone();
                    self.violation(format!("two events of '{name}' in flight: {in_flight:?}"));
                    break;
                }
            }
        }
        for out in outputs {
            match out {
                ServiceOutput::SendEvent(e) => {
                    // The drain goes strictly in raise order (a resend
                    // repeats the same event).
                    let seq = e.uid.as_u128() as u64;
                    if storage_mode {
                        if self.drain_last.is_some_and(|l| seq < l) {
                            let last = self.drain_last;
                            self.violation(format!(
                                "drain sent raise #{seq} after raise #{last:?}"
                            ));
                        }
                        self.drain_last = Some(seq);
                    }
                    self.send_up(0, Up::Service(FromService::Event(e)));
                }
                ServiceOutput::SendStorageUid(u) => {
                    self.send_up(0, Up::Service(FromService::StorageUid(u)));
                }
                ServiceOutput::Rejected(e) => {
                    if let Some(info) = self.events.get_mut(&e.uid) {
                        info.rejected_reported = true;
                    }
                }
            }
        }
        if let Some(d) = deadline {
            let at = ms(d).max(self.now);
            if self.service_timer.is_none_or(|t| at < t) {
                self.service_timer = Some(at);
                self.push(at, Ev::ServiceTimer);
            }
        }
        if let Some(left) = self.svc.armed {
            if left <= 1 {
                self.bring_down(0, Fault::PowerCut, None, InDoubt::default());
            } else {
                self.svc.armed = Some(left - 1);
            }
        }
    }

    fn struck(&mut self, image: Vec<u8>, doubt: InDoubt) {
        self.stats.mid_op_cuts += 1;
        // The call never returned: what it asked to send is never sent.
        if let Some(ctl) = self.svc.ctl.as_mut() {
            ctl.drain_outputs();
        }
        self.bring_down(0, Fault::PowerCut, Some(image), doubt);
    }

    // ----- the client apps ---------------------------------------------------

    fn client_deliver(&mut self, c: usize, d: Deliver) {
        let cs = &mut self.clients[c];
        let Some(ctl) = cs.ctl.as_mut() else {
            return;
        };
        let ack = match ctl.incoming(&d.name, d.id).expect("incoming") {
            ClientDecision::Handle => {
                // The application handles it here.
                let n = cs.handled.entry(d.uid).or_insert(0);
                *n += 1;
                if *n > 1 {
                    let explained = if cs.cfg.stateful {
                        let k = cs
                            .dup_since_restart
                            .entry((cs.restarts, d.name.clone()))
                            .or_insert(0);
                        *k += 1;
                        cs.restarts > 0 && *k == 1
                    } else {
                        cs.allowed.remove(&d.uid)
                    };
                    if !explained {
                        cs.tally.unexplained_duplicates += 1;
                    }
                }
                ctl.handled(&d.name, d.id).expect("handled")
            }
            ClientDecision::AckDuplicate => ClientAck {
                name: d.name.clone(),
                id: d.id,
            },
        };
        self.send_up(c + 1, Up::Client(FromClient::Ack(ack)));
    }

    // ----- the end -----------------------------------------------------------

    fn finish(mut self) -> RunStats {
        let in_transit = self
            .links
            .iter()
            .any(|l| !l.up.is_empty() || !l.down.is_empty());
        let svc_idle = match self.svc.ctl.as_ref() {
            Some(ctl) => {
                ctl.in_flight().is_empty()
                    && ctl.store().pending().map(|p| p.is_empty()).unwrap_or(false)
            }
            None => false,
        };
        if in_transit || !svc_idle || !self.broker.caught_up() {
            self.violation(format!(
                "did not drain: in transit {in_transit}, service idle {svc_idle}, clients \
                 caught up {}",
                self.broker.caught_up()
            ));
        }
        if let Some(ctl) = self.svc.ctl.as_ref() {
            let store = ctl.store().clone();
            self.check_store(&store, "at the end");
            self.svc.stats_drops += store.stats().dropped_events;
        }
        let mut t = ServiceTally {
            reported_drops: self.svc.drops.load(Ordering::SeqCst),
            stats_drops: self.svc.stats_drops - self.svc.struck_stats_drops,
            broker_duplicate_acks: self.broker_dup_acks,
            resurrected: self.resurrected,
            invalidated: self.invalidated,
            dropped_unreported: self.struck_drops,
            ..ServiceTally::default()
        };
        let mut lost_detail = Vec::new();
        for uid in &self.order {
            let i = &self.events[uid];
            if !i.known {
                t.unknown_raised += 1;
                if i.accepted > 0 {
                    lost_detail.push(format!("unknown-name event {uid} was accepted"));
                } else if i.status == Status::Dropped {
                    // Dropped for capacity (and reported so), whether or
                    // not the broker's rejection came back meanwhile.
                    t.unknown_dropped += 1;
                } else if i.rejected_reported {
                    t.unknown_rejected += 1;
                } else if matches!(i.status, Status::LostAtRestart | Status::InDoubt) {
                    t.unknown_lost_at_restart += 1;
                } else {
                    lost_detail.push(format!(
                        "unknown-name event {uid} neither rejected nor lost at a restart \
                         ({:?})",
                        i.status
                    ));
                }
                continue;
            }
            if i.status == Status::InDoubt && i.accepted == 0 {
                t.in_doubt += 1;
                continue;
            }
            t.raised += 1;
            if i.accepted > 0 {
                t.delivered += 1;
                t.duplicates += u64::from(i.accepted - 1);
                if i.status == Status::Dropped {
                    t.dropped_yet_delivered += 1;
                    if i.dropped_in_flight {
                        t.dropped_in_flight += 1;
                    }
                }
                continue;
            }
            match i.status {
                Status::Superseded => t.superseded += 1,
                Status::Dropped => t.dropped += 1,
                Status::Invalidated => {}
                Status::LostAtRestart => {
                    t.lost += 1;
                    t.lost_pending_at_restart += 1;
                }
                other => {
                    t.lost += 1;
                    lost_detail.push(format!(
                        "event {uid} ('{}', {:?}) never reached the broker ({other:?})",
                        i.name, i.kind
                    ));
                }
            }
        }
        for d in lost_detail {
            self.violation(d);
        }
        self.stats.service = t;
        for (c, cs) in self.clients.iter().enumerate() {
            let mut tally = cs.tally.clone();
            for uid in &self.accepted_order {
                let i = &self.events[uid];
                if i.target.is_some_and(|t| t != c) {
                    continue;
                }
                tally.expected += 1;
                match cs.handled.get(uid).copied().unwrap_or(0) {
                    0 => match self.gone.get(uid) {
                        Some(Gone::Replaced) => tally.replaced += 1,
                        Some(Gone::Evicted | Gone::Expired) => tally.evicted += 1,
                        None => tally.lost += 1,
                    },
                    n => {
                        tally.handled += 1;
                        tally.duplicates += u64::from(n - 1);
                    }
                }
            }
            for uid in cs.handled.keys() {
                if self.events.get(uid).is_none_or(|i| i.accepted == 0) {
                    let msg = format!("client {c} handled {uid}, which the broker never queued");
                    self.stats.violations.push(msg);
                }
            }
            self.stats.clients.push((cs.cfg, tally));
        }
        self.stats.failures = self.svc.failures.lock().unwrap().clone();
        self.stats
    }
}

#[derive(PartialEq, Eq)]
enum OpKind {
    Online,
    Disconnected,
    Other,
}

enum SvcOp {
    Raise(Event),
    Online(Option<Uuid>),
    Ack(Uuid),
    Rejected(Uuid),
    Tick,
    Disconnected,
}

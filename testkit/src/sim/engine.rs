//! The simulator itself: its state, its setup and its event loop. The
//! other files of this module add its parts (network, faults, endpoints,
//! accounting) as further `impl Sim` blocks.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::{
    ClientOptions, FailureCallback, FailureKind, Overflow, ServiceOptions, Uuid,
};

use crate::power_cut::PowerCut;

use super::accounting::Info;
use super::clients::ClientSide;
use super::config::{Fault, SimConfig};
use super::fallback::{FailSwitch, Fallbacks};
use super::faults::InDoubt;
use super::network::Link;
use super::service::{ServiceSide, SvcOp};
use super::site::{site, CLIENT_TIMEOUT};
use super::tally::{ClientTally, RunStats, ServiceTally};
use crate::broker::{self, Broker, Gone};
use crate::rng::Rng;

#[derive(Debug)]
pub(super) enum Ev {
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
    DeviceFails,
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

pub(super) struct Sim {
    pub(super) cfg: SimConfig,
    pub(super) rng: Rng,
    pub(super) now: u64,
    seq: u64,
    heap: BinaryHeap<Item>,
    pub(super) links: Vec<Link>,
    pub(super) broker: Broker,
    pub(super) svc: ServiceSide,
    pub(super) clients: Vec<ClientSide>,
    pub(super) events: HashMap<Uuid, Info>,
    pub(super) order: Vec<Uuid>,
    pub(super) accepted_order: Vec<Uuid>,
    pub(super) gone: HashMap<Uuid, Gone>,
    pub(super) raised_seq: u64,
    pub(super) service_timer: Option<u64>,
    pub(super) broker_timer: Option<u64>,
    pub(super) faults_end: u64,
    pub(super) stats: RunStats,
    pub(super) broker_dup_acks: u64,
    pub(super) resurrected: u64,
    pub(super) invalidated: u64,
    pub(super) struck_drops: u64,
    /// Per name, the raise number of the last event accepted.
    pub(super) last_accepted: HashMap<String, u64>,
    /// The raise number of the last event sent in storage mode since the
    /// drain began.
    pub(super) drain_last: Option<u64>,
}

pub(super) fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn scratch_dir() -> tempfile::TempDir {
    match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir().expect("temporary directory"),
    }
}

/// Records failure reports: capacity drops counted in `drops` (the
/// others are listed), events lost in fallbacks also in `fallback_lost`.
fn recorder(
    failures: &Arc<Mutex<Vec<String>>>,
    drops: Option<&Arc<AtomicU64>>,
    fallback_lost: Option<&Arc<AtomicU64>>,
) -> FailureCallback {
    let failures = failures.clone();
    let drops = drops.cloned();
    let fallback_lost = fallback_lost.cloned();
    Arc::new(move |f| {
        if f.kind == FailureKind::CapacityDrop {
            if let Some(d) = &drops {
                d.fetch_add(f.events_lost, Ordering::SeqCst);
            }
        } else {
            if let (FailureKind::Fallback, Some(l)) = (f.kind, &fallback_lost) {
                l.fetch_add(f.events_lost, Ordering::SeqCst);
            }
            failures
                .lock()
                .unwrap()
                .push(format!("{}: {}", f.kind, f.message));
        }
    })
}

/// The service endpoint before its app first comes up: its store's
/// options (capacity drops counted apart from other failure reports), its
/// simulated device, an empty view of its store.
fn service_side(cfg: &SimConfig, failures: &Arc<Mutex<Vec<String>>>) -> ServiceSide {
    let drops = Arc::new(AtomicU64::new(0));
    let fallback_lost = Arc::new(AtomicU64::new(0));
    let cut = PowerCut::new();
    let switch = FailSwitch::default();
    let options = ServiceOptions {
        capacity: cfg.capacity,
        memory_capacity: cfg.memory_capacity,
        durability: cfg.durability,
        overflow: Overflow::DropOldest,
        on_failure: Some(recorder(failures, Some(&drops), Some(&fallback_lost))),
        device_layer: Some(switch.layer(cut.layer())),
        ..Default::default()
    };
    ServiceSide {
        dir: scratch_dir(),
        uid: Uuid::from_u128(0x5e55_0000 ^ u128::from(cfg.seed)),
        options,
        cut,
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
        switch,
        switch_on: false,
        fallbacks: Fallbacks::default(),
        fallback_lost,
        level1_at_down: false,
    }
}

/// The client endpoints of `cfg`, in order, before their apps first come
/// up; each has its own directory and simulated device.
fn client_sides(cfg: &SimConfig, failures: &Arc<Mutex<Vec<String>>>) -> Vec<ClientSide> {
    cfg.clients
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let cut = PowerCut::new();
            ClientSide {
                cfg: c,
                // Client ids and instance ids use the full i64 range.
                client_id: i64::MIN + 7 + i as i64,
                dir: scratch_dir(),
                key: format!("client-{i}"),
                options: ClientOptions {
                    durability: cfg.durability,
                    on_failure: Some(recorder(failures, None, None)),
                    device_layer: Some(cut.layer()),
                    ..Default::default()
                },
                cut,
                ctl: None,
                handled: HashMap::new(),
                restarts: 0,
                dup_since_restart: HashMap::new(),
                allowed: HashSet::new(),
                tally: ClientTally::default(),
            }
        })
        .collect()
}

/// The broker of the site of `cfg`, knowing `clients`. Its instance ids
/// start at a random point of 2^40..2^41: one draw of `rng`, the first of
/// the run.
fn broker_for(cfg: &SimConfig, clients: &[ClientSide], rng: &mut Rng) -> Broker {
    let specs: Vec<broker::ClientSpec> = clients
        .iter()
        .map(|c| broker::ClientSpec {
            client_id: c.client_id,
            stateful: c.cfg.stateful,
        })
        .collect();
    let first_id = (1i64 << 40) + rng.below(1 << 40) as i64;
    Broker::new(&site(cfg), &specs, CLIENT_TIMEOUT, first_id)
}

/// Nothing counted yet for the run of `seed`.
fn empty_stats(seed: u64) -> RunStats {
    RunStats {
        seed,
        service: ServiceTally::default(),
        clients: Vec::new(),
        faults: BTreeMap::new(),
        mid_op_cuts: 0,
        failures: Vec::new(),
        violations: Vec::new(),
        sim_time: Duration::ZERO,
    }
}

impl Sim {
    /// A run of `cfg` before its start: every endpoint down, nothing
    /// scheduled. The generator is seeded here; the broker's first
    /// instance id is its first draw.
    pub(super) fn new(cfg: SimConfig) -> Sim {
        let mut rng = Rng::new(cfg.seed);
        let failures = Arc::new(Mutex::new(Vec::new()));
        let svc = service_side(&cfg, &failures);
        let clients = client_sides(&cfg, &failures);
        let broker = broker_for(&cfg, &clients, &mut rng);
        let links = (0..=clients.len()).map(|_| Link::default()).collect();
        let faults_end = u64::from(cfg.events) * cfg.mean_gap_ms;
        Sim {
            stats: empty_stats(cfg.seed),
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

    pub(super) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Item {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            println!("{:>9} {}", self.now, what());
        }
    }

    pub(super) fn violation(&mut self, what: String) {
        let msg = format!("seed {} at {} ms: {what}", self.cfg.seed, self.now);
        self.stats.violations.push(msg);
    }

    pub(super) fn start(&mut self) {
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
                    // The service's journal only.
                    Fault::Level2Failure if ep > 0 => {}
                    Fault::Level2Failure => self.push(at, Ev::DeviceFails),
                    other => self.push(at, Ev::Down(ep, other)),
                }
            }
            self.app_up(ep);
        }
        self.push(0, Ev::Raise);
    }

    pub(super) fn main_loop(&mut self) {
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
                Ev::DeviceFails => self.device_fails(),
                Ev::CutNow(id) => {
                    if self.svc.armed.is_some() && self.svc.cut_id == id {
                        self.bring_down(0, Fault::PowerCut, None, InDoubt::default());
                    }
                }
            }
        }
        self.stats.sim_time = Duration::from_millis(self.now);
    }
}

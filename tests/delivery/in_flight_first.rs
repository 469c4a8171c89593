//! docs/PROTOCOL.md section 2.8 over many seeds: after a reconnect, the
//! events that were in flight at the disconnect are sent again first, with
//! their uids, in the order they were first sent, skipping those the store
//! no longer holds; only then does the drain start over.
//!
//! Each seed drives a `ServiceController` over a memory store with random
//! raises (Queueing, Replacing and Replacing-null, over a few names), acks
//! of what the broker stand-in queued (in any order; some lost, some late),
//! ticks (resends after the timeout) and disconnect / connected / online
//! cycles. Checked after every call:
//! - after a reconnect, each event sent for the first time in the session
//!   is the next of those in flight at the disconnect (in the order they
//!   were first sent), unless every one of those is sent or gone from the
//!   store;
//! - each name's events are sent in raise order (a resend repeats the same
//!   uid, and is never sent after a newer event of its name);
//! - nothing the store no longer holds is sent, nothing is sent offline;
//! - the broker stand-in (the duplicate rule of section 2.6) never queues
//!   an event twice, and at the end it queued every event raised but for
//!   superseded Replacing instances.
//!
//! A failure names the seed and prints the run's whole sequence of calls
//! and outputs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use softnet_persistence::{
    Event, EventKind, ServiceController, ServiceOptions, ServiceOutput, ServiceStore, Uuid,
};
use testkit::Rng;

const SEEDS: u64 = 500;
const STEPS: u32 = 300;
const TIMEOUT: Duration = Duration::from_secs(30);
const NAMES: [(EventKind, &str); 5] = [
    (EventKind::Queueing, "Q0"),
    (EventKind::Queueing, "Q1"),
    (EventKind::Queueing, "Q2"),
    (EventKind::Replacing, "R0"),
    (EventKind::Replacing, "R1"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Offline,
    Connected,
    Online,
}

/// The broker stand-in: the storage uid it remembers, the duplicate rule
/// (the last uid queued per name, for that storage uid), what it queued,
/// and its acks on their way to the service.
#[derive(Default)]
struct Broker {
    storage_uid: Option<Uuid>,
    last_queued: HashMap<String, Uuid>,
    queued: HashMap<Uuid, u32>,
    acks: Vec<Uuid>,
    /// Every uid it ever acknowledged (for late acks).
    acked: Vec<Uuid>,
}

/// What a raised event is, for the checks and the log.
struct Raised {
    number: usize,
    kind: EventKind,
    name: String,
}

/// The counts the test prints.
#[derive(Default, Debug)]
struct Counts {
    reconnects: u64,
    /// Of those, a second `online` without a disconnect.
    online_again: u64,
    replayed: u64,
    skipped_gone: u64,
    resends: u64,
    raised: u64,
    superseded: u64,
}

struct Run {
    seed: u64,
    rng: Rng,
    ctl: ServiceController,
    link: Link,
    now: Duration,
    broker: Broker,
    raised: HashMap<Uuid, Raised>,
    order: Vec<Uuid>,
    /// Per uid, the number of its first send.
    first_sent: HashMap<Uuid, u64>,
    /// Sent since the last `online`.
    session_sent: HashSet<Uuid>,
    /// Per pipeline (replacing?, name), the raise number last sent.
    last_sent: HashMap<(bool, String), usize>,
    /// In flight at the last disconnect, not yet sent again or skipped.
    replay: VecDeque<Uuid>,
    log: Vec<String>,
    counts: Counts,
}

impl Run {
    fn new(seed: u64) -> Run {
        let options = ServiceOptions {
            memory_capacity: 1 << 20,
            ..ServiceOptions::default()
        };
        let store = ServiceStore::open_memory(&options).unwrap();
        let mut ctl = ServiceController::with_timeout(Arc::new(store), TIMEOUT);
        // The clock starts at 0 (the first tick sets the controller's origin).
        ctl.tick(Duration::ZERO);
        Run {
            seed,
            rng: Rng::new(seed),
            ctl,
            link: Link::Offline,
            now: Duration::ZERO,
            broker: Broker::default(),
            raised: HashMap::new(),
            order: Vec::new(),
            first_sent: HashMap::new(),
            session_sent: HashSet::new(),
            last_sent: HashMap::new(),
            replay: VecDeque::new(),
            log: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn label(&self, uid: &Uuid) -> String {
        match self.raised.get(uid) {
            Some(r) => format!("{}#{}", r.name, r.number),
            None => format!("{uid}"),
        }
    }

    fn labels<'a>(&self, uids: impl IntoIterator<Item = &'a Uuid>) -> String {
        let names: Vec<String> = uids.into_iter().map(|u| self.label(u)).collect();
        format!("[{}]", names.join(", "))
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {}: {what}\nthe sequence (call, then its outputs):\n  {}",
            self.seed,
            self.log.join("\n  ")
        );
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..35 => self.raise(),
            35..63 => self.deliver_ack(),
            63..66 => self.lose_ack(),
            66..68 => self.late_ack(),
            68..88 => self.tick(),
            _ => self.link_step(),
        }
        self.outputs();
    }

    fn raise(&mut self) {
        let (mut kind, name) = NAMES[self.rng.below(NAMES.len() as u64) as usize];
        if kind == EventKind::Replacing && self.rng.chance(1, 4) {
            kind = EventKind::ReplacingNull;
        }
        let args: &[u8] = if kind == EventKind::ReplacingNull {
            b""
        } else {
            b"x"
        };
        let uid = self.ctl.raise(kind, name, args).unwrap();
        let number = self.order.len() + 1;
        let raised = Raised {
            number,
            kind,
            name: name.to_string(),
        };
        self.raised.insert(uid, raised);
        self.order.push(uid);
        self.counts.raised += 1;
        self.log.push(format!("raise {name}#{number} ({kind})"));
    }

    /// An ack in transit arrives (any of them: different names' acks may
    /// pass each other).
    fn deliver_ack(&mut self) {
        if self.broker.acks.is_empty() {
            return;
        }
        let i = self.rng.below(self.broker.acks.len() as u64) as usize;
        let uid = self.broker.acks.remove(i);
        self.log.push(format!("ack {}", self.label(&uid)));
        self.ctl.ack(uid).unwrap();
    }

    fn lose_ack(&mut self) {
        if !self.broker.acks.is_empty() {
            let uid = self.broker.acks.remove(0);
            self.log.push(format!("(ack {} lost)", self.label(&uid)));
        }
    }

    /// An ack the broker did send, once more (a late or repeated ack).
    fn late_ack(&mut self) {
        if self.broker.acked.is_empty() {
            return;
        }
        let i = self.rng.below(self.broker.acked.len() as u64) as usize;
        let uid = self.broker.acked[i];
        self.log.push(format!("late ack {}", self.label(&uid)));
        self.ctl.ack(uid).unwrap();
    }

    fn tick(&mut self) {
        let step = Duration::from_millis(self.rng.spread(1, 45_000));
        self.now += step;
        self.log.push(format!("tick +{step:?}"));
        self.ctl.tick(self.now);
    }

    fn link_step(&mut self) {
        match self.link {
            // The broker's `online` again on the same link: a new session,
            // as if the link had dropped in between.
            Link::Online if self.rng.chance(1, 6) => self.online(),
            Link::Online => self.disconnect(),
            Link::Offline => {
                self.link = Link::Connected;
                self.log.push("connected".into());
                self.ctl.connected();
            }
            Link::Connected => self.online(),
        }
    }

    /// What is in flight now goes first in the next session, in the order
    /// it was first sent, then what was left to send again from before.
    fn end_session(&mut self, what: &str) {
        let mut flights = self.ctl.in_flight();
        flights.sort_by_key(|u| self.first_sent[u]);
        let mut replay: VecDeque<Uuid> = flights.iter().copied().collect();
        replay.extend(self.replay.iter().filter(|u| !flights.contains(u)));
        self.log.push(format!(
            "{what} (in flight {}; to send again first {})",
            self.labels(&flights),
            self.labels(&replay)
        ));
        self.replay = replay;
    }

    fn disconnect(&mut self) {
        self.end_session("disconnected");
        self.link = Link::Offline;
        self.broker.acks.clear();
        self.ctl.disconnected().unwrap();
    }

    fn online(&mut self) {
        if self.link == Link::Online {
            self.end_session("online again, without a disconnect");
            self.counts.online_again += 1;
        }
        self.link = Link::Online;
        if !self.first_sent.is_empty() {
            self.counts.reconnects += 1;
        }
        self.session_sent.clear();
        let remembered = self.broker.storage_uid;
        self.log
            .push(format!("online (broker remembers {remembered:?})"));
        self.ctl.online(remembered).unwrap();
    }

    fn outputs(&mut self) {
        let outputs = self.ctl.drain_outputs();
        if outputs.is_empty() {
            return;
        }
        let held: HashSet<Uuid> = self
            .ctl
            .store()
            .pending()
            .unwrap()
            .iter()
            .map(|e| e.uid)
            .collect();
        for out in outputs {
            if self.link != Link::Online {
                self.fail(format!("{out:?} while {:?}", self.link));
            }
            match out {
                ServiceOutput::SendStorageUid(u) => {
                    self.log.push(format!("  -> storage uid {u}"));
                    if self.broker.storage_uid != Some(u) {
                        self.broker.storage_uid = Some(u);
                        self.broker.last_queued.clear();
                    }
                }
                ServiceOutput::SendEvent(e) => self.send(&e, &held),
                ServiceOutput::Rejected(e) => self.fail(format!("rejected {e:?}")),
            }
        }
    }

    fn send(&mut self, e: &Event, held: &HashSet<Uuid>) {
        let uid = e.uid;
        let repeat = self.first_sent.contains_key(&uid);
        self.log.push(format!(
            "  -> send {}{}",
            self.label(&uid),
            if repeat { " (again)" } else { "" }
        ));
        if !held.contains(&uid) {
            self.fail(format!(
                "sent {}, which the store no longer holds",
                self.label(&uid)
            ));
        }
        self.check_name_order(e);
        if !self.session_sent.contains(&uid) {
            self.check_replay(uid, held);
        } else {
            self.counts.resends += 1;
        }
        self.session_sent.insert(uid);
        let n = self.first_sent.len() as u64;
        self.first_sent.entry(uid).or_insert(n);
        self.broker_receives(e);
    }

    /// Each name's events go out in raise order; a resend repeats the
    /// newest one sent.
    fn check_name_order(&mut self, e: &Event) {
        let r = &self.raised[&e.uid];
        let key = (r.kind.is_replacing(), r.name.clone());
        let number = r.number;
        if let Some(&last) = self.last_sent.get(&key) {
            if number < last {
                self.fail(format!(
                    "sent {} after {}#{last} of the same name",
                    self.label(&e.uid),
                    r.name
                ));
            }
        }
        self.last_sent.insert(key, number);
    }

    /// The first send of `uid` in this session: while events that were in
    /// flight at the disconnect are left to send again, it must be the
    /// first of them the store still holds.
    fn check_replay(&mut self, uid: Uuid, held: &HashSet<Uuid>) {
        while let Some(&front) = self.replay.front() {
            if front == uid {
                self.replay.pop_front();
                self.counts.replayed += 1;
                return;
            }
            if held.contains(&front) {
                self.fail(format!(
                    "sent {} while {} (in flight at the disconnect, still held) was not sent \
                     again yet; left to send again: {}",
                    self.label(&uid),
                    self.label(&front),
                    self.labels(&self.replay)
                ));
            }
            self.replay.pop_front();
            self.counts.skipped_gone += 1;
        }
    }

    /// The duplicate rule of docs/PROTOCOL.md section 2.6.
    fn broker_receives(&mut self, e: &Event) {
        let uid = e.uid;
        if self.broker.last_queued.get(&e.name) != Some(&uid) {
            let n = self.broker.queued.entry(uid).or_insert(0);
            *n += 1;
            if *n > 1 {
                self.fail(format!("the broker queued {} twice", self.label(&uid)));
            }
            self.broker.last_queued.insert(e.name.clone(), uid);
        }
        self.broker.acks.push(uid);
        self.broker.acked.push(uid);
    }
}

impl Run {
    /// Back online for good: every event is delivered, then the broker
    /// stand-in must have queued each raised event once, but for
    /// superseded Replacing instances.
    fn finish(&mut self) {
        self.log.push("-- the end: online until drained".into());
        while self.link != Link::Online {
            self.link_step();
            self.outputs();
        }
        for _ in 0..100_000 {
            if !self.broker.acks.is_empty() {
                let uid = self.broker.acks.remove(0);
                self.log.push(format!("ack {}", self.label(&uid)));
                self.ctl.ack(uid).unwrap();
            } else if !self.ctl.in_flight().is_empty() {
                self.now += TIMEOUT;
                self.log.push(format!("tick +{TIMEOUT:?}"));
                self.ctl.tick(self.now);
            } else {
                break;
            }
            self.outputs();
        }
        let pending = self.ctl.store().pending().unwrap();
        if !pending.is_empty() || !self.replay.is_empty() {
            let left: Vec<Uuid> = pending.iter().map(|e| e.uid).collect();
            self.fail(format!(
                "online, nothing in flight, yet {} pending and {} left to send again",
                self.labels(&left),
                self.labels(&self.replay)
            ));
        }
        self.check_all_queued();
    }

    fn check_all_queued(&mut self) {
        let missing: Vec<Uuid> = self
            .order
            .iter()
            .filter(|u| !self.broker.queued.contains_key(u))
            .copied()
            .collect();
        let superseded = self.ctl.store().stats().superseded_events;
        let all_replacing = missing.iter().all(|u| self.raised[u].kind.is_replacing());
        if !all_replacing || missing.len() as u64 > superseded {
            self.fail(format!(
                "never queued: {} ({superseded} superseded)",
                self.labels(&missing)
            ));
        }
        self.counts.superseded += missing.len() as u64;
    }
}

#[test]
fn in_flight_events_go_first_after_every_reconnect() {
    let mut total = Counts::default();
    for seed in 1..=SEEDS {
        let mut run = Run::new(seed);
        for _ in 0..STEPS {
            run.step();
        }
        run.finish();
        let c = &run.counts;
        total.reconnects += c.reconnects;
        total.online_again += c.online_again;
        total.replayed += c.replayed;
        total.skipped_gone += c.skipped_gone;
        total.resends += c.resends;
        total.raised += c.raised;
        total.superseded += c.superseded;
    }
    println!(
        "{SEEDS} seeds: {} reconnects checked ({} of them a second online without a \
         disconnect), {} in-flight events sent again first, {} skipped (gone from the store \
         meanwhile); {} events raised, {} superseded, {} resends in a session",
        total.reconnects,
        total.online_again,
        total.replayed,
        total.skipped_gone,
        total.raised,
        total.superseded,
        total.resends
    );
    assert!(total.reconnects >= SEEDS * 5, "{total:?}");
    assert!(total.replayed >= SEEDS, "{total:?}");
    assert!(
        total.skipped_gone > 0,
        "no in-flight event was superseded meanwhile: {total:?}"
    );
}

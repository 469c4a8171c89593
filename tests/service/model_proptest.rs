//! Invariant: under any sequence of operations a service store behaves
//! exactly like a plain in-memory reference model of docs/BEHAVIOUR.md section 3 (storage
//! and cache mode, Replacing collapse, capacity drop-oldest, ancient data,
//! reset), at level 1 and at level 2 with reopens in between.
//!
//! The model is written from docs/BEHAVIOUR.md, not from the code: record size is
//! `32 + round_up_8(40 + name + args)`; a new Replacing (or Replacing-null)
//! raise of name N supersedes every pending instance of N except the one in
//! flight; when the new record does not fit, the oldest pending events are
//! dropped (skipping the instances the raise supersedes); a reopen forgets
//! what was in flight, returns to storage mode and makes every pending event
//! ancient.

use std::collections::HashMap;

use proptest::prelude::*;
use softnet_persistence::{
    Durability, Error, ErrorKind, Event, EventKind, FailureKind, Level, Mode, ServiceOptions,
    ServiceStore, Uuid,
};
use tempfile::TempDir;
use testkit::{collect_into, proptest_config, scratch_dir, Reports};

/// A few names, so that pipelines and Replacing collapse collide often.
const NAMES: [&str; 4] = ["A", "Door open", "Temp.1", "Valve/22"];
const KINDS: [EventKind; 4] = [
    EventKind::Replacing,
    EventKind::ReplacingNull,
    EventKind::Queueing,
    EventKind::Private,
];
/// The minimum level-2 capacity, so that drops happen.
const FILE_CAPACITY: usize = 8192;
/// The minimum level-1 capacity.
const MEMORY_CAPACITY: usize = 4096;
const MAX_ARGS: usize = 300;

// ----- the reference model --------------------------------------------

/// The pipeline a kind belongs to: Replacing and Replacing-null share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Family {
    Replacing,
    Queueing,
    Private,
}

fn family(kind: EventKind) -> Family {
    match kind {
        EventKind::Replacing | EventKind::ReplacingNull => Family::Replacing,
        EventKind::Queueing => Family::Queueing,
        EventKind::Private => Family::Private,
    }
}

/// Bytes an event counts against the capacity (docs/BEHAVIOUR.md section 3.5: bytes of stored
/// records; a record is a 32-byte header and the payload, 40 fixed bytes with the
/// raise time, the name and the arguments, padded to 8).
fn record_size(name: &str, args: &[u8]) -> u64 {
    32 + (40 + name.len() + args.len()).next_multiple_of(8) as u64
}

#[derive(Debug, Clone)]
struct Pending {
    event: Event,
    size: u64,
    /// In the store when it was (re)opened.
    ancient: bool,
    /// Returned by the last `peek()` and not acknowledged (storage mode).
    storage_flight: bool,
    /// Head of its pipeline, returned by `peek_name`/`ack_name`.
    cache_flight: bool,
}

#[derive(Debug)]
struct Model {
    capacity: u64,
    /// Pending events in raise order.
    pending: Vec<Pending>,
    mode: Mode,
    dropped: u64,
    superseded: u64,
    invalidated: u64,
}

type Expect<T> = Result<T, ErrorKind>;

impl Model {
    fn new(capacity: usize) -> Model {
        Model {
            capacity: capacity as u64,
            pending: Vec::new(),
            mode: Mode::Storage,
            dropped: 0,
            superseded: 0,
            invalidated: 0,
        }
    }

    fn used(&self) -> u64 {
        self.pending.iter().map(|p| p.size).sum()
    }

    /// Stores `event`; returns how many events were dropped for room.
    fn raise(&mut self, event: Event) -> u64 {
        let size = record_size(&event.name, &event.args);
        let superseded: Vec<bool> = self
            .pending
            .iter()
            .map(|p| {
                event.kind.is_replacing()
                    && family(p.event.kind) == Family::Replacing
                    && p.event.name == event.name
                    && !p.storage_flight
                    && !p.cache_flight
            })
            .collect();
        let freed: u64 = self
            .pending
            .iter()
            .zip(&superseded)
            .filter(|(_, &s)| s)
            .map(|(p, _)| p.size)
            .sum();
        let mut left = self.used() - freed;
        let mut dropped = vec![false; self.pending.len()];
        for (i, p) in self.pending.iter().enumerate() {
            if left + size <= self.capacity {
                break;
            }
            if superseded[i] {
                continue;
            }
            left -= p.size;
            dropped[i] = true;
        }
        let n_superseded = superseded.iter().filter(|&&s| s).count() as u64;
        let n_dropped = dropped.iter().filter(|&&d| d).count() as u64;
        let mut i = 0;
        self.pending.retain(|_| {
            let keep = !superseded[i] && !dropped[i];
            i += 1;
            keep
        });
        self.superseded += n_superseded;
        self.dropped += n_dropped;
        self.pending.push(Pending {
            event,
            size,
            ancient: false,
            storage_flight: false,
            cache_flight: false,
        });
        n_dropped
    }

    fn peek(&mut self) -> Expect<Option<Event>> {
        if self.mode != Mode::Storage {
            return Err(ErrorKind::State);
        }
        for p in &mut self.pending {
            p.storage_flight = false;
        }
        match self.pending.first_mut() {
            None => {
                self.mode = Mode::Cache;
                Ok(None)
            }
            Some(front) => {
                front.storage_flight = true;
                Ok(Some(front.event.clone()))
            }
        }
    }

    fn front_uid(&self) -> Option<Uuid> {
        self.pending.first().map(|p| p.event.uid)
    }

    fn ack(&mut self, uid: Uuid) -> Expect<()> {
        if self.mode != Mode::Storage || self.front_uid() != Some(uid) {
            return Err(ErrorKind::State);
        }
        self.pending.remove(0);
        Ok(())
    }

    fn head(&self, kind: EventKind, name: &str) -> Option<usize> {
        self.pending
            .iter()
            .position(|p| family(p.event.kind) == family(kind) && p.event.name == name)
    }

    fn peek_name(&mut self, kind: EventKind, name: &str) -> Expect<Option<Event>> {
        if self.mode != Mode::Cache {
            return Err(ErrorKind::State);
        }
        Ok(self.head(kind, name).map(|i| {
            self.pending[i].cache_flight = true;
            self.pending[i].event.clone()
        }))
    }

    fn ack_name(&mut self, kind: EventKind, name: &str, uid: Uuid) -> Expect<Option<Event>> {
        if self.mode != Mode::Cache {
            return Err(ErrorKind::State);
        }
        match self.head(kind, name) {
            Some(i) if self.pending[i].event.uid == uid => {
                self.pending.remove(i);
                self.peek_name(kind, name)
            }
            _ => Err(ErrorKind::State),
        }
    }

    fn set_storage_mode(&mut self) {
        self.mode = Mode::Storage;
        for p in &mut self.pending {
            p.storage_flight = false;
            p.cache_flight = false;
        }
    }

    fn invalidate_ancient(&mut self) -> u64 {
        let before = self.pending.len();
        self.pending.retain(|p| !p.ancient);
        let n = (before - self.pending.len()) as u64;
        self.invalidated += n;
        n
    }

    fn reset(&mut self) {
        self.pending.clear();
    }

    /// Close and open again: a new store over the same file.
    fn reopen(&mut self) {
        self.set_storage_mode();
        for p in &mut self.pending {
            p.ancient = true;
        }
        self.dropped = 0;
        self.superseded = 0;
        self.invalidated = 0;
    }
}

// ----- operations -------------------------------------------------------

/// Which uid an ack carries.
#[derive(Debug, Clone, Copy)]
enum UidPick {
    /// The uid the model says is the right one (the front or the head).
    Expected,
    /// The uid of the event the store returned last (for that name).
    LastSeen,
    /// The uid of some event raised earlier (often already gone).
    Stale(usize),
    /// A uid that was never raised.
    Fresh(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Raise {
        kind: EventKind,
        name: usize,
        args_len: usize,
        fill: u8,
        client: i64,
    },
    Peek,
    Ack(UidPick),
    PeekName {
        kind: EventKind,
        name: usize,
    },
    AckName {
        kind: EventKind,
        name: usize,
        pick: UidPick,
    },
    SetStorageMode,
    InvalidateAncient,
    Reset,
    /// Drop the store and open the same file again (level 2 only).
    Reopen,
}

fn uid_pick() -> impl Strategy<Value = UidPick> {
    prop_oneof![
        6 => Just(UidPick::Expected),
        2 => Just(UidPick::LastSeen),
        1 => (0usize..64).prop_map(UidPick::Stale),
        1 => any::<u64>().prop_map(UidPick::Fresh),
    ]
}

/// Operations; `backlog` cases raise more than they acknowledge, so the
/// capacity is reached and events are dropped, the others drain the
/// backlog and spend more time in cache mode.
fn op_strategy(with_reopen: bool, backlog: bool) -> BoxedStrategy<Op> {
    let kind = || prop::sample::select(KINDS.to_vec());
    let (raises, acks, cache, discards) = if backlog {
        (50, 3, 4, 1)
    } else {
        (30, 18, 12, 3)
    };
    let base = prop_oneof![
        raises => (kind(), 0..NAMES.len(), 0..=MAX_ARGS, any::<u8>(), -2i64..3).prop_map(
            |(kind, name, args_len, fill, client)| Op::Raise {
                kind,
                name,
                args_len,
                fill,
                client,
            }
        ),
        14 => Just(Op::Peek),
        acks => uid_pick().prop_map(Op::Ack),
        10 => (kind(), 0..NAMES.len()).prop_map(|(kind, name)| Op::PeekName { kind, name }),
        cache => (kind(), 0..NAMES.len(), uid_pick())
            .prop_map(|(kind, name, pick)| Op::AckName { kind, name, pick }),
        4 => Just(Op::SetStorageMode),
        discards => Just(Op::InvalidateAncient),
        1 => Just(Op::Reset),
    ];
    if with_reopen {
        prop_oneof![95 => base, 5 => Just(Op::Reopen)].boxed()
    } else {
        base.boxed()
    }
}

/// Up to 200 operations, in a backlog case or a draining one.
fn ops_strategy(with_reopen: bool) -> impl Strategy<Value = Vec<Op>> {
    any::<bool>().prop_flat_map(move |backlog| {
        prop::collection::vec(op_strategy(with_reopen, backlog), 1..200)
    })
}

fn args_for(kind: EventKind, len: usize, fill: u8) -> Vec<u8> {
    if kind == EventKind::ReplacingNull {
        return Vec::new();
    }
    (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(31)))
        .collect()
}

// ----- the harness --------------------------------------------------------

fn kind_of<T>(r: Result<T, Error>) -> Expect<T> {
    r.map_err(|e| e.kind())
}

struct Harness {
    level: Level,
    store: Option<ServiceStore>,
    dir: Option<TempDir>,
    service: Uuid,
    options: ServiceOptions,
    reports: Reports,
    storage_uid: Uuid,
    model: Model,
    last_peeked: Option<Uuid>,
    last_by_name: HashMap<(Family, usize), Uuid>,
    raised: Vec<Uuid>,
}

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $what:expr) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: store {:?}, model {:?}", $what, l, r));
        }
    }};
}

impl Harness {
    fn open(level: Level) -> Result<Harness, String> {
        let reports = Reports::default();
        let options = ServiceOptions {
            capacity: FILE_CAPACITY,
            memory_capacity: MEMORY_CAPACITY,
            durability: Durability::None,
            on_failure: Some(collect_into(&reports)),
            ..ServiceOptions::default()
        };
        let service = Uuid::new_v4();
        let (store, dir, capacity) = match level {
            Level::Memory => (ServiceStore::open_memory(&options), None, MEMORY_CAPACITY),
            Level::Persistent => {
                let dir = scratch_dir();
                let store = ServiceStore::open_file(dir.path(), service, &options);
                (store, Some(dir), FILE_CAPACITY)
            }
        };
        let store = store.map_err(|e| format!("open: {e}"))?;
        let storage_uid = store.storage_uid();
        let mut h = Harness {
            level,
            store: Some(store),
            dir,
            service,
            options,
            reports,
            storage_uid,
            model: Model::new(capacity),
            last_peeked: None,
            last_by_name: HashMap::new(),
            raised: Vec::new(),
        };
        h.check(0)?;
        Ok(h)
    }

    fn store(&self) -> &ServiceStore {
        self.store.as_ref().expect("store is open")
    }

    fn pick_uid(&self, pick: UidPick, expected: Option<Uuid>, last: Option<Uuid>) -> Uuid {
        let fresh = |n: u64| Uuid::from_u128(0xdead_0000_0000_0000_0000_0000_0000_0000 | n as u128);
        match pick {
            UidPick::Expected => expected.unwrap_or_else(|| fresh(1)),
            UidPick::LastSeen => last.unwrap_or_else(|| fresh(2)),
            UidPick::Stale(i) if !self.raised.is_empty() => self.raised[i % self.raised.len()],
            UidPick::Stale(_) => fresh(3),
            UidPick::Fresh(n) => fresh(n),
        }
    }

    /// Runs one operation on the store and the model and compares them.
    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let mut drops = 0;
        match *op {
            Op::Raise {
                kind,
                name,
                args_len,
                fill,
                client,
            } => {
                let name_str = NAMES[name];
                let args = args_for(kind, args_len, fill);
                let (got, client_id) = if kind == EventKind::Private {
                    (
                        self.store().raise_private(name_str, &args, client),
                        Some(client),
                    )
                } else {
                    (self.store().raise(kind, name_str, &args), None)
                };
                let uid = got.map_err(|e| format!("raise failed: {e}"))?;
                self.raised.push(uid);
                drops = self.model.raise(Event {
                    kind,
                    name: name_str.to_string(),
                    args,
                    client_id,
                    uid,
                    seq: 0,
                    raised_at_ms: None,
                });
            }
            Op::Peek => {
                let got = kind_of(self.store().peek());
                let want = self.model.peek();
                ensure_eq!(got, want, "peek");
                if let Ok(Some(e)) = &got {
                    self.last_peeked = Some(e.uid);
                }
            }
            Op::Ack(pick) => {
                let uid = self.pick_uid(pick, self.model.front_uid(), self.last_peeked);
                let got = kind_of(self.store().ack(uid));
                let want = self.model.ack(uid);
                ensure_eq!(got, want, format!("ack {uid}"));
            }
            Op::PeekName { kind, name } => {
                let got = kind_of(self.store().peek_name(kind, NAMES[name]));
                let want = self.model.peek_name(kind, NAMES[name]);
                ensure_eq!(got, want, "peek_name");
                if let Ok(Some(e)) = &got {
                    self.last_by_name.insert((family(kind), name), e.uid);
                }
            }
            Op::AckName { kind, name, pick } => {
                let head = self
                    .model
                    .head(kind, NAMES[name])
                    .map(|i| self.model.pending[i].event.uid);
                let last = self.last_by_name.get(&(family(kind), name)).copied();
                let uid = self.pick_uid(pick, head, last);
                let got = kind_of(self.store().ack_name(kind, NAMES[name], uid));
                let want = self.model.ack_name(kind, NAMES[name], uid);
                ensure_eq!(got, want, format!("ack_name {uid}"));
                if let Ok(Some(e)) = &got {
                    self.last_by_name.insert((family(kind), name), e.uid);
                }
            }
            Op::SetStorageMode => {
                kind_of(self.store().set_storage_mode())
                    .map_err(|e| format!("set_storage_mode: {e:?}"))?;
                self.model.set_storage_mode();
            }
            Op::InvalidateAncient => {
                let got = kind_of(self.store().invalidate_ancient());
                let want = Ok(self.model.invalidate_ancient());
                ensure_eq!(got, want, "invalidate_ancient");
            }
            Op::Reset => {
                kind_of(self.store().reset()).map_err(|e| format!("reset: {e:?}"))?;
                self.model.reset();
            }
            Op::Reopen => {
                ensure!(self.level == Level::Persistent, "reopen at level 1");
                drop(self.store.take());
                let dir = self.dir.as_ref().expect("level 2 has a directory").path();
                let store = ServiceStore::open_file(dir, self.service, &self.options)
                    .map_err(|e| format!("reopen: {e}"))?;
                self.store = Some(store);
                self.model.reopen();
                self.last_peeked = None;
                self.last_by_name.clear();
            }
        }
        self.check(drops)
    }

    /// Compares the store's counters and reports with the model's.
    fn check(&mut self, drops: u64) -> Result<(), String> {
        let s = self.store().stats();
        let m = &self.model;
        ensure_eq!(s.level, self.level, "level");
        ensure_eq!(s.mode, m.mode, "mode");
        ensure_eq!(s.pending_events, m.pending.len() as u64, "pending_events");
        ensure_eq!(s.used_bytes, m.used(), "used_bytes");
        ensure_eq!(s.capacity_bytes, m.capacity, "capacity_bytes");
        ensure_eq!(s.dropped_events, m.dropped, "dropped_events");
        ensure_eq!(s.superseded_events, m.superseded, "superseded_events");
        ensure_eq!(s.invalidated_events, m.invalidated, "invalidated_events");
        ensure_eq!((s.failures, s.events_lost), (0, 0), "failures, events_lost");
        ensure_eq!(s.storage_uid, self.storage_uid, "storage uid");
        let reports = std::mem::take(&mut *self.reports.lock().unwrap());
        let summary: Vec<(FailureKind, u64)> =
            reports.iter().map(|r| (r.kind, r.events_lost)).collect();
        let want = if drops > 0 {
            vec![(FailureKind::CapacityDrop, drops)]
        } else {
            Vec::new()
        };
        if summary != want {
            let messages: Vec<&str> = reports.iter().map(|r| r.message.as_str()).collect();
            return Err(format!(
                "reports: store {summary:?}, model {want:?} ({messages:?})"
            ));
        }
        Ok(())
    }
}

/// Runs `ops` against a fresh store at `level` and the model.
fn run(level: Level, ops: &[Op]) -> Result<(), String> {
    let mut h = Harness::open(level)?;
    for (i, op) in ops.iter().enumerate() {
        h.apply(op).map_err(|e| {
            format!(
                "op #{i} {op:?}: {e}\n  model pending (oldest first): {:?}",
                h.model
                    .pending
                    .iter()
                    .map(|p| (p.event.kind, p.event.name.as_str(), p.size))
                    .collect::<Vec<_>>()
            )
        })?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(2000))]

    #[test]
    fn level2_journal_matches_the_model(ops in ops_strategy(true)) {
        if let Err(e) = run(Level::Persistent, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(2000))]

    #[test]
    fn level1_memory_matches_the_model(ops in ops_strategy(false)) {
        if let Err(e) = run(Level::Memory, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

/// Found by `level2_journal_matches_the_model`: after the ring has wrapped,
/// the bytes after the head are stale records of the previous lap. A clean
/// close and reopen must not report an "interrupted write" (a crash that
/// never happened) when the head lies inside an old record.
#[test]
fn clean_reopen_after_a_lap_reports_nothing() {
    let mut ops = Vec::new();
    // 336-byte records ("A" + 263 bytes of arguments: 32 + roundup(40 + 1
    // + 263, 8)), each acknowledged: 60 fill the first lap of the 20 KiB
    // ring, the 61st wraps to 0.
    for _ in 0..61 {
        ops.push(Op::Raise {
            kind: EventKind::Queueing,
            name: 0,
            args_len: 263,
            fill: 0xab,
            client: 0,
        });
        ops.push(Op::Ack(UidPick::Expected));
    }
    // A 200-byte record ("A" + 127: 32 + roundup(40 + 1 + 127, 8)) at 336:
    // the head (536) is inside the old record that started at 336.
    ops.push(Op::Raise {
        kind: EventKind::Queueing,
        name: 0,
        args_len: 127,
        fill: 0xab,
        client: 0,
    });
    ops.push(Op::Reopen);
    ops.push(Op::Peek);
    run(Level::Persistent, &ops).unwrap();
}

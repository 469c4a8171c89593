//! The journals the damage sweeps work on, each written through a real
//! store with `Durability::Sync`, and opening a damaged copy of one.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use softnet_persistence::{
    Durability, Event, EventKind, Failure, FailureKind, Level, Mode, ServiceOptions, ServiceStats,
    ServiceStore, Uuid,
};
use testkit::{collect_into, decode_event, journal_name, scratch_dir, Laid, Layout, Reports, Rng};

use crate::corruption;

/// A journal under test, as written, with what it was written from.
pub(crate) struct Subject {
    pub(crate) what: &'static str,
    pub(crate) service: Uuid,
    pub(crate) capacity: usize,
    pub(crate) bytes: Vec<u8>,
    pub(crate) layout: Layout,
    /// Every event ever raised into it, by uid, exactly as raised.
    pub(crate) raised: HashMap<Uuid, Event>,
    /// The record id of each uid with a record in the chain.
    pub(crate) ids: HashMap<Uuid, u64>,
}

impl Subject {
    /// Checks the layout against the store's view: every data record of
    /// the chain holds an event that was raised, and the live records are
    /// exactly the pending events, in raise order.
    fn new(
        what: &'static str,
        (service, capacity): (Uuid, usize),
        bytes: Vec<u8>,
        raised: HashMap<Uuid, Event>,
        pending: &[Uuid],
    ) -> Subject {
        let layout = Layout::parse(&bytes).expect("a valid header slot");
        // One thread with Sync: every record was written with everything
        // before it durable, so every one vouches for all before it (and
        // damage in the middle is corruption, never a torn sync).
        for r in &layout.records {
            assert_eq!(r.unsynced, 0, "{what}: record {r:?}");
        }
        let mut ids = HashMap::new();
        for r in layout.records.iter().filter(|r| !r.is_marker()) {
            let event = decode_event(layout.payload(&bytes, r)).expect("a well-formed event");
            assert_eq!(raised.get(&event.uid), Some(&event), "{what}: record {r:?}");
            ids.insert(event.uid, r.id);
        }
        let subject = Subject {
            what,
            service,
            capacity,
            bytes,
            layout,
            raised,
            ids,
        };
        let mut live: Vec<&Laid> = subject.layout.live().collect();
        live.sort_by_key(|r| r.id);
        let live: Vec<Uuid> = live.into_iter().map(|r| subject.uid(r)).collect();
        assert_eq!(
            live, pending,
            "{what}: the live records, in id order, are the pending events"
        );
        subject
    }

    /// The uid of the event a data record holds.
    pub(crate) fn uid(&self, rec: &Laid) -> Uuid {
        let payload = self.layout.payload(&self.bytes, rec);
        Uuid::from_slice(&payload[16..32]).unwrap()
    }

    pub(crate) fn live_count(&self) -> usize {
        self.layout.live().count()
    }
}

pub(crate) fn options(reports: &Reports, capacity: usize) -> ServiceOptions {
    ServiceOptions {
        capacity,
        durability: Durability::Sync,
        on_failure: Some(collect_into(reports)),
        ..ServiceOptions::default()
    }
}

/// Closes `store` and builds the subject from its file.
fn close(
    what: &'static str,
    (store, service): (ServiceStore, Uuid),
    capacity: usize,
    raised: Vec<Event>,
) -> Subject {
    let pending: Vec<Uuid> = store.pending().unwrap().iter().map(|e| e.uid).collect();
    let path = store.journal_path().unwrap();
    drop(store);
    let raised = raised.into_iter().map(|e| (e.uid, e)).collect();
    Subject::new(
        what,
        (service, capacity),
        fs::read(&path).unwrap(),
        raised,
        &pending,
    )
}

/// (i) corruption.rs's fixture: 21 records laid from data offset 0, one
/// superseded.
pub(crate) fn laid_from_zero() -> Subject {
    let fx = corruption::fixture();
    let raised = fx.records.iter().map(|r| (r.event.uid, r.event.clone()));
    let live = fx.records.iter().filter(|r| r.live);
    let pending: Vec<Uuid> = live.map(|r| r.event.uid).collect();
    Subject::new(
        "laid from 0",
        (fx.service, 8192),
        fx.bytes,
        raised.collect(),
        &pending,
    )
}

/// An event with a made-up uid (so each one is known exactly).
fn event(kind: EventKind, name: &str, args: Vec<u8>, n: u64) -> Event {
    Event {
        kind,
        name: name.to_string(),
        args,
        client_id: None,
        uid: Uuid::from_u128(0x5EED_0000_0000 + u128::from(n)),
        seq: 0,
        raised_at_ms: None,
    }
}

/// (ii) A wrapped ring in cache mode: "Door" (Replacing) held in flight
/// while other names flow, so the ring relocates it to the head; with a
/// wrap marker and acknowledged records between live ones in the chain.
pub(crate) fn wrapped() -> Subject {
    const CAPACITY: usize = 8192;
    let dir = scratch_dir();
    let (store, service) = open_new(dir.path(), CAPACITY);
    assert!(
        store.peek().unwrap().is_none(),
        "an empty store: cache mode"
    );
    let door = event(EventKind::Replacing, "Door", b"open".to_vec(), 0);
    store.raise_event(&door).unwrap();
    assert_eq!(
        store.peek_name(EventKind::Replacing, "Door").unwrap(),
        Some(door.clone())
    );
    let mut raised = vec![door];
    let mut rng = Rng(0x1DEA_5EED);
    for n in 1..3000 {
        let (kind, name) = match rng.below(3) {
            0 => (EventKind::Replacing, "Alarm"),
            1 => (EventKind::Queueing, "Temp"),
            _ => (EventKind::Queueing, "Level"),
        };
        if rng.below(10) < 6 {
            let e = event(kind, name, vec![n as u8; rng.below(400) as usize], n);
            store.raise_event(&e).unwrap();
            raised.push(e);
        } else if let Some(e) = store.peek_name(kind, name).unwrap() {
            store.ack_name(kind, name, e.uid).unwrap();
        }
        let path = store.journal_path().unwrap();
        if n >= 300 && n % 10 == 0 && wrapped_enough(&Layout::parse(&fs::read(path).unwrap())) {
            assert_eq!(store.mode(), Mode::Cache);
            assert_eq!(store.level(), Level::Persistent);
            eprintln!("wrapped ring: closed after {n} raise/ack steps");
            let subject = close("wrapped ring", (store, service), CAPACITY, raised);
            assert!(wrapped_enough(&Some(subject.layout.clone())));
            return subject;
        }
    }
    panic!("the ring never had a marker, a relocated record and holes at once");
}

/// A marker, a relocated live record, and a removed record between live
/// ones, all in the chain.
fn wrapped_enough(layout: &Option<Layout>) -> bool {
    let Some(l) = layout else { return false };
    let r = &l.records;
    let marker = r.iter().any(Laid::is_marker);
    let relocated = r.iter().any(|x| x.live && x.id != x.seq);
    let first_live = r.iter().position(|x| x.live);
    let last_live = r.iter().rposition(|x| x.live);
    let hole = match (first_live, last_live) {
        (Some(a), Some(b)) => r[a..b].iter().any(|x| !x.is_marker() && !x.live),
        _ => false,
    };
    marker && relocated && hole
}

fn open_new(dir: &Path, capacity: usize) -> (ServiceStore, Uuid) {
    let reports = Reports::default();
    let service = Uuid::new_v4();
    let store = ServiceStore::open_file(dir, service, &options(&reports, capacity)).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    (store, service)
}

/// (iii) `count` pending Queueing events of 136 to 336 bytes each (32 +
/// roundup(40 + 8 + 50, 8) to 32 + roundup(40 + 9 + 249, 8)), in a 256 KiB
/// journal, laid from data offset 0.
pub(crate) fn many_pending(count: u64) -> Subject {
    const CAPACITY: usize = 256 * 1024;
    let dir = scratch_dir();
    let (store, service) = open_new(dir.path(), CAPACITY);
    let mut raised = Vec::new();
    for n in 0..count {
        let args = (0..50 + (n * 37) % 200).map(|i| (n + i) as u8).collect();
        let e = event(EventKind::Queueing, &format!("Sensor {}", n % 17), args, n);
        store.raise_event(&e).unwrap();
        raised.push(e);
    }
    assert_eq!(store.stats().pending_events, count, "no event was dropped");
    close("many pending", (store, service), CAPACITY, raised)
}

/// What opening a damaged copy gave.
pub(crate) struct Outcome {
    /// What draining it with peek/ack returned.
    pub(crate) events: Vec<Event>,
    pub(crate) reports: Vec<Failure>,
    /// `<name>.corrupt-<secs>` files next to it.
    pub(crate) aside: usize,
    pub(crate) opened_level: Level,
    /// Stats after the drain.
    pub(crate) stats: ServiceStats,
}

impl Outcome {
    /// Events the reports of the kinds `which` selects count lost.
    pub(crate) fn lost_to(&self, which: impl Fn(FailureKind) -> bool) -> u64 {
        let chosen = self.reports.iter().filter(|r| which(r.kind));
        chosen.map(|r| r.events_lost).sum()
    }

    pub(crate) fn count(&self, kind: FailureKind) -> usize {
        self.reports.iter().filter(|r| r.kind == kind).count()
    }
}

/// Puts `bytes` at the subject's journal path in the new directory `dir`,
/// opens and drains it, and removes the directory.
pub(crate) fn open_damaged(s: &Subject, dir: &Path, bytes: &[u8]) -> Outcome {
    fs::create_dir(dir).unwrap();
    let name = journal_name(s.service);
    fs::write(dir.join(&name), bytes).unwrap();
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, s.service, &options(&reports, s.capacity))
        .unwrap_or_else(|e| panic!("open must not fail on a damaged file: {e}"));
    let opened_level = store.level();
    let mut events = Vec::new();
    while let Some(e) = store.peek().expect("peek") {
        assert!(
            events.len() < s.raised.len(),
            "more events than were raised"
        );
        store.ack(e.uid).expect("ack of the peeked event");
        events.push(e);
    }
    let stats = store.stats();
    drop(store);
    let prefix = format!("{name}.corrupt-");
    let aside = fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let e = e.as_ref().unwrap();
            e.file_name().to_string_lossy().starts_with(&prefix)
        })
        .count();
    fs::remove_dir_all(dir).unwrap();
    let reports = std::mem::take(&mut *reports.lock().unwrap());
    Outcome {
        events,
        reports,
        aside,
        opened_level,
        stats,
    }
}

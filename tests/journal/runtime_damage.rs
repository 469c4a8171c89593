//! Invariant (issue "Damage never costs intact records", at run time): a
//! record that fails its checksum when the store reads it (peek, pending)
//! or when the ring relocates it is skipped and reported (one Corruption,
//! one event lost); every other event is kept and the store stays at
//! level 2. A client file rewrites an id whose record was damaged: the id
//! is known in memory, only its copy on the device was lost.
//!
//! The damage is done to the open file through the file system: the
//! journal's map is shared, so the store reads the damaged byte.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use softnet_persistence::{
    ClientStore, Durability, Event, EventKind, FailureKind, Level, ServiceOptions, ServiceStore,
    Uuid,
};
use testkit::{client_options, collect_into, decode_event, scratch_dir, Layout, Reports};

/// XORs the byte at `at` of the file at `path` with 0x5A, through the file
/// system (not through the store).
fn damage_byte(path: &Path, at: usize) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at as u64).unwrap();
    byte[0] ^= 0x5A;
    file.write_all_at(&byte, at as u64).unwrap();
}

/// The file's chain as it is now (the store has it open).
fn layout_of(path: &Path) -> (Vec<u8>, Layout) {
    let bytes = fs::read(path).unwrap();
    let layout = Layout::parse(&bytes).expect("a valid header slot");
    (bytes, layout)
}

fn options(reports: &Reports, capacity: usize) -> ServiceOptions {
    ServiceOptions {
        capacity,
        durability: Durability::Sync,
        on_failure: Some(collect_into(reports)),
        ..ServiceOptions::default()
    }
}

fn event(kind: EventKind, name: &str, n: u64, len: u64) -> Event {
    Event {
        kind,
        name: name.to_string(),
        args: (0..len).map(|i| (n + i) as u8).collect(),
        client_id: None,
        uid: Uuid::from_u128(0xDA_0000_0000 + u128::from(n)),
        seq: 0,
        raised_at_ms: None,
    }
}

fn kinds(reports: &Reports) -> Vec<(FailureKind, u64)> {
    let reports = reports.lock().unwrap();
    reports.iter().map(|r| (r.kind, r.events_lost)).collect()
}

/// Raise, peek, ack: the store still works, at level 2.
fn still_works(store: &ServiceStore, n: u64) -> Event {
    let e = event(EventKind::Queueing, "After", n, 8);
    store.raise_event(&e).unwrap();
    let back = store.peek_name(EventKind::Queueing, "After").unwrap();
    assert_eq!(back.as_ref().map(|b| b.uid), Some(e.uid));
    store.ack_name(EventKind::Queueing, "After", e.uid).unwrap();
    let kept = event(EventKind::Queueing, "After", n + 1, 8);
    store.raise_event(&kept).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    kept
}

/// Raises `count` Queueing events of 72 to 221 bytes, each known exactly.
fn raise_sensors(store: &ServiceStore, count: u64) -> Vec<Event> {
    let raised: Vec<Event> = (0..count)
        .map(|n| {
            event(
                EventKind::Queueing,
                &format!("Sensor {}", n % 13),
                n,
                40 + n % 150,
            )
        })
        .collect();
    for e in &raised {
        store.raise_event(e).unwrap();
    }
    raised
}

/// Drains storage mode with peek/ack (at most `bound` events).
fn drain(store: &ServiceStore, bound: usize) -> Vec<Event> {
    let mut delivered = Vec::new();
    while let Some(e) = store.peek().unwrap() {
        assert!(delivered.len() < bound, "more events than were raised");
        store.ack(e.uid).unwrap();
        delivered.push(e);
    }
    delivered
}

#[test]
fn a_record_damaged_in_the_open_file_is_skipped_when_read_and_the_rest_delivered() {
    let dir = scratch_dir();
    let reports = Reports::default();
    let service = Uuid::new_v4();
    let store = ServiceStore::open_file(dir.path(), service, &options(&reports, 0)).unwrap();
    let raised = raise_sensors(&store, 1000);
    let path = store.journal_path().unwrap();
    let (bytes, layout) = layout_of(&path);
    let victim = &layout.records[499];
    let payload = layout.payload(&bytes, victim);
    assert_eq!(
        decode_event(payload).as_ref(),
        Some(&raised[499]),
        "record 500"
    );
    damage_byte(&path, victim.payload_range().start + 40);

    let delivered = drain(&store, raised.len());
    let expected: Vec<Event> = raised
        .iter()
        .filter(|e| e.uid != raised[499].uid)
        .cloned()
        .collect();
    assert_eq!(delivered.len(), 999);
    assert!(
        delivered == expected,
        "the 999 intact events, in raise order"
    );
    assert_eq!(kinds(&reports), [(FailureKind::Corruption, 1)]);
    let stats = store.stats();
    assert_eq!((stats.level, stats.events_lost), (Level::Persistent, 1));
    let kept = still_works(&store, 5000);
    eprintln!("record 500 of 1000 damaged in the open file: 999 delivered, 1 lost, level 2 kept");
    drop(store);
    reopen_keeps(dir.path(), service, 0, &[kept]);
}

/// Reopens the journal: exactly `pending` come back, nothing reported lost.
fn reopen_keeps(dir: &Path, service: Uuid, capacity: usize, pending: &[Event]) {
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, service, &options(&reports, capacity)).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    assert!(store.pending().unwrap() == pending, "pending after reopen");
    let lost: u64 = kinds(&reports).iter().map(|k| k.1).sum();
    assert_eq!(
        lost,
        0,
        "nothing more lost at reopen: {:?}",
        reports.lock().unwrap()
    );
}

/// Cache mode with "Door" (Replacing) held in flight: its record is the
/// oldest and pins the tail, so the ring copies it to the head to reuse
/// the space behind it.
fn pin_door(store: &ServiceStore) -> Event {
    assert!(
        store.peek().unwrap().is_none(),
        "an empty store enters cache mode"
    );
    let door = event(EventKind::Replacing, "Door", 0, 4);
    store.raise_event(&door).unwrap();
    let flying = store.peek_name(EventKind::Replacing, "Door").unwrap();
    assert_eq!(flying.map(|e| e.uid), Some(door.uid));
    door
}

/// Other names flow in cache mode: "Temp" is acknowledged at once,
/// "Level" piles up a little. Returns what is pending and the raise after
/// which the first report came.
fn flow(store: &ServiceStore, reports: &Reports) -> (Vec<Event>, Option<u64>) {
    let mut pending: Vec<Event> = Vec::new();
    let mut reported_at = None;
    for n in 1..400u64 {
        let name = if n % 4 == 0 { "Level" } else { "Temp" };
        let e = event(EventKind::Queueing, name, n, 100 + n % 200);
        store.raise_event(&e).unwrap();
        if reported_at.is_none() && !kinds(reports).is_empty() {
            reported_at = Some(n);
        }
        pending.push(e);
        if let Some(got) = store.peek_name(EventKind::Queueing, "Temp").unwrap() {
            store
                .ack_name(EventKind::Queueing, "Temp", got.uid)
                .unwrap();
            pending.retain(|p| p.uid != got.uid);
        }
        if pending.len() > 6 {
            let level = pending.iter().position(|p| p.name == "Level").unwrap();
            let gone = pending.remove(level);
            let got = store.peek_name(EventKind::Queueing, "Level").unwrap();
            assert_eq!(got.map(|g| g.uid), Some(gone.uid));
            store
                .ack_name(EventKind::Queueing, "Level", gone.uid)
                .unwrap();
        }
        assert_eq!(store.level(), Level::Persistent, "step {n}");
    }
    (pending, reported_at)
}

#[test]
fn the_oldest_record_damaged_while_pinned_is_dropped_when_the_ring_relocates_it() {
    const CAPACITY: usize = 8192;
    let dir = scratch_dir();
    let reports = Reports::default();
    let service = Uuid::new_v4();
    let store = ServiceStore::open_file(dir.path(), service, &options(&reports, CAPACITY)).unwrap();
    let door = pin_door(&store);
    let path = store.journal_path().unwrap();
    let (bytes, layout) = layout_of(&path);
    let record = &layout.records[0];
    assert_eq!(
        decode_event(layout.payload(&bytes, record)),
        Some(door.clone())
    );
    damage_byte(&path, record.payload_range().start + 36);

    let (mut pending, reported_at) = flow(&store, &reports);
    let at = reported_at.expect("the relocation met the damaged record");
    assert_eq!(
        kinds(&reports),
        [(FailureKind::Corruption, 1)],
        "{:?}",
        reports.lock().unwrap()
    );
    let stats = store.stats();
    assert_eq!((stats.level, stats.events_lost), (Level::Persistent, 1));
    let now = store.pending().unwrap();
    assert!(now == pending, "every other event is kept, Door is gone");
    eprintln!("pinned oldest record damaged: dropped when relocated (raise {at}), 1 lost, level 2");
    let kept = still_works(&store, 9000);
    pending.push(kept);
    drop(store);
    reopen_keeps(dir.path(), service, CAPACITY, &pending);
}

const SERVER: &str = "broker.example.com";
const KEY: &str = "runtime-damage";

/// The live record of a client file holding `name`: (record id, instance id).
fn client_record(path: &Path, name: &str) -> (u64, i64, usize) {
    let (bytes, layout) = layout_of(path);
    let mut found = layout.live().filter_map(|r| {
        let p = layout.payload(&bytes, r);
        let id = i64::from_le_bytes(p[..8].try_into().unwrap());
        (&p[8..] == name.as_bytes()).then_some((r.id, id, r.payload_range().start))
    });
    let one = found.next().expect("a live record of the name");
    assert!(found.next().is_none(), "one live record per name");
    one
}

#[test]
fn a_client_id_whose_record_is_damaged_while_the_ring_relocates_it_is_written_again() {
    let dir = scratch_dir();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let store = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    store.put("Pinned", 42).unwrap();
    let path = store.file_path().unwrap();
    let (record, id, payload) = client_record(&path, "Pinned");
    assert_eq!(id, 42);
    damage_byte(&path, payload + 3); // a byte of the id

    for n in 1..3000 {
        store.put("Temp", n).unwrap();
        assert_eq!(store.get("Pinned").unwrap(), Some(42), "put {n}");
        assert_eq!(store.level(), Level::Persistent, "put {n}");
    }
    let (again, id, _) = client_record(&path, "Pinned");
    assert_eq!(id, 42, "the id is on the device again");
    assert_ne!(again, record, "written again, as a new record");
    let lost: u64 = kinds(&reports).iter().map(|k| k.1).sum();
    assert_eq!(lost, 0, "no id lost: {:?}", reports.lock().unwrap());
    drop(store);

    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let store = ClientStore::open_file(dir.path(), SERVER, KEY, &opts).unwrap();
    let entries = store.entries().unwrap();
    let mut entries: Vec<(String, i64)> = entries.into_iter().collect();
    entries.sort();
    assert_eq!(
        entries,
        [("Pinned".to_string(), 42), ("Temp".to_string(), 2999)]
    );
    let lost: u64 = kinds(&reports).iter().map(|k| k.1).sum();
    assert_eq!(
        lost,
        0,
        "nothing lost at reopen: {:?}",
        reports.lock().unwrap()
    );
    eprintln!("client: damaged record relocated: id 42 written again (record {record} -> {again})");
}

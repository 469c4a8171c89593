//! Invariant: a damaged journal (truncated at any byte, bits flipped
//! anywhere, another service's file, an empty or a garbage file) never makes
//! open panic or fail and never yields an event that was not raised: the
//! intact records before the damage are kept in raise order, the damaged
//! file is set aside as `<name>.corrupt-<secs>` and the loss is reported
//! (docs/BEHAVIOUR.md section 5).
//!
//! The journal under test is real: written through `open_file` with
//! `Durability::Sync`, then copied, damaged and opened again. Its records
//! lie one after another from data offset 0 (nothing is acknowledged), so
//! each record's place follows from the payload sizes: 8192 bytes of header
//! page, then per record a 32-byte header and the payload (40 fixed bytes
//! with the raise time, the name, the arguments) padded to 8 bytes.

use std::fs;
use std::path::Path;

use softnet_persistence::{
    Durability, Event, EventKind, Failure, FailureKind, Level, ServiceOptions, ServiceStats,
    ServiceStore, Uuid,
};
use testkit::{
    collect_into, flip_random_bits, journal_name, scratch_dir, u32_at, u64_at, Reports, Rng, Sweep,
    DATA_OFFSET, RECORD_HEADER, SLOT_LEN, SLOT_OFFSETS, STATE,
};

const CAPACITY: usize = 8192;
/// Bytes of an event payload before the name (with its raise time).
const EVENT_FIXED: usize = 40;
/// Bit-flip cases.
const FLIP_CASES: u32 = 3000;

// ----- helpers ------------------------------------------------------------

// The sweeps below open thousands of journals with synchronous durability:
// in `scratch_dir()`, on tmpfs when there is one.

fn options(reports: &Reports) -> ServiceOptions {
    ServiceOptions {
        capacity: CAPACITY,
        durability: Durability::Sync,
        on_failure: Some(collect_into(reports)),
        ..ServiceOptions::default()
    }
}

// ----- the journal under test ---------------------------------------------

/// One raised event and where its record lies.
pub(crate) struct Record {
    pub(crate) event: Event,
    /// Still pending (a later Replacing raise of its name supersedes it).
    pub(crate) live: bool,
    /// Start of the record, relative to the data region.
    start: usize,
    payload_len: usize,
}

impl Record {
    /// File offset one past the last payload byte: a cut at or after it
    /// leaves the record whole (only padding is missing).
    fn complete_at(&self) -> usize {
        DATA_OFFSET + self.start + RECORD_HEADER + self.payload_len
    }

    /// File offset one past the record's padding.
    fn end(&self) -> usize {
        DATA_OFFSET + self.start + RECORD_HEADER + self.payload_len.next_multiple_of(8)
    }

    /// File offset of the state byte (the only byte outside the CRC).
    fn state_at(&self) -> usize {
        DATA_OFFSET + self.start + STATE
    }
}

pub(crate) struct Fixture {
    pub(crate) service: Uuid,
    storage_uid: Uuid,
    pub(crate) bytes: Vec<u8>,
    pub(crate) records: Vec<Record>,
}

impl Fixture {
    fn live(&self) -> impl Iterator<Item = &Record> + '_ {
        self.records.iter().filter(|r| r.live)
    }

    fn live_count(&self) -> usize {
        self.live().count()
    }

    /// File offset just past the last record.
    fn used_end(&self) -> usize {
        self.records.last().map_or(DATA_OFFSET, Record::end)
    }
}

fn raised_events() -> Vec<(EventKind, String, Vec<u8>, Option<i64>)> {
    let bytes = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| seed.wrapping_add((i as u8).wrapping_mul(13)))
            .collect()
    };
    let mut events = vec![
        (EventKind::Queueing, "Temperature".into(), bytes(4, 1), None),
        (EventKind::Queueing, "Temperature".into(), Vec::new(), None),
        (EventKind::Replacing, "Alarm".into(), bytes(16, 2), None),
        (
            EventKind::Private,
            "Door".into(),
            b"open".to_vec(),
            Some(-42),
        ),
        (EventKind::Queueing, "Blob".into(), bytes(1000, 3), None),
        (EventKind::ReplacingNull, "Valve".into(), Vec::new(), None),
        (EventKind::Queueing, "Pressure".into(), bytes(7, 4), None),
        (EventKind::Queueing, "Pressure".into(), bytes(8, 5), None),
        // Supersedes the first "Alarm": its record stays, marked superseded.
        (EventKind::Replacing, "Alarm".into(), bytes(33, 6), None),
        (EventKind::Queueing, "Big".into(), bytes(2048, 7), None),
        (
            EventKind::Private,
            "Door".into(),
            Vec::new(),
            Some(i64::MAX),
        ),
    ];
    for i in 1..=10usize {
        events.push((
            EventKind::Queueing,
            format!("Sensor {i}"),
            bytes(i * 29, i as u8),
            None,
        ));
    }
    events
}

/// Writes the journal and reads its bytes back after closing it.
pub(crate) fn fixture() -> Fixture {
    let dir = scratch_dir();
    let service = Uuid::new_v4();
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), service, &options(&reports)).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    let mut records: Vec<Record> = Vec::new();
    let mut start = 0;
    for (kind, name, args, client_id) in raised_events() {
        let uid = match client_id {
            Some(client) => store.raise_private(&name, &args, client),
            None => store.raise(kind, &name, &args),
        }
        .unwrap();
        if kind.is_replacing() {
            for r in &mut records {
                if r.event.kind.is_replacing() && r.event.name == name {
                    r.live = false;
                }
            }
        }
        let payload_len = EVENT_FIXED + name.len() + args.len();
        records.push(Record {
            event: Event {
                kind,
                name,
                args,
                client_id,
                uid,
                seq: 0,
                raised_at_ms: None,
            },
            live: true,
            start,
            payload_len,
        });
        start += RECORD_HEADER + payload_len.next_multiple_of(8);
    }
    let stats = store.stats();
    let live: Vec<&Record> = records.iter().filter(|r| r.live).collect();
    let live_bytes: usize = live
        .iter()
        .map(|r| RECORD_HEADER + r.payload_len.next_multiple_of(8))
        .sum();
    assert_eq!(stats.pending_events, live.len() as u64);
    assert_eq!(stats.used_bytes, live_bytes as u64);
    assert!(reports.lock().unwrap().is_empty());
    let storage_uid = store.storage_uid();
    let path = store.journal_path().unwrap();
    assert_eq!(path, dir.path().join(journal_name(service)));
    drop(store);
    let bytes = fs::read(&path).unwrap();
    let fixture = Fixture {
        service,
        storage_uid,
        bytes,
        records,
    };
    check_layout(&fixture);
    fixture
}

/// The records are where the payload sizes put them (so the sweeps know
/// which events a cut or a flip can touch).
fn check_layout(fx: &Fixture) {
    let b = &fx.bytes;
    for (i, r) in fx.records.iter().enumerate() {
        let at = DATA_OFFSET + r.start;
        assert_eq!(
            u32_at(b, at + 8) as usize,
            r.payload_len,
            "record {i}: payload length"
        );
        let state = if r.live { b'L' } else { b'S' };
        assert_eq!(b[r.state_at()], state, "record {i}: state byte");
        assert_eq!(u64_at(b, at + 16), i as u64 + 1, "record {i}: sequence");
        let payload = &b[at + RECORD_HEADER..r.complete_at()];
        assert_eq!(&payload[16..32], r.event.uid.as_bytes(), "record {i}: uid");
    }
    let end = fx.used_end();
    assert!(
        b[end..end + RECORD_HEADER].iter().all(|&x| x == 0),
        "nothing after the last record"
    );
    assert!(
        fx.live_count() < fx.records.len(),
        "one record is superseded"
    );
}

// ----- opening a damaged copy ---------------------------------------------

struct Outcome {
    /// What draining the store with peek/ack returned.
    events: Vec<Event>,
    reports: Vec<Failure>,
    /// Files set aside next to the journal: (name, contents).
    aside: Vec<(String, Vec<u8>)>,
    /// Stats right after open.
    opened: ServiceStats,
}

impl Outcome {
    fn reported(&self, kind: FailureKind) -> bool {
        self.reports.iter().any(|r| r.kind == kind)
    }
}

/// Puts `bytes` at the journal's path in the fresh directory `dir`, opens
/// it, drains it, and removes the directory.
fn open_copy(fx: &Fixture, dir: &Path, bytes: &[u8]) -> Outcome {
    fs::create_dir(dir).unwrap();
    let name = journal_name(fx.service);
    fs::write(dir.join(&name), bytes).unwrap();
    let outcome = open_and_drain(fx, dir);
    fs::remove_dir_all(dir).unwrap();
    outcome
}

fn open_and_drain(fx: &Fixture, dir: &Path) -> Outcome {
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, fx.service, &options(&reports))
        .unwrap_or_else(|e| panic!("open must not fail on a damaged file: {e}"));
    let opened = store.stats();
    let mut events = Vec::new();
    while let Some(e) = store.peek().expect("peek") {
        assert!(
            events.len() < fx.records.len(),
            "the store yields more events than were raised"
        );
        store.ack(e.uid).expect("ack of the peeked event");
        events.push(e);
    }
    drop(store);
    let prefix = format!("{}.corrupt-", journal_name(fx.service));
    let mut aside = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = file.strip_prefix(&prefix) {
            let secs = suffix.split('-').next().unwrap_or_default();
            assert!(
                !secs.is_empty() && secs.bytes().all(|c| c.is_ascii_digit()),
                "set-aside file {file} is not named <name>.corrupt-<secs>"
            );
            aside.push((file, fs::read(entry.path()).unwrap()));
        }
    }
    let reports = std::mem::take(&mut *reports.lock().unwrap());
    Outcome {
        events,
        reports,
        aside,
        opened,
    }
}

/// Every event returned was raised (exact kind, name, arguments, client id
/// and uid), in raise order, at most once. Returns their raise indices.
/// A superseded event may only come back if its state byte was damaged.
fn check_raised_in_order(fx: &Fixture, events: &[Event], state_hit: &[usize]) -> Vec<usize> {
    let mut indices = Vec::new();
    for e in events {
        let Some(i) = fx.records.iter().position(|r| r.event.uid == e.uid) else {
            panic!("an event that was never raised came back: {e:?}");
        };
        assert_eq!(*e, fx.records[i].event, "event {i} came back altered");
        if let Some(&last) = indices.last() {
            assert!(
                i > last,
                "event {i} came back after event {last}: out of raise order or repeated"
            );
        }
        assert!(
            fx.records[i].live || state_hit.contains(&i),
            "superseded event {i} came back"
        );
        indices.push(i);
    }
    indices
}

// ----- the sweeps -----------------------------------------------------------

#[test]
fn truncation_at_every_offset_keeps_the_intact_prefix() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    let len = fx.bytes.len();
    for cut in 0..=len {
        sweep.case(
            format_args!("journal truncated to {cut} of {len} bytes"),
            || {
                let out = open_copy(&fx, &root.path().join(cut.to_string()), &fx.bytes[..cut]);
                assert_eq!(out.opened.level, Level::Persistent, "continues at level 2");
                check_raised_in_order(&fx, &out.events, &[]);
                let uids: Vec<Uuid> = out.events.iter().map(|e| e.uid).collect();
                // Records entirely before the cut survive, with the header.
                if cut >= DATA_OFFSET {
                    for (i, r) in fx.records.iter().enumerate() {
                        if r.live && r.end() <= cut {
                            assert!(uids.contains(&r.event.uid), "intact event {i} was lost");
                        }
                    }
                }
                // Exactly the records whose bytes are all there (padding aside).
                let whole: Vec<Uuid> = fx
                    .live()
                    .filter(|r| cut >= DATA_OFFSET && r.complete_at() <= cut)
                    .map(|r| r.event.uid)
                    .collect();
                assert_eq!(uids, whole, "the surviving events are the whole records");
                if out.events.len() < fx.live_count() {
                    assert!(
                        out.reported(FailureKind::Corruption),
                        "{} event(s) lost without a corruption report: {:?}",
                        fx.live_count() - out.events.len(),
                        out.reports
                    );
                }
                if cut < len {
                    assert!(
                        out.reported(FailureKind::Corruption),
                        "a truncated file is reported: {:?}",
                        out.reports
                    );
                    assert_eq!(out.aside.len(), 1, "the damaged file is set aside once");
                    assert!(
                        out.aside[0].1 == fx.bytes[..cut],
                        "the set-aside file {} is the damaged file as found",
                        out.aside[0].0
                    );
                } else {
                    assert!(out.reports.is_empty(), "intact file: {:?}", out.reports);
                    assert!(out.aside.is_empty(), "intact file set aside");
                }
            },
        );
    }
    sweep.finish();
}

#[test]
fn random_bit_flips_never_invent_reorder_or_repeat_events() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let used = fx.used_end() as u64 + RECORD_HEADER as u64;
    let mut lossy = 0;
    for n in 0..FLIP_CASES {
        let mut bytes = fx.bytes.clone();
        let flipped = flip_random_bits(&mut bytes, used, &mut rng);
        let offsets: Vec<usize> = flipped.iter().map(|b| (b / 8) as usize).collect();
        let state_hit: Vec<usize> = (0..fx.records.len())
            .filter(|&i| offsets.contains(&fx.records[i].state_at()))
            .collect();
        sweep.case(format_args!("case {n}, bits flipped {flipped:?}"), || {
            let out = open_copy(&fx, &root.path().join(n.to_string()), &bytes);
            assert_eq!(out.opened.level, Level::Persistent, "continues at level 2");
            check_raised_in_order(&fx, &out.events, &state_hit);
            let lost = fx
                .live()
                .filter(|r| !out.events.iter().any(|e| e.uid == r.event.uid))
                .count();
            // A state byte is outside the CRC: a flip there can turn
            // "live" into another valid state (see the test below).
            if lost > 0 && state_hit.is_empty() {
                assert!(
                    out.reported(FailureKind::Corruption)
                        || out.reported(FailureKind::InterruptedWrite),
                    "{lost} event(s) lost without a report: {:?}",
                    out.reports
                );
            }
        });
        if bytes != fx.bytes {
            lossy += 1;
        }
    }
    assert!(lossy > FLIP_CASES / 2, "most cases changed the file");
    sweep.finish();
}

/// One flipped bit at every byte of the header page's slots and of the
/// records (bit `offset % 8`): deterministic, so every field of every
/// record is hit, the last record's included.
#[test]
fn one_bit_flip_at_every_record_byte_is_kept_or_reported() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    let offsets = SLOT_OFFSETS
        .iter()
        .flat_map(|&s| s..s + SLOT_LEN)
        .chain(DATA_OFFSET..fx.used_end() + RECORD_HEADER);
    for at in offsets {
        let bit = at % 8;
        let mut bytes = fx.bytes.clone();
        bytes[at] ^= 1 << bit;
        let state_hit: Vec<usize> = (0..fx.records.len())
            .filter(|&i| fx.records[i].state_at() == at)
            .collect();
        sweep.case(format_args!("bit {bit} of byte {at} flipped"), || {
            let out = open_copy(&fx, &root.path().join(at.to_string()), &bytes);
            assert_eq!(out.opened.level, Level::Persistent, "continues at level 2");
            check_raised_in_order(&fx, &out.events, &state_hit);
            let lost = fx.live_count() - out.events.len().min(fx.live_count());
            if lost > 0 && state_hit.is_empty() {
                assert!(
                    out.reported(FailureKind::Corruption)
                        || out.reported(FailureKind::InterruptedWrite),
                    "{lost} event(s) lost without a report"
                );
            }
        });
    }
    sweep.finish();
}

// ----- other damage -----------------------------------------------------------

/// Opens `bytes` placed at the journal path and checks the file was
/// replaced by a new, empty, working journal, with the damaged file set
/// aside and a corruption report losing `lost` events.
fn check_replaced(fx: &Fixture, dir: &Path, lost: u64) -> Outcome {
    let path = dir.join(journal_name(fx.service));
    let original = fs::read(&path).unwrap();
    let out = open_and_drain(fx, dir);
    assert_eq!(out.opened.level, Level::Persistent, "continues at level 2");
    assert_eq!(out.opened.pending_events, 0, "a new, empty journal");
    assert!(out.events.is_empty());
    let corruption: Vec<&Failure> = out
        .reports
        .iter()
        .filter(|r| r.kind == FailureKind::Corruption)
        .collect();
    assert_eq!(
        corruption.len(),
        1,
        "one corruption report: {:?}",
        out.reports
    );
    assert_eq!(corruption[0].events_lost, lost, "{}", corruption[0].message);
    assert_eq!(out.aside.len(), 1, "the file is set aside");
    assert!(out.aside[0].1 == original, "set aside as found");
    assert_ne!(
        out.opened.storage_uid, fx.storage_uid,
        "a new file gets a new storage uid"
    );
    // The new journal is a good one: it reopens without a report and keeps
    // what is raised into it.
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, fx.service, &options(&reports)).unwrap();
    let uid = store
        .raise(EventKind::Queueing, "After", b"repair")
        .unwrap();
    drop(store);
    let store = ServiceStore::open_file(dir, fx.service, &options(&reports)).unwrap();
    assert_eq!(store.peek().unwrap().map(|e| e.uid), Some(uid));
    assert_eq!(store.level(), Level::Persistent);
    assert!(reports.lock().unwrap().is_empty(), "{:?}", reports);
    out
}

#[test]
fn another_services_journal_is_set_aside() {
    let fx = fixture();
    let dir = scratch_dir();
    // The fixture's journal, renamed to another service's file name.
    let ours = dir.path().join(journal_name(fx.service));
    fs::write(&ours, &fx.bytes).unwrap();
    let foreign = Fixture {
        service: Uuid::new_v4(),
        storage_uid: fx.storage_uid,
        bytes: Vec::new(),
        records: Vec::new(),
    };
    fs::rename(&ours, dir.path().join(journal_name(foreign.service))).unwrap();
    let out = check_replaced(&foreign, dir.path(), fx.live_count() as u64);
    assert!(
        out.reports[0].message.contains(&fx.service.to_string()),
        "the report names the owner: {}",
        out.reports[0].message
    );
}

#[test]
fn empty_file_at_the_journal_path_is_replaced() {
    let fx = fixture();
    let dir = scratch_dir();
    fs::write(dir.path().join(journal_name(fx.service)), b"").unwrap();
    check_replaced(&fx, dir.path(), 0);
}

#[test]
fn garbage_file_at_the_journal_path_is_replaced() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for len in [1, 700, 4096, 5000, fx.bytes.len()] {
        sweep.case(format_args!("{len} bytes of garbage"), || {
            let dir = scratch_dir();
            let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            fs::write(dir.path().join(journal_name(fx.service)), &garbage).unwrap();
            check_replaced(&fx, dir.path(), 0);
        });
    }
    // The journal's own bytes with both header slots destroyed.
    let dir = scratch_dir();
    let mut bytes = fx.bytes.clone();
    for at in SLOT_OFFSETS {
        bytes[at + 100] ^= 0x10;
    }
    fs::write(dir.path().join(journal_name(fx.service)), &bytes).unwrap();
    check_replaced(&fx, dir.path(), fx.live_count() as u64);
    sweep.finish();
}

// ----- reports reach the statistics -----------------------------------------------

/// docs/BEHAVIOUR.md section 5: reports reach the application as a callback *and* as
/// counters in the store's statistics.
#[test]
fn corruption_found_at_open_is_counted_in_stats() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    // Damage in the middle: a payload byte of the sixth record.
    let mut bytes = fx.bytes.clone();
    bytes[fx.records[5].complete_at() - 1] ^= 0x01;
    let cases: [(&str, Vec<u8>); 2] = [("damaged record", bytes), ("empty file", Vec::new())];
    for (what, bytes) in cases {
        sweep.case(what, || {
            let out = open_copy(&fx, &root.path().join(what), &bytes);
            assert!(out.reported(FailureKind::Corruption), "{:?}", out.reports);
            let lost: u64 = out.reports.iter().map(|r| r.events_lost).sum();
            assert_eq!(
                (out.opened.failures, out.opened.events_lost),
                (out.reports.len() as u64, lost),
                "stats().failures / events_lost after the reports {:?}",
                out.reports
            );
        });
    }
    sweep.finish();
}

// ----- the state byte -----------------------------------------------------------

/// The state byte is the one byte of a record outside its CRC. `'L'`
/// (live, 0x4C) and `'D'` (dropped, 0x44) differ in one bit, so a single
/// flipped bit there makes a stored event vanish at the next open with no
/// report at all; docs/BEHAVIOUR.md section 5 says nothing is dropped silently.
#[test]
fn one_flipped_bit_in_a_state_byte_does_not_lose_an_event_silently() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    let victim = fx.live().nth(2).unwrap();
    for bit in 0..8 {
        sweep.case(format_args!("state byte bit {bit}"), || {
            let mut bytes = fx.bytes.clone();
            bytes[victim.state_at()] ^= 1 << bit;
            let out = open_copy(&fx, &root.path().join(bit.to_string()), &bytes);
            let delivered = out.events.iter().any(|e| e.uid == victim.event.uid);
            assert!(
                delivered || !out.reports.is_empty(),
                "state byte {:#04x} -> {:#04x}: event {:?} vanished without a report",
                fx.bytes[victim.state_at()],
                bytes[victim.state_at()],
                victim.event.name
            );
        });
    }
    sweep.finish();
}

/// A bit flipped in the newer header slot makes open fall back to the older
/// slot. The older slot of a young journal predates the storage uid: the
/// store then silently makes a new storage uid, and at the next connect the
/// broker's differing uid makes `invalidate_ancient` discard every pending
/// event, again without a report.
#[test]
fn a_damaged_header_slot_keeps_the_storage_uid_or_reports() {
    let mut sweep = Sweep::default();
    let fx = fixture();
    let root = scratch_dir();
    for (n, slot) in SLOT_OFFSETS.into_iter().enumerate() {
        sweep.case(format_args!("header slot at {slot}"), || {
            let mut bytes = fx.bytes.clone();
            bytes[slot + SLOT_LEN / 2] ^= 0x04;
            let dir = root.path().join(n.to_string());
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join(journal_name(fx.service)), &bytes).unwrap();
            let out = open_and_drain(&fx, &dir);
            assert_eq!(out.events.len(), fx.live_count(), "no event is lost");
            assert!(
                out.opened.storage_uid == fx.storage_uid || !out.reports.is_empty(),
                "the storage uid changed from {} to {} without a report",
                fx.storage_uid,
                out.opened.storage_uid
            );
        });
    }
    sweep.finish();
}

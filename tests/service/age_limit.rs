//! Invariants (docs/BEHAVIOUR.md section 3.6a): every stored event carries
//! its raise time (wall clock) and a sequence number that grows with every
//! raise and survives a reopen; with `max_age`, an event older than the
//! limit is dropped when it would next be delivered (never the one in
//! flight), reported once per call as `Expired` and counted in
//! `expired_events`, not as a failure; an unknown age (no raise time, a
//! clock not yet set, a clock that went backwards) never expires.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use softnet_persistence::{
    Event, EventKind, Failure, FailureKind, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{scratch_dir, Layout};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

type Reports = Arc<Mutex<Vec<Failure>>>;

fn options(max_age: Option<Duration>, reports: &Reports) -> ServiceOptions {
    let sink = reports.clone();
    ServiceOptions {
        capacity: 64 * 1024,
        memory_capacity: 64 * 1024,
        max_age,
        on_failure: Some(Arc::new(move |f: &Failure| {
            sink.lock().unwrap().push(f.clone())
        })),
        ..ServiceOptions::default()
    }
}

/// An event raised `age_ms` ago (as an event relayed from another store).
fn aged(name: &str, n: u128, raised_at_ms: Option<u64>) -> Event {
    Event {
        raised_at_ms,
        uid: Uuid::from_u128(0xA6E0_0000 + n),
        ..Event::new(EventKind::Queueing, name, &n.to_le_bytes(), None).unwrap()
    }
}

#[test]
fn raise_times_and_sequence_numbers_are_stored_and_survive_a_reopen() {
    let dir = scratch_dir();
    let service = Uuid::from_u128(0x5eed);
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), service, &options(None, &reports)).unwrap();
    let before = now_ms();
    for i in 0..5u8 {
        store.raise(EventKind::Queueing, "Reading", &[i]).unwrap();
    }
    let after = now_ms();
    // A relayed event keeps its raise time.
    store
        .raise_event(&aged("Relayed", 1, Some(before - DAY_MS)))
        .unwrap();
    let first = store.pending().unwrap();
    for e in &first[..5] {
        let t = e.raised_at_ms.expect("a raise time");
        assert!(
            (before..=after).contains(&t),
            "{t} not in {before}..={after}"
        );
    }
    assert_eq!(first[5].raised_at_ms, Some(before - DAY_MS));
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq), "{first:?}");
    drop(store);

    let store = ServiceStore::open_file(dir.path(), service, &options(None, &reports)).unwrap();
    let again = store.pending().unwrap();
    let pairs = |v: &[Event]| -> Vec<(u64, Option<u64>)> {
        v.iter().map(|e| (e.seq, e.raised_at_ms)).collect()
    };
    assert_eq!(pairs(&again), pairs(&first), "kept across the reopen");
    store.raise(EventKind::Queueing, "Reading", b"new").unwrap();
    let newest = store.pending().unwrap().pop().unwrap();
    assert!(newest.seq > first[5].seq, "numbering continues above");
    // peek returns the same numbers as pending.
    assert_eq!(store.peek().unwrap().unwrap().seq, first[0].seq);
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn an_event_older_than_the_limit_is_dropped_when_it_comes_up_for_delivery() {
    let reports = Reports::default();
    let store =
        ServiceStore::open_memory(&options(Some(Duration::from_secs(3600)), &reports)).unwrap();
    let now = now_ms();
    store
        .raise_event(&aged("Old", 1, Some(now - 2 * 3_600_000)))
        .unwrap();
    store
        .raise_event(&aged("Old", 2, Some(now - 3_000_000)))
        .unwrap(); // 50 min
    store
        .raise_event(&aged("Old", 3, Some(now - 3 * 3_600_000)))
        .unwrap();
    store.raise(EventKind::Queueing, "Fresh", b"").unwrap();
    // Stored, not yet judged: nothing is dropped before delivery.
    assert_eq!(store.stats().pending_events, 4);
    assert_eq!(store.stats().expired_events, 0);

    let first = store.peek().unwrap().unwrap();
    assert_eq!(
        first.uid,
        Uuid::from_u128(0xA6E0_0002),
        "the hour-old one went"
    );
    let stats = store.stats();
    assert_eq!((stats.expired_events, stats.pending_events), (1, 3));
    assert_eq!(
        (stats.failures, stats.events_lost),
        (0, 0),
        "asked for: not a failure"
    );
    store.ack(first.uid).unwrap();
    let next = store.peek().unwrap().unwrap();
    assert_eq!(next.name, "Fresh");
    assert_eq!(store.stats().expired_events, 2);

    let reports = reports.lock().unwrap();
    assert_eq!(
        reports.len(),
        2,
        "one report per call that dropped: {reports:?}"
    );
    for r in reports.iter() {
        assert_eq!((r.kind, r.events_lost), (FailureKind::Expired, 0));
        assert!(r.message.contains("'Old'"), "{}", r.message);
        assert!(r.message.contains("3600 s"), "{}", r.message);
    }
}

#[test]
fn the_event_in_flight_is_not_expired_and_cache_mode_expires_too() {
    let reports = Reports::default();
    let store =
        ServiceStore::open_memory(&options(Some(Duration::from_millis(40)), &reports)).unwrap();
    store.raise(EventKind::Queueing, "Slow", b"1").unwrap();
    let sent = store.peek().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(120));
    // Sent before it grew old: the broker may have it; its ack goes on.
    assert_eq!(store.peek().unwrap().unwrap().uid, sent.uid);
    store.ack(sent.uid).unwrap();
    assert!(store.peek().unwrap().is_none(), "now in cache mode");

    store.raise(EventKind::Replacing, "Door", b"open").unwrap();
    std::thread::sleep(Duration::from_millis(120));
    store.raise(EventKind::Queueing, "Door", b"knock").unwrap();
    assert!(store
        .peek_name(EventKind::Replacing, "Door")
        .unwrap()
        .is_none());
    let knock = store
        .peek_name(EventKind::Queueing, "Door")
        .unwrap()
        .unwrap();
    assert_eq!(knock.args, b"knock");
    assert_eq!(store.stats().expired_events, 1);
    assert_eq!(reports.lock().unwrap().len(), 1);
}

#[test]
fn an_unknown_age_never_expires() {
    let reports = Reports::default();
    let store =
        ServiceStore::open_memory(&options(Some(Duration::from_millis(1)), &reports)).unwrap();
    let now = now_ms();
    // From a clock that went backwards since: raised "in the future".
    store
        .raise_event(&aged("Ahead", 1, Some(now + DAY_MS)))
        .unwrap();
    // From a clock not yet set (a device that starts at 1970).
    store.raise_event(&aged("Unset", 2, Some(5_000))).unwrap();
    let delivered: Vec<u128> = std::iter::from_fn(|| {
        let e = store.peek().unwrap()?;
        store.ack(e.uid).unwrap();
        Some(e.uid.as_u128() - 0xA6E0_0000)
    })
    .collect();
    assert_eq!(delivered, vec![1, 2]);
    assert_eq!(store.stats().expired_events, 0);
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn an_expired_record_is_marked_o_in_the_journal() {
    let dir = scratch_dir();
    let service = Uuid::from_u128(0x0_1d);
    let reports = Reports::default();
    let opts = options(Some(Duration::from_secs(60)), &reports);
    let store = ServiceStore::open_file(dir.path(), service, &opts).unwrap();
    store
        .raise_event(&aged("Old", 1, Some(now_ms() - DAY_MS)))
        .unwrap();
    store.raise(EventKind::Queueing, "Fresh", b"").unwrap();
    assert_eq!(store.peek().unwrap().unwrap().name, "Fresh");
    let path = store.journal_path().unwrap();
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    let layout = Layout::parse(&bytes).expect("a journal");
    let states: Vec<u8> = layout
        .records
        .iter()
        .filter(|r| !r.is_marker())
        .map(|r| r.state)
        .collect();
    assert_eq!(states, b"OL".to_vec());
    // And it stays gone.
    let store = ServiceStore::open_file(dir.path(), service, &opts).unwrap();
    assert_eq!(store.pending().unwrap().len(), 1);
}

#[test]
fn sequence_numbers_and_raise_times_survive_a_fallback_to_level_1() {
    let inner = Arc::new(Mutex::new(softnet_persistence::MemoryLog::new()));
    let control = testkit::Control::default();
    let reports = Reports::default();
    let store = testkit::open_flaky(&inner, &control, &options(None, &reports));
    for i in 0..3u8 {
        store.raise(EventKind::Queueing, "Reading", &[i]).unwrap();
    }
    let before = store.pending().unwrap();
    // A write error: level 2 fails, its records are still readable.
    control
        .failing_appends
        .store(1, std::sync::atomic::Ordering::SeqCst);
    store
        .raise(EventKind::Queueing, "Reading", b"after")
        .unwrap();
    assert_eq!(store.level().number(), 1, "fell back");
    let after = store.pending().unwrap();
    assert_eq!(after.len(), 4);
    let numbers = |v: &[Event]| -> Vec<(u64, Option<u64>)> {
        v.iter().map(|e| (e.seq, e.raised_at_ms)).collect()
    };
    assert_eq!(
        numbers(&after[..3]),
        numbers(&before),
        "moved with their numbers"
    );
    assert!(
        after[3].seq > after[2].seq,
        "and numbering continues above them"
    );
    assert!(after[3].raised_at_ms.is_some());
    let kinds: Vec<FailureKind> = reports.lock().unwrap().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![FailureKind::Fallback]);
}

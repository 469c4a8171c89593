//! Invariant: the storage uid is stable for the life of a level-2 store
//! (across reopen), new for every memory store, and new after a fallback
//! from level 2 to level 1, which moves every pending event it can still
//! read, in order, and reports the rest as lost.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use softnet_persistence::{
    EventKind, Failure, FailureKind, Level, MemoryLog, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{collect_into, drain, journal_name, open_flaky, Control, Reports};

// The custom level 2 here is `testkit::FlakyLog`: a `MemoryLog` that outlives
// the store (so a "reopen" sees the same records) and fails on command
// through a `Control`.

fn options(capacity: usize, memory_capacity: usize) -> (ServiceOptions, Reports) {
    let reports = Reports::default();
    let options = ServiceOptions {
        capacity,
        memory_capacity,
        on_failure: Some(collect_into(&reports)),
        ..Default::default()
    };
    (options, reports)
}

fn fallback_reports(reports: &Reports) -> Vec<Failure> {
    reports
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.kind == FailureKind::Fallback)
        .cloned()
        .collect()
}

#[test]
fn file_storage_uid_is_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let first = {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        assert_eq!(store.level(), Level::Persistent);
        assert_eq!(store.stats().storage_uid, store.storage_uid());
        assert!(!store.storage_uid().is_nil());
        store.raise(EventKind::Queueing, "A", b"1").unwrap();
        store.storage_uid()
    };
    for _ in 0..3 {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        assert_eq!(store.storage_uid(), first);
        assert_eq!(store.stats().storage_uid, first);
        let e = store.peek().unwrap().unwrap();
        store.ack(e.uid).unwrap();
        store.raise(EventKind::Queueing, "A", b"again").unwrap();
    }
    // Another service in the same directory has its own file and uid.
    let other = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options).unwrap();
    assert_ne!(other.storage_uid(), first);
    // A new file (the old one is gone) gets a new uid.
    let path = dir.path().join(journal_name(service));
    std::fs::remove_file(&path).unwrap();
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_ne!(store.storage_uid(), first);
    assert_eq!(store.stats().pending_events, 0);
}

#[test]
fn every_memory_store_gets_a_new_uid() {
    let uids: HashSet<Uuid> = (0..20)
        .map(|_| {
            let store = ServiceStore::open_memory(&Default::default()).unwrap();
            assert_eq!(store.level(), Level::Memory);
            assert_eq!(store.stats().storage_uid, store.storage_uid());
            store.storage_uid()
        })
        .collect();
    assert_eq!(uids.len(), 20);
    assert!(!uids.contains(&Uuid::nil()));
}

#[test]
fn custom_storage_uid_is_kept_by_the_backend() {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let control = Control::default();
    let (options, reports) = options(0, 0);
    let first = {
        let store = open_flaky(&inner, &control, &options);
        assert_eq!(store.level(), Level::Persistent);
        store.raise(EventKind::Queueing, "A", b"1").unwrap();
        store.storage_uid()
    };
    let store = open_flaky(&inner, &control, &options);
    assert_eq!(store.storage_uid(), first);
    assert_eq!(store.stats().pending_events, 1);
    // A fresh backend is a new storage.
    let fresh = Arc::new(Mutex::new(MemoryLog::new()));
    assert_ne!(open_flaky(&fresh, &control, &options).storage_uid(), first);
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn fallback_gets_a_new_uid_and_moves_pending_events_in_order() {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let control = Control::default();
    let (options, reports) = options(0, 8192);
    let store = open_flaky(&inner, &control, &options);
    let before = store.storage_uid();
    let mut raised = vec![
        store.raise(EventKind::Queueing, "Q", b"1").unwrap(),
        store.raise(EventKind::Replacing, "R", b"1").unwrap(),
        store.raise_private("P", b"1", 3).unwrap(),
        store.raise(EventKind::ReplacingNull, "N", b"").unwrap(),
        store.raise(EventKind::Queueing, "Q", b"2").unwrap(),
    ];
    assert_eq!(store.peek().unwrap().unwrap().uid, raised[0]);
    store.ack(raised.remove(0)).unwrap();
    let in_flight = store.peek().unwrap().unwrap();
    assert_eq!(in_flight.uid, raised[0]);

    control.failing_appends.store(1, Ordering::SeqCst);
    let x = store.raise(EventKind::Queueing, "X", b"x").unwrap();
    raised.push(x);

    let stats = store.stats();
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(stats.level, Level::Memory);
    assert_ne!(store.storage_uid(), before, "a fallback is a new storage");
    assert_eq!(stats.storage_uid, store.storage_uid());
    assert!(stats.failures >= 1, "{stats:?}");
    assert_eq!(stats.events_lost, 0);
    assert_eq!(
        stats.capacity_bytes, 8192,
        "level 1 runs at the memory capacity"
    );
    assert_eq!(stats.pending_events, 5);
    let fallbacks = fallback_reports(&reports);
    assert_eq!(fallbacks.len(), 1, "{fallbacks:?}");
    assert_eq!(fallbacks[0].events_lost, 0);
    assert!(store.journal_path().is_none());

    // The event in flight before the failure can still be acknowledged.
    assert_eq!(store.peek().unwrap().unwrap(), in_flight);
    store.ack(in_flight.uid).unwrap();
    raised.remove(0);
    // Later failures of the (abandoned) backend do not matter any more.
    control.dead.store(true, Ordering::SeqCst);
    raised.push(store.raise(EventKind::Queueing, "Y", b"y").unwrap());
    assert_eq!(drain(&store), raised);
    assert_eq!(fallback_reports(&reports).len(), 1);
    assert_eq!(store.stats().failures, 1);
}

#[test]
fn fallback_reports_unreadable_events_as_lost() {
    for bad in [vec![2u64, 4], vec![5], vec![1, 5]] {
        let inner = Arc::new(Mutex::new(MemoryLog::new()));
        let control = Control::default();
        let (options, reports) = options(0, 0);
        let store = open_flaky(&inner, &control, &options);
        let uids: Vec<Uuid> = (1..=5u8)
            .map(|i| store.raise(EventKind::Queueing, "Q", &[i]).unwrap())
            .collect();
        // The memory log numbers records 1, 2, 3...
        control
            .bad_reads
            .lock()
            .unwrap()
            .extend(bad.iter().copied());
        control.failing_appends.store(1, Ordering::SeqCst);
        let x = store.raise(EventKind::Queueing, "X", b"x").unwrap();
        assert_eq!(store.level(), Level::Memory, "bad reads {bad:?}");
        let lost = bad.len() as u64;
        let stats = store.stats();
        assert_eq!(stats.events_lost, lost, "bad reads {bad:?}");
        assert_eq!(stats.pending_events, 5 - lost + 1, "bad reads {bad:?}");
        let fallbacks = fallback_reports(&reports);
        assert_eq!(fallbacks.len(), 1);
        assert_eq!(fallbacks[0].events_lost, lost, "{}", fallbacks[0]);
        let mut expected: Vec<Uuid> = uids
            .iter()
            .enumerate()
            .filter(|(i, _)| !bad.contains(&(*i as u64 + 1)))
            .map(|(_, u)| *u)
            .collect();
        expected.push(x);
        assert_eq!(drain(&store), expected, "bad reads {bad:?}");
    }
}

#[test]
fn fallback_with_unreadable_newest_record_in_cache_mode() {
    // The newest pending record is unreadable; events raised after the
    // fallback must still be delivered and acknowledged normally.
    for extra in 1..=3u8 {
        let inner = Arc::new(Mutex::new(MemoryLog::new()));
        let control = Control::default();
        let (options, _reports) = options(0, 0);
        let store = open_flaky(&inner, &control, &options);
        assert!(store.peek().unwrap().is_none(), "cache mode");
        let names = ["N1", "N2", "N3", "N4", "N5"];
        let uids: Vec<Uuid> = names
            .iter()
            .map(|n| store.raise(EventKind::Queueing, n, b"v").unwrap())
            .collect();
        // Acknowledge N4 out of raise order (cache mode allows it).
        let n4 = store.peek_name(EventKind::Queueing, "N4").unwrap().unwrap();
        assert!(store
            .ack_name(EventKind::Queueing, "N4", n4.uid)
            .unwrap()
            .is_none());
        // The memory log numbers records 1, 2, 3...: N5 is record 5.
        control.bad_reads.lock().unwrap().insert(5);
        control.failing_appends.store(1, Ordering::SeqCst);
        let xs: Vec<Uuid> = (0..extra)
            .map(|i| store.raise(EventKind::Queueing, "X", &[i]).unwrap())
            .collect();
        assert_eq!(store.level(), Level::Memory);
        assert_eq!(store.stats().events_lost, 1);
        assert_eq!(store.stats().pending_events, 3 + u64::from(extra));
        let mut head = store.peek_name(EventKind::Queueing, "X").unwrap();
        let mut seen = Vec::new();
        while let Some(e) = head {
            seen.push(e.uid);
            head = store
                .ack_name(EventKind::Queueing, "X", e.uid)
                .unwrap_or_else(|e| panic!("{extra} new event(s): ack_name failed: {e}"));
        }
        assert_eq!(seen, xs, "{extra} new event(s)");
        assert!(store
            .peek_name(EventKind::Queueing, "N5")
            .unwrap()
            .is_none());
        assert_eq!(store.stats().pending_events, 3, "{extra} new event(s)");
        assert_eq!(drain(&store), uids[..3], "{extra} new event(s)");
    }
}

#[test]
fn fallback_drops_the_oldest_beyond_the_memory_capacity() {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let control = Control::default();
    let (options, reports) = options(64 * 1024, 4096);
    let store = open_flaky(&inner, &control, &options);
    // 136-byte records (32 + roundup(40 + 5 + 59, 8)): 100 of them at
    // level 2, 4096 / 136 = 30 fit in 4 KiB.
    let uids: Vec<Uuid> = (0..100u8)
        .map(|i| store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap())
        .collect();
    assert_eq!(store.stats().used_bytes, 100 * 136);
    control.failing_appends.store(1, Ordering::SeqCst);
    let x = store
        .raise(EventKind::Queueing, "Exact", &[0xFF; 59])
        .unwrap();
    let stats = store.stats();
    assert_eq!(stats.level, Level::Memory);
    assert_eq!(stats.capacity_bytes, 4096);
    assert!(stats.used_bytes <= 4096);
    // 100 - 30 = 70 could not be moved; one more made room for the new
    // event (30 * 136 + 136 > 4096).
    assert_eq!(stats.events_lost, 70, "{stats:?}");
    assert_eq!(stats.dropped_events, 1, "{stats:?}");
    let reports = reports.lock().unwrap().clone();
    let lost: u64 = reports
        .iter()
        .filter(|r| r.kind == FailureKind::Fallback)
        .map(|r| r.events_lost)
        .sum();
    let dropped: u64 = reports
        .iter()
        .filter(|r| r.kind == FailureKind::CapacityDrop)
        .map(|r| r.events_lost)
        .sum();
    assert_eq!((lost, dropped), (70, 1), "{reports:?}");
    let mut expected = uids[71..].to_vec();
    expected.push(x);
    assert_eq!(drain(&store), expected);
}

#[test]
fn failure_at_open_starts_at_level_1_with_a_new_uid() {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let control = Control::default();
    let (options, reports) = options(0, 0);
    let old = {
        let store = open_flaky(&inner, &control, &options);
        store.raise(EventKind::Queueing, "A", b"1").unwrap();
        store.storage_uid()
    };
    control.dead.store(true, Ordering::SeqCst);
    let store = open_flaky(&inner, &control, &options);
    assert_eq!(store.level(), Level::Memory);
    assert_ne!(store.storage_uid(), old);
    assert_eq!(store.stats().failures, 1);
    assert_eq!(fallback_reports(&reports).len(), 1);
    // The store keeps going at level 1.
    let a = store.raise(EventKind::Queueing, "A", b"2").unwrap();
    assert_eq!(drain(&store), vec![a]);
}

#[test]
fn file_fallback_after_the_directory_vanishes() {
    // An I/O error at open (the directory does not exist) is a fallback.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let (options, reports) = options(0, 0);
    let store = ServiceStore::open_file(&missing, Uuid::new_v4(), &options).unwrap();
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(store.stats().failures, 1);
    let fallbacks = fallback_reports(&reports);
    assert_eq!(fallbacks.len(), 1);
    assert_eq!(store.stats().capacity_bytes, 16 * 1024);
    let other = ServiceStore::open_file(&missing, Uuid::new_v4(), &options).unwrap();
    assert_ne!(store.storage_uid(), other.storage_uid());
}

#[test]
fn strict_open_fails_where_the_default_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let strict = ServiceOptions {
        open_policy: softnet_persistence::OpenPolicy::Strict,
        ..Default::default()
    };
    let e = ServiceStore::open_file(&missing, Uuid::new_v4(), &strict).unwrap_err();
    assert_eq!(e.kind(), softnet_persistence::ErrorKind::Io, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("not-there") && text.contains("create it"),
        "{text}"
    );
    // Nothing was created.
    assert!(!missing.exists());
    // With the directory there, strict opens at level 2 as usual.
    std::fs::create_dir(&missing).unwrap();
    let store = ServiceStore::open_file(&missing, Uuid::new_v4(), &strict).unwrap();
    assert_eq!(store.level(), Level::Persistent);
}

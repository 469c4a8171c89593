//! Invariant: `invalidate_ancient` discards exactly the events that were
//! pending when the store was opened ("ancient data") and keeps every event
//! raised since; `reset` discards every pending event and keeps the storage
//! uid.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use softnet_persistence::{
    ErrorKind, EventKind, Level, MemoryLog, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{drain, open_flaky, Control};

fn open(dir: &std::path::Path, service: Uuid) -> ServiceStore {
    let store = ServiceStore::open_file(dir, service, &ServiceOptions::default()).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    store
}

#[test]
fn drops_exactly_the_events_present_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let ancient: Vec<Uuid>;
    {
        let store = open(dir.path(), service);
        assert_eq!(
            store.invalidate_ancient().unwrap(),
            0,
            "a new file has none"
        );
        ancient = (0..5u8)
            .map(|i| store.raise(EventKind::Queueing, "Old", &[i]).unwrap())
            .collect();
        assert_eq!(
            store.invalidate_ancient().unwrap(),
            0,
            "events raised since the open are not ancient"
        );
        assert_eq!(store.stats().pending_events, 5);
    }
    let store = open(dir.path(), service);
    let uid = store.storage_uid();
    let fresh: Vec<Uuid> = (0..3u8)
        .map(|i| store.raise(EventKind::Queueing, "New", &[i]).unwrap())
        .collect();
    assert_eq!(store.stats().pending_events, 8);
    assert_eq!(store.invalidate_ancient().unwrap(), 5);
    let stats = store.stats();
    assert_eq!(stats.invalidated_events, 5);
    assert_eq!(stats.pending_events, 3);
    assert_eq!(stats.dropped_events, 0, "invalidated is not dropped");
    assert_eq!(stats.events_lost, 0);
    assert_eq!(store.storage_uid(), uid, "invalidating keeps the uid");
    // Idempotent.
    assert_eq!(store.invalidate_ancient().unwrap(), 0);
    assert_eq!(store.stats().invalidated_events, 5);
    assert_eq!(store.stats().pending_events, 3);
    drop(store);
    // The discarded events stay discarded; the kept ones are ancient now.
    let store = open(dir.path(), service);
    assert_eq!(store.stats().pending_events, 3);
    let newer = store.raise(EventKind::Queueing, "Newer", b"").unwrap();
    assert_eq!(store.invalidate_ancient().unwrap(), 3);
    assert_eq!(drain(&store), vec![newer]);
    assert!(ancient.iter().chain(&fresh).all(|u| *u != newer));
}

#[test]
fn counts_only_ancient_events_still_pending() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    {
        let store = open(dir.path(), service);
        store.raise(EventKind::Queueing, "Q", b"1").unwrap();
        store.raise(EventKind::Replacing, "R", b"1").unwrap();
        store.raise(EventKind::Queueing, "Q", b"2").unwrap();
        store.raise_private("P", b"1", 1).unwrap();
        store.raise(EventKind::Queueing, "Q", b"3").unwrap();
    }
    let store = open(dir.path(), service);
    // One ancient event acknowledged, one superseded by a new instance.
    let head = store.peek().unwrap().unwrap();
    store.ack(head.uid).unwrap();
    let r2 = store.raise(EventKind::Replacing, "R", b"2").unwrap();
    let q4 = store.raise(EventKind::Queueing, "Q", b"4").unwrap();
    assert_eq!(store.stats().superseded_events, 1);
    assert_eq!(store.invalidate_ancient().unwrap(), 3);
    assert_eq!(store.stats().invalidated_events, 3);
    assert_eq!(drain(&store), vec![r2, q4]);
}

#[test]
fn an_ancient_event_in_flight_is_discarded_too() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let old = {
        let store = open(dir.path(), service);
        store.raise(EventKind::Queueing, "Q", b"old").unwrap()
    };
    let store = open(dir.path(), service);
    assert_eq!(store.peek().unwrap().unwrap().uid, old);
    let new = store.raise(EventKind::Queueing, "Q", b"new").unwrap();
    assert_eq!(store.invalidate_ancient().unwrap(), 1);
    // Its late ack is refused; the next event is the new one.
    assert_eq!(store.ack(old).unwrap_err().kind(), ErrorKind::State);
    assert_eq!(store.peek().unwrap().unwrap().uid, new);
    store.ack(new).unwrap();
}

#[test]
fn works_in_cache_mode() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    {
        let store = open(dir.path(), service);
        store.raise(EventKind::Replacing, "A", b"old").unwrap();
        store.raise(EventKind::Queueing, "B", b"old").unwrap();
    }
    let store = open(dir.path(), service);
    let head = store.peek().unwrap().unwrap();
    store.ack(head.uid).unwrap();
    let b = store.peek().unwrap().unwrap();
    store.ack(b.uid).unwrap();
    assert!(store.peek().unwrap().is_none());
    let a = store.raise(EventKind::Replacing, "A", b"new").unwrap();
    assert_eq!(store.invalidate_ancient().unwrap(), 0);
    assert_eq!(
        store
            .peek_name(EventKind::Replacing, "A")
            .unwrap()
            .unwrap()
            .uid,
        a
    );
}

#[test]
fn a_memory_store_has_no_ancient_events() {
    let store = ServiceStore::open_memory(&Default::default()).unwrap();
    let raised: Vec<Uuid> = (0..3u8)
        .map(|i| store.raise(EventKind::Queueing, "Q", &[i]).unwrap())
        .collect();
    assert_eq!(store.invalidate_ancient().unwrap(), 0);
    assert_eq!(store.stats().invalidated_events, 0);
    assert_eq!(drain(&store), raised);
}

#[test]
fn reset_discards_everything_and_keeps_the_uid() {
    let store = ServiceStore::open_memory(&Default::default()).unwrap();
    let uid = store.storage_uid();
    let in_flight = store.raise(EventKind::Queueing, "Q", b"1").unwrap();
    store.raise(EventKind::Replacing, "R", b"1").unwrap();
    store.raise_private("P", b"1", 4).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, in_flight);
    store.reset().unwrap();
    let stats = store.stats();
    assert_eq!(stats.pending_events, 0);
    assert_eq!(stats.used_bytes, 0);
    assert_eq!(stats.storage_uid, uid);
    assert_eq!(stats.dropped_events + stats.events_lost, 0);
    assert_eq!(store.ack(in_flight).unwrap_err().kind(), ErrorKind::State);
    assert!(store.peek().unwrap().is_none());
    // Usable afterwards; a Replacing raise does not find the old instance.
    store.set_storage_mode().unwrap();
    let r = store.raise(EventKind::Replacing, "R", b"2").unwrap();
    assert_eq!(store.stats().superseded_events, 0);
    assert_eq!(drain(&store), vec![r]);
}

#[test]
fn reset_at_level_2_survives_reopen_and_keeps_the_uid() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let uid;
    let kept;
    {
        let store = open(dir.path(), service);
        uid = store.storage_uid();
        for i in 0..10u8 {
            store.raise(EventKind::Queueing, "Q", &[i]).unwrap();
        }
    }
    {
        let store = open(dir.path(), service);
        store.raise(EventKind::Queueing, "Q", b"since").unwrap();
        store.reset().unwrap();
        assert_eq!(store.storage_uid(), uid);
        assert_eq!(store.stats().pending_events, 0);
        assert_eq!(store.invalidate_ancient().unwrap(), 0, "reset took them");
        kept = store.raise(EventKind::Queueing, "Q", b"after").unwrap();
    }
    let store = open(dir.path(), service);
    assert_eq!(store.storage_uid(), uid);
    assert_eq!(store.stats().pending_events, 1);
    assert_eq!(drain(&store), vec![kept]);
}

/// A store on a `testkit::FlakyLog` that holds three events from an
/// earlier run (ancient for it), and the switches of its device.
fn reopened_with_three_old_events() -> (ServiceStore, Control) {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let control = Control::default();
    let options = ServiceOptions::default();
    {
        let store = open_flaky(&inner, &control, &options);
        for i in 0..3u8 {
            store.raise(EventKind::Queueing, "Old", &[i]).unwrap();
        }
    }
    (open_flaky(&inner, &control, &options), control)
}

#[test]
fn ancient_events_moved_by_a_fallback_stay_ancient() {
    let (store, device) = reopened_with_three_old_events();
    let new1 = store.raise(EventKind::Queueing, "New", b"1").unwrap();
    device.failing_appends.store(1, Ordering::SeqCst);
    let new2 = store.raise(EventKind::Queueing, "New", b"2").unwrap();
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(store.stats().pending_events, 5);
    assert_eq!(store.invalidate_ancient().unwrap(), 3);
    assert_eq!(drain(&store), vec![new1, new2]);
}

#[test]
fn events_raised_after_a_fallback_are_never_ancient() {
    let (store, device) = reopened_with_three_old_events();
    assert_eq!(store.stats().pending_events, 3);
    // The device dies: nothing can be read back, everything is lost.
    device.dead.store(true, Ordering::SeqCst);
    let new1 = store.raise(EventKind::Queueing, "New", b"1").unwrap();
    let new2 = store.raise(EventKind::Queueing, "New", b"2").unwrap();
    assert_eq!(store.level(), Level::Memory);
    assert_eq!(store.stats().events_lost, 3);
    assert_eq!(store.stats().pending_events, 2);
    assert_eq!(
        store.invalidate_ancient().unwrap(),
        0,
        "the ancient events are gone; the new ones were raised since the open"
    );
    assert_eq!(drain(&store), vec![new1, new2]);
}

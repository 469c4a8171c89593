//! Invariant: Replacing (and Replacing-null, same pipeline per name) events
//! collapse to the newest state without ever superseding the instance in
//! flight; superseded instances are counted as superseded, never as dropped
//! or lost, and Queueing and Private events never collapse.

use softnet_persistence::{ErrorKind, EventKind, ServiceOptions, ServiceStats, ServiceStore, Uuid};
use testkit::{at_both_levels_with, collect_into, drain, Reports};

/// Runs `check` on a fresh memory store and on a fresh file store.
fn at_both_levels(check: impl Fn(&ServiceStore)) {
    let reports = Reports::default();
    let options = ServiceOptions {
        on_failure: Some(collect_into(&reports)),
        ..Default::default()
    };
    at_both_levels_with(&options, check);
    assert!(
        reports.lock().unwrap().is_empty(),
        "collapsing is not a failure: {:?}",
        reports.lock().unwrap()
    );
}

/// Superseded instances are not drops, rejections or losses.
fn assert_nothing_lost(stats: &ServiceStats) {
    assert_eq!(stats.dropped_events, 0, "{stats:?}");
    assert_eq!(stats.rejected_events, 0, "{stats:?}");
    assert_eq!(stats.events_lost, 0, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
}

/// Puts an empty store into cache mode (peek finds nothing pending).
fn enter_cache_mode(store: &ServiceStore) {
    store.set_storage_mode().unwrap();
    assert!(store.peek().unwrap().is_none());
    assert_eq!(store.mode(), softnet_persistence::Mode::Cache);
}

#[test]
fn storage_mode_keeps_only_the_newest_pending_instance() {
    at_both_levels(|store| {
        let a1 = store.raise(EventKind::Replacing, "A", b"1").unwrap();
        let q1 = store.raise(EventKind::Queueing, "Q", b"1").unwrap();
        let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
        let b1 = store.raise(EventKind::Replacing, "B", b"1").unwrap();
        let a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
        let stats = store.stats();
        assert_eq!(stats.pending_events, 3);
        assert_eq!(stats.superseded_events, 2);
        assert_nothing_lost(&stats);
        // The newest instance takes its own place in raise order.
        let head = store.peek().unwrap().unwrap();
        assert_eq!(head.uid, q1);
        assert_eq!(drain(store), vec![q1, b1, a3]);
        assert!(a1 != a3 && a2 != a3);
        assert_eq!(store.stats().superseded_events, 2);
    });
}

#[test]
fn storage_mode_never_supersedes_the_event_in_flight() {
    at_both_levels(|store| {
        let a1 = store.raise(EventKind::Replacing, "A", b"1").unwrap();
        let peeked = store.peek().unwrap().unwrap();
        assert_eq!(peeked.uid, a1);
        let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
        assert_eq!(store.stats().superseded_events, 0, "A1 is in flight");
        assert_eq!(store.stats().pending_events, 2);
        let a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
        assert_eq!(store.stats().superseded_events, 1, "A2 was pending");
        assert_eq!(store.stats().pending_events, 2);
        // The event in flight is still there and its ack still counts.
        assert_eq!(store.peek().unwrap().unwrap(), peeked);
        store.ack(a1).unwrap();
        let next = store.peek().unwrap().unwrap();
        assert_eq!(next.uid, a3);
        assert_eq!(next.args, b"3");
        assert_ne!(next.uid, a2);
        store.ack(a3).unwrap();
        assert!(store.peek().unwrap().is_none());
        assert_nothing_lost(&store.stats());
    });
}

#[test]
fn replacing_null_shares_the_replacing_pipeline() {
    at_both_levels(|store| {
        store.raise(EventKind::Replacing, "Alarm", b"high").unwrap();
        let null = store.raise(EventKind::ReplacingNull, "Alarm", b"").unwrap();
        assert_eq!(store.stats().pending_events, 1);
        let e = store.peek().unwrap().unwrap();
        assert_eq!((e.kind, e.uid), (EventKind::ReplacingNull, null));
        // In flight: a new raise of either kind does not touch it.
        let again = store.raise(EventKind::Replacing, "Alarm", b"low").unwrap();
        let last = store.raise(EventKind::ReplacingNull, "Alarm", b"").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        assert_eq!(store.stats().superseded_events, 2);
        assert_eq!(drain(store), vec![null, last]);
        assert_ne!(again, last);
        assert_nothing_lost(&store.stats());
    });
}

#[test]
fn replacing_does_not_touch_other_kinds_of_the_same_name() {
    at_both_levels(|store| {
        let q = store.raise(EventKind::Queueing, "Same", b"q").unwrap();
        let p = store.raise_private("Same", b"p", 5).unwrap();
        store.raise(EventKind::Replacing, "Same", b"r1").unwrap();
        let r2 = store.raise(EventKind::Replacing, "Same", b"r2").unwrap();
        assert_eq!(store.stats().superseded_events, 1);
        assert_eq!(drain(store), vec![q, p, r2]);
    });
}

#[test]
fn queueing_and_private_events_never_collapse() {
    at_both_levels(|store| {
        let mut raised = Vec::new();
        for i in 0..5u8 {
            raised.push(store.raise(EventKind::Queueing, "Q", &[i]).unwrap());
            raised.push(store.raise_private("P", &[i], 7).unwrap());
        }
        assert_eq!(store.stats().pending_events, 10);
        assert_eq!(store.stats().superseded_events, 0);
        assert_eq!(drain(store), raised);
        // In cache mode too.
        enter_cache_mode(store);
        let q: Vec<Uuid> = (0..4u8)
            .map(|i| store.raise(EventKind::Queueing, "Q", &[i]).unwrap())
            .collect();
        let mut head = store.peek_name(EventKind::Queueing, "Q").unwrap();
        let mut seen = Vec::new();
        while let Some(e) = head {
            seen.push(e.uid);
            head = store.ack_name(EventKind::Queueing, "Q", e.uid).unwrap();
        }
        assert_eq!(seen, q);
        assert_eq!(store.stats().superseded_events, 0);
    });
}

#[test]
fn cache_mode_holds_at_most_in_flight_plus_newest() {
    at_both_levels(|store| {
        enter_cache_mode(store);
        let a1 = store.raise(EventKind::Replacing, "A", b"1").unwrap();
        assert_eq!(
            store
                .peek_name(EventKind::Replacing, "A")
                .unwrap()
                .unwrap()
                .uid,
            a1
        );
        let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        let a3 = store.raise(EventKind::ReplacingNull, "A", b"").unwrap();
        assert_eq!(
            store.stats().pending_events,
            2,
            "the third replaces the pending"
        );
        assert_eq!(store.stats().superseded_events, 1);
        let a4 = store.raise(EventKind::Replacing, "A", b"4").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        assert_eq!(store.stats().superseded_events, 2);
        // The one in flight is still the head and acks fine.
        assert_eq!(
            store
                .peek_name(EventKind::Replacing, "A")
                .unwrap()
                .unwrap()
                .uid,
            a1
        );
        let next = store
            .ack_name(EventKind::Replacing, "A", a1)
            .unwrap()
            .unwrap();
        assert_eq!((next.uid, next.args.as_slice()), (a4, &b"4"[..]));
        assert!(next.uid != a2 && next.uid != a3);
        // a4 is in flight now: a5 waits behind it, a6 replaces a5.
        store.raise(EventKind::Replacing, "A", b"5").unwrap();
        let a6 = store.raise(EventKind::Replacing, "A", b"6").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        assert_eq!(store.stats().superseded_events, 3);
        let next = store.ack_name(EventKind::Replacing, "A", a4).unwrap();
        assert_eq!(next.map(|e| e.uid), Some(a6));
        assert!(store
            .ack_name(EventKind::Replacing, "A", a6)
            .unwrap()
            .is_none());
        assert_eq!(store.stats().pending_events, 0);
        assert_nothing_lost(&store.stats());
    });
}

#[test]
fn cache_mode_without_flight_keeps_only_the_newest() {
    at_both_levels(|store| {
        enter_cache_mode(store);
        store.raise(EventKind::Replacing, "A", b"1").unwrap();
        store.raise(EventKind::Replacing, "A", b"2").unwrap();
        let a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
        let b = store.raise(EventKind::Replacing, "B", b"1").unwrap();
        assert_eq!(store.stats().pending_events, 2);
        assert_eq!(store.stats().superseded_events, 2);
        // Replacing-null looks up the same pipeline.
        let head = store.peek_name(EventKind::ReplacingNull, "A").unwrap();
        assert_eq!(head.map(|e| e.uid), Some(a3));
        let head = store.peek_name(EventKind::Replacing, "B").unwrap();
        assert_eq!(head.map(|e| e.uid), Some(b));
        // Other names' flights do not protect this name's pending instance.
        let a4 = store.raise(EventKind::Replacing, "A", b"4").unwrap();
        let a5 = store.raise(EventKind::Replacing, "A", b"5").unwrap();
        assert_eq!(store.stats().superseded_events, 3, "a4 replaced");
        assert_ne!(a4, a5);
        assert_eq!(drain(store), vec![a3, b, a5]);
        assert_nothing_lost(&store.stats());
    });
}

#[test]
fn collapse_holds_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let (a1, a3, q);
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        a1 = store.raise(EventKind::Replacing, "A", b"1").unwrap();
        assert_eq!(store.peek().unwrap().unwrap().uid, a1);
        store.raise(EventKind::Replacing, "A", b"2").unwrap();
        q = store.raise(EventKind::Queueing, "Q", b"q").unwrap();
        a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
        assert_eq!(store.stats().superseded_events, 1);
        // Closed with a1 still in flight (never acknowledged).
    }
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        // The superseded instance stays gone.
        assert_eq!(store.stats().pending_events, 3);
        let head = store.peek().unwrap().unwrap();
        assert_eq!(head.uid, a1, "the old flight is resent first");
        // a1 is in flight again: a new raise supersedes only a3.
        let a4 = store.raise(EventKind::Replacing, "A", b"4").unwrap();
        assert_eq!(store.stats().superseded_events, 1);
        assert_eq!(store.stats().pending_events, 3);
        store.ack(a1).unwrap();
        assert_eq!(store.peek().unwrap().unwrap().uid, q);
        // Closed with q in flight; pending: q, a4.
        let _ = a4;
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    // Nothing is in flight after a reopen: a new raise supersedes every
    // older pending instance of its name, ancient or not.
    let a5 = store.raise(EventKind::Replacing, "A", b"5").unwrap();
    assert_eq!(store.stats().superseded_events, 1);
    let a6 = store.raise(EventKind::ReplacingNull, "A", b"").unwrap();
    assert_eq!(store.stats().superseded_events, 2);
    assert_ne!(a5, a6);
    assert_nothing_lost(&store.stats());
    drop(store);
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(drain(&store), vec![q, a6]);
    assert_ne!(a3, a6);
}

#[test]
fn cache_mode_collapse_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        store.raise(EventKind::Replacing, "A", b"1").unwrap();
        store.raise(EventKind::Queueing, "Q", b"1").unwrap();
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    // Drain the backlog while new raises arrive; then cache mode.
    let head = store.peek().unwrap().unwrap();
    assert_eq!(head.kind, EventKind::Replacing);
    let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
    store.ack(head.uid).unwrap();
    let q = store.peek().unwrap().unwrap();
    store.ack(q.uid).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, a2);
    store.ack(a2).unwrap();
    enter_cache_mode(&store);
    let a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
    assert_eq!(
        store
            .peek_name(EventKind::Replacing, "A")
            .unwrap()
            .unwrap()
            .uid,
        a3
    );
    store.raise(EventKind::Replacing, "A", b"4").unwrap();
    let a5 = store.raise(EventKind::Replacing, "A", b"5").unwrap();
    assert_eq!(store.stats().pending_events, 2);
    assert_eq!(store.stats().superseded_events, 1);
    drop(store);
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(drain(&store), vec![a3, a5]);
    assert_nothing_lost(&store.stats());
}

#[test]
fn wrong_mode_is_not_a_collapse_path() {
    // A peek_name in storage mode must not put anything in flight.
    let store = ServiceStore::open_memory(&Default::default()).unwrap();
    store.raise(EventKind::Replacing, "A", b"1").unwrap();
    let err = store.peek_name(EventKind::Replacing, "A").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State);
    let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
    assert_eq!(store.stats().superseded_events, 1);
    assert_eq!(drain(&store), vec![a2]);
}

//! Invariant: calling a mode's operation in the other mode is a state error
//! (never a panic) that leaves the store usable; `set_storage_mode` returns
//! to storage mode, where `peek` resends from the oldest pending event, and
//! in cache mode `ack_name` only accepts the name's event in flight.

use softnet_persistence::{Error, ErrorKind, EventKind, Mode, ServiceOptions, ServiceStore, Uuid};
use testkit::at_both_levels_with;

fn assert_state(err: Error) {
    assert_eq!(err.kind(), ErrorKind::State, "{err:?}");
    assert!(matches!(err, Error::State(_)), "{err:?}");
}

/// Runs `check` on a memory store and on a file store.
fn at_both_levels(check: impl Fn(&ServiceStore)) {
    at_both_levels_with(&ServiceOptions::default(), check);
}

#[test]
fn cache_operations_in_storage_mode_are_state_errors() {
    at_both_levels(|store| {
        assert_eq!(
            store.mode(),
            Mode::Storage,
            "a store starts in storage mode"
        );
        let a = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        let before = store.stats();
        assert_state(store.peek_name(EventKind::Queueing, "A").unwrap_err());
        assert_state(store.ack_name(EventKind::Queueing, "A", a).unwrap_err());
        assert_state(
            store
                .ack_name(EventKind::Queueing, "Nothing", Uuid::new_v4())
                .unwrap_err(),
        );
        assert_eq!(store.stats(), before, "refused calls change nothing");
        assert_eq!(store.mode(), Mode::Storage);
        // Still fully usable.
        assert_eq!(store.peek().unwrap().unwrap().uid, a);
        store.ack(a).unwrap();
        assert!(store.peek().unwrap().is_none());
        assert_eq!(store.mode(), Mode::Cache);
    });
}

#[test]
fn storage_operations_in_cache_mode_are_state_errors() {
    at_both_levels(|store| {
        assert!(store.peek().unwrap().is_none());
        assert_eq!(store.mode(), Mode::Cache);
        assert_eq!(store.stats().mode, Mode::Cache);
        let a = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        let before = store.stats();
        assert_state(store.peek().unwrap_err());
        assert_state(store.ack(a).unwrap_err());
        assert_state(store.ack(Uuid::new_v4()).unwrap_err());
        assert_eq!(store.stats(), before);
        // The refused ack did not remove the event.
        let head = store.peek_name(EventKind::Queueing, "A").unwrap().unwrap();
        assert_eq!(head.uid, a);
        assert!(store
            .ack_name(EventKind::Queueing, "A", a)
            .unwrap()
            .is_none());
        assert_eq!(store.stats().pending_events, 0);
        // Back to storage mode.
        store.set_storage_mode().unwrap();
        assert_eq!(store.mode(), Mode::Storage);
        assert!(store.peek().unwrap().is_none());
    });
}

#[test]
fn ack_name_only_accepts_the_event_in_flight() {
    at_both_levels(|store| {
        assert!(store.peek().unwrap().is_none());
        let a1 = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        let a2 = store.raise(EventKind::Queueing, "A", b"2").unwrap();
        let b1 = store.raise(EventKind::Queueing, "B", b"1").unwrap();
        assert_eq!(
            store
                .peek_name(EventKind::Queueing, "A")
                .unwrap()
                .unwrap()
                .uid,
            a1
        );
        let before = store.stats();
        for wrong in [a2, b1, Uuid::new_v4()] {
            assert_state(store.ack_name(EventKind::Queueing, "A", wrong).unwrap_err());
        }
        // Right uid, wrong name or wrong kind family: refused too.
        assert_state(store.ack_name(EventKind::Queueing, "B", a1).unwrap_err());
        assert_state(store.ack_name(EventKind::Replacing, "A", a1).unwrap_err());
        assert_state(store.ack_name(EventKind::Private, "A", a1).unwrap_err());
        assert_eq!(store.stats(), before);
        // The same event is still in flight.
        assert_eq!(
            store
                .peek_name(EventKind::Queueing, "A")
                .unwrap()
                .unwrap()
                .uid,
            a1
        );
        let next = store
            .ack_name(EventKind::Queueing, "A", a1)
            .unwrap()
            .unwrap();
        assert_eq!((next.uid, next.args.as_slice()), (a2, &b"2"[..]));
        // A repeated ack of a1 is stale now.
        assert_state(store.ack_name(EventKind::Queueing, "A", a1).unwrap_err());
        assert!(store
            .ack_name(EventKind::Queueing, "A", a2)
            .unwrap()
            .is_none());
        // Nothing pending for the name: refused, not a crash.
        assert_state(store.ack_name(EventKind::Queueing, "A", a2).unwrap_err());
        assert!(store.peek_name(EventKind::Queueing, "A").unwrap().is_none());
        assert!(store
            .peek_name(EventKind::Queueing, "Never")
            .unwrap()
            .is_none());
        assert_state(
            store
                .ack_name(EventKind::Queueing, "Never", b1)
                .unwrap_err(),
        );
        assert_eq!(
            store
                .peek_name(EventKind::Queueing, "B")
                .unwrap()
                .unwrap()
                .uid,
            b1
        );
    });
}

#[test]
fn ack_name_returns_the_names_next_event() {
    at_both_levels(|store| {
        assert!(store.peek().unwrap().is_none());
        let mut a = Vec::new();
        for i in 0..4u8 {
            a.push(store.raise_private("A", &[i], 7).unwrap());
            store.raise_private("B", &[i], 7).unwrap();
            store.raise(EventKind::Queueing, "A", &[i]).unwrap();
        }
        let mut head = store.peek_name(EventKind::Private, "A").unwrap();
        let mut seen = Vec::new();
        while let Some(e) = head {
            assert_eq!(
                (e.kind, e.name.as_str(), e.client_id),
                (EventKind::Private, "A", Some(7))
            );
            seen.push(e.uid);
            head = store.ack_name(EventKind::Private, "A", e.uid).unwrap();
        }
        assert_eq!(seen, a);
        // Other pipelines were untouched.
        assert_eq!(store.stats().pending_events, 8);
    });
}

#[test]
fn invalid_names_are_invalid_arguments_in_cache_mode() {
    let store = ServiceStore::open_memory(&ServiceOptions::default()).unwrap();
    assert!(store.peek().unwrap().is_none());
    for bad in ["", "1abc", "a  b", "trailing "] {
        let err = store.peek_name(EventKind::Queueing, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}: {err}");
    }
    store.raise(EventKind::Queueing, "Fine", b"").unwrap();
    assert!(store
        .peek_name(EventKind::Queueing, "Fine")
        .unwrap()
        .is_some());
}

#[test]
fn set_storage_mode_resends_from_the_oldest_pending() {
    at_both_levels(|store| {
        let q1 = store.raise(EventKind::Queueing, "Q", b"1").unwrap();
        assert_eq!(store.peek().unwrap().unwrap().uid, q1);
        store.ack(q1).unwrap();
        assert!(store.peek().unwrap().is_none());
        // Cache mode: several names in flight at once.
        let a1 = store.raise(EventKind::Replacing, "A", b"1").unwrap();
        let b1 = store.raise(EventKind::Queueing, "B", b"1").unwrap();
        let b2 = store.raise(EventKind::Queueing, "B", b"2").unwrap();
        let c1 = store.raise_private("C", b"1", 1).unwrap();
        assert_eq!(
            store
                .peek_name(EventKind::Replacing, "A")
                .unwrap()
                .unwrap()
                .uid,
            a1
        );
        assert_eq!(
            store
                .peek_name(EventKind::Queueing, "B")
                .unwrap()
                .unwrap()
                .uid,
            b1
        );
        let next = store.ack_name(EventKind::Queueing, "B", b1).unwrap();
        assert_eq!(next.map(|e| e.uid), Some(b2));
        let a2 = store.raise(EventKind::Replacing, "A", b"2").unwrap();
        // Disconnect: storage mode, the oldest pending first (a1, which was
        // in flight), then raise order.
        store.set_storage_mode().unwrap();
        assert_eq!(store.mode(), Mode::Storage);
        assert_state(store.peek_name(EventKind::Replacing, "A").unwrap_err());
        let head = store.peek().unwrap().unwrap();
        assert_eq!(head.uid, a1);
        assert_eq!(store.peek().unwrap().unwrap().uid, a1, "same until acked");
        // a1 is in flight in storage mode now; a3 supersedes only a2.
        let a3 = store.raise(EventKind::Replacing, "A", b"3").unwrap();
        assert_eq!(store.stats().superseded_events, 1);
        let mut order = Vec::new();
        while let Some(e) = store.peek().unwrap() {
            store.ack(e.uid).unwrap();
            order.push(e.uid);
        }
        assert_eq!(order, vec![a1, b2, c1, a3]);
        assert_ne!(a2, a3);
        assert_eq!(store.mode(), Mode::Cache);
        // set_storage_mode with nothing pending, twice, is harmless.
        store.set_storage_mode().unwrap();
        store.set_storage_mode().unwrap();
        assert!(store.peek().unwrap().is_none());
    });
}

#[test]
fn storage_mode_after_cache_mode_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let (a, b);
    {
        let store =
            ServiceStore::open_file(dir.path(), service, &ServiceOptions::default()).unwrap();
        assert!(store.peek().unwrap().is_none());
        a = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        b = store.raise(EventKind::Queueing, "B", b"1").unwrap();
        assert_eq!(
            store
                .peek_name(EventKind::Queueing, "B")
                .unwrap()
                .unwrap()
                .uid,
            b
        );
    }
    // A reopened store starts in storage mode, the in-flight b not acked.
    let store = ServiceStore::open_file(dir.path(), service, &ServiceOptions::default()).unwrap();
    assert_eq!(store.mode(), Mode::Storage);
    assert_state(store.peek_name(EventKind::Queueing, "B").unwrap_err());
    assert_eq!(store.peek().unwrap().unwrap().uid, a);
    store.ack(a).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, b);
    store.ack(b).unwrap();
    assert!(store.peek().unwrap().is_none());
}

//! Invariant: events stored at level 2 survive closing and reopening the
//! store, with their kind, name, arguments, client id and uid intact.

use softnet_persistence::{EventKind, Level, ServiceOptions, ServiceStore, Uuid};

#[test]
fn events_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let mut raised = Vec::new();
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        assert_eq!(store.level(), Level::Persistent);
        for i in 0..50u32 {
            let name = format!("Sensor{}", i % 7);
            let uid = store
                .raise(EventKind::Queueing, &name, &i.to_le_bytes())
                .unwrap();
            raised.push((
                EventKind::Queueing,
                name,
                i.to_le_bytes().to_vec(),
                None,
                uid,
            ));
        }
        let uid = store.raise_private("Door", b"open", -42).unwrap();
        raised.push((
            EventKind::Private,
            "Door".into(),
            b"open".to_vec(),
            Some(-42),
            uid,
        ));
        let uid = store.raise(EventKind::ReplacingNull, "Alarm", b"").unwrap();
        raised.push((EventKind::ReplacingNull, "Alarm".into(), vec![], None, uid));
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(store.stats().pending_events, raised.len() as u64);
    for (kind, name, args, client, uid) in raised {
        let e = store.peek().unwrap().expect("event lost across reopen");
        assert_eq!(
            (e.kind, e.name, e.args, e.client_id, e.uid),
            (kind, name, args, client, uid)
        );
        store.ack(uid).unwrap();
    }
    assert!(store.peek().unwrap().is_none());
    assert_eq!(store.stats().failures, 0);
}

#[test]
fn acknowledged_events_stay_gone_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let kept;
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        let first = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        kept = store.raise(EventKind::Queueing, "A", b"2").unwrap();
        assert_eq!(store.peek().unwrap().unwrap().uid, first);
        store.ack(first).unwrap();
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, kept);
    assert_eq!(store.stats().pending_events, 1);
}

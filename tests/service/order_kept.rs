//! Invariant: storage mode delivers pending events strictly in raise order
//! (at level 1, at level 2 and across a reopen), `peek` keeps returning the
//! same event until it is acknowledged, and an ack whose uid is not the
//! event in flight is refused as a state error and changes nothing.

use softnet_persistence::{Error, ErrorKind, Event, EventKind, ServiceOptions, ServiceStore, Uuid};

const NAMES: [&str; 13] = [
    "Temperature",
    "Door open",
    "Pump.1",
    "Valve(2)",
    "Alarm#3",
    "Level/tank-A",
    "Mode:auto",
    "x",
    "Power@mains",
    "Flow[1]",
    "Speed=fast",
    "Ready!",
    "Zone%7",
];

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// What storage mode must deliver: raise order, where a Replacing raise
/// supersedes the older pending instances of its name except the one in
/// flight. Replacing and Replacing-null share a name's pipeline; the other
/// kinds never collapse.
#[derive(Default)]
struct Model {
    pending: Vec<Event>,
    in_flight: Option<Uuid>,
    raised: u64,
    delivered: u64,
}

impl Model {
    fn raise(&mut self, event: Event) {
        if event.kind.is_replacing() {
            let in_flight = self.in_flight;
            self.pending.retain(|e| {
                !(e.kind.is_replacing() && e.name == event.name) || Some(e.uid) == in_flight
            });
        }
        self.pending.push(event);
        self.raised += 1;
    }
}

/// Raises a pseudo-random event of any kind and returns it as stored.
fn raise_random(store: &ServiceStore, rng: &mut Lcg, serial: u32) -> Event {
    let name = NAMES[(rng.next() % NAMES.len() as u64) as usize];
    let kind = match rng.next() % 4 {
        0 => EventKind::Queueing,
        1 => EventKind::Private,
        2 => EventKind::Replacing,
        _ => EventKind::ReplacingNull,
    };
    let args = if kind == EventKind::ReplacingNull {
        Vec::new()
    } else {
        let mut a = serial.to_le_bytes().to_vec();
        a.resize((rng.next() % 40) as usize + 4, 0xA5);
        a
    };
    let client_id = (kind == EventKind::Private).then(|| rng.next() as i64 - (1 << 30));
    let uid = match kind {
        EventKind::Private => store
            .raise_private(name, &args, client_id.unwrap())
            .unwrap(),
        _ => store.raise(kind, name, &args).unwrap(),
    };
    Event {
        kind,
        name: name.to_owned(),
        args,
        client_id,
        uid,
        seq: 0,
        raised_at_ms: None,
    }
}

/// Drains `count` events (or everything when `None`) in storage mode,
/// checking each against the model, with raises interleaved while an event
/// is in flight.
fn drain_checked(
    store: &ServiceStore,
    model: &mut Model,
    rng: &mut Lcg,
    serial: &mut u32,
    count: Option<usize>,
) {
    let mut done = 0;
    while count.is_none_or(|c| done < c) {
        let Some(head) = store.peek().unwrap() else {
            assert!(model.pending.is_empty(), "store drained before the model");
            return;
        };
        let expected = model
            .pending
            .first()
            .expect("store has more than the model");
        assert_eq!(&head, expected, "event {done} of the drain is out of order");
        model.in_flight = Some(head.uid);
        // Raises while an event is in flight queue behind it.
        for _ in 0..(rng.next() % 3) {
            *serial += 1;
            let e = raise_random(store, rng, *serial);
            model.raise(e);
        }
        assert_eq!(
            store.peek().unwrap().as_ref(),
            Some(&head),
            "peek changed before the ack"
        );
        store.ack(head.uid).unwrap();
        model.pending.remove(0);
        model.in_flight = None;
        model.delivered += 1;
        assert_eq!(
            store.stats().pending_events,
            model.pending.len() as u64,
            "pending count after ack"
        );
        done += 1;
    }
}

fn check_order(store: &ServiceStore, seed: u64) {
    let mut rng = Lcg(seed);
    let mut model = Model::default();
    let mut serial = 0u32;
    for _ in 0..300 {
        serial += 1;
        let e = raise_random(store, &mut rng, serial);
        model.raise(e);
    }
    assert_eq!(store.stats().pending_events, model.pending.len() as u64);
    drain_checked(store, &mut model, &mut rng, &mut serial, None);
    assert_eq!(store.stats().pending_events, 0);
    let superseded = model.raised - model.delivered;
    assert!(
        superseded > 20,
        "the mix collapses Replacing events: {superseded}"
    );
    assert_eq!(store.stats().superseded_events, superseded);
    store.set_storage_mode().unwrap();
    assert!(store.peek().unwrap().is_none());
    assert_eq!(store.stats().dropped_events, 0);
}

#[test]
fn memory_store_delivers_in_raise_order() {
    let options = ServiceOptions {
        memory_capacity: 1 << 20,
        ..Default::default()
    };
    let store = ServiceStore::open_memory(&options).unwrap();
    check_order(&store, 1);
}

#[test]
fn file_store_delivers_in_raise_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &Default::default()).unwrap();
    check_order(&store, 2);
    assert_eq!(store.stats().failures, 0);
}

#[test]
fn order_is_kept_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let options = ServiceOptions::default();
    let mut rng = Lcg(3);
    let mut model = Model::default();
    let mut serial = 0u32;
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        for _ in 0..150 {
            serial += 1;
            let e = raise_random(&store, &mut rng, serial);
            model.raise(e);
        }
        drain_checked(&store, &mut model, &mut rng, &mut serial, Some(20));
        // Leave one event in flight (peeked, not acknowledged) at the close.
        let head = store.peek().unwrap().unwrap();
        assert_eq!(Some(&head), model.pending.first());
    }
    // The event that was in flight is sent again first after the reopen.
    model.in_flight = None;
    for round in 0..2 {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        assert_eq!(
            store.stats().pending_events,
            model.pending.len() as u64,
            "pending after reopen {round}"
        );
        for _ in 0..60 {
            serial += 1;
            let e = raise_random(&store, &mut rng, serial);
            model.raise(e);
        }
        drain_checked(&store, &mut model, &mut rng, &mut serial, Some(40));
        assert_eq!(store.stats().failures, 0);
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    drain_checked(&store, &mut model, &mut rng, &mut serial, None);
    assert!(model.pending.is_empty());
}

fn check_refused_acks(store: &ServiceStore) {
    let a = store.raise(EventKind::Queueing, "A", b"1").unwrap();
    let b = store.raise(EventKind::Replacing, "B", b"2").unwrap();
    let c = store.raise_private("C", b"3", 9).unwrap();

    let head = store.peek().unwrap().unwrap();
    assert_eq!(head.uid, a);
    let before = store.stats();
    for wrong in [Uuid::new_v4(), b, c, Uuid::nil()] {
        let err = store.ack(wrong).unwrap_err();
        assert!(matches!(err, Error::State(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::State);
        assert_eq!(store.stats(), before, "a refused ack changed the store");
        assert_eq!(store.peek().unwrap().as_ref(), Some(&head));
    }
    store.ack(a).unwrap();

    // A repeated (stale) ack of an event already acknowledged is refused
    // and does not remove the next one.
    let err = store.ack(a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State, "{err}");
    assert_eq!(store.stats().pending_events, 2);
    assert_eq!(store.peek().unwrap().unwrap().uid, b);
    store.ack(b).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, c);
    store.ack(c).unwrap();

    // Nothing pending: any ack is refused.
    assert!(store.peek().unwrap().is_none());
    store.set_storage_mode().unwrap();
    let err = store.ack(c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::State, "{err}");
}

#[test]
fn wrong_or_stale_ack_is_refused_in_memory() {
    let store = ServiceStore::open_memory(&Default::default()).unwrap();
    check_refused_acks(&store);
}

#[test]
fn wrong_or_stale_ack_is_refused_in_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &Default::default()).unwrap();
    check_refused_acks(&store);
}

#[test]
fn refused_ack_after_reopen_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let (a, b);
    {
        let store = ServiceStore::open_file(dir.path(), service, &Default::default()).unwrap();
        a = store.raise(EventKind::Queueing, "A", b"1").unwrap();
        b = store.raise(EventKind::Queueing, "A", b"2").unwrap();
        assert_eq!(store.ack(b).unwrap_err().kind(), ErrorKind::State);
    }
    let store = ServiceStore::open_file(dir.path(), service, &Default::default()).unwrap();
    assert_eq!(store.ack(b).unwrap_err().kind(), ErrorKind::State);
    assert_eq!(store.stats().pending_events, 2);
    assert_eq!(store.peek().unwrap().unwrap().uid, a);
    assert_eq!(store.peek().unwrap().unwrap().uid, a);
    store.ack(a).unwrap();
    assert_eq!(store.peek().unwrap().unwrap().uid, b);
}

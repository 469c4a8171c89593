//! The broker model of `testkit::broker` (the yardstick of the delivery
//! quality tests) follows docs/BEHAVIOUR.md sections 2 and 4 and docs/PROTOCOL.md.

use std::time::Duration;

use softnet_persistence::{ClientAck, ClientHello};
use softnet_persistence::{Event, EventKind, Uuid};
use testkit::broker::{
    Broker, ClientSpec, FromClient, FromService, Gone, Note, Out, SiteKind, ToService,
};

const FIRST_ID: i64 = 1 << 40;
const STATEFUL: usize = 0;
const STATELESS: usize = 1;

fn broker(max_len: usize) -> Broker {
    let site = vec![
        (
            "Q".to_string(),
            SiteKind::Queueing {
                max_len,
                lifetime: Duration::from_secs(60),
            },
        ),
        ("R".to_string(), SiteKind::Replacing),
        ("P".to_string(), SiteKind::Private),
    ];
    let clients = [
        ClientSpec {
            client_id: -5,
            stateful: true,
        },
        ClientSpec {
            client_id: 9,
            stateful: false,
        },
    ];
    Broker::new(&site, &clients, Duration::from_secs(30), FIRST_ID)
}

fn event(kind: EventKind, name: &str, n: u128) -> Event {
    Event {
        kind,
        name: name.into(),
        args: Vec::new(),
        client_id: (kind == EventKind::Private).then_some(-5),
        uid: Uuid::from_u128(n),
        seq: 0,
        raised_at_ms: None,
    }
}

fn raise(b: &mut Broker, e: Event) -> Vec<Out> {
    b.service_message(FromService::Event(e));
    b.drain_outputs()
}

/// (client, name, id) of each delivery.
fn deliveries(outs: &[Out]) -> Vec<(usize, String, i64)> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Client(c, d) => Some((*c, d.name.clone(), d.id)),
            _ => None,
        })
        .collect()
}

fn ack(b: &mut Broker, c: usize, name: &str, id: i64) -> Vec<Out> {
    b.client_message(
        c,
        FromClient::Ack(ClientAck {
            name: name.into(),
            id,
        }),
    );
    b.drain_outputs()
}

#[test]
fn online_tells_the_remembered_storage_uid() {
    let mut b = broker(10);
    b.service_connected();
    assert!(matches!(
        b.drain_outputs()[..],
        [Out::Service(ToService::Online(None))]
    ));
    let uid = Uuid::from_u128(7);
    b.service_message(FromService::StorageUid(uid));
    b.service_connected();
    assert!(matches!(
        b.drain_outputs()[..],
        [Out::Service(ToService::Online(Some(u)))] if u == uid
    ));
}

#[test]
fn a_repeat_of_the_last_acked_uid_is_acked_again_within_its_storage_uid() {
    let mut b = broker(10);
    b.service_message(FromService::StorageUid(Uuid::from_u128(1)));
    raise(&mut b, event(EventKind::Queueing, "Q", 1));
    let again = raise(&mut b, event(EventKind::Queueing, "Q", 1));
    assert!(matches!(again[..], [Out::Service(ToService::Ack(u))] if u == Uuid::from_u128(1)));
    let notes = b.drain_notes();
    assert_eq!(
        notes
            .iter()
            .filter(|n| matches!(n, Note::Accepted { .. }))
            .count(),
        1
    );
    assert!(notes.contains(&Note::DuplicateAcked(Uuid::from_u128(1))));
    // Another storage uid: the duplicate-detection state starts afresh.
    b.service_message(FromService::StorageUid(Uuid::from_u128(2)));
    raise(&mut b, event(EventKind::Queueing, "Q", 1));
    assert!(matches!(b.drain_notes()[..], [Note::Accepted { .. }]));
}

#[test]
fn names_not_on_the_site_are_rejected() {
    let mut b = broker(10);
    let out = raise(&mut b, event(EventKind::Queueing, "Nope", 3));
    assert!(matches!(out[..], [Out::Service(ToService::Rejected(_))]));
    // Defined with another kind is not defined either.
    let out = raise(&mut b, event(EventKind::Queueing, "R", 4));
    assert!(matches!(out[..], [Out::Service(ToService::Rejected(_))]));
}

#[test]
fn replacing_keeps_only_the_newest_instance() {
    let mut b = broker(10);
    raise(&mut b, event(EventKind::Replacing, "R", 1));
    raise(&mut b, event(EventKind::ReplacingNull, "R", 2));
    assert!(b
        .drain_notes()
        .contains(&Note::Removed(Uuid::from_u128(1), Gone::Replaced)));
    b.client_message(STATEFUL, FromClient::Hello(ClientHello::Stateful));
    assert_eq!(
        deliveries(&b.drain_outputs()),
        vec![(STATEFUL, "R".to_string(), FIRST_ID + 1)]
    );
}

#[test]
fn queueing_evicts_the_oldest_and_expires_by_lifetime() {
    let mut b = broker(2);
    for n in 1..=3 {
        raise(&mut b, event(EventKind::Queueing, "Q", n));
    }
    assert!(b
        .drain_notes()
        .contains(&Note::Removed(Uuid::from_u128(1), Gone::Evicted)));
    b.set_now(Duration::from_secs(61));
    b.tick();
    let notes = b.drain_notes();
    assert!(notes.contains(&Note::Removed(Uuid::from_u128(2), Gone::Expired)));
    assert!(notes.contains(&Note::Removed(Uuid::from_u128(3), Gone::Expired)));
}

#[test]
fn private_events_go_to_their_stateful_client_only() {
    let mut b = broker(10);
    b.client_message(STATEFUL, FromClient::Hello(ClientHello::Stateful));
    b.client_message(
        STATELESS,
        FromClient::Hello(ClientHello::Stateless { last_ids: vec![] }),
    );
    let out = raise(&mut b, event(EventKind::Private, "P", 1));
    assert_eq!(
        deliveries(&out),
        vec![(STATEFUL, "P".to_string(), FIRST_ID)]
    );
    let mut stateless_target = event(EventKind::Private, "P", 2);
    stateless_target.client_id = Some(9);
    let out = raise(&mut b, stateless_target);
    assert!(matches!(out[..], [Out::Service(ToService::Rejected(_))]));
}

#[test]
fn stateful_clients_resume_after_the_last_acked_with_one_in_flight() {
    let mut b = broker(10);
    for n in 1..=3 {
        raise(&mut b, event(EventKind::Queueing, "Q", n));
    }
    b.client_message(STATEFUL, FromClient::Hello(ClientHello::Stateful));
    let q = |id| (STATEFUL, "Q".to_string(), FIRST_ID + id);
    assert_eq!(deliveries(&b.drain_outputs()), vec![q(0)], "one in flight");
    assert_eq!(
        deliveries(&ack(&mut b, STATEFUL, "Q", FIRST_ID)),
        vec![q(1)]
    );
    // A stale ack changes nothing.
    assert!(deliveries(&ack(&mut b, STATEFUL, "Q", FIRST_ID)).is_empty());
    // Not acked: resent after the timeout, and after a reconnect.
    b.set_now(Duration::from_secs(30));
    b.tick();
    assert_eq!(deliveries(&b.drain_outputs()), vec![q(1)]);
    b.client_disconnected(STATEFUL);
    b.client_message(STATEFUL, FromClient::Hello(ClientHello::Stateful));
    assert_eq!(deliveries(&b.drain_outputs()), vec![q(1)]);
    assert_eq!(
        deliveries(&ack(&mut b, STATEFUL, "Q", FIRST_ID + 1)),
        vec![q(2)]
    );
    ack(&mut b, STATEFUL, "Q", FIRST_ID + 2);
    assert!(!b.caught_up(), "the stateless client never connected");
}

#[test]
fn stateless_clients_resume_from_their_ids_or_the_head() {
    let mut b = broker(10);
    for n in 1..=3 {
        raise(&mut b, event(EventKind::Queueing, "Q", n));
    }
    raise(&mut b, event(EventKind::Replacing, "R", 4));
    b.drain_notes();
    b.client_message(
        STATELESS,
        FromClient::Hello(ClientHello::Stateless {
            last_ids: vec![("Q".into(), FIRST_ID + 1)],
        }),
    );
    let mut got = deliveries(&b.drain_outputs());
    got.sort();
    assert_eq!(
        got,
        vec![
            (STATELESS, "Q".to_string(), FIRST_ID + 2),
            (STATELESS, "R".to_string(), FIRST_ID)
        ]
    );
    // R had no id: its whole queue is redelivered from the head.
    assert!(b.drain_notes().contains(&Note::Redeliverable {
        client: STATELESS,
        uids: vec![Uuid::from_u128(4)]
    }));
    // Forgotten on disconnect: without ids, everything from the head.
    b.client_disconnected(STATELESS);
    b.client_message(
        STATELESS,
        FromClient::Hello(ClientHello::Stateless { last_ids: vec![] }),
    );
    let mut got = deliveries(&b.drain_outputs());
    got.sort();
    assert_eq!(
        got,
        vec![
            (STATELESS, "Q".to_string(), FIRST_ID),
            (STATELESS, "R".to_string(), FIRST_ID)
        ]
    );
}

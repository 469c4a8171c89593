//! Invariant: a level-2 failure while events are in flight never makes the
//! broker enqueue one of them twice. The store's new storage uid resets the
//! broker's duplicate detection, so the controller tells it only once no
//! event stored under the old uid is in flight (docs/PROTOCOL.md section
//! 2.9). Before, the new uid went out with the next event, and a resend of
//! an event in flight then reached the broker a second time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::{
    EventKind, Level, MemoryLog, ServiceController, ServiceOptions, ServiceOutput, Uuid,
};
use testkit::{open_flaky, Control};

fn sends(outputs: &[ServiceOutput]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| match o {
            ServiceOutput::SendEvent(e) => format!("event {}", e.name),
            ServiceOutput::SendStorageUid(u) => format!("uid {u}"),
            ServiceOutput::Rejected(e) => format!("rejected {}", e.name),
        })
        .collect()
}

fn controller() -> (ServiceController, Control, Uuid) {
    let control = Control::default();
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let store = open_flaky(&inner, &control, &ServiceOptions::default());
    let first = store.storage_uid();
    let mut c = ServiceController::with_timeout(Arc::new(store), Duration::from_secs(30));
    c.connected();
    c.online(None).unwrap();
    c.drain_outputs();
    (c, control, first)
}

#[test]
fn the_new_uid_waits_for_the_events_in_flight() {
    let (mut c, control, old) = controller();
    let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
    let b = c.raise(EventKind::Queueing, "B", b"1").unwrap();
    assert_eq!(sends(&c.drain_outputs()), ["event A", "event B"]);
    // The next append fails: level 2 is given up, and the pending events
    // (still readable) move to memory under a new storage uid.
    control.failing_appends.store(1, Ordering::SeqCst);
    c.raise(EventKind::Queueing, "C", b"1").unwrap();
    let store = c.store().clone();
    assert_eq!(store.level(), Level::Memory, "the raise fell back");
    assert_ne!(store.storage_uid(), old);
    assert!(
        c.drain_outputs().is_empty(),
        "nothing goes out under a uid the broker does not know"
    );
    c.tick(Duration::from_secs(31));
    assert_eq!(
        sends(&c.drain_outputs()),
        ["event A", "event B"],
        "resent under the old uid"
    );
    c.ack(a).unwrap();
    assert!(c.drain_outputs().is_empty(), "B is still in flight");
    c.ack(b).unwrap();
    let new = format!("uid {}", store.storage_uid());
    assert_eq!(sends(&c.drain_outputs()), [new.as_str(), "event C"]);
}

#[test]
fn after_a_reconnect_the_old_flights_go_first_then_the_new_uid() {
    let (mut c, control, old) = controller();
    let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
    c.drain_outputs();
    // The next append fails: level 2 is given up, and the pending events
    // (still readable) move to memory under a new storage uid.
    control.failing_appends.store(1, Ordering::SeqCst);
    c.raise(EventKind::Queueing, "C", b"1").unwrap();
    c.disconnected().unwrap();
    c.connected();
    // The broker remembers the uid the moved events were stored under.
    c.online(Some(old)).unwrap();
    assert_eq!(
        sends(&c.drain_outputs()),
        ["event A"],
        "in flight before, sent first"
    );
    c.ack(a).unwrap();
    let new = format!("uid {}", c.store().storage_uid());
    assert_eq!(sends(&c.drain_outputs()), [new.as_str(), "event C"]);
}

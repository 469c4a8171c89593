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

/// A controller over a store on a level 2 that fails on command, offline.
fn offline_controller() -> (ServiceController, Control, Uuid) {
    let control = Control::default();
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let store = open_flaky(&inner, &control, &ServiceOptions::default());
    let first = store.storage_uid();
    let mut c = ServiceController::with_timeout(Arc::new(store), Duration::from_secs(30));
    // The clock starts at 0 (the first tick sets the controller's origin).
    c.tick(Duration::ZERO);
    (c, control, first)
}

/// The same, online with an empty store (so in cache mode), the broker
/// told its storage uid.
fn controller() -> (ServiceController, Control, Uuid) {
    let (mut c, control, first) = offline_controller();
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

/// Found by the simulator (delivery table row 8, seed 7001019 of
/// `run_seeds(&config(7, ..), 1000)`): the same as above in storage mode.
/// The event in flight at the disconnect (A, stored and sent under the old
/// uid, perhaps queued by the broker) goes first at the next `online` (the
/// broker still remembers the old uid), under the old uid, and so do the
/// other events stored under it (B); only then is the new uid told, before
/// the events raised since (C). Before, the new uid went first and the
/// broker queued A a second time.
#[test]
fn after_a_reconnect_in_storage_mode_the_old_flight_goes_first_then_the_new_uid() {
    let (mut c, control, old) = offline_controller();
    let a = c.raise(EventKind::Queueing, "A", b"1").unwrap();
    c.raise(EventKind::Queueing, "B", b"1").unwrap();
    c.connected();
    c.online(None).unwrap();
    let told = format!("uid {old}");
    assert_eq!(
        sends(&c.drain_outputs()),
        [told.as_str(), "event A"],
        "the drain, in storage mode"
    );
    // Level 2 fails while A is in flight (the broker has queued it; its
    // ack is on the way).
    control.failing_appends.store(1, Ordering::SeqCst);
    c.raise(EventKind::Queueing, "C", b"1").unwrap();
    assert_ne!(c.store().storage_uid(), old, "fell back");
    c.disconnected().unwrap();
    c.connected();
    c.online(Some(old)).unwrap();
    assert_eq!(
        sends(&c.drain_outputs()),
        ["event A"],
        "A was in flight under the old uid: sent again under it, before the new uid"
    );
    c.ack(a).unwrap();
    assert_eq!(
        sends(&c.drain_outputs()),
        ["event B"],
        "B was stored under the old uid too"
    );
    let b = c.store().pending().unwrap()[0].uid;
    c.ack(b).unwrap();
    let new = format!("uid {}", c.store().storage_uid());
    assert_eq!(sends(&c.drain_outputs()), [new.as_str(), "event C"]);
}

/// Found by the simulator (row 8 with more seeds, e.g. 7000650): while
/// the controller waits to tell the new uid, an ack in cache mode makes the
/// store take the name's next event (R2) for in flight; the controller does
/// not send it then, so it releases it: a newer Replacing raise of the name
/// still supersedes R2 (docs/PROTOCOL.md section 2.3: at most the event in
/// flight and the newest pending instance). Before, R2 stayed taken and
/// the drain later delivered it too.
#[test]
fn an_event_held_back_for_the_new_uid_is_still_superseded() {
    let (mut c, control, _) = controller();
    let r1 = c.raise(EventKind::Replacing, "R", b"1").unwrap();
    c.raise(EventKind::Queueing, "X", b"1").unwrap();
    let r2 = c.raise(EventKind::Replacing, "R", b"2").unwrap();
    assert_eq!(sends(&c.drain_outputs()), ["event R", "event X"]);
    control.failing_appends.store(1, Ordering::SeqCst);
    c.raise(EventKind::Queueing, "Y", b"1").unwrap();
    c.ack(r1).unwrap();
    assert!(
        c.drain_outputs().is_empty(),
        "X is in flight under the old uid"
    );
    let before = c.store().stats().superseded_events;
    c.raise(EventKind::Replacing, "R", b"3").unwrap();
    let pending: Vec<Uuid> = c.store().pending().unwrap().iter().map(|e| e.uid).collect();
    assert!(
        !pending.contains(&r2),
        "R2 was never sent: R3 supersedes it (superseded {} -> {})",
        before,
        c.store().stats().superseded_events
    );
}

/// Found by the simulator (a level-2 failure with restarts: faults
/// `[Restart, Level2Failure]`, seed 99000326 of `SimConfig::new`): events
/// stored under the old uid that an earlier process sent (the broker
/// queued them; the acks died with the process) are not in flight for the
/// new controller. Level 2 fails during the drain after the restart. Every
/// event stored under the old uid is settled under it before the new uid
/// is told (docs/PROTOCOL.md section 2.9), so the broker recognises B (the
/// last uid it queued for B's name). Before, the new uid went out once the
/// one event in flight was acknowledged, and B was queued a second time.
#[test]
fn events_an_earlier_process_sent_go_before_the_new_uid() {
    let control = Control::default();
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    let options = ServiceOptions::default();
    let store = Arc::new(open_flaky(&inner, &control, &options));
    let old = store.storage_uid();
    let mut first = ServiceController::new(store.clone());
    first.connected();
    first.online(None).unwrap();
    let a = first.raise(EventKind::Queueing, "A", b"1").unwrap();
    first.raise(EventKind::Queueing, "B", b"1").unwrap();
    let told = format!("uid {old}");
    assert_eq!(
        sends(&first.drain_outputs()),
        [told.as_str(), "event A", "event B"],
        "the broker queues A and B; the acks are lost with the process"
    );
    drop(first);
    drop(store);
    // The application restarts and reopens its journal.
    let store = Arc::new(open_flaky(&inner, &control, &options));
    let mut c = ServiceController::new(store.clone());
    c.connected();
    c.online(Some(old)).unwrap();
    assert_eq!(sends(&c.drain_outputs()), ["event A"], "the drain");
    control.failing_appends.store(1, Ordering::SeqCst);
    c.raise(EventKind::Queueing, "C", b"1").unwrap();
    assert_ne!(store.storage_uid(), old, "fell back");
    c.ack(a).unwrap();
    let out = sends(&c.drain_outputs());
    assert_eq!(
        out.first().map(String::as_str),
        Some("event B"),
        "B was stored (and perhaps queued) under the old uid: {out:?}"
    );
}

/// A custom level 2 (kept across reopen) whose device can fail: writes
/// fail, reads still work.
mod failing_disk {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use softnet_persistence::{Error, MemoryLog, RecordLog, Removal, Result};

    pub(super) struct Disk(pub(super) Arc<Mutex<MemoryLog>>, pub(super) Arc<AtomicBool>);

    impl Disk {
        fn up(&self) -> Result<()> {
            if self.1.load(Ordering::SeqCst) {
                Err(Error::Backend("device gone".into()))
            } else {
                Ok(())
            }
        }
    }
    impl RecordLog for Disk {
        fn append(&mut self, payload: &[u8]) -> Result<u64> {
            self.up()?;
            self.0.lock().unwrap().append(payload)
        }
        fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
            self.up()?;
            self.0.lock().unwrap().remove(seq, why)
        }
        fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
            self.0.lock().unwrap().read(seq, out)
        }
        fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
            self.0.lock().unwrap().scan(visit)
        }
        fn commit(&mut self) -> Result<()> {
            self.up()
        }
        fn flush(&mut self) -> Result<()> {
            self.up()
        }
        fn clear(&mut self) -> Result<()> {
            self.up()?;
            self.0.lock().unwrap().clear()
        }
        fn metadata(&mut self) -> Result<Vec<u8>> {
            self.0.lock().unwrap().metadata()
        }
        fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
            self.up()?;
            self.0.lock().unwrap().set_metadata(meta)
        }
    }
}

/// Found while checking the yardstick of the delivery table (whose
/// fallback row strikes while online): a level-2 failure while the
/// endpoint is offline moves the pending events to level 1 under a new
/// storage uid and reports "lost 0"; at the next `online` the broker still
/// remembers the file's uid, so
/// the controller calls `invalidate_ancient()` and the moved events that
/// were in the file at open are discarded, though the broker's
/// duplicate-detection state is exactly theirs. They are counted in
/// `invalidated_events` but no failure report says they are gone.
///
/// docs/BEHAVIOUR.md section 3 read literally (uid differs: discard ancient data) would
/// allow it; section 5 ("we move the pending events that can still be read
/// into level 1 ... and report how many were lost") does not. Resolved: the
/// store remembers the uid it had before the fallback
/// (`ServiceStore::previous_storage_uid`), and `online` treats a broker that
/// remembers that uid as "equal": it sends the new uid and invalidates
/// nothing.
#[test]
fn fallback_while_offline_keeps_the_moved_events() {
    use failing_disk::Disk;
    use softnet_persistence::ServiceStore;
    use std::sync::atomic::AtomicBool;

    let data = Arc::new(Mutex::new(MemoryLog::new()));
    let broken = Arc::new(AtomicBool::new(false));
    let disk = || Box::new(Disk(data.clone(), broken.clone()));
    let options = ServiceOptions::default();
    // A first run: the broker learns the storage uid; two events stay
    // pending (say the network went down).
    let first = Arc::new(ServiceStore::open_custom(disk(), &options).unwrap());
    let remembered = first.storage_uid();
    let a = first.raise(EventKind::Queueing, "A", b"1").unwrap();
    let b = first.raise(EventKind::Queueing, "B", b"2").unwrap();
    drop(first);
    // Restart, still offline; the device fails on the next raise.
    let store = Arc::new(ServiceStore::open_custom(disk(), &options).unwrap());
    assert_eq!(store.storage_uid(), remembered);
    let mut controller = ServiceController::new(store.clone());
    broken.store(true, Ordering::SeqCst);
    let c = controller.raise(EventKind::Queueing, "C", b"3").unwrap();
    assert_eq!(
        store.stats().pending_events,
        3,
        "the fallback moved A and B"
    );
    // Back online: the broker remembers the uid A and B were stored under.
    controller.connected();
    controller.online(Some(remembered)).unwrap();
    let mut sent: Vec<Uuid> = Vec::new();
    let mut outputs = controller.drain_outputs();
    while let Some(out) = outputs.pop() {
        if let ServiceOutput::SendEvent(e) = out {
            sent.push(e.uid);
            controller.ack(e.uid).unwrap();
            outputs.extend(controller.drain_outputs());
        }
    }
    assert_eq!(
        sent,
        vec![a, b, c],
        "A and B survived the level-2 failure (reported: moved 2, lost 0) and must still \
         reach the broker; invalidated: {}",
        store.stats().invalidated_events
    );
}

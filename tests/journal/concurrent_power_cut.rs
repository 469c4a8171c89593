//! Invariant (issue 12, group commit): with several threads raising into
//! one `Sync` store, a power cut at any sync keeps every event whose raise
//! returned in any thread, in each thread's order, never brings back one
//! whose ack returned, and never invents one; the only reports are
//! interrupted writes (nothing lost) and no file is set aside as damaged.
//!
//! The store's syncs are shared here as on the real device: the simulated
//! device passes the map's syncer on (`testkit::power_cut`), so one sync
//! carries the records of several threads, and a cut during it can keep a
//! later record without an earlier one (a torn sync, which recovery must
//! tell from damage by the records' durable watermark).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use softnet_persistence::{
    Durability, Event, EventKind, Failure, FailureKind, Overflow, ServiceOptions, ServiceStore,
    Uuid,
};
use testkit::{collect_into, scratch_dir, PowerCut, Reports, Rng};

const SERVICE: Uuid = Uuid::from_u128(0x6C0_C0A1);
const THREADS: u64 = 6;
const ACKERS: u64 = 3;
const RAISES: u64 = 120;
const CAPACITY: usize = 65536;

fn options(cut: Option<&PowerCut>) -> ServiceOptions {
    ServiceOptions {
        // Small: the ring laps (wrap markers, relocations) during a run.
        capacity: CAPACITY,
        durability: Durability::Sync,
        // A full store refuses the raise: no event leaves but by its ack.
        overflow: Overflow::RejectNew,
        device_layer: cut.map(|c| c.layer()),
        ..ServiceOptions::default()
    }
}

/// Raiser `t`'s event name.
fn name(t: u64) -> String {
    format!("Sensor{t}")
}

/// Thread `t`'s raise number `i`: the uid says both.
fn uid(t: u64, i: u64) -> Uuid {
    Uuid::from_u128((u128::from(t) << 64) | u128::from(i + 1))
}

/// What the threads saw: each uid whose raise or ack returned, and whether
/// it returned before the cut's image was taken.
#[derive(Default)]
struct Seen {
    raised: Vec<(Uuid, bool)>,
    acked: Vec<(Uuid, bool)>,
    /// Acks begun (their uids), returned or not.
    acking: HashSet<Uuid>,
}

fn raiser(store: &ServiceStore, cut: &PowerCut, t: u64, seen: &Mutex<Seen>) {
    let mut rng = Rng(t * 7919 + 1);
    let mut i = 0;
    while i < RAISES {
        let event = Event {
            kind: EventKind::Queueing,
            name: name(t),
            args: vec![t as u8; 100 + rng.below(300) as usize],
            client_id: None,
            uid: uid(t, i),
            seq: 0,
            raised_at_ms: None,
        };
        match store.raise_event(&event) {
            Ok(_) => {
                let before = !cut.has_image();
                seen.lock().unwrap().raised.push((event.uid, before));
                i += 1;
            }
            // Full: the acker makes room.
            Err(_) => std::thread::yield_now(),
        }
    }
}

/// Acknowledges the oldest event (storage mode) while more than half the
/// capacity is pending, so that raises rarely find the store full (a raise
/// that needs room an ack in a running sync freed waits for that sync).
/// Several ackers share syncs too: the next event can be acknowledged while
/// the previous ack's sync runs (a late ack of the same event is refused).
fn acker(store: &ServiceStore, cut: &PowerCut, done: &AtomicBool, seen: &Mutex<Seen>) {
    while !done.load(Ordering::SeqCst) {
        if store.stats().used_bytes < CAPACITY as u64 / 2 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let Ok(Some(e)) = store.peek() else {
            // Nothing pending (cache mode now), or another acker's peek
            // found it so: back to storage mode.
            store.set_storage_mode().unwrap();
            continue;
        };
        seen.lock().unwrap().acking.insert(e.uid);
        if store.ack(e.uid).is_ok() {
            let before = !cut.has_image();
            seen.lock().unwrap().acked.push((e.uid, before));
        }
    }
}

/// Runs the threads on a fresh store with a cut armed at sync `at` (after
/// the open's syncs); returns what they saw, the image, the file name and
/// the syncs made.
fn run(at: u64, seed: u64) -> (Seen, Option<Vec<u8>>, OsString, u64) {
    let dir = scratch_dir();
    // A device whose syncs take a moment, as a real one's do: threads
    // find a sync running and share the next.
    let cut = PowerCut::with_sync_time(Duration::from_micros(300));
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(Some(&cut))).unwrap();
    let file_name = store
        .journal_path()
        .unwrap()
        .file_name()
        .unwrap()
        .to_owned();
    let base = cut.sync_count();
    // `at` is u64::MAX for a run with no cut.
    cut.arm(base.saturating_add(at), seed);
    let seen = Mutex::new(Seen::default());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let raisers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, cut, seen) = (&store, &cut, &seen);
                s.spawn(move || raiser(store, cut, t, seen))
            })
            .collect();
        for _ in 0..ACKERS {
            s.spawn(|| acker(&store, &cut, &done, &seen));
        }
        for r in raisers {
            r.join().unwrap();
        }
        done.store(true, Ordering::SeqCst);
    });
    assert!(
        store.journal_path().is_some(),
        "the store fell back to level 1"
    );
    let syncs = cut.sync_count() - base;
    (
        seen.into_inner().unwrap(),
        cut.take_image(),
        file_name,
        syncs,
    )
}

/// Opens the image; returns the pending uids, the reports and how many
/// files were set aside.
fn reopen(image: &[u8], name: &OsString) -> (Vec<Uuid>, Vec<Failure>, usize) {
    let dir = scratch_dir();
    std::fs::write(dir.path().join(name), image).unwrap();
    let reports = Reports::default();
    let options = ServiceOptions {
        on_failure: Some(collect_into(&reports)),
        ..options(None)
    };
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options).unwrap();
    let pending = store.pending().unwrap().iter().map(|e| e.uid).collect();
    let aside = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".corrupt-")
        })
        .count();
    let reports = reports.lock().unwrap().clone();
    (pending, reports, aside)
}

fn check(seen: &Seen, pending: &[Uuid], reports: &[Failure], aside: usize, context: &str) {
    for r in reports {
        let fine = r.kind == FailureKind::InterruptedWrite && r.events_lost == 0;
        assert!(fine, "{context}: unexpected report {r}");
    }
    assert_eq!(aside, 0, "{context}: a file was set aside as damaged");
    let raised: HashMap<Uuid, bool> = seen.raised.iter().copied().collect();
    let got: HashSet<Uuid> = pending.iter().copied().collect();
    assert_eq!(got.len(), pending.len(), "{context}: a duplicate");
    for u in pending {
        // A raise in progress at the cut may be there without having
        // returned: it is one of the threads' next uids.
        let (t, i) = ((u.as_u128() >> 64) as u64, u.as_u128() as u64);
        assert!(
            t < THREADS && (1..=RAISES).contains(&i),
            "{context}: invented {u}"
        );
    }
    for (&u, &before) in &raised {
        if before && !seen.acking.contains(&u) {
            assert!(
                got.contains(&u),
                "{context}: lost {u}, whose raise returned"
            );
        }
    }
    for &(u, before) in &seen.acked {
        assert!(
            !(before && got.contains(&u)),
            "{context}: acked {u} came back"
        );
    }
    // Each thread's events in its raise order, and the store's order
    // (raise order) agrees with every thread's.
    let mut last: HashMap<u64, u128> = HashMap::new();
    for u in pending {
        let (t, i) = ((u.as_u128() >> 64) as u64, u.as_u128() as u64 as u128);
        let before = last.insert(t, i).unwrap_or(0);
        assert!(i > before, "{context}: thread {t}'s events out of order");
    }
}

#[test]
fn concurrent_raisers_keep_every_returned_raise_across_a_cut_at_any_sync() {
    let (clean, _, _, total) = run(u64::MAX, 1);
    let ops = (clean.raised.len() + clean.acked.len()) as u64;
    println!("concurrent power cut: {ops} operations in {total} syncs");
    assert!(
        total < ops,
        "no sync was shared: {total} syncs for {ops} operations"
    );
    let mut rng = Rng(0x9C_0FF);
    let (mut cuts, mut torn) = (0, 0);
    for seed in 1..=60u64 {
        let at = 1 + rng.below(total * 3 / 4);
        let (seen, image, name, _) = run(at, seed);
        let Some(image) = image else {
            continue; // this run made fewer syncs
        };
        let (pending, reports, aside) = reopen(&image, &name);
        let context = format!("seed {seed}, cut at sync {at}");
        check(&seen, &pending, &reports, aside, &context);
        cuts += 1;
        torn += reports
            .iter()
            .filter(|r| r.message.contains("middle"))
            .count();
    }
    println!("concurrent power cut: {cuts} cuts checked, {torn} torn syncs repaired");
    assert!(cuts >= 40, "only {cuts} of 60 armed cuts happened");
}

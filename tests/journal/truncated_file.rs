//! Invariant: another program truncating a store's open file (to 0 bytes or
//! to half its length) never crashes the process (without the library's
//! SIGBUS handler, the next access to a lost page kills it with SIGBUS).
//! The store notices at the first access to a lost page, falls back to
//! level 1 with one Fallback report naming the file, keeps every event it
//! can still read, counts the others lost, and keeps working at level 1.
//! Every raised event ends up acknowledged, reported lost, or still
//! pending with its bytes intact, never invented.
//!
//! The truncation is done the way another program would: `set_len` on a
//! second handle of the file (the lock is advisory), or a real child
//! process running `truncate(1)`. Run with `--nocapture` to see the
//! measured outcome of each scenario.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Command;

use softnet_persistence::{
    ClientStore, Durability, EventKind, Failure, FailureKind, Level, Overflow, ServiceOptions,
    ServiceStore, Uuid,
};
use testkit::{client_options, collect_into, scratch_dir, Reports};

/// How the file is cut.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `set_len(0)` from this process.
    ToZero,
    /// `set_len(len / 2)` from this process.
    ToHalf,
    /// `truncate -s 0` run as a child process.
    ChildToZero,
    /// `truncate -s <len / 2>` run as a child process.
    ChildToHalf,
}

/// Store calls allowed before the store must have noticed the cut: enough
/// to send the ring's head around the whole file.
const MAX_STEPS: usize = 5000;

fn cut(path: &Path, how: Cut) {
    let len = std::fs::metadata(path).unwrap().len();
    let to = match how {
        Cut::ToZero | Cut::ChildToZero => 0,
        Cut::ToHalf | Cut::ChildToHalf => len / 2,
    };
    match how {
        Cut::ToZero | Cut::ToHalf => {
            let other = OpenOptions::new().write(true).open(path).unwrap();
            other.set_len(to).unwrap();
        }
        Cut::ChildToZero | Cut::ChildToHalf => {
            let status = Command::new("truncate")
                .arg("-s")
                .arg(to.to_string())
                .arg(path)
                .status()
                .expect("run truncate(1)");
            assert!(status.success(), "truncate(1) failed: {status}");
        }
    }
    assert_eq!(std::fs::metadata(path).unwrap().len(), to);
}

/// The one Fallback report, which must name `path` and say why.
fn the_fallback(reports: &Reports, path: &Path) -> Failure {
    let all = reports.lock().unwrap().clone();
    let fallbacks: Vec<&Failure> = all
        .iter()
        .filter(|f| f.kind == FailureKind::Fallback)
        .collect();
    assert_eq!(fallbacks.len(), 1, "one fallback report expected: {all:#?}");
    let f = fallbacks[0].clone();
    assert!(
        f.message.contains(&path.display().to_string()),
        "the report must name the file: {}",
        f.message
    );
    assert!(
        f.message.contains("truncated by another program"),
        "the report must say why: {}",
        f.message
    );
    f
}

/// "moved N pending event(s)" of a service fallback report.
fn moved(report: &Failure) -> u64 {
    let after = report.message.split("moved ").nth(1).unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

/// The events of one service scenario, for the final accounting.
#[derive(Default)]
struct Ledger {
    /// uid -> arguments, of every successful raise.
    raised: HashMap<Uuid, Vec<u8>>,
    acked: HashSet<Uuid>,
}

impl Ledger {
    fn raise(&mut self, store: &ServiceStore) {
        let n = self.raised.len() as u32;
        let args: Vec<u8> = n.to_le_bytes().iter().copied().cycle().take(300).collect();
        let uid = store.raise(EventKind::Queueing, "Meter", &args).unwrap();
        self.raised.insert(uid, args);
    }

    /// Peek and ack the oldest pending event, if any.
    fn deliver_one(&mut self, store: &ServiceStore) {
        store.set_storage_mode().unwrap();
        if let Some(e) = store.peek().unwrap() {
            assert_eq!(Some(&e.args), self.raised.get(&e.uid), "an event changed");
            store.ack(e.uid).unwrap();
            assert!(self.acked.insert(e.uid), "acknowledged twice");
        }
    }
}

fn service_scenario(durability: Durability, how: Cut) {
    let dir = scratch_dir();
    let reports = Reports::default();
    let options = ServiceOptions {
        capacity: 64 * 1024,
        memory_capacity: 1 << 20,
        durability,
        overflow: Overflow::RejectNew,
        on_failure: Some(collect_into(&reports)),
        ..ServiceOptions::default()
    };
    let store = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options).unwrap();
    let path = store.journal_path().unwrap();
    let mut ledger = Ledger::default();
    // Records over most of the ring, so half the file holds some of them.
    for _ in 0..150 {
        ledger.raise(&store);
    }
    for _ in 0..10 {
        ledger.deliver_one(&store);
    }
    assert_eq!(store.stats().level, Level::Persistent);
    let pending_at_cut = store.stats().pending_events;

    cut(&path, how);
    let mut steps = 0;
    while store.level() == Level::Persistent {
        assert!(steps < MAX_STEPS, "{how:?}: the cut was never noticed");
        ledger.raise(&store);
        ledger.deliver_one(&store);
        steps += 1;
    }
    let report = the_fallback(&reports, &path);
    assert_eq!(store.stats().level, Level::Memory);
    assert!(store.journal_path().is_none());
    match how {
        // Nothing of the file is left to read.
        Cut::ToZero | Cut::ChildToZero => assert_eq!(moved(&report), 0, "{how:?}"),
        // The records in the first half are kept, the others lost.
        Cut::ToHalf | Cut::ChildToHalf => {
            assert!(moved(&report) > 0 && report.events_lost > 0, "{report:?}")
        }
    }
    for _ in 0..20 {
        ledger.raise(&store);
    }
    ledger.deliver_one(&store);

    // Every event is acknowledged, reported lost, or pending and intact.
    let mut pending = 0u64;
    while let Some(e) = store.peek().unwrap() {
        assert_eq!(Some(&e.args), ledger.raised.get(&e.uid), "an event changed");
        assert!(
            !ledger.acked.contains(&e.uid),
            "an acknowledged event came back"
        );
        store.ack(e.uid).unwrap();
        pending += 1;
    }
    let stats = store.stats();
    assert_eq!(stats.level, Level::Memory);
    assert_eq!(stats.dropped_events, 0);
    assert_eq!(stats.events_lost, report.events_lost);
    let raised = ledger.raised.len() as u64;
    let acked = ledger.acked.len() as u64;
    assert_eq!(
        raised,
        acked + report.events_lost + pending,
        "{how:?}: every event acknowledged, lost or pending"
    );
    println!(
        "service {durability:?} {how:?}: {pending_at_cut} pending at the cut, noticed after \
         {steps} step(s); fallback moved {} and lost {}; {raised} raised in all, {acked} \
         acknowledged, {pending} drained at the end",
        moved(&report),
        report.events_lost
    );
}

#[test]
fn service_none_cut_to_zero() {
    service_scenario(Durability::None, Cut::ToZero);
}

#[test]
fn service_none_cut_to_half() {
    service_scenario(Durability::None, Cut::ToHalf);
}

#[test]
fn service_none_cut_to_zero_by_a_child_process() {
    service_scenario(Durability::None, Cut::ChildToZero);
}

#[test]
fn service_none_cut_to_half_by_a_child_process() {
    service_scenario(Durability::None, Cut::ChildToHalf);
}

#[test]
fn service_sync_cut_to_zero() {
    service_scenario(Durability::Sync, Cut::ToZero);
}

#[test]
fn service_sync_cut_to_half() {
    service_scenario(Durability::Sync, Cut::ToHalf);
}

#[test]
fn service_sync_cut_to_zero_by_a_child_process() {
    service_scenario(Durability::Sync, Cut::ChildToZero);
}

#[test]
fn service_sync_cut_to_half_by_a_child_process() {
    service_scenario(Durability::Sync, Cut::ChildToHalf);
}

const SERVER: &str = "broker.local";
const KEY: &str = "truncated";
const NAMES: usize = 20;

fn client_scenario(durability: Durability, how: Cut) {
    let dir = scratch_dir();
    let reports = Reports::default();
    let options = client_options(durability, &reports);
    let store = ClientStore::open_file(dir.path(), SERVER, KEY, &options).unwrap();
    let path = store.file_path().unwrap();
    let mut ids: HashMap<String, i64> = HashMap::new();
    let mut next = 1i64;
    let mut put = |store: &ClientStore| {
        let name = format!("Subscription/{}", next as usize % NAMES);
        store.put(&name, next).unwrap();
        ids.insert(name, next);
        next += 1;
    };
    for _ in 0..NAMES {
        put(&store);
    }
    assert_eq!(store.level(), Level::Persistent);

    cut(&path, how);
    let mut steps = 0;
    while store.level() == Level::Persistent {
        assert!(steps < MAX_STEPS, "{how:?}: the cut was never noticed");
        put(&store);
        steps += 1;
    }
    let report = the_fallback(&reports, &path);
    assert_eq!(report.events_lost, 0, "a client keeps every id in memory");
    assert!(store.file_path().is_none());
    for _ in 0..NAMES {
        put(&store);
    }
    assert_eq!(store.stats().level, Level::Memory);
    for (name, id) in &ids {
        assert_eq!(store.get(name).unwrap(), Some(*id), "{name}");
    }
    println!(
        "client {durability:?} {how:?}: noticed after {steps} put(s); {} puts in all, {} ids \
         kept, 0 lost",
        next - 1,
        ids.len()
    );
}

#[test]
fn client_none_cut_to_zero() {
    client_scenario(Durability::None, Cut::ToZero);
}

#[test]
fn client_none_cut_to_half() {
    client_scenario(Durability::None, Cut::ToHalf);
}

#[test]
fn client_none_cut_to_zero_by_a_child_process() {
    client_scenario(Durability::None, Cut::ChildToZero);
}

#[test]
fn client_none_cut_to_half_by_a_child_process() {
    client_scenario(Durability::None, Cut::ChildToHalf);
}

#[test]
fn client_sync_cut_to_zero() {
    client_scenario(Durability::Sync, Cut::ToZero);
}

#[test]
fn client_sync_cut_to_half() {
    client_scenario(Durability::Sync, Cut::ToHalf);
}

#[test]
fn client_sync_cut_to_zero_by_a_child_process() {
    client_scenario(Durability::Sync, Cut::ChildToZero);
}

#[test]
fn client_sync_cut_to_half_by_a_child_process() {
    client_scenario(Durability::Sync, Cut::ChildToHalf);
}

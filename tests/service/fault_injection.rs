//! Invariant: a level-2 backend failing at any call (once, or from that call
//! on) never makes the store panic or misbehave: it falls back to level 1,
//! reports it, and the application sees the same results and the same
//! pending events as without the failure, except for events that could no
//! longer be read from the failed backend.
//!
//! One fixed scenario runs against a counting backend; for every N from 1
//! to the number of backend calls the clean scenario makes, the N-th call
//! fails, and the run is compared with the clean run (or, where the failure
//! makes events unreadable, with the clean run minus exactly those events).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use softnet_persistence::{
    Error, Event, EventKind, Failure, FailureKind, Level, MemoryLog, RecordLog, Removal, Result,
    ServiceOptions, ServiceStats, ServiceStore, Uuid,
};
use testkit::{collect_into, panic_message, Fault, Reports};

/// Counts every backend call and fails the planned ones.
struct Plan {
    fault: Fault,
    calls: AtomicU64,
    methods: Mutex<Vec<&'static str>>,
}

impl Plan {
    fn new(fault: Fault) -> Arc<Plan> {
        Arc::new(Plan {
            fault,
            calls: AtomicU64::new(0),
            methods: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn gate(&self, method: &'static str) -> Result<()> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.methods.lock().unwrap().push(method);
        if !self.fault.fails(n) {
            return Ok(());
        }
        // Both ways a backend can fail: an OS error and a custom one.
        Err(if n % 2 == 1 {
            Error::Io {
                context: format!("{method} on the test device (call {n})"),
                source: std::io::Error::other("injected I/O error"),
            }
        } else {
            Error::Backend(format!("injected failure of {method} (call {n})"))
        })
    }
}

/// A custom level-2 backend: a [`MemoryLog`] behind a fault plan.
struct FaultLog {
    inner: Arc<Mutex<MemoryLog>>,
    plan: Arc<Plan>,
}

impl RecordLog for FaultLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.plan.gate("append")?;
        self.inner.lock().unwrap().append(payload)
    }
    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        self.plan.gate("remove")?;
        self.inner.lock().unwrap().remove(seq, why)
    }
    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        self.plan.gate("read")?;
        self.inner.lock().unwrap().read(seq, out)
    }
    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        self.plan.gate("scan")?;
        self.inner.lock().unwrap().scan(visit)
    }
    fn barrier(&mut self) -> Result<()> {
        self.plan.gate("barrier")?;
        self.inner.lock().unwrap().barrier()
    }
    fn commit(&mut self) -> Result<()> {
        self.plan.gate("commit")?;
        self.inner.lock().unwrap().commit()
    }
    fn flush(&mut self) -> Result<()> {
        self.plan.gate("flush")?;
        self.inner.lock().unwrap().flush()
    }
    fn clear(&mut self) -> Result<()> {
        self.plan.gate("clear")?;
        self.inner.lock().unwrap().clear()
    }
    fn metadata(&mut self) -> Result<Vec<u8>> {
        self.plan.gate("metadata")?;
        self.inner.lock().unwrap().metadata()
    }
    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        self.plan.gate("set_metadata")?;
        self.inner.lock().unwrap().set_metadata(meta)
    }
}

/// One step of the scenario.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Raise with a deterministic uid; the number is the argument length.
    Raise(EventKind, &'static str, usize),
    Peek,
    /// Ack the uid the last `peek` returned.
    Ack,
    /// Ack a uid that is not in flight.
    AckStale,
    PeekName(EventKind, &'static str),
    /// Ack the name's event in flight (as last returned for it).
    AckName(EventKind, &'static str),
    SetStorageMode,
    InvalidateAncient,
    Reset,
    Flush,
}

use EventKind::{Private as P, Queueing as Q, Replacing as R, ReplacingNull as RN};

/// The fixed scenario (the final drain is added by the runner).
fn scenario() -> Vec<Op> {
    use Op::*;
    let mut ops = vec![
        // Offline: new events queue behind the ancient ones.
        Raise(Q, "Temp", 8),
        Raise(R, "Door", 4), // supersedes the ancient Door
        Peek,
        // Online with a new broker: the ancient data goes, the one in
        // flight included.
        InvalidateAncient,
        Ack, // stale now: refused
        Peek,
        Raise(R, "Door", 5), // supersedes the pending Door
        Ack,
        Peek, // Door in flight
        Raise(R, "Door", 6),
        Raise(RN, "Door", 0), // supersedes the 6, never the one in flight
        Raise(P, "Cmd", 3),
        Peek,
        AckStale,
        Ack,
        Peek,
        Ack,
        Peek,
        Ack,
        Peek, // drained: cache mode
        // Cache mode: names in parallel.
        Raise(R, "Door", 1),
        PeekName(R, "Door"),
        Raise(R, "Door", 2),
        Raise(R, "Door", 3), // replaces the pending one
        Raise(Q, "Temp", 1),
        Raise(Q, "Temp", 2),
        Raise(Q, "Pressure", 9),
        PeekName(Q, "Temp"),
        AckName(Q, "Temp"),
        PeekName(Q, "Pressure"),
        AckName(Q, "Pressure"), // the newest record goes first
        Peek,                   // wrong mode: refused
        AckName(R, "Door"),
        AckStale,
        Raise(P, "Cmd", 2),
        Raise(Q, "Temp", 3),
        Flush,
        // Disconnect: storage mode, resend from the oldest.
        SetStorageMode,
        Peek,
        Raise(R, "Door", 7),
        Ack,
        Peek,
        Reset, // the application gives up its backlog
        Ack,   // stale after the reset
        Raise(Q, "Temp", 4),
    ];
    // Overfill: every raise past the capacity drops the oldest, a big one
    // drops several at once, a collapse in between.
    for i in 0..70 {
        ops.push(Raise(Q, "Bulk", 100));
        if i % 17 == 5 {
            ops.push(Raise(Q, "Big", 2048));
        }
        if i % 11 == 3 {
            ops.push(Raise(R, "Door", 30));
        }
        if i % 23 == 9 {
            ops.push(Peek);
            ops.push(Ack);
        }
    }
    ops.extend([Flush, Peek, Ack, Peek, Raise(RN, "Door", 0), Ack]);
    ops
}

/// What the backend holds before the measured store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initial {
    /// Nothing: the store creates its metadata.
    Fresh,
    /// Ancient events left by an earlier store (and its metadata).
    Ancient,
}

const CAPACITY: usize = 8192;

fn uid_for(serial: u64) -> Uuid {
    Uuid::from_u128(0x0000_fa17_0000_4000_8000_0000_0000_0000 | u128::from(serial))
}

/// Fills the backend with ancient events through an unfailing store.
fn prepare(inner: &Arc<Mutex<MemoryLog>>, initial: Initial) {
    if initial == Initial::Fresh {
        return;
    }
    let log = FaultLog {
        inner: inner.clone(),
        plan: Plan::new(Fault::Never),
    };
    let options = ServiceOptions {
        capacity: CAPACITY,
        ..Default::default()
    };
    let store = ServiceStore::open_custom(Box::new(log), &options).unwrap();
    let raise = |serial: u64, kind: EventKind, name: &str, args: &[u8]| {
        let client_id = (kind == P).then_some(1);
        let event = Event {
            kind,
            name: name.into(),
            args: args.to_vec(),
            client_id,
            uid: uid_for(serial),
            seq: 0,
            raised_at_ms: None,
        };
        store.raise_event(&event).unwrap();
    };
    raise(1, Q, "Temp", b"old0");
    raise(2, R, "Door", b"old");
    raise(3, P, "Cmd", b"old");
    raise(4, Q, "Temp", b"old1");
    raise(5, RN, "Alarm", b"");
    let head = store.peek().unwrap().unwrap();
    assert_eq!(head.uid, uid_for(1));
    store.ack(head.uid).unwrap();
    assert_eq!(store.stats().pending_events, 4);
}

/// Everything a run produced that the application can observe.
struct Run {
    outcomes: Vec<String>,
    /// Error messages per step (not compared).
    details: Vec<String>,
    /// The pending events at the end, as the final drain delivered them.
    delivered: Vec<Uuid>,
    level: Level,
    reports: Vec<Failure>,
    stats: ServiceStats,
    /// Backend calls made before step k (step 0 is the first op; the calls
    /// of the open come before it).
    boundaries: Vec<u64>,
    methods: Vec<&'static str>,
}

struct Runner {
    store: ServiceStore,
    plan: Arc<Plan>,
    reset_before: Option<usize>,
    step: usize,
    serial: u64,
    last_peek: Option<Uuid>,
    flights: HashMap<(u8, &'static str), Uuid>,
    outcomes: Vec<String>,
    details: Vec<String>,
    boundaries: Vec<u64>,
}

/// The error message of a failed step, for diagnostics only (messages may
/// name storage uids, which legitimately differ between runs).
fn note<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// The error kind of a step's result (what is compared), keeping the
/// message in `detail`.
fn noted<T>(r: &Result<T>, detail: &mut String) -> String {
    *detail = note(r);
    err_kind(r)
}

fn err_kind<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

impl Runner {
    /// Applies one op and records what the application saw. Returns the
    /// uid a successful `Peek` returned.
    fn apply(&mut self, op: Op) -> Option<Uuid> {
        if self.reset_before == Some(self.step) {
            self.store.reset().expect("reset in a reference run");
        }
        self.boundaries.push(self.plan.calls());
        self.step += 1;
        let store = &self.store;
        let family = |k: EventKind| if k == RN { R.code() } else { k.code() };
        let mut detail = String::new();
        let (outcome, peeked) = match op {
            Op::Raise(kind, name, len) => {
                self.serial += 1;
                let event = Event {
                    kind,
                    name: name.into(),
                    args: vec![(self.serial % 251) as u8; len],
                    client_id: (kind == P).then_some(self.serial as i64 * 1000 - 7),
                    uid: uid_for(1000 + self.serial),
                    seq: 0,
                    raised_at_ms: None,
                };
                let r = store.raise_event(&event);
                (
                    format!(
                        "raise {kind} {name} {}: {}",
                        event.uid,
                        noted(&r, &mut detail)
                    ),
                    None,
                )
            }
            Op::Peek => match store.peek() {
                Ok(Some(e)) => {
                    self.last_peek = Some(e.uid);
                    (format!("peek {} {} {}", e.uid, e.kind, e.name), Some(e.uid))
                }
                Ok(None) => ("peek none".into(), None),
                r => (format!("peek {}", noted(&r, &mut detail)), None),
            },
            Op::Ack => {
                let uid = self.last_peek.unwrap_or_else(Uuid::nil);
                let r = store.ack(uid);
                // The uid acked is the one the last peek showed.
                (format!("ack: {}", noted(&r, &mut detail)), None)
            }
            Op::AckStale => {
                let r = store.ack(uid_for(999_999));
                (format!("stale ack: {}", noted(&r, &mut detail)), None)
            }
            Op::PeekName(kind, name) => match store.peek_name(kind, name) {
                Ok(Some(e)) => {
                    self.flights.insert((family(kind), name), e.uid);
                    (format!("peek_name {name} {}", e.uid), None)
                }
                r => (
                    format!("peek_name {name}: {}", noted(&r, &mut detail)),
                    None,
                ),
            },
            Op::AckName(kind, name) => {
                let key = (family(kind), name);
                let uid = self.flights.get(&key).copied().unwrap_or_else(Uuid::nil);
                match store.ack_name(kind, name, uid) {
                    Ok(Some(next)) => {
                        self.flights.insert(key, next.uid);
                        (format!("ack_name {name} -> {}", next.uid), None)
                    }
                    Ok(None) => {
                        self.flights.remove(&key);
                        (format!("ack_name {name} -> none"), None)
                    }
                    r => (
                        format!("ack_name {name} {uid}: {}", noted(&r, &mut detail)),
                        None,
                    ),
                }
            }
            Op::SetStorageMode => {
                let r = store.set_storage_mode();
                (format!("storage mode: {}", noted(&r, &mut detail)), None)
            }
            Op::InvalidateAncient => match store.invalidate_ancient() {
                Ok(n) => (format!("invalidated {n}"), None),
                r => (format!("invalidate: {}", noted(&r, &mut detail)), None),
            },
            Op::Reset => {
                let r = store.reset();
                (format!("reset: {}", noted(&r, &mut detail)), None)
            }
            Op::Flush => {
                let r = store.flush();
                (format!("flush: {}", noted(&r, &mut detail)), None)
            }
        };
        self.outcomes.push(outcome);
        self.details.push(detail);
        peeked
    }
}

fn run(initial: Initial, fault: Fault, reset_before: Option<usize>) -> Run {
    let inner = Arc::new(Mutex::new(MemoryLog::new()));
    prepare(&inner, initial);
    let plan = Plan::new(fault);
    let reports = Reports::default();
    let options = ServiceOptions {
        capacity: CAPACITY,
        // The same capacity at level 1, so a fallback drops nothing more.
        memory_capacity: CAPACITY,
        on_failure: Some(collect_into(&reports)),
        ..Default::default()
    };
    let log = FaultLog {
        inner,
        plan: plan.clone(),
    };
    let store = ServiceStore::open_custom(Box::new(log), &options)
        .expect("a backend failure at open is a fallback, not an error");
    let mut runner = Runner {
        store,
        plan: plan.clone(),
        reset_before,
        step: 0,
        serial: 0,
        last_peek: None,
        flights: HashMap::new(),
        outcomes: Vec::new(),
        details: Vec::new(),
        boundaries: Vec::new(),
    };
    for op in scenario() {
        runner.apply(op);
    }
    // The final drain: everything still pending, in order.
    runner.apply(Op::SetStorageMode);
    let mut delivered = Vec::new();
    for _ in 0..1000 {
        match runner.apply(Op::Peek) {
            Some(uid) => {
                delivered.push(uid);
                runner.apply(Op::Ack);
            }
            None => break,
        }
    }
    let level = runner.store.level();
    let stats = runner.store.stats();
    let boundaries = runner.boundaries.clone();
    let outcomes = std::mem::take(&mut runner.outcomes);
    let details = std::mem::take(&mut runner.details);
    drop(runner);
    let methods = plan.methods.lock().unwrap().clone();
    let reports = reports.lock().unwrap().clone();
    Run {
        outcomes,
        details,
        delivered,
        level,
        reports,
        stats,
        boundaries,
        methods,
    }
}

fn reported(run: &Run, kind: FailureKind) -> Vec<&Failure> {
    run.reports.iter().filter(|r| r.kind == kind).collect()
}

/// The step during which call `n` happened (0 for the open).
fn step_of(clean: &Run, n: u64) -> usize {
    clean.boundaries.iter().rposition(|&b| b < n).unwrap_or(0)
}

/// Every way `run` differs from `expected`, as messages; the outcome of
/// step `skip` (if any) is not compared.
fn differences(what: &str, run: &Run, expected: &Run, skip: Option<usize>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = (0..run.outcomes.len().max(expected.outcomes.len()))
        .find(|&i| Some(i) != skip && run.outcomes.get(i) != expected.outcomes.get(i))
    {
        out.push(format!(
            "{what}: step {i} saw {:?} ({:?}), expected {:?}",
            run.outcomes.get(i),
            run.details.get(i),
            expected.outcomes.get(i)
        ));
    }
    if run.delivered != expected.delivered {
        out.push(format!(
            "{what}: final pending events differ: {} delivered, expected {} (first difference at \
             {:?})",
            run.delivered.len(),
            expected.delivered.len(),
            (0..run.delivered.len().max(expected.delivered.len()))
                .find(|&i| run.delivered.get(i) != expected.delivered.get(i))
        ));
    }
    out
}

/// Checks what holds for every run, failed or not.
fn common_checks(what: &str, run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let drop_reports: u64 = reported(run, FailureKind::CapacityDrop)
        .iter()
        .map(|r| r.events_lost)
        .sum();
    if drop_reports != run.stats.dropped_events {
        out.push(format!(
            "{what}: {} events dropped but {drop_reports} reported",
            run.stats.dropped_events
        ));
    }
    if run.stats.used_bytes > run.stats.capacity_bytes {
        out.push(format!("{what}: over capacity: {:?}", run.stats));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = run.delivered.iter().find(|u| !seen.insert(**u)) {
        out.push(format!("{what}: event {dup} delivered twice"));
    }
    out
}

fn clean_run(initial: Initial) -> Run {
    let clean = run(initial, Fault::Never, None);
    assert_eq!(clean.level, Level::Persistent);
    assert!(
        reported(&clean, FailureKind::Fallback).is_empty(),
        "{:?}",
        clean.reports
    );
    assert_eq!(clean.stats.failures, 0);
    let problems = common_checks("clean run", &clean);
    assert!(problems.is_empty(), "{problems:#?}");
    clean
}

#[test]
fn the_clean_scenario_exercises_every_path() {
    for initial in [Initial::Ancient, Initial::Fresh] {
        let clean = clean_run(initial);
        let k = clean.methods.len();
        assert!(k > 300, "{initial:?}: {k} calls");
        let mut expected_methods = vec![
            "append", "remove", "read", "scan", "barrier", "commit", "flush", "clear", "metadata",
        ];
        if initial == Initial::Fresh {
            expected_methods.push("set_metadata");
        }
        for m in expected_methods {
            assert!(clean.methods.contains(&m), "{initial:?}: no call to {m}");
        }
        let has = |s: &str| clean.outcomes.iter().any(|o| o.contains(s));
        // The scenario does what its comments say.
        if initial == Initial::Ancient {
            assert!(has("invalidated 3"), "{:#?}", clean.outcomes);
        }
        assert!(has("stale ack: State"));
        assert!(has("peek State"), "a wrong-mode peek");
        assert!(has("-> none"));
        assert!(clean.stats.dropped_events > 10, "{:?}", clean.stats);
        assert!(clean.stats.superseded_events > 3, "{:?}", clean.stats);
        assert!(clean.delivered.len() > 20, "{}", clean.delivered.len());
        assert!(clean
            .outcomes
            .iter()
            .filter(|o| o.starts_with("raise"))
            .all(|o| o.ends_with(": ok")));
    }
}

fn catch(what: &str, f: impl FnOnce() -> Run) -> std::result::Result<Run, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = panic_message(&*p).unwrap_or_default();
        format!("{what}: panicked: {msg}")
    })
}

/// What the application was doing when call `n` happened, for grouping.
fn doing(clean: &Run, n: u64) -> String {
    if n <= clean.boundaries[0] {
        return "open".into();
    }
    let ops = scenario();
    match ops.get(step_of(clean, n)) {
        Some(Op::Raise(kind, ..)) => format!("raise {kind}"),
        Some(Op::PeekName(..)) => "peek_name".into(),
        Some(Op::AckName(..)) => "ack_name".into(),
        Some(op) => format!("{op:?}"),
        None => "final drain".into(),
    }
}

/// Problems grouped by what failed during what, one example per group.
#[derive(Default)]
struct Problems {
    groups: std::collections::BTreeMap<(String, &'static str), (usize, String)>,
    total: usize,
}

impl Problems {
    fn add(&mut self, doing: String, method: &'static str, found: Vec<String>) {
        if found.is_empty() {
            return;
        }
        self.total += 1;
        let group = self
            .groups
            .entry((doing, method))
            .or_insert_with(|| (0, found.join("\n      ")));
        group.0 += 1;
    }

    fn assert_none(&self) {
        if self.total == 0 {
            return;
        }
        let mut text = format!("{} failing run(s):\n", self.total);
        for ((doing, method), (count, example)) in &self.groups {
            text.push_str(&format!(
                "  {count} x {method} failing during {doing}, e.g.\n      {example}\n"
            ));
        }
        panic!("{text}");
    }
}

/// Runs `go`, the scenario with call `n` failing. A panic is added to
/// `all` as the run's problem (and gives `None`); otherwise returns the run
/// with the problems any faulty run can have: still at level 2, or not
/// exactly one fallback report.
fn faulty_run(
    all: &mut Problems,
    clean: &Run,
    n: u64,
    what: &str,
    go: impl FnOnce() -> Run,
) -> Option<(Run, Vec<String>)> {
    let method = clean.methods[n as usize - 1];
    let mut problems = Vec::new();
    let faulty = match catch(what, go) {
        Ok(r) => r,
        Err(e) => {
            all.add(doing(clean, n), method, vec![e]);
            return None;
        }
    };
    if faulty.level != Level::Memory {
        problems.push(format!("{what}: still at {:?}", faulty.level));
    }
    let fallbacks = reported(&faulty, FailureKind::Fallback);
    if fallbacks.len() != 1 || faulty.stats.failures != 1 {
        problems.push(format!("{what}: fallback reports {fallbacks:?}"));
    }
    Some((faulty, problems))
}

#[test]
fn one_failing_call_is_invisible_to_the_application() {
    let mut all = Problems::default();
    for initial in [Initial::Ancient, Initial::Fresh] {
        let clean = clean_run(initial);
        // A failed scan at open leaves the store unaware of the ancient
        // events: they are as good as lost, the rest is the same.
        let without_ancient = run(initial, Fault::Never, Some(0));
        let k = clean.methods.len() as u64;
        for n in 1..=k {
            let method = clean.methods[n as usize - 1];
            let what = format!("{initial:?}, call {n} ({method}) fails once");
            let Some((faulty, mut problems)) = faulty_run(&mut all, &clean, n, &what, || {
                run(initial, Fault::Once(n), None)
            }) else {
                continue;
            };
            let fallbacks = reported(&faulty, FailureKind::Fallback);
            // Everything was still readable: nothing may be reported lost.
            if faulty.stats.events_lost != 0 || fallbacks.iter().any(|f| f.events_lost != 0) {
                problems.push(format!("{what}: events lost {:?}", faulty.stats));
            }
            let expected = if method == "scan" && n <= clean.boundaries[0] {
                &without_ancient
            } else {
                &clean
            };
            problems.extend(differences(&what, &faulty, expected, None));
            problems.extend(common_checks(&what, &faulty));
            all.add(doing(&clean, n), method, problems);
        }
    }
    all.assert_none();
}

#[test]
fn a_dead_backend_loses_only_what_was_pending() {
    let mut all = Problems::default();
    for initial in [Initial::Ancient, Initial::Fresh] {
        let clean = clean_run(initial);
        let k = clean.methods.len() as u64;
        let mut references: HashMap<usize, Run> = HashMap::new();
        for n in 1..=k {
            let method = clean.methods[n as usize - 1];
            let what = format!("{initial:?}, calls fail from {n} ({method}) on");
            let Some((faulty, mut problems)) = faulty_run(&mut all, &clean, n, &what, || {
                run(initial, Fault::From(n), None)
            }) else {
                continue;
            };
            let fallbacks = reported(&faulty, FailureKind::Fallback);
            let lost: u64 = fallbacks.iter().map(|f| f.events_lost).sum();
            if lost != faulty.stats.events_lost {
                problems.push(format!(
                    "{what}: {lost} reported lost, {} counted",
                    faulty.stats.events_lost
                ));
            }
            // Nothing can be read back from a dead backend: the store goes
            // on as if the application had reset it just before the step
            // during which the device died. That step's own result may go
            // either way (an ack whose removal was written before the
            // device died may be reported done or refused), but an event
            // raised in it must be kept, and every later step must match.
            let step = if n <= clean.boundaries[0] {
                0
            } else {
                step_of(&clean, n)
            };
            let expected = references
                .entry(step)
                .or_insert_with(|| run(initial, Fault::Never, Some(step)));
            let skip = (n > clean.boundaries[0]).then_some(step);
            problems.extend(differences(&what, &faulty, expected, skip));
            problems.extend(common_checks(&what, &faulty));
            all.add(doing(&clean, n), method, problems);
        }
    }
    all.assert_none();
}

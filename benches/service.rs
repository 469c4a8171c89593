//! Service store benchmark (issue 2, "Performance"; docs/ARCHITECTURE.md, "Measuring").
//!
//! Workload: Queueing events with a 16-byte name and 64-byte arguments.
//! For each durability setting (Sync, Batch{64 ops, 10 ms}, None) it
//! reports events/s and p50/p99/p99.9 latency of
//!
//! - `raise`,
//! - `peek+ack`, draining the events just raised,
//! - a `raise+peek+ack` loop,
//! - `reopen`: `open_file` + first `peek` of a journal holding 100,000
//!   pending events (median and max of 5, warm page cache),
//!
//! every call timed on its own with [`Instant`]. In the same run it measures
//! the floor, `msync(MS_SYNC)` of one 4 KiB page with 64 bytes dirtied in a
//! separate preallocated file mapped with `libc::mmap`, and the bytes each
//! phase caused to be written (`write_bytes` of `/proc/self/io`, accounted
//! when a page is dirtied, and the sectors written of the block device under
//! the journal, which also counts the file system's own journal but is
//! machine-wide).
//!
//! Targets are printed as PASS/MISS beside the figures, never asserted.
//!
//! ```text
//! cargo bench --bench service                # everything (about a minute)
//! cargo bench --bench service -- sync        # one section: floor, sync,
//!                                            # batch, none or reopen
//! SOFTNET_BENCH_DIR=/some/dir cargo bench --bench service
//! ```

mod common;

use std::path::Path;
use std::time::Instant;

use common::{
    close_row, fmt_bytes, fmt_ns, median_of, row, run_interleaved, Bench, Floor, IoSource, Phase,
    Row, Summary, Written,
};
use softnet_persistence::{
    Durability, EventKind, Level, ServiceOptions, ServiceStats, ServiceStore, Uuid,
};

/// Exactly 16 bytes.
const NAME: &str = "bench.event.0001";
/// 64 bytes of arguments.
const ARGS: [u8; 64] = [0xa5; 64];
/// Journal capacity for every section: room for the 100,000 pending events
/// of the reopen test (144-byte records) and for one round of raises.
const CAPACITY: usize = 16 * 1024 * 1024;
/// Events pending in the journal the reopen test opens.
const REOPEN_PENDING: usize = 100_000;
/// Timed reopens per durability setting (after one untimed warm-up).
const REOPEN_RUNS: usize = 5;
/// Decimals of byte figures under 10 B.
const BYTE_DECIMALS: usize = 0;

/// Targets of issue 2.
const TARGET_NONE_P50_NS: f64 = 1_000.0;
const TARGET_NONE_RATE: f64 = 1_000_000.0;
const TARGET_FLOOR_RATIO: f64 = 1.2;
const TARGET_BYTES_PER_DURABLE_OP: f64 = 8.0 * 1024.0;
const TARGET_REOPEN_NS: f64 = 5_000_000.0;

// ----- sections --------------------------------------------------------

/// How much work to give one durability setting.
struct Work {
    /// Events raised (then drained) per round.
    raises: usize,
    /// Rounds of raise-then-drain; the journal ring is reused between them.
    rounds: usize,
    /// Iterations of the raise+peek+ack loop.
    loops: usize,
}

type Plan = common::Plan<Work>;

fn plans() -> Vec<Plan> {
    common::plans(
        Work {
            raises: 3_000,
            rounds: 1,
            loops: 3_000,
        },
        Work {
            raises: 100_000,
            rounds: 1,
            loops: 100_000,
        },
        Work {
            raises: 100_000,
            rounds: 10,
            loops: 1_000_000,
        },
    )
}

// ----- the store -------------------------------------------------------------

fn options(durability: Durability) -> ServiceOptions {
    ServiceOptions {
        capacity: CAPACITY,
        durability,
        ..Default::default()
    }
}

fn open(dir: &Path, uid: Uuid, durability: Durability) -> ServiceStore {
    let store = ServiceStore::open_file(dir, uid, &options(durability)).expect("open_file");
    assert_eq!(
        store.level(),
        Level::Persistent,
        "the store fell back to level 1; figures would be meaningless"
    );
    store
}

fn raise(store: &ServiceStore) {
    store
        .raise(EventKind::Queueing, NAME, &ARGS)
        .expect("raise");
}

fn peek_ack(store: &ServiceStore) {
    let event = store.peek().expect("peek").expect("an event is pending");
    store.ack(event.uid).expect("ack");
}

/// Warns when a phase did not run as intended (fallback, drops).
fn check(stats: &ServiceStats, what: &str, pending: u64, notes: &mut Vec<String>) {
    if stats.level != Level::Persistent
        || stats.dropped_events != 0
        || stats.failures != 0
        || stats.pending_events != pending
    {
        notes.push(format!(
            "WARNING {what}: level {:?}, pending {} (expected {pending}), dropped {}, \
             failures {}",
            stats.level, stats.pending_events, stats.dropped_events, stats.failures
        ));
    }
}

fn ratio_target(value_ns: f64, floor: &Floor) -> (String, bool) {
    let ratio = value_ns / floor.reference_p50();
    (
        format!("{ratio:.2}x floor (<= {TARGET_FLOOR_RATIO}x)"),
        ratio <= TARGET_FLOOR_RATIO,
    )
}

fn bytes_target(s: &Summary) -> (String, bool) {
    match s.bytes_per_op {
        Some(b) => (
            format!("{} written/op (<= 8 KiB)", fmt_bytes(b, BYTE_DECIMALS)),
            b <= TARGET_BYTES_PER_DURABLE_OP,
        ),
        None => ("bytes unknown (no /proc/self/io)".to_string(), false),
    }
}

/// Raise, drain and loop phases of one durability setting.
fn phase_rows(
    dir: &Path,
    io: &IoSource,
    plan: &Plan,
    mut floor: Option<&mut Floor>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) {
    let uid = Uuid::new_v4();
    let store = open(dir, uid, plan.durability);
    let mut raises = Phase::default();
    let mut drains = Phase::default();
    for _ in 0..plan.work.rounds {
        run_interleaved(&mut raises, io, plan.work.raises, &mut floor, |_| {
            raise(&store)
        });
        check(
            &store.stats(),
            "after raise",
            plan.work.raises as u64,
            notes,
        );
        run_interleaved(&mut drains, io, plan.work.raises, &mut floor, |_| {
            peek_ack(&store)
        });
        check(&store.stats(), "after drain", 0, notes);
    }
    let mut looped = Phase::default();
    run_interleaved(&mut looped, io, plan.work.loops, &mut floor, |_| {
        raise(&store);
        peek_ack(&store);
    });
    check(&store.stats(), "after loop", 0, notes);

    let mut close = Phase::default();
    close.run(io, 1, |_| store.close().expect("close"));
    drop(store);

    let section = plan.label;
    notes.push(depth_note(section, &raises.samples, plan.work.raises));
    let raise_s = raises.summary(1);
    let drain_s = drains.summary(1);
    let loop_s = looped.summary(1);
    let raise_op = format!("raise (x{})", plan.work.raises * plan.work.rounds);
    let drain_op = format!("peek+ack (x{})", plan.work.raises * plan.work.rounds);
    let loop_op = format!("raise+peek+ack loop (x{})", plan.work.loops);
    match plan.durability {
        Durability::Sync => {
            let (bt_raise, bp_raise) = bytes_target(&raise_s);
            let (bt_drain, bp_drain) = bytes_target(&drain_s);
            match floor {
                Some(floor) => {
                    let (t, p) = ratio_target(raise_s.p50, floor);
                    rows.push(
                        row(section, &raise_op, raise_s)
                            .target(format!("p50 {t}; {bt_raise}"), p && bp_raise),
                    );
                    let (t, p) = ratio_target(drain_s.p50, floor);
                    rows.push(
                        row(section, &drain_op, drain_s)
                            .target(format!("p50 {t}; {bt_drain}"), p && bp_drain),
                    );
                    let (t, p) = ratio_target(loop_s.p50 / 2.0, floor);
                    rows.push(row(section, &loop_op, loop_s).target(format!("p50/2 syncs {t}"), p));
                }
                None => {
                    rows.push(row(section, &raise_op, raise_s).target(bt_raise, bp_raise));
                    rows.push(row(section, &drain_op, drain_s).target(bt_drain, bp_drain));
                    rows.push(row(section, &loop_op, loop_s));
                }
            }
        }
        Durability::None => {
            let pass = raise_s.p50 <= TARGET_NONE_P50_NS
                && raise_s.rate.is_some_and(|r| r >= TARGET_NONE_RATE);
            rows.push(row(section, &raise_op, raise_s).target("p50 <= 1 us, >= 1M/s", pass));
            rows.push(row(section, &drain_op, drain_s));
            rows.push(row(section, &loop_op, loop_s));
        }
        Durability::Batch { .. } => {
            rows.push(row(section, &raise_op, raise_s));
            rows.push(row(section, &drain_op, drain_s));
            rows.push(row(section, &loop_op, loop_s));
        }
    }
    rows.push(close_row(section, close));
}

/// Raise latency against queue depth: the p50 of the raises made with
/// under 10% and with over 90% of a round's events already pending. A
/// raise should not slow down as the queue grows.
fn depth_note(section: &str, samples: &[u64], per_round: usize) -> String {
    let tenth = (per_round / 10).max(1);
    let pick = |low: bool| {
        let v: Vec<u64> = samples
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let depth = i % per_round;
                if low {
                    depth < tenth
                } else {
                    depth >= per_round - tenth
                }
            })
            .map(|(_, &s)| s)
            .collect();
        median_of(&v)
    };
    let (low, high) = (pick(true), pick(false));
    format!(
        "raise vs queue depth, {section}: p50 {} with < {tenth} pending, {} with >= {} \
         pending ({:.1}x)",
        fmt_ns(low),
        fmt_ns(high),
        per_round - tenth,
        high / low
    )
}

/// A journal holding `REOPEN_PENDING` events, raised with Durability::None
/// and closed (which flushes it).
fn prepare_reopen(dir: &Path) -> Uuid {
    let uid = Uuid::new_v4();
    let store = open(dir, uid, Durability::None);
    for _ in 0..REOPEN_PENDING {
        raise(&store);
    }
    store.close().expect("close");
    uid
}

fn reopen_rows(
    dir: &Path,
    io: &IoSource,
    uid: Uuid,
    plan: &Plan,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) {
    let once = || {
        let t = Instant::now();
        let store = open(dir, uid, plan.durability);
        let opened = t.elapsed();
        let first = store.peek().expect("peek");
        let total = t.elapsed();
        assert!(first.is_some(), "the reopened journal has no pending event");
        (store, opened, total)
    };
    // Warm-up: the page cache is warm from the raises; this also settles
    // whatever the first open under this setting writes.
    let (store, _, _) = once();
    check(
        &store.stats(),
        "reopen warm-up",
        REOPEN_PENDING as u64,
        notes,
    );
    drop(store);

    let before = io.read();
    let mut totals = Vec::new();
    let mut opens = Vec::new();
    for _ in 0..REOPEN_RUNS {
        let (store, opened, total) = once();
        opens.push(opened.as_nanos() as u64);
        totals.push(total.as_nanos() as u64);
        drop(store);
    }
    let written = Written::between(before, io.read());
    totals.sort_unstable();
    let s = Summary::of_runs(&totals, written);
    let median = s.p50;
    notes.push(format!(
        "reopen {}: open_file alone median {}, first peek median {} (of the total)",
        plan.label,
        fmt_ns(median_of(&opens)),
        fmt_ns(median - median_of(&opens)),
    ));
    rows.push(
        row(
            plan.label,
            &format!("reopen+peek, {}k pending (med/max)", REOPEN_PENDING / 1000),
            s,
        )
        .target("median <= 5 ms", median <= TARGET_REOPEN_NS),
    );
}

fn main() {
    let mut bench = Bench::start("service", "reopen", "softnet-bench-");
    println!("softnet-persistence service benchmark");
    println!(
        "workload: Queueing events, {}-byte name, {}-byte arguments; journal capacity {} MiB",
        NAME.len(),
        ARGS.len(),
        CAPACITY >> 20
    );
    bench.begin("journal directory");

    let reopen_uid = plans().iter().any(|p| bench.filter.open(p)).then(|| {
        bench.progress(format!(
            "preparing {REOPEN_PENDING} pending events for reopen"
        ));
        prepare_reopen(bench.dir())
    });
    for plan in plans() {
        let sync = plan.durability == Durability::Sync;
        if bench.filter.phases(&plan) {
            bench.progress(format!("{}: raise, peek+ack, loop", plan.label));
            let s = bench.section(sync);
            phase_rows(s.dir, s.io, &plan, s.floor, s.rows, s.notes);
            if sync {
                bench.settle_floor(
                    "msync advancing, amid Sync ops",
                    "the Sync section (the ratios use the interleaved one)",
                );
            }
        }
        if let (true, Some(uid)) = (bench.filter.open(&plan), reopen_uid) {
            bench.progress(format!("{}: reopen", plan.label));
            let s = bench.section(false);
            reopen_rows(s.dir, s.io, uid, &plan, s.rows, s.notes);
        }
    }
    bench.finish(BYTE_DECIMALS, "ratios", "operations", &[]);
}

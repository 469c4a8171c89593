//! Client store benchmark (issue 3, "Performance (benchmark)"; docs/ARCHITECTURE.md,
//! "Measuring").
//!
//! Workload: a client with 1,000 subscriptions whose names are 16 to 24
//! bytes long, recording the id of every event it handles. For each
//! durability setting of the client file (Sync, Batch{64 ops, 10 ms}, None)
//! it reports events/s, p50/p99/p99.9 latency and the bytes written per call
//! of
//!
//! - `put`, the first put of each of the 1,000 names (the file grows),
//! - `put`, updating the names round-robin with increasing ids,
//! - `put`, updating one hot name while the other 999 records stay live
//!   (the ring must carry them forward as it wraps),
//! - `get` of those names, timed one call per sample and, to take the
//!   timer's own cost out, as the mean of 64 calls per sample,
//! - `open`: `ClientStore::open_file` of a file holding 1,000 subscriptions
//!   whose ring has wrapped many times (median and max of 11, after one
//!   untimed warm-up, warm page cache).
//!
//! In the same run it measures the floor, `msync(MS_SYNC)` of one 4 KiB
//! page with 64 bytes dirtied in a separate preallocated file on the same
//! file system, mapped with `libc::mmap`, both alone and interleaved with
//! the Sync puts (the ratio uses the interleaved figure: this machine is
//! shared and its sync latency drifts). Written bytes come from
//! `write_bytes` of `/proc/self/io` (accounted when a page is dirtied) and
//! from the sectors written of the block device under the files (which also
//! counts the file system's own journal and every other writer).
//!
//! Targets are printed as PASS/MISS beside the figures, never asserted.
//!
//! ```text
//! cargo bench --bench client               # everything (one to two minutes)
//! cargo bench --bench client -- sync       # one section: floor, sync,
//!                                          # batch, none or open
//! SOFTNET_BENCH_DIR=/some/dir cargo bench --bench client
//! ```
//!
//! Files go to a temporary directory under `SOFTNET_BENCH_DIR`, or else
//! under cargo's `target/tmp` (on the real disk, unlike a tmpfs `/tmp`).

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use common::{
    close_row, fmt_bytes, fmt_ns, median_of, row, run_interleaved, Bench, Floor, IoSource, Phase,
    Row, Summary, Written,
};
use softnet_persistence::{ClientOptions, ClientStore, Durability, Level};

/// Subscriptions of the client.
const SUBSCRIPTIONS: usize = 1_000;
/// Shortest and longest subscription name.
const NAME_MIN: usize = 16;
const NAME_MAX: usize = 24;
/// Step through the names: coprime to `SUBSCRIPTIONS`, so consecutive calls
/// touch unrelated names (and hash buckets), and every name is visited once
/// per `SUBSCRIPTIONS` calls.
const STRIDE: usize = 617;
/// Server address of every client file.
const SERVER: &str = "broker.example.com";
/// Calls per sample of the batched get row.
const GET_BATCH: usize = 64;
/// Timed opens per durability setting (after one untimed warm-up).
const OPEN_RUNS: usize = 11;
/// Round-robin updates written into the file the open test opens, so its
/// ring has wrapped many times and is full of superseded records.
const OPEN_UPDATES: usize = 20_000;
/// Decimals of byte figures under 10 B: a put under None writes a few bytes
/// on average.
const BYTE_DECIMALS: usize = 1;

/// Targets of issue 3.
const TARGET_GET_NS: f64 = 100.0;
const TARGET_PUT_NONE_NS: f64 = 300.0;
const TARGET_FLOOR_RATIO: f64 = 1.5;
const TARGET_OPEN_NS: f64 = 5_000_000.0;

// ----- sections --------------------------------------------------------

/// How much work to give one durability setting.
struct Work {
    /// Timed round-robin updates.
    puts: usize,
    /// Timed updates of one hot name while the other 999 stay put.
    hot_puts: usize,
    /// Timed gets, one call per sample.
    gets: usize,
    /// Samples of `GET_BATCH` gets each.
    get_batches: usize,
}

type Plan = common::Plan<Work>;

fn plans() -> Vec<Plan> {
    common::plans(
        Work {
            puts: 100_000,
            hot_puts: 40_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
        Work {
            puts: 1_000_000,
            hot_puts: 500_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
        Work {
            puts: 5_000_000,
            hot_puts: 2_000_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
    )
}

// ----- the store -------------------------------------------------------------

/// `SUBSCRIPTIONS` distinct names of 16 to 24 bytes.
fn names() -> Vec<String> {
    let names: Vec<String> = (0..SUBSCRIPTIONS)
        .map(|i| {
            // 16 bytes, then 0 to 8 more.
            let mut name = format!("client.sub.{i:05}");
            name.push_str(&".abcdefgh"[..i % 9]);
            name
        })
        .collect();
    assert!(names
        .iter()
        .all(|n| (NAME_MIN..=NAME_MAX).contains(&n.len())));
    names
}

/// The name used by call `i` of a round-robin pass.
fn pick(names: &[String], i: usize) -> &str {
    &names[(i * STRIDE) % names.len()]
}

fn open(dir: &Path, key: &str, durability: Durability) -> ClientStore {
    let options = ClientOptions {
        durability,
        ..Default::default()
    };
    let store = ClientStore::open_file(dir, SERVER, key, &options).expect("open_file");
    assert_eq!(
        store.level(),
        Level::Persistent,
        "the store fell back to level 1; figures would be meaningless"
    );
    store
}

/// Warns when a phase did not run as intended (fallback, lost names).
fn check(store: &ClientStore, what: &str, notes: &mut Vec<String>) {
    let stats = store.stats();
    if stats.level != Level::Persistent
        || stats.failures != 0
        || stats.subscriptions != SUBSCRIPTIONS as u64
    {
        notes.push(format!(
            "WARNING {what}: level {:?}, subscriptions {} (expected {SUBSCRIPTIONS}), \
             failures {}",
            stats.level, stats.subscriptions, stats.failures
        ));
    }
}

/// Put, get and open rows of one durability setting.
#[allow(clippy::too_many_arguments)]
fn phase_rows(
    dir: &Path,
    io: &IoSource,
    plan: &Plan,
    names: &[String],
    mut floor: Option<&mut Floor>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) {
    let store = open(dir, &format!("bench-{}", plan.key), plan.durability);
    let section = plan.label;

    // First put of every name: new entries; the file grows on the way (its
    // capacity doubles from 16 KiB until the records fit).
    let mut first = Phase::default();
    first.run(io, names.len(), |i| {
        store.put(&names[i], -1).expect("put");
    });
    check(&store, "after the first puts", notes);

    // Updates, round-robin, with increasing ids.
    let mut puts = Phase::default();
    run_interleaved(&mut puts, io, plan.work.puts, &mut floor, |i| {
        store.put(pick(names, i), i as i64).expect("put");
    });
    check(&store, "after the updates", notes);
    // Every name holds the id of its last update.
    let mut wrong = 0;
    for i in plan.work.puts.saturating_sub(names.len())..plan.work.puts {
        if store.get(pick(names, i)).expect("get") != Some(i as i64) {
            wrong += 1;
        }
    }
    if wrong > 0 {
        notes.push(format!(
            "WARNING {section}: {wrong} name(s) do not hold their last put"
        ));
    }

    // One hot subscription among cold ones: the other names' records stay
    // live in the ring while the hot one is updated.
    let hot = &names[0];
    let mut hot_puts = Phase::default();
    run_interleaved(&mut hot_puts, io, plan.work.hot_puts, &mut floor, |i| {
        store.put(hot, (plan.work.puts + i) as i64).expect("put");
    });
    check(&store, "after the hot puts", notes);

    let mut gets = Phase::default();
    gets.run(io, plan.work.gets, |i| {
        black_box(store.get(black_box(pick(names, i))).expect("get"));
    });
    let mut batched = Phase::default();
    batched.run(io, plan.work.get_batches, |i| {
        for j in 0..GET_BATCH {
            black_box(
                store
                    .get(black_box(pick(names, i * GET_BATCH + j)))
                    .expect("get"),
            );
        }
    });

    let mut close = Phase::default();
    close.run(io, 1, |_| store.close().expect("close"));
    drop(store);

    rows.push(row(
        section,
        &format!("put, new name (x{})", names.len()),
        first.summary(1),
    ));
    let put_s = puts.summary(1);
    let put_op = format!("put, round-robin (x{})", plan.work.puts);
    rows.push(put_row(section, &put_op, put_s, plan, floor.as_deref()));
    let hot_s = hot_puts.summary(1);
    let hot_op = format!("put, 1 hot name (x{})", plan.work.hot_puts);
    rows.push(put_row(section, &hot_op, hot_s, plan, floor.as_deref()));
    let get_s = gets.summary(1);
    let pass = get_s.p50 <= TARGET_GET_NS;
    rows.push(
        row(section, &format!("get (x{})", plan.work.gets), get_s)
            .target("p50 <= 100 ns (timer included)", pass),
    );
    let get_b = batched.summary(GET_BATCH);
    let pass = get_b.p50 <= TARGET_GET_NS;
    rows.push(
        row(
            section,
            &format!("get, mean of {GET_BATCH}/sample (x{})", get_b.n),
            get_b,
        )
        .target("p50 <= 100 ns", pass),
    );
    rows.push(close_row(section, close));
}

/// A put row with its target: Sync against the floor, None against 300 ns.
fn put_row(section: &str, op: &str, s: Summary, plan: &Plan, floor: Option<&Floor>) -> Row {
    let bytes = s.bytes_per_op.map_or("bytes unknown".to_string(), |b| {
        format!("{}/put", fmt_bytes(b, BYTE_DECIMALS))
    });
    match (plan.durability, floor) {
        (Durability::Sync, Some(floor)) => {
            let ratio = s.p50 / floor.reference_p50();
            let pass = ratio <= TARGET_FLOOR_RATIO;
            row(section, op, s).target(
                format!("p50 = {ratio:.2}x floor (<= {TARGET_FLOOR_RATIO}x); {bytes}"),
                pass,
            )
        }
        (Durability::None, _) => {
            let pass = s.p50 <= TARGET_PUT_NONE_NS;
            row(section, op, s).target("p50 <= 300 ns", pass)
        }
        _ => row(section, op, s),
    }
}

/// A client file holding `SUBSCRIPTIONS` names after `OPEN_UPDATES`
/// round-robin updates (its ring has wrapped many times), closed. Returns
/// its client key.
fn prepare_open(dir: &Path, names: &[String]) -> String {
    let key = "bench-open".to_string();
    let store = open(dir, &key, Durability::None);
    for (i, name) in names.iter().enumerate() {
        store.put(name, i as i64).expect("put");
    }
    for i in 0..OPEN_UPDATES {
        store.put(pick(names, i), i as i64).expect("put");
    }
    store.close().expect("close");
    key
}

fn open_rows(
    dir: &Path,
    io: &IoSource,
    key: &str,
    plan: &Plan,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) {
    let once = || {
        let t = Instant::now();
        let store = open(dir, key, plan.durability);
        let took = t.elapsed();
        (store, took)
    };
    // Warm-up: settles whatever the first open under this setting writes.
    let (store, _) = once();
    check(&store, "open warm-up", notes);
    store.close().expect("close");
    drop(store);

    let before = io.read();
    let mut times = Vec::new();
    let mut closes = Vec::new();
    for _ in 0..OPEN_RUNS {
        let (store, took) = once();
        times.push(took.as_nanos() as u64);
        let t = Instant::now();
        store.close().expect("close");
        drop(store);
        closes.push(t.elapsed().as_nanos() as u64);
    }
    let written = Written::between(before, io.read());
    times.sort_unstable();
    notes.push(format!(
        "open {}: min {}, close after it (not in the figure) median {}",
        plan.label,
        fmt_ns(times[0] as f64),
        fmt_ns(median_of(&closes)),
    ));
    let s = Summary::of_runs(&times, written);
    let median = s.p50;
    rows.push(
        row(
            plan.label,
            &format!("open, {SUBSCRIPTIONS} subscriptions (med/max)"),
            s,
        )
        .target("median <= 5 ms", median <= TARGET_OPEN_NS),
    );
}

fn main() {
    let mut bench = Bench::start("client", "open", "softnet-client-bench-");
    let names = names();
    println!("softnet-persistence client benchmark");
    println!(
        "workload: {SUBSCRIPTIONS} subscriptions, names of {NAME_MIN} to {NAME_MAX} bytes \
         (mean {:.1}), puts round-robin with increasing ids",
        names.iter().map(String::len).sum::<usize>() as f64 / names.len() as f64
    );
    bench.begin("client file directory");

    let open_key = plans().iter().any(|p| bench.filter.open(p)).then(|| {
        bench.progress(format!(
            "preparing a client file with {SUBSCRIPTIONS} subscriptions"
        ));
        prepare_open(bench.dir(), &names)
    });
    for plan in plans() {
        let sync = plan.durability == Durability::Sync;
        if bench.filter.phases(&plan) {
            bench.progress(format!("{}: put, get", plan.label));
            let s = bench.section(sync);
            phase_rows(s.dir, s.io, &plan, &names, s.floor, s.rows, s.notes);
            if sync {
                bench.settle_floor(
                    "msync advancing, amid Sync puts",
                    "the Sync puts (the ratio uses the interleaved one)",
                );
            }
        }
        if let (true, Some(key)) = (bench.filter.open(&plan), &open_key) {
            bench.progress(format!("{}: open", plan.label));
            let s = bench.section(false);
            open_rows(s.dir, s.io, key, &plan, s.rows, s.notes);
        }
    }
    bench.finish(
        BYTE_DECIMALS,
        "ratio",
        "calls",
        &[
            "events/s: calls over the phase's wall time, timer included; get rows per call, \
           the batched one as the mean call of each sample",
        ],
    );
}

//! Side-by-side benchmark: the service journal against SQLite in WAL mode
//! (rusqlite with its bundled SQLite, `synchronous=FULL` and `OFF`) and
//! against the floor, `msync(MS_SYNC)` of one 4 KiB page (benches/common),
//! in one run, with the ratios printed under the table.
//!
//! Workload: Queueing events with a 16-byte name and 64-byte arguments; on
//! the SQLite side a table `events(id INTEGER PRIMARY KEY, uid BLOB, kind
//! INT, name TEXT, args BLOB)`, a raise is an `INSERT` in its own
//! transaction, a peek the `SELECT` of the oldest row, an ack a `DELETE` by
//! id (benches/compare/sqlite.rs).
//!
//! - durable (section `sync`): raise, and a raise+peek+ack loop, journal
//!   with `Durability::Sync` against SQLite WAL FULL, in blocks of 100
//!   calls taking turns with each other and with the floor;
//! - page cache (section `none`): raise and the loop on a fresh 256 MiB
//!   journal with `Durability::None` against SQLite WAL OFF, timed per call
//!   (percentiles) and per 1,000 calls (rate without the timer);
//! - threads (section `sync`): durable raises from 1, 2, 4 and 8 threads for
//!   a fixed time (in rounds over every thread count), into one
//!   `Arc<ServiceStore>` and into one SQLite file with a connection per
//!   thread: events/s, syncs per event (the
//!   journal's `Device::sync` calls, counted by a `DeviceLayer`; the
//!   device's write and flush requests), device bytes per event;
//! - reopen (section `reopen`): `open_file` + first `peek` of 16 MiB,
//!   256 MiB and 1 GiB journals holding 0 and 100,000 pending events, warm,
//!   and cold after `sync; echo 3 > /proc/sys/vm/drop_caches` when run as
//!   root, with the bytes the process read from the device
//!   (`read_bytes` of `/proc/self/io`); the same for an SQLite file holding
//!   0 and 100,000 rows.
//!
//! Targets are printed as PASS/MISS beside the figures, never asserted.
//!
//! ```text
//! cargo bench --bench compare                  # everything (a few minutes)
//! cargo bench --bench compare -- --quick       # fewer calls and runs
//! cargo bench --bench compare -- sync          # one section: floor, sync,
//!                                              # none or reopen
//! SOFTNET_BENCH_DIR=/some/dir cargo bench --bench compare
//! ```
//!
//! Files go to a temporary directory under `SOFTNET_BENCH_DIR`, or else
//! under cargo's `target/tmp` (on the real disk, unlike a tmpfs `/tmp`).

// Each benchmark uses part of what `common` shares.
#[allow(dead_code)]
mod common;
#[path = "compare/durable.rs"]
mod durable;
#[path = "common/lap.rs"]
mod lap;
#[path = "compare/reopen.rs"]
mod reopen;
#[path = "compare/sqlite.rs"]
mod sqlite;
#[path = "compare/sys.rs"]
mod sys;
#[path = "compare/threads.rs"]
mod threads;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use common::Bench;
use softnet_persistence::{
    DeviceLayer, Durability, EventKind, Level, ServiceOptions, ServiceStats, ServiceStore, Uuid,
};

/// Exactly 16 bytes.
pub const NAME: &str = "bench.event.0001";
/// 64 bytes of arguments.
pub const ARGS: [u8; 64] = [0xa5; 64];
/// One mebibyte.
pub const MIB: usize = 1024 * 1024;
/// Decimals of byte figures under 10 B.
pub const BYTE_DECIMALS: usize = 1;

/// How much work each section does (`--quick` for less).
pub struct Work {
    /// Durable raises per store (journal, SQLite FULL), in blocks of 100.
    pub durable_raises: usize,
    /// Durable raise+peek+ack loops per store.
    pub durable_loops: usize,
    /// Page-cache journal raises timed per call, and as many timed per
    /// 1,000 calls.
    pub cache_raises: usize,
    /// The same for SQLite WAL OFF.
    pub sqlite_off_raises: usize,
    /// Page-cache raise+peek+ack loops of the journal.
    pub cache_loops: usize,
    /// The same for SQLite WAL OFF.
    pub sqlite_off_loops: usize,
    /// Seconds of raising per store, thread count and round.
    pub thread_secs: f64,
    /// Rounds over every thread count and store (drift of the disk is
    /// spread over all of them).
    pub thread_rounds: usize,
    /// Timed warm reopens per journal (after one untimed).
    pub warm_runs: usize,
    /// Cold reopens per journal.
    pub cold_runs: usize,
}

const FULL: Work = Work {
    durable_raises: 5_000,
    durable_loops: 2_000,
    cache_raises: 500_000,
    sqlite_off_raises: 100_000,
    cache_loops: 200_000,
    sqlite_off_loops: 50_000,
    thread_secs: 1.0,
    thread_rounds: 3,
    warm_runs: 11,
    cold_runs: 3,
};

const QUICK: Work = Work {
    durable_raises: 300,
    durable_loops: 200,
    cache_raises: 100_000,
    sqlite_off_raises: 20_000,
    cache_loops: 50_000,
    sqlite_off_loops: 10_000,
    thread_secs: 0.5,
    thread_rounds: 1,
    warm_runs: 3,
    cold_runs: 1,
};

// ----- the journal -------------------------------------------------------------

/// Options of a journal of `capacity` bytes, optionally under `layer`.
pub fn options(
    capacity: usize,
    durability: Durability,
    layer: Option<Arc<dyn DeviceLayer>>,
) -> ServiceOptions {
    ServiceOptions {
        capacity,
        durability,
        device_layer: layer,
        ..Default::default()
    }
}

/// Opens the journal of `uid` in `dir`; panics if it fell back to level 1
/// (the figures would be meaningless).
pub fn open_with(dir: &Path, uid: Uuid, options: &ServiceOptions) -> ServiceStore {
    let store = ServiceStore::open_file(dir, uid, options).expect("open_file");
    assert_eq!(
        store.level(),
        Level::Persistent,
        "the store fell back to level 1; figures would be meaningless"
    );
    store
}

/// Opens the journal of `uid` in `dir` without a device layer.
pub fn open(dir: &Path, uid: Uuid, capacity: usize, durability: Durability) -> ServiceStore {
    open_with(dir, uid, &options(capacity, durability, None))
}

/// One raise of the workload's event.
pub fn raise(store: &ServiceStore) {
    store
        .raise(EventKind::Queueing, NAME, &ARGS)
        .expect("raise");
}

/// Peek, then ack what it returned.
pub fn peek_ack(store: &ServiceStore) {
    let event = store.peek().expect("peek").expect("an event is pending");
    store.ack(event.uid).expect("ack");
}

/// Warns when a phase did not run as intended (fallback, drops, failures,
/// or not `pending` events left).
pub fn check(stats: &ServiceStats, what: &str, pending: u64, notes: &mut Vec<String>) {
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

/// `16 MiB`, `1 GiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1024 * MIB && bytes.is_multiple_of(1024 * MIB) {
        format!("{} GiB", bytes / (1024 * MIB))
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

/// A subdirectory of `dir`, created.
pub fn subdir(dir: &Path, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("create a subdirectory");
    d
}

fn main() {
    START.get_or_init(Instant::now);
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    let work = if quick { QUICK } else { FULL };
    let mut bench = Bench::start("compare", "reopen", "softnet-compare-");
    println!("softnet-persistence comparison: journal vs SQLite WAL vs the msync floor");
    println!(
        "workload: Queueing events, {}-byte name, {}-byte arguments; one thread unless said",
        NAME.len(),
        ARGS.len()
    );
    println!(
        "SQLite {} (rusqlite, bundled): journal_mode=WAL, synchronous=FULL (durable) or OFF \
         (page cache), other settings default; events(id INTEGER PRIMARY KEY, uid BLOB, \
         kind INT, name TEXT, args BLOB); raise = INSERT (autocommit), peek = SELECT oldest, \
         ack = DELETE by id",
        sqlite::version()
    );
    if quick {
        println!("--quick: fewer calls and runs; figures are rougher");
    }
    bench.begin("scratch directory");

    // `common` knows the sections floor, sync, batch, none and reopen; this
    // benchmark has no Batch workload.
    let keys = common::plans((), (), ());
    let (sync_key, batch_key, none_key) = (&keys[0], &keys[1], &keys[2]);
    let mut ratios: Vec<String> = vec![
        "ratios (journal / SQLite: throughput; x floor: p50 latency / floor p50). Durable \
         target: single-threaded throughput = 1 / p50 latency, calls in blocks of 100 taking \
         turns with SQLite's and the floor's; PASS if SQLite FULL p50 / journal p50 >= 1.1. \
         Page-cache targets: p99 of calls timed one by one (two clock reads included), \
         events/s of calls timed 1,000 at a time."
            .to_string(),
    ];

    if bench.filter.phases(sync_key) {
        bench.progress("durable: raise, raise+peek+ack (journal Sync, SQLite FULL, floor)");
        durable::durable(bench.section(true), &work, &mut ratios);
        bench.settle_floor(
            "msync advancing, amid durable ops",
            "the durable section (its ratios use the interleaved one)",
        );
        bench.progress("threads: durable raises from 1, 2, 4, 8 threads");
        // The floor's syncs between the thread runs are not settled into a
        // row of their own (`common` would call the durable section's p50
        // the one measured alone): their p50 is in a note.
        threads::threads(bench.section(true), &work, &mut ratios);
    }
    if bench.filter.phases(none_key) {
        bench.progress("page cache: raise, raise+peek+ack (journal None, SQLite OFF)");
        durable::page_cache(bench.section(false), &work, &mut ratios);
    }
    if keys.iter().all(|p| bench.filter.open(p)) {
        bench.progress("reopen: 16 MiB, 256 MiB, 1 GiB journals; SQLite");
        reopen::reopen(bench.section(false), &work, &mut ratios);
    }
    if bench.filter.phases(batch_key) && !bench.filter.phases(sync_key) {
        println!("section batch: this benchmark has no Batch workload (sections: floor, sync, none, reopen)");
    }
    let extra: Vec<&str> = ratios.iter().map(String::as_str).collect();
    bench.finish(BYTE_DECIMALS, "floor ratios", "operations", &extra);
}

/// Progress on stderr from inside a section (where the `Bench` is
/// borrowed), after the seconds since the start.
pub fn progress(what: impl std::fmt::Display) {
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>6.1}s]   {what}", start.elapsed().as_secs_f64());
}

static START: OnceLock<Instant> = OnceLock::new();

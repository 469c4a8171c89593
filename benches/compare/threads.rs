//! Durable raises from 1, 2, 4 and 8 threads for a fixed time: into one
//! `Arc<ServiceStore>` with `Durability::Sync`, and into one SQLite WAL
//! FULL file with a connection per thread (WAL lets one writer in at a
//! time; the others wait in SQLite's busy handler). Every thread count and
//! store runs once per round, the floor taking a turn after each run (and
//! before a single-thread one), and the rounds add up: a slow spell of the
//! disk falls on all of them. A single-thread journal run is cut into 20
//! slices, with a turn of the floor (50 syncs) before and after each: its
//! ratio to the floor takes only those turns, so that both see the same
//! spell of the disk (this VM's sync time changes from second to second).
//!
//! The journal runs twice per thread count: in a fresh file, and in a file
//! whose ring was lapped first (benches/common/lap.rs), as in a journal in
//! service: the first sync of a block never written costs the file system
//! a metadata write more.
//!
//! Syncs per event: for the journal, the `Device::sync` calls counted by a
//! [`SyncCounter`] device layer (each is one `msync(MS_SYNC)` of the
//! library's own device); for both, the write and flush requests the block
//! device completed (machine-wide, like its sectors written). SQLite's own
//! fsyncs are not visible without tracing it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use softnet_persistence::{Durability, Uuid};

use crate::common::{fmt_bytes, fmt_ns, median_of, percentile, row, Row, Section, Summary};
use crate::lap::lap;
use crate::sqlite::{self, Db};
use crate::sys::{Counters, Delta, SyncCounter};
use crate::{
    check, open_with, options, progress, raise, size_label, subdir, Work, BYTE_DECIMALS, MIB,
};

/// Thread counts, in this order.
const THREADS: [usize; 4] = [1, 2, 4, 8];
/// Journal of each run: room for every raise of a run, however fast.
const CAPACITY: usize = 64 * MIB;
/// A single-thread journal run is cut into this many slices.
const ONE_THREAD_SLICES: usize = 20;
/// Untimed raises before each run.
const WARMUP: usize = 10;

/// Targets (the issue's).
const TARGET_SCALING: f64 = 4.0;
const TARGET_DEVICE_BYTES: f64 = 1024.0;
const TARGET_FLOOR_RATIO: f64 = 1.1;

/// One store at one thread count.
struct Run {
    /// Latency of every raise, ns, sorted.
    samples: Vec<u64>,
    /// Raises that returned an error (SQLite: busy past the timeout).
    errors: u64,
    elapsed: Duration,
    delta: Delta,
    /// `Device::sync` calls (journal only).
    syncs: Option<u64>,
    /// The floor's syncs taken between the run's slices, ns (one thread).
    floor: Vec<u64>,
}

impl Run {
    fn events(&self) -> u64 {
        self.samples.len() as u64
    }

    fn rate(&self) -> f64 {
        self.events() as f64 / self.elapsed.as_secs_f64()
    }

    fn per_event(&self, v: Option<u64>) -> Option<f64> {
        v.map(|v| v as f64 / self.events().max(1) as f64)
    }

    /// Adds another round's run of the same store and thread count.
    fn absorb(&mut self, other: Run) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            a.zip(b).map(|(a, b)| a + b)
        }
        self.samples.extend(other.samples);
        self.samples.sort_unstable();
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        let (a, b) = (&mut self.delta, other.delta);
        a.read_bytes = sum(a.read_bytes, b.read_bytes);
        a.write_bytes = sum(a.write_bytes, b.write_bytes);
        a.device_read_bytes = sum(a.device_read_bytes, b.device_read_bytes);
        a.device_writes = sum(a.device_writes, b.device_writes);
        a.device_write_bytes = sum(a.device_write_bytes, b.device_write_bytes);
        a.device_flushes = sum(a.device_flushes, b.device_flushes);
        self.syncs = sum(self.syncs, other.syncs);
        self.floor.extend(other.floor);
    }

    fn summary(&self) -> Summary {
        let s = &self.samples;
        Summary {
            n: s.len(),
            rate: Some(self.rate()),
            p50: percentile(s, 50.0),
            p99: percentile(s, 99.0),
            p999: Some(percentile(s, 99.9)),
            bytes_per_op: self.per_event(self.delta.write_bytes),
            device_bytes_per_op: self.per_event(self.delta.device_write_bytes),
        }
    }
}

/// Runs `threads` threads, each calling `op` (made by `make` in its
/// thread) until `secs` have passed since they were released together.
fn run_threads<M, O>(threads: usize, secs: f64, counters: &Counters, make: M) -> Run
where
    M: Fn() -> O + Sync,
    O: FnMut() -> bool,
{
    let barrier = Barrier::new(threads + 1);
    let length = Duration::from_secs_f64(secs);
    let (before, after, elapsed, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (barrier, make) = (&barrier, &make);
                scope.spawn(move || {
                    let mut op = make();
                    let mut samples = Vec::with_capacity(100_000);
                    let mut errors = 0u64;
                    barrier.wait();
                    let end = Instant::now() + length;
                    loop {
                        let t = Instant::now();
                        if t >= end {
                            break;
                        }
                        if op() {
                            samples.push(t.elapsed().as_nanos() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                    (samples, errors)
                })
            })
            .collect();
        let before = counters.read();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<(Vec<u64>, u64)> = handles
            .into_iter()
            .map(|h| h.join().expect("a raising thread panicked"))
            .collect();
        let elapsed = start.elapsed();
        (before, counters.read(), elapsed, results)
    });
    let mut samples: Vec<u64> = Vec::new();
    let mut errors = 0;
    for (s, e) in results {
        samples.extend(s);
        errors += e;
    }
    samples.sort_unstable();
    Run {
        samples,
        errors,
        elapsed,
        delta: Delta::between(&before, &after),
        syncs: None,
        floor: Vec::new(),
    }
}

fn journal_run(
    dir: &std::path::Path,
    threads: usize,
    secs: f64,
    counters: &Counters,
    notes: &mut Vec<String>,
    lapped: bool,
    floor_turn: &mut dyn FnMut() -> Vec<u64>,
) -> Run {
    let (layer, syncs) = SyncCounter::new();
    let jdir = subdir(dir, &format!("threads-{threads}"));
    let (uid, options) = (
        Uuid::new_v4(),
        options(CAPACITY, Durability::Sync, Some(layer)),
    );
    if lapped {
        lap(&jdir, uid, CAPACITY);
    }
    let store = open_with(&jdir, uid, &options);
    let store = Arc::new(store);
    for _ in 0..WARMUP {
        raise(&store);
    }
    let before = syncs.load(Ordering::Relaxed);
    // One thread: in slices, the floor taking a turn after each (see the
    // module docs); the counters count the slices only.
    let slices = if threads == 1 { ONE_THREAD_SLICES } else { 1 };
    let mut floor = if threads == 1 {
        floor_turn()
    } else {
        Vec::new()
    };
    let mut run: Option<Run> = None;
    for _ in 0..slices {
        let slice = run_threads(threads, secs / slices as f64, counters, || {
            let store = Arc::clone(&store);
            move || {
                raise(&store);
                true
            }
        });
        match &mut run {
            Some(run) => run.absorb(slice),
            None => run = Some(slice),
        }
        if threads == 1 {
            floor.extend(floor_turn());
        }
    }
    let mut run = run.expect("at least one slice");
    run.floor = floor;
    run.syncs = Some(syncs.load(Ordering::Relaxed) - before);
    let pending = (WARMUP + run.samples.len()) as u64;
    check(
        &store.stats(),
        &format!("threads {threads}"),
        pending,
        notes,
    );
    store.close().expect("close");
    drop(store);
    let _ = std::fs::remove_dir_all(&jdir);
    run
}

fn sqlite_run(dir: &std::path::Path, threads: usize, secs: f64, counters: &Counters) -> Run {
    let path = dir.join(format!("threads-{threads}.sqlite"));
    // Create the file and its table once, before the connections race.
    let db = Db::open(&path, sqlite::Sync::Full);
    for _ in 0..WARMUP {
        db.raise();
    }
    let run = run_threads(threads, secs, counters, || {
        let db = Db::open(&path, sqlite::Sync::Full);
        move || db.try_raise().is_ok()
    });
    drop(db);
    sqlite::remove(&path);
    run
}

/// Durable raises from 1, 2, 4 and 8 threads; the floor (if any) takes a
/// turn after each run.
pub fn threads(s: Section<'_>, work: &Work, ratios: &mut Vec<String>) {
    let Section {
        dir,
        io,
        mut floor,
        rows,
        notes,
    } = s;
    let counters = Counters::for_dir(dir);
    let mut floor_turn = || floor.as_mut().map_or(Vec::new(), |f| f.turn(io).to_vec());
    // Per thread count: the journal fresh, the journal lapped, SQLite.
    let mut runs: Vec<Option<(usize, Vec<Run>)>> = THREADS.iter().map(|_| None).collect();
    for round in 0..work.thread_rounds {
        // Each round starts at another thread count.
        for k in 0..THREADS.len() {
            let i = (k + round) % THREADS.len();
            let n = THREADS[i];
            progress(format!(
                "round {}/{}, {n} thread(s): journal fresh, lapped, then SQLite",
                round + 1,
                work.thread_rounds
            ));
            let mut three = Vec::with_capacity(3);
            for lapped in [false, true] {
                three.push(journal_run(
                    dir,
                    n,
                    work.thread_secs,
                    &counters,
                    notes,
                    lapped,
                    &mut floor_turn,
                ));
                floor_turn();
            }
            three.push(sqlite_run(dir, n, work.thread_secs, &counters));
            floor_turn();
            match &mut runs[i] {
                None => runs[i] = Some((n, three)),
                Some((_, sums)) => sums.iter_mut().zip(three).for_each(|(a, b)| a.absorb(b)),
            }
        }
    }
    let runs: Vec<(usize, Vec<Run>)> = runs.into_iter().flatten().collect();
    table(&runs, work, ratios);
    let cap = size_label(CAPACITY);
    let singles: Vec<f64> = runs[0].1.iter().map(Run::rate).collect();
    for (n, three) in &runs {
        for (k, r) in three.iter().enumerate() {
            let name = match k {
                0 => format!("journal {cap} Sync, {n} thr: raise"),
                1 => format!("journal {cap} lapped, {n} thr: raise"),
                _ => format!("SQLite WAL FULL, {n} thr: INSERT"),
            };
            let r_row = row("threads", &name, r.summary());
            rows.push(match (k, n) {
                (2, _) => r_row,
                (_, 1) => floor_target(r_row, r),
                (_, 8) => scaling_target(r_row, r, singles[k]),
                _ => r_row,
            });
        }
        if three[2].errors != 0 {
            notes.push(format!(
                "WARNING threads {n}: {} SQLite INSERTs failed (busy past the timeout?)",
                three[2].errors
            ));
        }
    }
    if let Some(one) = runs.first().filter(|(_, three)| !three[0].floor.is_empty()) {
        notes.push(format!(
            "threads: 1-thread ratio to the floor: its p50 over that of the floor's syncs \
             taken between the run's slices ({} of them: p50 {} fresh, {} lapped; the \
             legend's floor p50 is the durable section's)",
            one.1[0].floor.len() + one.1[1].floor.len(),
            fmt_ns(median_of(&one.1[0].floor)),
            fmt_ns(median_of(&one.1[1].floor)),
        ));
    }
}

/// The single-thread target: the run's p50 against the floor's syncs
/// taken between its slices.
fn floor_target(r_row: Row, r: &Run) -> Row {
    if r.floor.is_empty() {
        return r_row;
    }
    let x = percentile(&r.samples, 50.0) / median_of(&r.floor);
    r_row.target(
        format!("p50 {x:.2}x floor (<= {TARGET_FLOOR_RATIO}x)"),
        x <= TARGET_FLOOR_RATIO,
    )
}

fn bytes(b: Option<f64>) -> String {
    b.map_or("-".to_string(), |b| fmt_bytes(b, BYTE_DECIMALS))
}

fn per(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}

/// The 8-thread target, against the single-thread rate `single` of the
/// same store.
fn scaling_target(r_row: Row, j: &Run, single: f64) -> Row {
    let x = j.rate() / single;
    let dev = j.per_event(j.delta.device_write_bytes);
    let dev_ok = dev.is_some_and(|b| b <= TARGET_DEVICE_BYTES);
    r_row.target(
        format!(
            "{x:.2}x 1-thread rate (>= {TARGET_SCALING}x); device {}/raise (<= 1 KiB); {} \
             syncs/raise",
            bytes(dev),
            per(j.per_event(j.syncs))
        ),
        x >= TARGET_SCALING && dev_ok,
    )
}

/// The table of every thread count and store, with ratios to one thread.
fn table(runs: &[(usize, Vec<Run>)], work: &Work, ratios: &mut Vec<String>) {
    let cap = size_label(CAPACITY);
    ratios.push(format!(
        "  threads ({} round(s) over every thread count and store, each round starting at \
         another count, {:.1} s per run; journal {cap} Sync, one Arc<ServiceStore>, a new \
         file each run (fresh: as created; lapped: its ring lapped once before, by raises \
         and acks with Durability::None); SQLite WAL FULL, one connection per thread, busy_timeout 60 s):",
        work.thread_rounds, work.thread_secs
    ));
    ratios.push(format!(
        "    {:<8} {:<16} {:>10} {:>9} {:>12} {:>13} {:>13} {:>12} {:>10}",
        "threads",
        "store",
        "events/s",
        "x 1 thr",
        "syncs/event",
        "dev writes/ev",
        "dev flush/ev",
        "dev bytes/ev",
        "errors"
    ));
    const LABELS: [&str; 3] = ["journal fresh", "journal lapped", "SQLite WAL FULL"];
    for (n, three) in runs {
        for (k, r) in three.iter().enumerate() {
            ratios.push(format!(
                "    {:<8} {:<16} {:>10.0} {:>8.2}x {:>12} {:>13} {:>13} {:>12} {:>10}",
                n,
                LABELS[k],
                r.rate(),
                r.rate() / runs[0].1[k].rate(),
                per(r.per_event(r.syncs)),
                per(r.per_event(r.delta.device_writes)),
                per(r.per_event(r.delta.device_flushes)),
                bytes(r.per_event(r.delta.device_write_bytes)),
                r.errors
            ));
        }
    }
    ratios.push(
        "    syncs/event: the journal's Device::sync calls (msync) per raise; dev writes, \
         flushes and bytes: requests and bytes the whole block device completed per raise"
            .into(),
    );
}

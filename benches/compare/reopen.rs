//! Reopen + first peek: `ServiceStore::open_file` then `peek` of 16 MiB,
//! 256 MiB and 1 GiB journals holding 0 and 100,000 pending events, and
//! `Connection::open` (with the same pragmas) then the `SELECT` of the
//! oldest row of an SQLite file holding 0 and 100,000 rows.
//!
//! Warm: after one untimed reopen, the file's pages are in the page cache.
//! Cold (root only): before each run `sync; echo 3 >
//! /proc/sys/vm/drop_caches`, then a small primer journal and database are
//! opened so that the code of the open path (this binary's pages, dropped
//! too) is read back before the timed open; the bytes read are
//! `read_bytes` of `/proc/self/io` over the timed open and peek, which
//! counts the pages this process faults in from the device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use softnet_persistence::{Durability, ServiceStore, Uuid};

use crate::common::{fmt_bytes, fmt_ns, median_of, row, Section, Summary};
use crate::sqlite::{self, Db};
use crate::sys::{self, Counters, Delta, Snapshot};
use crate::{check, open, progress, raise, size_label, subdir, Work, BYTE_DECIMALS, MIB};

/// Journal capacities, in this order.
const SIZES: [usize; 3] = [16 * MIB, 256 * MIB, 1024 * MIB];
/// Pending events (and SQLite rows) in each file.
const PENDING: [usize; 2] = [0, 100_000];
/// Free space kept beside a journal before its case runs.
const SPACE_MARGIN: u64 = 256 * MIB as u64;

/// Targets (the issue's).
const TARGET_EMPTY_1G_NS: f64 = 1_000_000.0;
const TARGET_PENDING_NS: f64 = 5_000_000.0;
const TARGET_COLD_SLACK: u64 = MIB as u64;

/// Timed runs of one file, warm or cold.
#[derive(Default)]
struct Runs {
    /// Open and first peek, ns.
    totals: Vec<u64>,
    /// Open alone, ns.
    opens: Vec<u64>,
    /// Counters over each run.
    deltas: Vec<Delta>,
}

impl Runs {
    fn summary(&self) -> Summary {
        let mut sorted = self.totals.clone();
        sorted.sort_unstable();
        let runs = sorted.len().max(1) as f64;
        let sum = |f: fn(&Delta) -> Option<u64>| {
            self.deltas
                .iter()
                .map(f)
                .try_fold(0u64, |a, b| b.map(|b| a + b))
                .map(|t| t as f64 / runs)
        };
        Summary {
            n: sorted.len(),
            rate: None,
            p50: median_of(&sorted),
            p99: sorted.last().copied().unwrap_or(0) as f64,
            p999: None,
            bytes_per_op: sum(|d| d.write_bytes),
            device_bytes_per_op: sum(|d| d.device_write_bytes),
        }
    }

    /// The largest of each run's value.
    fn max_of(&self, f: fn(&Delta) -> Option<u64>) -> Option<u64> {
        self.deltas
            .iter()
            .map(f)
            .try_fold(0u64, |a, b| b.map(|b| a.max(b)))
    }
}

/// Whether cold runs can happen, and why not.
enum Cold {
    Yes,
    No(String),
}

/// A small journal and database opened after each cache drop, before the
/// timed open, so the open path's code is back in memory.
struct Primer {
    jdir: PathBuf,
    uid: Uuid,
    db: PathBuf,
}

impl Primer {
    fn new(dir: &Path) -> Primer {
        let jdir = subdir(dir, "primer");
        let uid = Uuid::new_v4();
        let store = open(&jdir, uid, MIB, Durability::None);
        raise(&store);
        store.close().expect("close");
        let db = dir.join("primer.sqlite");
        Db::open(&db, sqlite::Sync::Full).fill(1);
        Primer { jdir, uid, db }
    }

    fn touch(&self, counters: &Counters) {
        let store = open(&self.jdir, self.uid, MIB, Durability::Sync);
        assert!(store.peek().expect("peek").is_some());
        drop(store);
        let db = Db::open(&self.db, sqlite::Sync::Full);
        assert!(db.peek().is_some());
        drop(db);
        let _ = counters.read();
    }
}

/// What every case needs.
struct Ctx<'a> {
    counters: Counters,
    work: &'a Work,
    cold: Cold,
    primer: Primer,
    notes: &'a mut Vec<String>,
}

impl Ctx<'_> {
    /// Drops the page cache before a cold run; false (and a note) if it
    /// cannot, and no cold run happens after that.
    fn drop_caches(&mut self) -> bool {
        if let Cold::No(_) = self.cold {
            return false;
        }
        match sys::drop_caches() {
            Ok(()) => {
                self.primer.touch(&self.counters);
                true
            }
            Err(e) => {
                self.cold = Cold::No(format!("drop_caches: {e}"));
                false
            }
        }
    }
}

/// Times `once` (open, then first peek; returns the open's and the
/// total's ns) `n` times, with the counters around each run.
fn timed(
    counters: &Counters,
    n: usize,
    mut before_each: impl FnMut() -> bool,
    mut once: impl FnMut() -> (u64, u64),
) -> Runs {
    let mut runs = Runs::default();
    for _ in 0..n {
        if !before_each() {
            break;
        }
        let a: Snapshot = counters.read();
        let (opened, total) = once();
        let b = counters.read();
        runs.opens.push(opened);
        runs.totals.push(total);
        runs.deltas.push(Delta::between(&a, &b));
    }
    runs
}

fn kilo(n: usize) -> String {
    if n == 0 {
        "0".to_string()
    } else {
        format!("{}k", n / 1000)
    }
}

fn bytes(b: Option<u64>) -> String {
    b.map_or("-".to_string(), |b| fmt_bytes(b as f64, BYTE_DECIMALS))
}

/// A journal of `capacity` with `pending` events: warm and cold rows.
fn journal_case(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    capacity: usize,
    pending: usize,
    rows: &mut Vec<crate::common::Row>,
) -> f64 {
    let cap = size_label(capacity);
    let jdir = subdir(dir, &format!("reopen-{}-{pending}", capacity / MIB));
    let uid = Uuid::new_v4();
    // Fill quickly: no sync per raise, one flush at the end.
    let t = Instant::now();
    let store = open(&jdir, uid, capacity, Durability::None);
    for _ in 0..pending {
        raise(&store);
    }
    store.flush().expect("flush");
    check(
        &store.stats(),
        &format!("reopen {cap} fill"),
        pending as u64,
        ctx.notes,
    );
    store.close().expect("close");
    drop(store);
    progress(format!(
        "journal {cap}, {} pending: filled in {}",
        kilo(pending),
        fmt_ns(t.elapsed().as_nanos() as f64)
    ));

    let once = || -> (ServiceStore, u64, u64) {
        let t = Instant::now();
        let store = open(&jdir, uid, capacity, Durability::Sync);
        let opened = t.elapsed().as_nanos() as u64;
        let first = store.peek().expect("peek");
        let total = t.elapsed().as_nanos() as u64;
        assert_eq!(first.is_some(), pending > 0, "first peek");
        (store, opened, total)
    };
    // Warm-up: the fill left the pages cached; this settles what a first
    // open writes.
    let (store, _, _) = once();
    let live = store.stats().used_bytes;
    drop(store);
    let timed_once = || {
        let (store, opened, total) = once();
        drop(store);
        (opened, total)
    };
    let warm = timed(&ctx.counters, ctx.work.warm_runs, || true, timed_once);
    let section = "reopen";
    let ws = warm.summary();
    let median = ws.p50;
    ctx.notes.push(format!(
        "reopen journal {cap}, {} pending, warm: open_file alone median {}, first peek \
         median {}; {} of live records",
        kilo(pending),
        fmt_ns(median_of(&warm.opens)),
        fmt_ns(median - median_of(&warm.opens)),
        fmt_bytes(live as f64, BYTE_DECIMALS)
    ));
    let label = format!(
        "journal {cap}, {} pending: open+peek, warm (med/max of {})",
        kilo(pending),
        warm.totals.len()
    );
    let warm_row = row(section, &label, ws);
    let warm_row = if capacity >= 1024 * MIB && pending == 0 {
        warm_row.target(
            format!("median <= {}", fmt_ns(TARGET_EMPTY_1G_NS)),
            median <= TARGET_EMPTY_1G_NS,
        )
    } else if capacity >= 256 * MIB && pending > 0 {
        warm_row.target(
            format!("median <= {}", fmt_ns(TARGET_PENDING_NS)),
            median <= TARGET_PENDING_NS,
        )
    } else {
        warm_row
    };
    rows.push(warm_row);

    if !matches!(ctx.cold, Cold::No(_)) {
        let n = ctx.work.cold_runs;
        let counters = Counters::for_dir(dir);
        let cold = timed(&counters, n, || ctx.drop_caches(), timed_once);
        if !cold.totals.is_empty() {
            let read = cold.max_of(|d| d.read_bytes);
            let dev_read = cold.max_of(|d| d.device_read_bytes);
            let limit = 2 * live + TARGET_COLD_SLACK;
            let label = format!(
                "journal {cap}, {} pending: open+peek, cold (med/max of {})",
                kilo(pending),
                cold.totals.len()
            );
            let target = match read {
                Some(r) => (
                    format!(
                        "read {} (<= 2x live + 1 MiB = {}); device-wide {}",
                        bytes(Some(r)),
                        bytes(Some(limit)),
                        bytes(dev_read)
                    ),
                    r <= limit,
                ),
                None => ("bytes read unknown (no /proc/self/io)".to_string(), false),
            };
            rows.push(row(section, &label, cold.summary()).target(target.0, target.1));
            ctx.notes.push(format!(
                "reopen journal {cap}, {} pending, cold: open_file alone median {}",
                kilo(pending),
                fmt_ns(median_of(&cold.opens))
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&jdir);
    median
}

/// An SQLite file with `pending` rows: warm and cold rows.
fn sqlite_case(
    ctx: &mut Ctx<'_>,
    dir: &Path,
    pending: usize,
    rows: &mut Vec<crate::common::Row>,
) -> f64 {
    let path = dir.join(format!("reopen-{pending}.sqlite"));
    Db::open(&path, sqlite::Sync::Full).fill(pending);
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    let once = || {
        let t = Instant::now();
        let db = Db::open(&path, sqlite::Sync::Full);
        let opened = t.elapsed().as_nanos() as u64;
        let first = db.peek();
        let total = t.elapsed().as_nanos() as u64;
        assert_eq!(first.is_some(), pending > 0, "first SELECT");
        drop(db);
        (opened, total)
    };
    once();
    let warm = timed(&ctx.counters, ctx.work.warm_runs, || true, once);
    let section = "reopen";
    let ws = warm.summary();
    let median = ws.p50;
    rows.push(row(
        section,
        &format!(
            "SQLite WAL FULL, {} rows: open+SELECT, warm (med/max of {})",
            kilo(pending),
            warm.totals.len()
        ),
        ws,
    ));
    if !matches!(ctx.cold, Cold::No(_)) {
        let counters = Counters::for_dir(dir);
        let cold = timed(&counters, ctx.work.cold_runs, || ctx.drop_caches(), once);
        if !cold.totals.is_empty() {
            rows.push(row(
                section,
                &format!(
                    "SQLite WAL FULL, {} rows: open+SELECT, cold (med/max of {})",
                    kilo(pending),
                    cold.totals.len()
                ),
                cold.summary(),
            ));
            ctx.notes.push(format!(
                "reopen SQLite, {} rows, cold: read {} per run at most (device-wide {}); \
                 file {}",
                kilo(pending),
                bytes(cold.max_of(|d| d.read_bytes)),
                bytes(cold.max_of(|d| d.device_read_bytes)),
                fmt_bytes(size as f64, BYTE_DECIMALS)
            ));
        }
    }
    sqlite::remove(&path);
    median
}

/// Every reopen case; the ratios of the warm medians.
pub fn reopen(s: Section<'_>, work: &Work, ratios: &mut Vec<String>) {
    let Section {
        dir, rows, notes, ..
    } = s;
    let cold = if sys::is_root() {
        Cold::Yes
    } else {
        Cold::No("needs root".to_string())
    };
    let mut ctx = Ctx {
        counters: Counters::for_dir(dir),
        work,
        cold,
        primer: Primer::new(dir),
        notes,
    };
    let mut journal: Vec<(usize, usize, f64)> = Vec::new();
    for capacity in SIZES {
        let need = capacity as u64 + SPACE_MARGIN;
        match sys::free_bytes(dir) {
            Some(free) if free < need => {
                ctx.notes.push(format!(
                    "reopen {}: skipped, {} free under {} (needs {})",
                    size_label(capacity),
                    bytes(Some(free)),
                    dir.display(),
                    bytes(Some(need))
                ));
                continue;
            }
            _ => {}
        }
        for pending in PENDING {
            progress(format!(
                "reopen journal {}, {} pending",
                size_label(capacity),
                kilo(pending)
            ));
            let median = journal_case(&mut ctx, dir, capacity, pending, rows);
            journal.push((capacity, pending, median));
        }
    }
    let mut sql: Vec<(usize, f64)> = Vec::new();
    for pending in PENDING {
        progress(format!("reopen SQLite, {} rows", kilo(pending)));
        sql.push((pending, sqlite_case(&mut ctx, dir, pending, rows)));
    }
    if let Cold::No(why) = &ctx.cold {
        ctx.notes.push(format!("cold: not run ({why})"));
        rows.push(row(
            "reopen",
            &format!("cold: not run ({why})"),
            Summary {
                n: 0,
                rate: None,
                p50: f64::NAN,
                p99: f64::NAN,
                p999: None,
                bytes_per_op: None,
                device_bytes_per_op: None,
            },
        ));
    }
    ratios.push(
        "  reopen+first peek, warm medians (journal / SQLite WAL FULL, same pending):".into(),
    );
    for (capacity, pending, median) in journal {
        if let Some((_, s)) = sql.iter().find(|(p, _)| *p == pending) {
            ratios.push(format!(
                "    journal {}, {} pending: {} vs SQLite {}: journal takes {:.2}x SQLite's time",
                size_label(capacity),
                kilo(pending),
                fmt_ns(median),
                fmt_ns(*s),
                median / s
            ));
        }
    }
}

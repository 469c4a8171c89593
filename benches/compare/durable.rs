//! Single-threaded calls: durable (journal `Durability::Sync` against
//! SQLite WAL FULL and the floor) and page cache (journal
//! `Durability::None` against SQLite WAL OFF).

use softnet_persistence::{Durability, Uuid};

use crate::common::{fmt_ns, row, run_interleaved, Phase, Section, Summary};
use crate::sqlite::{self, Db};
use crate::sys;
use crate::{check, open, peek_ack, raise, size_label, subdir, Work, MIB};

/// Calls per block: the journal's, SQLite's and the floor's blocks take
/// turns, so the ratios compare figures taken under the same load.
const BLOCK: usize = 100;
/// Untimed calls before each durable phase.
const WARMUP: usize = 20;
/// Journal of the durable section.
const DURABLE_CAPACITY: usize = 16 * MIB;
/// Journal of the page-cache section: fresh, and large enough for every
/// raise of the section (about 144 bytes a record) without wrapping.
const CACHE_CAPACITY: usize = 256 * MIB;
/// Calls per sample of the page-cache rate rows.
const PER_SAMPLE: usize = 1_000;

/// Targets (the issue's).
const TARGET_VS_SQLITE_FULL: f64 = 1.1;
const TARGET_CACHE_P99_NS: f64 = 2_000.0;
const TARGET_CACHE_RATE: f64 = 3_000_000.0;
const TARGET_VS_SQLITE_OFF: f64 = 25.0;

/// `a / b` of two rates, or of two latencies the other way round.
fn times(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b)
}

fn rate(s: &Summary) -> f64 {
    s.rate.unwrap_or(f64::NAN)
}

/// Durable raise and raise+peek+ack: journal Sync, SQLite WAL FULL, and
/// the floor, in turns.
pub fn durable(s: Section<'_>, work: &Work, ratios: &mut Vec<String>) {
    let Section {
        dir,
        io,
        mut floor,
        rows,
        notes,
    } = s;
    let store = open(
        &subdir(dir, "durable"),
        Uuid::new_v4(),
        DURABLE_CAPACITY,
        Durability::Sync,
    );
    let db_path = dir.join("durable.sqlite");
    let db = Db::open(&db_path, sqlite::Sync::Full);
    for _ in 0..WARMUP {
        raise(&store);
        db.raise();
    }
    for _ in 0..WARMUP {
        peek_ack(&store);
        db.peek_ack();
    }

    let blocks = work.durable_raises.div_ceil(BLOCK);
    let (mut j_raise, mut s_raise) = (Phase::default(), Phase::default());
    for _ in 0..blocks {
        run_interleaved(&mut j_raise, io, BLOCK, &mut floor, |_| raise(&store));
        s_raise.run(io, BLOCK, |_| db.raise());
    }
    let pending = (blocks * BLOCK) as u64;
    check(&store.stats(), "durable raise", pending, notes);

    let loop_blocks = work.durable_loops.div_ceil(BLOCK);
    let (mut j_loop, mut s_loop) = (Phase::default(), Phase::default());
    for _ in 0..loop_blocks {
        run_interleaved(&mut j_loop, io, BLOCK, &mut floor, |_| {
            raise(&store);
            peek_ack(&store);
        });
        s_loop.run(io, BLOCK, |_| {
            db.raise();
            db.peek_ack();
        });
    }
    check(&store.stats(), "durable loop", pending, notes);
    if db.count() != pending {
        notes.push(format!(
            "WARNING durable SQLite: {} rows (expected {pending})",
            db.count()
        ));
    }
    store.close().expect("close");
    drop(store);
    drop(db);
    sqlite::remove(&db_path);

    let floor_p50 = floor.as_ref().map(|f| f.reference_p50());
    let cap = size_label(DURABLE_CAPACITY);
    let (jr, sr) = (j_raise.summary(1), s_raise.summary(1));
    let (jl, sl) = (j_loop.summary(1), s_loop.summary(1));
    let x_floor = |ns: f64| floor_p50.map_or("-".to_string(), |f| format!("{:.2}x", ns / f));

    // Throughput of single-threaded durable calls = 1 / p50 latency (the
    // rate over the phase is printed too, but one slow sync moves it).
    let vs = sr.p50 / jr.p50;
    ratios.push(format!(
        "  durable raise: journal 1/p50 = {vs:.2}x SQLite WAL FULL's (p50 {} vs {}; events/s \
         over the phases {}); x floor: journal {}, SQLite {}",
        fmt_ns(jr.p50),
        fmt_ns(sr.p50),
        times(rate(&jr), rate(&sr)),
        x_floor(jr.p50),
        x_floor(sr.p50)
    ));
    ratios.push(format!(
        "  durable raise+peek+ack: journal 1/p50 = {:.2}x SQLite WAL FULL's (p50 {} vs {}); \
         p50/2 (2 syncs a loop) x floor: journal {}, SQLite {}",
        sl.p50 / jl.p50,
        fmt_ns(jl.p50),
        fmt_ns(sl.p50),
        x_floor(jl.p50 / 2.0),
        x_floor(sl.p50 / 2.0)
    ));
    let section = "durable";
    rows.push(
        row(
            section,
            &format!("journal {cap} Sync: raise (x{})", blocks * BLOCK),
            jr,
        )
        .target(
            format!("1/p50 {vs:.2}x SQLite FULL's (>= {TARGET_VS_SQLITE_FULL}x)"),
            vs >= TARGET_VS_SQLITE_FULL,
        ),
    );
    rows.push(row(
        section,
        &format!("SQLite WAL FULL: INSERT (x{})", blocks * BLOCK),
        sr,
    ));
    rows.push(row(
        section,
        &format!(
            "journal {cap} Sync: raise+peek+ack (x{})",
            loop_blocks * BLOCK
        ),
        jl,
    ));
    rows.push(row(
        section,
        &format!(
            "SQLite WAL FULL: INSERT+SELECT+DELETE (x{})",
            loop_blocks * BLOCK
        ),
        sl,
    ));
}

/// Runs `a_blocks` of `a` and `b_blocks` of `b`, spreading `b`'s blocks
/// evenly among `a`'s.
fn take_turns(a_blocks: usize, b_blocks: usize, mut a: impl FnMut(), mut b: impl FnMut()) {
    let mut b_done = 0;
    for i in 0..a_blocks {
        a();
        let due = (i + 1) * b_blocks / a_blocks.max(1);
        while b_done < due {
            b();
            b_done += 1;
        }
    }
    while b_done < b_blocks {
        b();
        b_done += 1;
    }
}

/// Page-cache raise and raise+peek+ack: a fresh journal with
/// `Durability::None` against SQLite WAL OFF.
pub fn page_cache(s: Section<'_>, work: &Work, ratios: &mut Vec<String>) {
    let Section {
        dir,
        io,
        rows,
        notes,
        ..
    } = s;
    let store = open(
        &subdir(dir, "page-cache"),
        Uuid::new_v4(),
        CACHE_CAPACITY,
        Durability::None,
    );
    let db_path = dir.join("page-cache.sqlite");
    let db = Db::open(&db_path, sqlite::Sync::Off);

    // Raises: each block of calls timed one by one, then as many timed
    // 1,000 at a time (the rate without two clock reads per call).
    let j_blocks = work.cache_raises.div_ceil(PER_SAMPLE);
    let s_blocks = work.sqlite_off_raises.div_ceil(PER_SAMPLE);
    let (mut j_each, mut j_batch) = (Phase::default(), Phase::default());
    let (mut s_each, mut s_batch) = (Phase::default(), Phase::default());
    // Page faults the raising thread takes itself (the journal prepares
    // pages ahead of its head on a thread of its own).
    let mut j_faults = Some(0u64);
    take_turns(
        j_blocks,
        s_blocks,
        || {
            let before = sys::thread_minor_faults();
            j_each.run(io, PER_SAMPLE, |_| raise(&store));
            j_batch.run(io, 1, |_| {
                for _ in 0..PER_SAMPLE {
                    raise(&store);
                }
            });
            let taken = sys::thread_minor_faults().zip(before).map(|(a, b)| a - b);
            j_faults = j_faults.zip(taken).map(|(sum, t)| sum + t);
        },
        || {
            s_each.run(io, PER_SAMPLE, |_| db.raise());
            s_batch.run(io, 1, |_| {
                for _ in 0..PER_SAMPLE {
                    db.raise();
                }
            });
        },
    );
    let j_pending = (2 * j_blocks * PER_SAMPLE) as u64;
    check(&store.stats(), "page-cache raise", j_pending, notes);

    let jl_blocks = work.cache_loops.div_ceil(PER_SAMPLE);
    let sl_blocks = work.sqlite_off_loops.div_ceil(PER_SAMPLE);
    let (mut j_loop, mut s_loop) = (Phase::default(), Phase::default());
    take_turns(
        jl_blocks,
        sl_blocks,
        || {
            j_loop.run(io, PER_SAMPLE, |_| {
                raise(&store);
                peek_ack(&store);
            })
        },
        || {
            s_loop.run(io, PER_SAMPLE, |_| {
                db.raise();
                db.peek_ack();
            })
        },
    );
    check(&store.stats(), "page-cache loop", j_pending, notes);
    let used = store.stats().used_bytes;
    if let Some(faults) = j_faults {
        notes.push(format!(
            "page cache: the raising thread took {faults} minor page faults in {} raises \
             ({} of records written, {} pages)",
            2 * j_blocks * PER_SAMPLE,
            crate::common::fmt_bytes(used as f64, 0),
            used / 4096
        ));
    }
    store.close().expect("close");
    drop(store);
    drop(db);
    sqlite::remove(&db_path);

    let cap = size_label(CACHE_CAPACITY);
    notes.push(format!(
        "page cache: the journal held {} of records ({} pending) at the end, in a {cap} file",
        crate::common::fmt_bytes(used as f64, 0),
        j_pending
    ));
    let (je, jb) = (j_each.summary(1), j_batch.summary(PER_SAMPLE));
    let (se, sb) = (s_each.summary(1), s_batch.summary(PER_SAMPLE));
    let (jl, sl) = (j_loop.summary(1), s_loop.summary(1));
    let vs = rate(&jb) / rate(&sb);
    ratios.push(format!(
        "  page-cache raise: journal {vs:.2}x SQLite WAL OFF's events/s (timed per {PER_SAMPLE}); \
         p50 per call {} vs {} ({})",
        fmt_ns(je.p50),
        fmt_ns(se.p50),
        times(se.p50, je.p50)
    ));
    ratios.push(format!(
        "  page-cache raise+peek+ack: journal {} SQLite WAL OFF's events/s; p50 {} vs {}",
        times(rate(&jl), rate(&sl)),
        fmt_ns(jl.p50),
        fmt_ns(sl.p50)
    ));

    let section = "page cache";
    let n = j_blocks * PER_SAMPLE;
    let p99 = je.p99;
    rows.push(
        row(
            section,
            &format!("journal {cap} None: raise, fresh file (x{n})"),
            je,
        )
        .target(
            format!("p99 <= {}", fmt_ns(TARGET_CACHE_P99_NS)),
            p99 <= TARGET_CACHE_P99_NS,
        ),
    );
    let jb_rate = rate(&jb);
    rows.push(
        row(
            section,
            &format!("journal {cap} None: raise, per {PER_SAMPLE} (x{n})"),
            jb,
        )
        .target(">= 3M raises/s", jb_rate >= TARGET_CACHE_RATE),
    );
    let sn = s_blocks * PER_SAMPLE;
    rows.push(row(section, &format!("SQLite WAL OFF: INSERT (x{sn})"), se));
    rows.push(
        row(
            section,
            &format!("SQLite WAL OFF: INSERT, per {PER_SAMPLE} (x{sn})"),
            sb,
        )
        .target(
            format!("journal's rate {vs:.1}x this (>= {TARGET_VS_SQLITE_OFF}x)"),
            vs >= TARGET_VS_SQLITE_OFF,
        ),
    );
    rows.push(row(
        section,
        &format!(
            "journal {cap} None: raise+peek+ack (x{})",
            jl_blocks * PER_SAMPLE
        ),
        jl,
    ));
    rows.push(row(
        section,
        &format!(
            "SQLite WAL OFF: INSERT+SELECT+DELETE (x{})",
            sl_blocks * PER_SAMPLE
        ),
        sl,
    ));
}

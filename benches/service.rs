//! Service store benchmark (issue 2, "Performance"; DESIGN.md section 9).
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
// The floor maps a file with libc directly; the crate denies unsafe code.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, Instant};

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
/// Floor iterations: advancing through a fresh preallocated file, then
/// rewriting one already written page, then syncing nothing.
const FLOOR_FRESH: usize = 2_000;
const FLOOR_REWRITE: usize = 1_000;
const FLOOR_CLEAN: usize = 500;
/// In the Sync section, store operations per block, and floor syncs run
/// between two blocks: the ratios compare figures taken under the same disk
/// and machine load (this machine is shared and its sync latency drifts).
const INTERLEAVE_BLOCK: usize = 100;
const INTERLEAVE_FLOOR: usize = 50;
/// Size of the floor's file.
const FLOOR_FILE: usize = 4 * 1024 * 1024;
/// Bytes dirtied per floor iteration.
const FLOOR_DIRTY: usize = 64;

/// Targets of issue 2.
const TARGET_NONE_P50_NS: f64 = 1_000.0;
const TARGET_NONE_RATE: f64 = 1_000_000.0;
const TARGET_FLOOR_RATIO: f64 = 1.2;
const TARGET_BYTES_PER_DURABLE_OP: f64 = 8.0 * 1024.0;
const TARGET_REOPEN_NS: f64 = 5_000_000.0;

// ----- sections --------------------------------------------------------

/// One durability setting and how much work to give it.
struct Plan {
    key: &'static str,
    label: &'static str,
    durability: Durability,
    /// Events raised (then drained) per round.
    raises: usize,
    /// Rounds of raise-then-drain; the journal ring is reused between them.
    rounds: usize,
    /// Iterations of the raise+peek+ack loop.
    loops: usize,
}

fn plans() -> Vec<Plan> {
    vec![
        Plan {
            key: "sync",
            label: "Sync",
            durability: Durability::Sync,
            raises: 3_000,
            rounds: 1,
            loops: 3_000,
        },
        Plan {
            key: "batch",
            label: "Batch64/10ms",
            durability: Durability::Batch {
                max_ops: 64,
                max_delay: Duration::from_millis(10),
            },
            raises: 100_000,
            rounds: 1,
            loops: 100_000,
        },
        Plan {
            key: "none",
            label: "None",
            durability: Durability::None,
            raises: 100_000,
            rounds: 10,
            loops: 1_000_000,
        },
    ]
}

const SECTIONS: [&str; 5] = ["floor", "sync", "batch", "none", "reopen"];

/// What the command line asked for: `None` runs everything.
struct Filter(Option<String>);

impl Filter {
    fn parse() -> Filter {
        // Cargo appends `--bench`; flags are ignored.
        let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let filter = arg.map(|a| a.to_ascii_lowercase());
        if let Some(f) = &filter {
            if f != "all" && !SECTIONS.contains(&f.as_str()) {
                eprintln!(
                    "unknown section {f:?}; usage: cargo bench --bench service [-- {}|all]",
                    SECTIONS.join("|")
                );
                std::process::exit(2);
            }
        }
        Filter(filter.filter(|f| f != "all"))
    }

    fn is(&self, key: &str) -> bool {
        self.0.as_deref().is_none_or(|f| f == key)
    }

    /// The floor runs for itself and for the Sync ratios.
    fn floor(&self) -> bool {
        self.is("floor") || self.is("sync")
    }

    fn phases(&self, plan: &Plan) -> bool {
        self.is(plan.key)
    }

    fn reopen(&self, plan: &Plan) -> bool {
        self.is(plan.key) || self.is("reopen")
    }
}

// ----- I/O accounting ----------------------------------------------------

/// Where the written bytes are read from.
struct IoSource {
    /// `/sys/dev/block/<major>:<minor>/stat` of the journal's device.
    device_stat: Option<PathBuf>,
}

#[derive(Clone, Copy)]
struct IoCount {
    /// `write_bytes` of `/proc/self/io`.
    process: Option<u64>,
    /// Sectors (512 B) written by the whole block device.
    device_sectors: Option<u64>,
}

impl IoSource {
    fn for_dir(dir: &Path) -> IoSource {
        let device_stat = std::fs::metadata(dir).ok().and_then(|m| {
            let dev = m.dev();
            let path = PathBuf::from(format!(
                "/sys/dev/block/{}:{}/stat",
                libc::major(dev),
                libc::minor(dev)
            ));
            path.exists().then_some(path)
        });
        IoSource { device_stat }
    }

    fn read(&self) -> IoCount {
        let process = std::fs::read_to_string("/proc/self/io").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        });
        // Field 7 of the block stat file: sectors written.
        let device_sectors = self.device_stat.as_ref().and_then(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.split_whitespace().nth(6).and_then(|v| v.parse().ok()))
        });
        IoCount {
            process,
            device_sectors,
        }
    }
}

/// Bytes written over a phase: process-accounted and device-wide.
#[derive(Clone, Copy, Default)]
struct Written {
    process: Option<u64>,
    device: Option<u64>,
}

impl Written {
    fn between(a: IoCount, b: IoCount) -> Written {
        Written {
            process: a.process.zip(b.process).map(|(a, b)| b.saturating_sub(a)),
            device: a
                .device_sectors
                .zip(b.device_sectors)
                .map(|(a, b)| b.saturating_sub(a) * 512),
        }
    }

    fn add(&mut self, other: Written) {
        fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        self.process = sum(self.process, other.process);
        self.device = sum(self.device, other.device);
    }
}

// ----- measurement -----------------------------------------------------

/// Samples of one operation, possibly gathered over several runs.
#[derive(Default)]
struct Phase {
    samples: Vec<u64>,
    wall: Duration,
    written: Written,
}

impl Phase {
    /// Runs `op` `n` times, timing each call, and counts the bytes written.
    fn run(&mut self, io: &IoSource, n: usize, mut op: impl FnMut(usize)) {
        self.samples.reserve(n);
        let before = io.read();
        let start = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            op(i);
            self.samples.push(t.elapsed().as_nanos() as u64);
        }
        self.wall += start.elapsed();
        let after = io.read();
        self.written.add(Written::between(before, after));
    }

    fn summary(mut self, ops_per_sample: usize) -> Summary {
        self.samples.sort_unstable();
        let n = self.samples.len();
        Summary {
            n,
            rate: Some((n * ops_per_sample) as f64 / self.wall.as_secs_f64().max(1e-12)),
            p50: percentile(&self.samples, 50.0),
            p99: percentile(&self.samples, 99.0),
            p999: Some(percentile(&self.samples, 99.9)),
            bytes_per_op: self
                .written
                .process
                .map(|b| b as f64 / (n * ops_per_sample) as f64),
            device_bytes_per_op: self
                .written
                .device
                .map(|b| b as f64 / (n * ops_per_sample) as f64),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

struct Summary {
    n: usize,
    /// Operations per second over the phase's wall time.
    rate: Option<f64>,
    p50: f64,
    /// For the reopen rows: the largest of the runs.
    p99: f64,
    p999: Option<f64>,
    bytes_per_op: Option<f64>,
    device_bytes_per_op: Option<f64>,
}

struct Row {
    section: String,
    op: String,
    s: Summary,
    target: String,
    pass: Option<bool>,
}

fn row(section: &str, op: &str, s: Summary) -> Row {
    Row {
        section: section.to_string(),
        op: op.to_string(),
        s,
        target: String::new(),
        pass: None,
    }
}

impl Row {
    fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }
}

// ----- the floor: msync of one page ----------------------------------------

/// A preallocated file mapped shared with `libc::mmap`, as the journal maps
/// its file, but with none of the journal's work around the sync.
struct FloorFile {
    file: File,
    map: *mut u8,
    len: usize,
    page: usize,
}

impl FloorFile {
    fn create(path: &Path, len: usize) -> io::Result<FloorFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let fd = file.as_raw_fd();
        // SAFETY: plain syscall on a valid open descriptor; no memory passed.
        let rc = unsafe { libc::posix_fallocate(fd, 0, len as libc::off_t) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: sysconf has no memory arguments.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        // SAFETY: maps `len` bytes of a file we just created and grew to
        // `len`; no address hint, so nothing existing is replaced. The result
        // is checked against MAP_FAILED.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Same advice as the journal: no readahead into large folios.
        // SAFETY: the range is exactly the mapping made above.
        unsafe { libc::madvise(map, len, libc::MADV_RANDOM) };
        Ok(FloorFile {
            file,
            map: map.cast(),
            len,
            page,
        })
    }

    /// Dirties `FLOOR_DIRTY` bytes at `offset` and msyncs their page.
    fn dirty_and_sync(&mut self, offset: usize, value: u8) {
        assert!(offset + FLOOR_DIRTY <= self.len && offset % self.page + FLOOR_DIRTY <= self.page);
        // SAFETY: the range is inside the mapping (checked above), which
        // lives as long as `self`; the file is ours alone and never
        // truncated, so the pages stay backed.
        unsafe { ptr::write_bytes(self.map.add(offset), value, FLOOR_DIRTY) };
        let page_start = offset - offset % self.page;
        // SAFETY: a page-aligned range of one page inside the mapping.
        let rc = unsafe { libc::msync(self.map.add(page_start).cast(), self.page, libc::MS_SYNC) };
        assert_eq!(rc, 0, "msync: {}", io::Error::last_os_error());
    }

    fn fdatasync(&self) {
        // SAFETY: plain syscall on a valid open descriptor.
        let rc = unsafe { libc::fdatasync(self.file.as_raw_fd()) };
        assert_eq!(rc, 0, "fdatasync: {}", io::Error::last_os_error());
    }
}

impl Drop for FloorFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `create`, once; no
        // reference into it outlives `self`.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

struct Floor {
    file: FloorFile,
    /// Next offset of the advancing pattern.
    next: usize,
    /// p50 of the advancing pattern measured alone, before the sections.
    p50: f64,
    /// The same pattern interleaved with the Sync section's operations.
    interleaved: Phase,
}

impl Floor {
    /// Advances through the file 64 bytes at a time, as a journal appends:
    /// 64 syncs per page, the first of them on a never-written block.
    fn fresh_into(&mut self, phase: &mut Phase, io: &IoSource, n: usize) {
        phase.run(io, n, |i| {
            let off = self.next;
            self.next = (self.next + FLOOR_DIRTY) % self.file.len;
            self.file.dirty_and_sync(off, i as u8);
        });
    }

    fn fresh(&mut self, io: &IoSource, n: usize) -> Phase {
        let mut phase = Phase::default();
        self.fresh_into(&mut phase, io, n);
        phase
    }

    /// The denominator of the ratios: the interleaved p50 if there is one.
    fn reference_p50(&self) -> f64 {
        if self.interleaved.samples.is_empty() {
            self.p50
        } else {
            let mut v = self.interleaved.samples.clone();
            v.sort_unstable();
            percentile(&v, 50.0)
        }
    }
}

/// Runs `n` operations into `phase`; with a floor, in blocks with floor
/// syncs between them.
fn run_interleaved(
    phase: &mut Phase,
    io: &IoSource,
    n: usize,
    floor: &mut Option<&mut Floor>,
    mut op: impl FnMut(),
) {
    let Some(floor) = floor else {
        phase.run(io, n, |_| op());
        return;
    };
    let mut done = 0;
    while done < n {
        let count = (n - done).min(INTERLEAVE_BLOCK);
        phase.run(io, count, |_| op());
        done += count;
        let mut samples = std::mem::take(&mut floor.interleaved);
        floor.fresh_into(&mut samples, io, INTERLEAVE_FLOOR);
        floor.interleaved = samples;
    }
}

fn floor_rows(dir: &Path, io: &IoSource, rows: &mut Vec<Row>) -> Floor {
    let path = dir.join("floor.bin");
    let file = FloorFile::create(&path, FLOOR_FILE).expect("create the floor file");
    let mut floor = Floor {
        file,
        next: 0,
        p50: f64::NAN,
        interleaved: Phase::default(),
    };
    // A few untimed syncs so the first samples do not pay for the setup.
    floor.fresh(io, 16);
    let fresh = floor.fresh(io, FLOOR_FRESH).summary(1);
    floor.p50 = fresh.p50;
    rows.push(row("floor", "msync 1 page, 64 B, advancing", fresh));

    let page = floor.file.page;
    let mut rewrite = Phase::default();
    let at = floor.next - floor.next % page;
    let target = at.saturating_sub(page);
    rewrite.run(io, FLOOR_REWRITE, |i| {
        let off = target + (i * FLOOR_DIRTY) % page;
        floor.file.dirty_and_sync(off, i as u8);
    });
    rows.push(row(
        "floor",
        "msync 1 page, 64 B, same page",
        rewrite.summary(1),
    ));

    let mut clean = Phase::default();
    clean.run(io, FLOOR_CLEAN, |_| floor.file.fdatasync());
    rows.push(row("floor", "fdatasync, nothing dirty", clean.summary(1)));
    floor
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
            format!("{} written/op (<= 8 KiB)", fmt_bytes(b)),
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
    for _ in 0..plan.rounds {
        run_interleaved(&mut raises, io, plan.raises, &mut floor, || raise(&store));
        check(&store.stats(), "after raise", plan.raises as u64, notes);
        run_interleaved(&mut drains, io, plan.raises, &mut floor, || {
            peek_ack(&store)
        });
        check(&store.stats(), "after drain", 0, notes);
    }
    let mut looped = Phase::default();
    run_interleaved(&mut looped, io, plan.loops, &mut floor, || {
        raise(&store);
        peek_ack(&store);
    });
    check(&store.stats(), "after loop", 0, notes);

    let mut close = Phase::default();
    close.run(io, 1, |_| store.close().expect("close"));
    drop(store);

    let section = plan.label;
    notes.push(depth_note(section, &raises.samples, plan.raises));
    let raise_s = raises.summary(1);
    let drain_s = drains.summary(1);
    let loop_s = looped.summary(1);
    let close_s = close.summary(1);
    let raise_op = format!("raise (x{})", plan.raises * plan.rounds);
    let drain_op = format!("peek+ack (x{})", plan.raises * plan.rounds);
    let loop_op = format!("raise+peek+ack loop (x{})", plan.loops);
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
    let mut close_row = row(section, "close (final flush)", close_s);
    close_row.s.rate = None;
    close_row.s.p999 = None;
    rows.push(close_row);
}

/// Raise latency against queue depth: the p50 of the raises made with
/// under 10% and with over 90% of a round's events already pending. A
/// raise should not slow down as the queue grows.
fn depth_note(section: &str, samples: &[u64], per_round: usize) -> String {
    let tenth = (per_round / 10).max(1);
    let pick = |low: bool| {
        let mut v: Vec<u64> = samples
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
        v.sort_unstable();
        percentile(&v, 50.0)
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
    opens.sort_unstable();
    let median = percentile(&totals, 50.0);
    notes.push(format!(
        "reopen {}: open_file alone median {}, first peek median {} (of the total)",
        plan.label,
        fmt_ns(percentile(&opens, 50.0)),
        fmt_ns(median - percentile(&opens, 50.0)),
    ));
    let runs = REOPEN_RUNS as f64;
    let s = Summary {
        n: REOPEN_RUNS,
        rate: None,
        p50: median,
        p99: *totals.last().unwrap_or(&0) as f64,
        p999: None,
        bytes_per_op: written.process.map(|b| b as f64 / runs),
        device_bytes_per_op: written.device.map(|b| b as f64 / runs),
    };
    rows.push(
        row(
            plan.label,
            &format!("reopen+peek, {}k pending (med/max)", REOPEN_PENDING / 1000),
            s,
        )
        .target("median <= 5 ms", median <= TARGET_REOPEN_NS),
    );
}

// ----- output ----------------------------------------------------------------

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".to_string()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 10_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else if ns < 1_000_000.0 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 10_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} s", ns / 1e9)
    }
}

fn fmt_rate(r: Option<f64>) -> String {
    match r {
        None => "-".to_string(),
        Some(r) if r >= 1e6 => format!("{:.2}M/s", r / 1e6),
        Some(r) if r >= 1e4 => format!("{:.0}k/s", r / 1e3),
        Some(r) => format!("{r:.0}/s"),
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn print_table(rows: &[Row]) {
    let header = [
        "section",
        "operation",
        "n",
        "events/s",
        "p50",
        "p99",
        "p99.9",
        "written/op",
        "device/op",
        "target",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let verdict = match r.pass {
                Some(true) => format!("PASS {}", r.target),
                Some(false) => format!("MISS {}", r.target),
                None => String::new(),
            };
            [
                r.section.clone(),
                r.op.clone(),
                r.s.n.to_string(),
                fmt_rate(r.s.rate),
                fmt_ns(r.s.p50),
                fmt_ns(r.s.p99),
                r.s.p999.map_or("-".to_string(), fmt_ns),
                r.s.bytes_per_op.map_or("-".to_string(), fmt_bytes),
                r.s.device_bytes_per_op.map_or("-".to_string(), fmt_bytes),
                verdict,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let mut out = String::new();
        for (i, (s, w)) in c.iter().zip(widths).enumerate() {
            let numeric = (2..=8).contains(&i);
            if i == c.len() - 1 {
                out.push_str(s);
            } else if numeric {
                out.push_str(&format!("{s:>w$}  "));
            } else {
                out.push_str(&format!("{s:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    let head: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    println!("{}", line(&head));
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    let mut last = String::new();
    for (r, c) in rows.iter().zip(&cells) {
        if !last.is_empty() && r.section != last {
            println!();
        }
        last.clone_from(&r.section);
        println!("{}", line(c));
    }
}

/// The `/proc/mounts` entry holding `path`: (device, mount point, type,
/// options).
fn mount_of(path: &Path) -> Option<(String, String, String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| {
                let point = f[1].replace("\\040", " ");
                (f[0].to_string(), point, f[2].to_string(), f[3].to_string())
            })
        })
        .filter(|(_, point, _, _)| path.starts_with(point))
        .max_by_key(|(_, point, _, _)| point.len())
}

/// Cost of the two `Instant::now()` calls around each sample.
fn timer_overhead() -> f64 {
    let mut samples: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(());
            t.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    percentile(&samples, 50.0)
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("SOFTNET_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the bench directory");
    tempfile::Builder::new()
        .prefix("softnet-bench-")
        .tempdir_in(&base)
        .expect("create a temporary directory")
}

fn main() {
    let filter = Filter::parse();
    let started = Instant::now();
    let dir = bench_dir();
    let io = IoSource::for_dir(dir.path());

    println!("softnet-persistence service benchmark");
    println!(
        "workload: Queueing events, {}-byte name, {}-byte arguments; journal capacity {} MiB",
        NAME.len(),
        ARGS.len(),
        CAPACITY >> 20
    );
    println!("journal directory: {}", dir.path().display());
    match mount_of(dir.path()) {
        Some((dev, point, fs, opts)) => {
            println!("file system: {fs} on {dev} mounted at {point} ({opts})");
            if fs == "tmpfs" || fs == "ramfs" {
                println!(
                    "WARNING: {fs} keeps pages in memory and makes msync free; durable \
                     figures are meaningless here (set SOFTNET_BENCH_DIR to a disk)"
                );
            }
        }
        None => println!("file system: unknown (no /proc/mounts entry)"),
    }
    match &io.device_stat {
        Some(p) => println!("device counters: {}", p.display()),
        None => println!("device counters: none (no block device under the directory)"),
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "cpus: {cpus}; load average at start: {}; timer overhead per sample (p50): {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        fmt_ns(timer_overhead())
    );
    if let Some(f) = &filter.0 {
        println!("section filter: {f}");
    }
    println!();

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut floor = None;
    if filter.floor() {
        eprintln!("[{:>6.1}s] floor", started.elapsed().as_secs_f64());
        floor = Some(floor_rows(dir.path(), &io, &mut rows));
    }
    let reopen_uid = {
        let plans = plans();
        plans.iter().any(|p| filter.reopen(p)).then(|| {
            eprintln!(
                "[{:>6.1}s] preparing {REOPEN_PENDING} pending events for reopen",
                started.elapsed().as_secs_f64()
            );
            prepare_reopen(dir.path())
        })
    };
    for plan in plans() {
        if filter.phases(&plan) {
            eprintln!(
                "[{:>6.1}s] {}: raise, peek+ack, loop",
                started.elapsed().as_secs_f64(),
                plan.label
            );
            phase_rows(
                dir.path(),
                &io,
                &plan,
                floor
                    .as_mut()
                    .filter(|_| plan.durability == Durability::Sync),
                &mut rows,
                &mut notes,
            );
            if let (Durability::Sync, Some(floor)) = (plan.durability, floor.as_mut()) {
                let during = std::mem::take(&mut floor.interleaved);
                let p50 = {
                    let mut v = during.samples.clone();
                    v.sort_unstable();
                    percentile(&v, 50.0)
                };
                notes.push(format!(
                    "floor drift: msync p50 {} alone before the sections, {} interleaved \
                     with the Sync section (the ratios use the interleaved one)",
                    fmt_ns(floor.p50),
                    fmt_ns(p50)
                ));
                floor.p50 = p50;
                rows.push(row(
                    "floor",
                    "msync advancing, amid Sync ops",
                    during.summary(1),
                ));
            }
        }
        if let (true, Some(uid)) = (filter.reopen(&plan), reopen_uid) {
            eprintln!(
                "[{:>6.1}s] {}: reopen",
                started.elapsed().as_secs_f64(),
                plan.label
            );
            reopen_rows(dir.path(), &io, uid, &plan, &mut rows, &mut notes);
        }
    }

    // Floor rows first, then the sections in plan order.
    rows.sort_by_key(|r| r.section != "floor");
    print_table(&rows);
    println!();
    if let Some(floor) = &floor {
        println!(
            "floor p50 (denominator of the ratios): {} = {:.0} syncs/s",
            fmt_ns(floor.p50),
            1e9 / floor.p50
        );
    }
    println!(
        "written/op: write_bytes of /proc/self/io (accounted per page or folio dirtied, \
         includes msync writeback) / operations"
    );
    println!(
        "device/op: sectors written by the whole block device (includes the file system \
         journal and any other writer) / operations"
    );
    for n in &notes {
        println!("{n}");
    }
    let misses = rows.iter().filter(|r| r.pass == Some(false)).count();
    let passes = rows.iter().filter(|r| r.pass == Some(true)).count();
    println!(
        "targets: {passes} PASS, {misses} MISS (not asserted); total time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

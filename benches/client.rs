//! Client store benchmark (issue 3, "Performance (benchmark)"; DESIGN.md
//! section 9).
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
// The floor maps a file with libc directly; the crate denies unsafe code.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, Instant};

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
/// Floor iterations: advancing through a fresh preallocated file, then
/// rewriting one already written page, then syncing nothing.
const FLOOR_FRESH: usize = 2_000;
const FLOOR_REWRITE: usize = 1_000;
const FLOOR_CLEAN: usize = 500;
/// In the Sync section, puts per block, and floor syncs run between two
/// blocks, so the ratio compares figures taken under the same disk load.
const INTERLEAVE_BLOCK: usize = 100;
const INTERLEAVE_FLOOR: usize = 50;
/// Size of the floor's file.
const FLOOR_FILE: usize = 4 * 1024 * 1024;
/// Bytes dirtied per floor iteration.
const FLOOR_DIRTY: usize = 64;

/// Targets of issue 3.
const TARGET_GET_NS: f64 = 100.0;
const TARGET_PUT_NONE_NS: f64 = 300.0;
const TARGET_FLOOR_RATIO: f64 = 1.5;
const TARGET_OPEN_NS: f64 = 5_000_000.0;

// ----- sections --------------------------------------------------------

/// One durability setting and how much work to give it.
struct Plan {
    key: &'static str,
    label: &'static str,
    durability: Durability,
    /// Timed round-robin updates.
    puts: usize,
    /// Timed updates of one hot name while the other 999 stay put.
    hot_puts: usize,
    /// Timed gets, one call per sample.
    gets: usize,
    /// Samples of `GET_BATCH` gets each.
    get_batches: usize,
}

fn plans() -> Vec<Plan> {
    vec![
        Plan {
            key: "sync",
            label: "Sync",
            durability: Durability::Sync,
            puts: 100_000,
            hot_puts: 40_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
        Plan {
            key: "batch",
            label: "Batch64/10ms",
            durability: Durability::Batch {
                max_ops: 64,
                max_delay: Duration::from_millis(10),
            },
            puts: 1_000_000,
            hot_puts: 500_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
        Plan {
            key: "none",
            label: "None",
            durability: Durability::None,
            puts: 5_000_000,
            hot_puts: 2_000_000,
            gets: 2_000_000,
            get_batches: 30_000,
        },
    ]
}

const SECTIONS: [&str; 5] = ["floor", "sync", "batch", "none", "open"];

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
                    "unknown section {f:?}; usage: cargo bench --bench client [-- {}|all]",
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

    /// The floor runs for itself and for the Sync ratio.
    fn floor(&self) -> bool {
        self.is("floor") || self.is("sync")
    }

    fn phases(&self, plan: &Plan) -> bool {
        self.is(plan.key)
    }

    fn open(&self, plan: &Plan) -> bool {
        self.is(plan.key) || self.is("open")
    }
}

// ----- I/O accounting ----------------------------------------------------

/// Where the written bytes are read from.
struct IoSource {
    /// `/sys/dev/block/<major>:<minor>/stat` of the files' device.
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
    /// Nanoseconds per sample.
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

    /// `ops_per_sample` calls per sample: the percentiles are of the mean
    /// call in a sample.
    fn summary(mut self, ops_per_sample: usize) -> Summary {
        self.samples.sort_unstable();
        let n = self.samples.len();
        let ops = (n * ops_per_sample) as f64;
        let per = ops_per_sample as f64;
        Summary {
            n: n * ops_per_sample,
            rate: Some(ops / self.wall.as_secs_f64().max(1e-12)),
            p50: percentile(&self.samples, 50.0) / per,
            p99: percentile(&self.samples, 99.0) / per,
            p999: Some(percentile(&self.samples, 99.9) / per),
            bytes_per_op: self.written.process.map(|b| b as f64 / ops),
            device_bytes_per_op: self.written.device.map(|b| b as f64 / ops),
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

fn median_of(samples: &[u64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_unstable();
    percentile(&v, 50.0)
}

struct Summary {
    /// Calls measured.
    n: usize,
    /// Calls per second over the phase's wall time (timer included).
    rate: Option<f64>,
    p50: f64,
    /// For the open rows: the largest of the runs.
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
    /// p50 of the advancing pattern measured alone, before the sections;
    /// replaced by the interleaved p50 once the Sync section has run.
    p50: f64,
    /// The same pattern interleaved with the Sync section's puts.
    interleaved: Phase,
}

impl Floor {
    /// Advances through the file 64 bytes at a time, as the client file
    /// appends: 64 syncs per page, the first of them on a never-written
    /// block.
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

    /// The denominator of the ratio: the interleaved p50 if there is one.
    fn reference_p50(&self) -> f64 {
        if self.interleaved.samples.is_empty() {
            self.p50
        } else {
            median_of(&self.interleaved.samples)
        }
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

/// Runs `n` calls into `phase`; with a floor, in blocks with floor syncs
/// between them.
fn run_interleaved(
    phase: &mut Phase,
    io: &IoSource,
    n: usize,
    floor: &mut Option<&mut Floor>,
    mut op: impl FnMut(usize),
) {
    let Some(floor) = floor else {
        phase.run(io, n, op);
        return;
    };
    let mut done = 0;
    while done < n {
        let count = (n - done).min(INTERLEAVE_BLOCK);
        let base = done;
        phase.run(io, count, |i| op(base + i));
        done += count;
        let mut samples = std::mem::take(&mut floor.interleaved);
        floor.fresh_into(&mut samples, io, INTERLEAVE_FLOOR);
        floor.interleaved = samples;
    }
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
    run_interleaved(&mut puts, io, plan.puts, &mut floor, |i| {
        store.put(pick(names, i), i as i64).expect("put");
    });
    check(&store, "after the updates", notes);
    // Every name holds the id of its last update.
    let mut wrong = 0;
    for i in plan.puts.saturating_sub(names.len())..plan.puts {
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
    run_interleaved(&mut hot_puts, io, plan.hot_puts, &mut floor, |i| {
        store.put(hot, (plan.puts + i) as i64).expect("put");
    });
    check(&store, "after the hot puts", notes);

    let mut gets = Phase::default();
    gets.run(io, plan.gets, |i| {
        black_box(store.get(black_box(pick(names, i))).expect("get"));
    });
    let mut batched = Phase::default();
    batched.run(io, plan.get_batches, |i| {
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
    let put_op = format!("put, round-robin (x{})", plan.puts);
    rows.push(put_row(section, &put_op, put_s, plan, floor.as_deref()));
    let hot_s = hot_puts.summary(1);
    let hot_op = format!("put, 1 hot name (x{})", plan.hot_puts);
    rows.push(put_row(section, &hot_op, hot_s, plan, floor.as_deref()));
    let get_s = gets.summary(1);
    let pass = get_s.p50 <= TARGET_GET_NS;
    rows.push(
        row(section, &format!("get (x{})", plan.gets), get_s)
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
    let mut close_row = row(section, "close (final flush)", close.summary(1));
    close_row.s.rate = None;
    close_row.s.p999 = None;
    rows.push(close_row);
}

/// A put row with its target: Sync against the floor, None against 300 ns.
fn put_row(section: &str, op: &str, s: Summary, plan: &Plan, floor: Option<&Floor>) -> Row {
    let bytes = s.bytes_per_op.map_or("bytes unknown".to_string(), |b| {
        format!("{}/put", fmt_bytes(b))
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
    let median = percentile(&times, 50.0);
    notes.push(format!(
        "open {}: min {}, close after it (not in the figure) median {}",
        plan.label,
        fmt_ns(times[0] as f64),
        fmt_ns(median_of(&closes)),
    ));
    let runs = OPEN_RUNS as f64;
    let s = Summary {
        n: OPEN_RUNS,
        rate: None,
        p50: median,
        p99: *times.last().unwrap_or(&0) as f64,
        p999: None,
        bytes_per_op: written.process.map(|b| b as f64 / runs),
        device_bytes_per_op: written.device.map(|b| b as f64 / runs),
    };
    rows.push(
        row(
            plan.label,
            &format!("open, {SUBSCRIPTIONS} subscriptions (med/max)"),
            s,
        )
        .target("median <= 5 ms", median <= TARGET_OPEN_NS),
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
    } else if b >= 10.0 || b == 0.0 {
        format!("{b:.0} B")
    } else {
        format!("{b:.1} B")
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
            black_box(());
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
        .prefix("softnet-client-bench-")
        .tempdir_in(&base)
        .expect("create a temporary directory")
}

fn main() {
    let filter = Filter::parse();
    let started = Instant::now();
    let dir = bench_dir();
    let io = IoSource::for_dir(dir.path());
    let names = names();

    println!("softnet-persistence client benchmark");
    println!(
        "workload: {SUBSCRIPTIONS} subscriptions, names of {NAME_MIN} to {NAME_MAX} bytes \
         (mean {:.1}), puts round-robin with increasing ids",
        names.iter().map(String::len).sum::<usize>() as f64 / names.len() as f64
    );
    println!("client file directory: {}", dir.path().display());
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
    let open_key = plans().iter().any(|p| filter.open(p)).then(|| {
        eprintln!(
            "[{:>6.1}s] preparing a client file with {SUBSCRIPTIONS} subscriptions",
            started.elapsed().as_secs_f64()
        );
        prepare_open(dir.path(), &names)
    });
    for plan in plans() {
        if filter.phases(&plan) {
            eprintln!(
                "[{:>6.1}s] {}: put, get",
                started.elapsed().as_secs_f64(),
                plan.label
            );
            phase_rows(
                dir.path(),
                &io,
                &plan,
                &names,
                floor
                    .as_mut()
                    .filter(|_| plan.durability == Durability::Sync),
                &mut rows,
                &mut notes,
            );
            if let (Durability::Sync, Some(floor)) = (plan.durability, floor.as_mut()) {
                let during = std::mem::take(&mut floor.interleaved);
                let p50 = median_of(&during.samples);
                notes.push(format!(
                    "floor drift: msync p50 {} alone before the sections, {} interleaved \
                     with the Sync puts (the ratio uses the interleaved one)",
                    fmt_ns(floor.p50),
                    fmt_ns(p50)
                ));
                floor.p50 = p50;
                rows.push(row(
                    "floor",
                    "msync advancing, amid Sync puts",
                    during.summary(1),
                ));
            }
        }
        if let (true, Some(key)) = (filter.open(&plan), &open_key) {
            eprintln!(
                "[{:>6.1}s] {}: open",
                started.elapsed().as_secs_f64(),
                plan.label
            );
            open_rows(dir.path(), &io, key, &plan, &mut rows, &mut notes);
        }
    }

    // Floor rows first, then the sections in plan order.
    rows.sort_by_key(|r| r.section != "floor");
    print_table(&rows);
    println!();
    if let Some(floor) = &floor {
        println!(
            "floor p50 (denominator of the ratio): {} = {:.0} syncs/s",
            fmt_ns(floor.p50),
            1e9 / floor.p50
        );
    }
    println!(
        "written/op: write_bytes of /proc/self/io (accounted per page or folio dirtied, \
         includes msync writeback) / calls"
    );
    println!(
        "device/op: sectors written by the whole block device (includes the file system \
         journal and any other writer) / calls"
    );
    println!(
        "events/s: calls over the phase's wall time, timer included; get rows per call, \
         the batched one as the mean call of each sample"
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

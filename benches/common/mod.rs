//! What the service and client benchmarks (`benches/service.rs`,
//! `benches/client.rs`) share, included by both with `mod common;` (cargo
//! does not take `benches/common/mod.rs` for a benchmark of its own).
//!
//! - the run ([`Bench`]): the command line (one section to run, or all:
//!   [`Filter`]), the scratch directory under `SOFTNET_BENCH_DIR` or else
//!   cargo's `target/tmp` (on the real disk, unlike a tmpfs `/tmp`), the
//!   environment header (file system from `/proc/mounts`, block device,
//!   cpus, load, timer overhead), progress on stderr, and the output at the
//!   end;
//! - the durability settings both compare, Sync, Batch{64 ops, 10 ms} and
//!   None, one section each ([`plans`]);
//! - per-call timing with [`Instant`] into a [`Phase`], nearest-rank
//!   percentiles ([`Summary`]), and the bytes each phase caused to be
//!   written: `write_bytes` of `/proc/self/io` and the sectors written of the
//!   block device under the directory ([`IoSource`]);
//! - the floor, `msync(MS_SYNC)` of one 4 KiB page with 64 bytes dirtied in a
//!   separate preallocated file mapped with `libc::mmap` ([`Floor`]), alone
//!   and interleaved with the Sync section's calls ([`run_interleaved`]);
//! - the result table ([`Row`]) with its PASS/MISS column, and the legend
//!   under it.
//!
//! What each benchmark measures, the work it gives each setting, its targets
//! and its notes stay in its own file.
// The floor maps a file with libc directly; the crate denies unsafe code.
#![allow(unsafe_code)]

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::{Duration, Instant};

use softnet_persistence::Durability;

/// Floor iterations: advancing through a fresh preallocated file, then
/// rewriting one already written page, then syncing nothing.
const FLOOR_FRESH: usize = 2_000;
const FLOOR_REWRITE: usize = 1_000;
const FLOOR_CLEAN: usize = 500;
/// In the Sync section, store calls per block, and floor syncs run between
/// two blocks: the ratios compare figures taken under the same disk and
/// machine load (this machine is shared and its sync latency drifts).
const INTERLEAVE_BLOCK: usize = 100;
const INTERLEAVE_FLOOR: usize = 50;
/// Size of the floor's file.
const FLOOR_FILE: usize = 4 * 1024 * 1024;
/// Bytes dirtied per floor iteration.
const FLOOR_DIRTY: usize = 64;

// ----- sections --------------------------------------------------------

/// One durability setting, run as a section of its own, and the work a
/// benchmark gives it.
pub struct Plan<W> {
    /// The section's name on the command line.
    pub key: &'static str,
    /// The section's label in the table.
    pub label: &'static str,
    /// The store's durability setting.
    pub durability: Durability,
    /// How much work the benchmark gives the setting.
    pub work: W,
}

/// The settings both benchmarks compare, in this order: Sync,
/// Batch{64 ops, 10 ms} and None, each with its work.
pub fn plans<W>(sync: W, batch: W, none: W) -> Vec<Plan<W>> {
    vec![
        Plan {
            key: "sync",
            label: "Sync",
            durability: Durability::Sync,
            work: sync,
        },
        Plan {
            key: "batch",
            label: "Batch64/10ms",
            durability: Durability::Batch {
                max_ops: 64,
                max_delay: Duration::from_millis(10),
            },
            work: batch,
        },
        Plan {
            key: "none",
            label: "None",
            durability: Durability::None,
            work: none,
        },
    ]
}

/// What the command line asked for: one section (`floor`, a plan's key or
/// the open test's), or everything.
pub struct Filter {
    /// `None` runs everything.
    section: Option<String>,
    /// The section of the open test (which runs under every plan).
    open: &'static str,
}

impl Filter {
    /// The first argument that is not a flag: `floor`, a plan's key, `open`
    /// or `all`; exits with a usage line naming `cargo bench --bench
    /// {bench}` on anything else.
    fn parse(bench: &str, open: &'static str) -> Filter {
        let sections: Vec<&str> = std::iter::once("floor")
            .chain(plans((), (), ()).iter().map(|p| p.key))
            .chain(std::iter::once(open))
            .collect();
        // Cargo appends `--bench`; flags are ignored.
        let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let filter = arg.map(|a| a.to_ascii_lowercase());
        if let Some(f) = &filter {
            if f != "all" && !sections.contains(&f.as_str()) {
                eprintln!(
                    "unknown section {f:?}; usage: cargo bench --bench {bench} [-- {}|all]",
                    sections.join("|")
                );
                std::process::exit(2);
            }
        }
        Filter {
            section: filter.filter(|f| f != "all"),
            open,
        }
    }

    fn is(&self, key: &str) -> bool {
        self.section.as_deref().is_none_or(|f| f == key)
    }

    /// The floor runs for itself and for the Sync ratios.
    fn floor(&self) -> bool {
        self.is("floor") || self.is("sync")
    }

    /// Whether the plan's own phases run.
    pub fn phases<W>(&self, plan: &Plan<W>) -> bool {
        self.is(plan.key)
    }

    /// Whether the open test runs under the plan: for the plan's section and
    /// for the open test's.
    pub fn open<W>(&self, plan: &Plan<W>) -> bool {
        self.is(plan.key) || self.is(self.open)
    }
}

// ----- I/O accounting ----------------------------------------------------

/// Where the written bytes are read from.
pub struct IoSource {
    /// `/sys/dev/block/<major>:<minor>/stat` of the directory's device.
    device_stat: Option<PathBuf>,
}

/// The counters at one moment.
#[derive(Clone, Copy)]
pub struct IoCount {
    /// `write_bytes` of `/proc/self/io`.
    process: Option<u64>,
    /// Sectors (512 B) written by the whole block device.
    device_sectors: Option<u64>,
}

impl IoSource {
    /// The counters for files in `dir`.
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

    /// Reads the counters now.
    pub fn read(&self) -> IoCount {
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
pub struct Written {
    process: Option<u64>,
    device: Option<u64>,
}

impl Written {
    /// The bytes written from `a` to `b`.
    pub fn between(a: IoCount, b: IoCount) -> Written {
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
pub struct Phase {
    /// Nanoseconds per sample.
    pub samples: Vec<u64>,
    wall: Duration,
    written: Written,
}

impl Phase {
    /// Runs `op` `n` times, timing each call, and counts the bytes written.
    pub fn run(&mut self, io: &IoSource, n: usize, mut op: impl FnMut(usize)) {
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
    pub fn summary(mut self, ops_per_sample: usize) -> Summary {
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
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64
}

/// Median of samples in any order.
pub fn median_of(samples: &[u64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_unstable();
    percentile(&v, 50.0)
}

/// One row's figures.
pub struct Summary {
    /// Calls measured.
    pub n: usize,
    /// Calls per second over the phase's wall time (timer included).
    pub rate: Option<f64>,
    /// Median latency, ns.
    pub p50: f64,
    /// For the open rows: the largest of the runs.
    pub p99: f64,
    /// None where there are too few samples for it.
    pub p999: Option<f64>,
    /// `write_bytes` of `/proc/self/io` per call.
    pub bytes_per_op: Option<f64>,
    /// Sectors written by the whole block device, in bytes, per call.
    pub device_bytes_per_op: Option<f64>,
}

impl Summary {
    /// A few timed runs (of an open), `sorted` ascending: median and max,
    /// and the bytes `written` over all of them per run.
    pub fn of_runs(sorted: &[u64], written: Written) -> Summary {
        let runs = sorted.len() as f64;
        Summary {
            n: sorted.len(),
            rate: None,
            p50: percentile(sorted, 50.0),
            p99: *sorted.last().unwrap_or(&0) as f64,
            p999: None,
            bytes_per_op: written.process.map(|b| b as f64 / runs),
            device_bytes_per_op: written.device.map(|b| b as f64 / runs),
        }
    }
}

/// One line of the table.
pub struct Row {
    /// Section label; a blank line separates sections.
    section: String,
    op: String,
    s: Summary,
    target: String,
    /// PASS or MISS of the target, if the row has one.
    pass: Option<bool>,
}

/// A row without a target.
pub fn row(section: &str, op: &str, s: Summary) -> Row {
    Row {
        section: section.to_string(),
        op: op.to_string(),
        s,
        target: String::new(),
        pass: None,
    }
}

/// The row of the single, final `close` of a store: no rate, no p99.9.
pub fn close_row(section: &str, close: Phase) -> Row {
    let mut close_row = row(section, "close (final flush)", close.summary(1));
    close_row.s.rate = None;
    close_row.s.p999 = None;
    close_row
}

impl Row {
    /// Gives the row a target, described by `target`, met or not.
    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }
}

// ----- the floor: msync of one page ----------------------------------------

/// A preallocated file mapped shared with `libc::mmap`, as the stores map
/// their files, but with none of their work around the sync.
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
        // Same advice as the stores: no readahead into large folios.
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

/// The floor file and what has been measured on it.
pub struct Floor {
    file: FloorFile,
    /// Next offset of the advancing pattern.
    next: usize,
    /// p50 of the advancing pattern measured alone, before the sections;
    /// replaced by the interleaved p50 once the Sync section has run.
    p50: f64,
    /// The same pattern interleaved with the Sync section's calls.
    interleaved: Phase,
}

impl Floor {
    /// Advances through the file 64 bytes at a time, as a journal or a
    /// client file appends: 64 syncs per page, the first of them on a
    /// never-written block.
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
    pub fn reference_p50(&self) -> f64 {
        if self.interleaved.samples.is_empty() {
            self.p50
        } else {
            median_of(&self.interleaved.samples)
        }
    }

    /// One turn of the floor between two blocks or runs of store calls:
    /// `INTERLEAVE_FLOOR` syncs, counted with the interleaved ones. Returns
    /// their latencies (ns).
    pub fn turn(&mut self, io: &IoSource) -> &[u64] {
        let mut phase = std::mem::take(&mut self.interleaved);
        let from = phase.samples.len();
        self.fresh_into(&mut phase, io, INTERLEAVE_FLOOR);
        self.interleaved = phase;
        &self.interleaved.samples[from..]
    }

    /// Ends the interleaving: the p50 of the syncs run amid the Sync
    /// section becomes the floor's. Returns those syncs and the p50 measured
    /// alone before the sections.
    fn take_interleaved(&mut self) -> (Phase, f64) {
        let during = std::mem::take(&mut self.interleaved);
        let alone = std::mem::replace(&mut self.p50, median_of(&during.samples));
        (during, alone)
    }
}

/// Measures the floor alone into three rows of section `floor`: syncs
/// advancing through a fresh file, syncs rewriting one page, and
/// `fdatasync` with nothing dirty. The floor file goes into `dir`.
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
pub fn run_interleaved(
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
        floor.turn(io);
    }
}

// ----- output ----------------------------------------------------------------

/// A duration in ns, us, ms or s; `-` if not finite.
pub fn fmt_ns(ns: f64) -> String {
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

/// Bytes in B, KiB or MiB; between 0 and 10 B with `small_decimals`
/// decimals, whole bytes otherwise.
pub fn fmt_bytes(b: f64, small_decimals: usize) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b >= 10.0 || b == 0.0 {
        format!("{b:.0} B")
    } else {
        format!("{b:.small_decimals$} B")
    }
}

/// Prints the rows as a table, a blank line between sections; byte figures
/// under 10 B with `small_decimals` decimals.
fn print_table(rows: &[Row], small_decimals: usize) {
    let bytes = |b: f64| fmt_bytes(b, small_decimals);
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
                r.s.bytes_per_op.map_or("-".to_string(), bytes),
                r.s.device_bytes_per_op.map_or("-".to_string(), bytes),
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

/// Under the table: the floor's p50 (the denominator of the `ratios`) if it
/// ran, and what the two byte columns count, per `per` ("operations",
/// "calls").
fn print_legend(floor: Option<&Floor>, ratios: &str, per: &str) {
    if let Some(floor) = floor {
        println!(
            "floor p50 (denominator of the {ratios}): {} = {:.0} syncs/s",
            fmt_ns(floor.p50),
            1e9 / floor.p50
        );
    }
    println!(
        "written/op: write_bytes of /proc/self/io (accounted per page or folio dirtied, \
         includes msync writeback) / {per}"
    );
    println!(
        "device/op: sectors written by the whole block device (includes the file system \
         journal and any other writer) / {per}"
    );
}

/// The last lines: the notes, then the PASS/MISS count and the total time.
fn print_outcome(rows: &[Row], notes: &[String], started: Instant) {
    for n in notes {
        println!("{n}");
    }
    let misses = rows.iter().filter(|r| r.pass == Some(false)).count();
    let passes = rows.iter().filter(|r| r.pass == Some(true)).count();
    println!(
        "targets: {passes} PASS, {misses} MISS (not asserted); total time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ----- environment -----------------------------------------------------------

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

/// A fresh temporary directory named `{prefix}…` under `SOFTNET_BENCH_DIR`,
/// or else under cargo's `target/tmp` (on the real disk, unlike a tmpfs
/// `/tmp`), or else the system's temporary directory.
fn bench_dir(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var_os("SOFTNET_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the bench directory");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .expect("create a temporary directory")
}

/// The header lines after the workload: `dir` (as `dir_label`), its file
/// system and block device, cpus, load, timer overhead and the section
/// filter, then a blank line.
fn print_environment(dir_label: &str, dir: &Path, io: &IoSource, filter: &Filter) {
    println!("{dir_label}: {}", dir.display());
    match mount_of(dir) {
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
    if let Some(f) = &filter.section {
        println!("section filter: {f}");
    }
    println!();
}

// ----- a run -----------------------------------------------------------------

/// One run of a benchmark: the command line, the scratch directory, the
/// floor, and the rows and notes gathered for the output.
pub struct Bench {
    /// The section the command line asked for.
    pub filter: Filter,
    started: Instant,
    dir: tempfile::TempDir,
    io: IoSource,
    floor: Option<Floor>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

/// What a section's functions measure with and write into.
pub struct Section<'a> {
    /// The scratch directory, where the stores keep their files.
    pub dir: &'a Path,
    /// The byte counters of that directory.
    pub io: &'a IoSource,
    /// The floor to interleave with the calls (in the Sync section), if any.
    pub floor: Option<&'a mut Floor>,
    /// The table.
    pub rows: &'a mut Vec<Row>,
    /// Lines printed under the table.
    pub notes: &'a mut Vec<String>,
}

impl Bench {
    /// Reads the command line of `cargo bench --bench {bench}` (whose open
    /// test is section `open`) and makes a scratch directory named
    /// `{dir_prefix}…`.
    pub fn start(bench: &str, open: &'static str, dir_prefix: &str) -> Bench {
        let filter = Filter::parse(bench, open);
        let started = Instant::now();
        let dir = bench_dir(dir_prefix);
        let io = IoSource::for_dir(dir.path());
        Bench {
            filter,
            started,
            dir,
            io,
            floor: None,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Progress on stderr: `what`, after the seconds since the start.
    pub fn progress(&self, what: impl Display) {
        eprintln!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Prints the rest of the header (the directory, as `dir_label`, and the
    /// environment), then measures the floor alone if the Sync section or
    /// the floor's own runs.
    pub fn begin(&mut self, dir_label: &str) {
        print_environment(dir_label, self.dir.path(), &self.io, &self.filter);
        if self.filter.floor() {
            self.progress("floor");
            self.floor = Some(floor_rows(self.dir.path(), &self.io, &mut self.rows));
        }
    }

    /// The next section's view of the run; with the floor to interleave if
    /// `with_floor` (the Sync section) and the floor has been measured.
    pub fn section(&mut self, with_floor: bool) -> Section<'_> {
        Section {
            dir: self.dir.path(),
            io: &self.io,
            floor: self.floor.as_mut().filter(|_| with_floor),
            rows: &mut self.rows,
            notes: &mut self.notes,
        }
    }

    /// After the Sync section: its interleaved floor syncs make a floor row
    /// named `op`, and their p50 becomes the floor's; a note compares it
    /// with the floor measured alone (interleaved `with` what).
    pub fn settle_floor(&mut self, op: &str, with: &str) {
        let Some(floor) = self.floor.as_mut() else {
            return;
        };
        let (during, alone) = floor.take_interleaved();
        self.notes.push(format!(
            "floor drift: msync p50 {} alone before the sections, {} interleaved with {with}",
            fmt_ns(alone),
            fmt_ns(floor.p50)
        ));
        self.rows.push(row("floor", op, during.summary(1)));
    }

    /// Prints the table, floor rows first, byte figures under 10 B with
    /// `small_decimals` decimals; then the legend (the denominator of the
    /// `ratios`, bytes per `per`), the `extra` lines, the notes and the
    /// PASS/MISS count.
    pub fn finish(mut self, small_decimals: usize, ratios: &str, per: &str, extra: &[&str]) {
        // Floor rows first, then the sections in plan order.
        self.rows.sort_by_key(|r| r.section != "floor");
        print_table(&self.rows, small_decimals);
        println!();
        print_legend(self.floor.as_ref(), ratios, per);
        for line in extra {
            println!("{line}");
        }
        print_outcome(&self.rows, &self.notes, self.started);
    }
}

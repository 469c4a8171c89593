//! Helpers shared by the integration tests; each test file that uses them
//! declares `mod common;`.
//!
//! Every test binary that declares the module compiles all of it and uses
//! only part of it: an item some of them leave unused is marked
//! `#[allow(dead_code)]`, with the reason.

use std::any::Any;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::ProptestConfig;
use softnet_persistence::{
    ClientOptions, Durability, Error, ErrorKind, Failure, FailureCallback, MemoryLog, RecordLog,
    Removal, Result, ServiceOptions, ServiceStore, Uuid,
};
use tempfile::TempDir;

// ----- failure reports ----------------------------------------------------------

/// The failure reports a store's callback collected.
#[allow(dead_code)] // Only the tests that look at failure reports use it.
pub type Reports = Arc<Mutex<Vec<Failure>>>;

/// An `on_failure` callback that appends every report to `reports`.
#[allow(dead_code)] // Only the tests that look at failure reports use it.
pub fn collect_into(reports: &Reports) -> FailureCallback {
    let sink = Arc::clone(reports);
    Arc::new(move |f: &Failure| sink.lock().unwrap().push(f.clone()))
}

/// Client options with `durability` whose reports go to `reports`.
#[allow(dead_code)] // Only the client tests use it.
pub fn client_options(durability: Durability, reports: &Reports) -> ClientOptions {
    ClientOptions {
        durability,
        on_failure: Some(collect_into(reports)),
    }
}

// ----- files and directories -------------------------------------------------------

/// A scratch directory, on tmpfs when there is one: the tests that open
/// thousands of files, or simulate the device themselves, need no real
/// syncs.
#[allow(dead_code)] // The tests that need a real disk use `tempfile::tempdir()`.
pub fn scratch_dir() -> TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

/// SPEC section 3: `softnet.service.persistence_<service-uuid>.ssp`.
#[allow(dead_code)] // Only the tests that look at the journal file use it.
pub fn journal_name(service: Uuid) -> String {
    format!("softnet.service.persistence_{}.ssp", service.hyphenated())
}

/// SPEC section 4: `softnet.client.persistence_<server>_<key>.scp`, with
/// the server address's colons as dashes.
#[allow(dead_code)] // Only the client tests that look at the file use it.
pub fn client_file_name(server: &str, key: &str) -> String {
    format!(
        "softnet.client.persistence_{}_{key}.scp",
        server.replace(':', "-")
    )
}

/// `err` is `Locked` and names `expected` (in the message and the variant).
#[allow(dead_code)] // Only the lock tests use it.
pub fn assert_locked(err: Error, expected: &Path) {
    assert_eq!(err.kind(), ErrorKind::Locked, "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&expected.display().to_string()),
        "the message must name the file: {shown}"
    );
    match err {
        Error::Locked { path } => assert_eq!(path, expected),
        other => panic!("expected Locked, got {other:?}"),
    }
}

// ----- the file layout (docs/FORMAT.md) ---------------------------------------------

/// Where the data region starts (after the two header pages).
#[allow(dead_code)] // Only the corruption sweeps use it.
pub const DATA_OFFSET: usize = 8192;
/// Header slots: two of 256 bytes at 0 and 4096.
#[allow(dead_code)] // Only the corruption sweeps use it.
pub const SLOT_LEN: usize = 256;
#[allow(dead_code)] // Only the corruption sweeps use it.
pub const SLOT_OFFSETS: [usize; 2] = [0, 4096];
/// Record header length and the offset of its state byte.
#[allow(dead_code)] // Only the corruption sweeps use it.
pub const RECORD_HEADER: usize = 32;
#[allow(dead_code)] // Only the corruption sweeps use it.
pub const STATE: usize = 4;

/// The little-endian u32 at `at`.
#[allow(dead_code)] // Only the tests that read file bytes use it.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The little-endian u64 at `at`.
#[allow(dead_code)] // Only the tests that read file bytes use it.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

// ----- random numbers ------------------------------------------------------------

/// Xorshift64: a small deterministic generator, so that a failing case can
/// be replayed from its seed.
#[allow(dead_code)] // Only the randomised tests use it.
pub struct Rng(pub u64);

#[allow(dead_code)] // Only the randomised tests use it.
impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Flips 1 to 4 random bits of `bytes`, each one half the time anywhere
/// and half the time in the first `used` bytes (where the header and the
/// records are: most of a file is unused ring); returns the bit numbers.
#[allow(dead_code)] // Only the corruption sweeps use it.
pub fn flip_random_bits(bytes: &mut [u8], used: u64, rng: &mut Rng) -> Vec<u64> {
    let len = bytes.len() as u64;
    let mut bits = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let span = if rng.next() & 1 == 0 { len } else { used };
        let bit = rng.below(span * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        bits.push(bit);
    }
    bits
}

// ----- collecting failures ----------------------------------------------------------

/// The message of a caught panic, if it has one.
#[allow(dead_code)] // Only the tests that catch panics use it.
pub fn panic_message(payload: &(dyn Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}

/// Runs the cases of a sweep and collects their failures, each with the
/// case that failed, so that one run shows all of them (up to a limit).
#[allow(dead_code)] // Only the corruption sweeps use it.
#[derive(Default)]
pub struct Sweep {
    failures: Vec<String>,
    cases: usize,
    skipped: usize,
}

#[allow(dead_code)] // Only the corruption sweeps use it.
impl Sweep {
    const LIMIT: usize = 12;

    pub fn case(&mut self, what: impl Display, f: impl FnOnce()) {
        self.cases += 1;
        if self.failures.len() >= Sweep::LIMIT {
            self.skipped += 1;
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            let msg =
                panic_message(&*payload).unwrap_or_else(|| "(panic without a message)".to_string());
            self.failures.push(format!("{what}: {msg}"));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed{}:\n  {}",
            self.failures.len(),
            self.cases,
            if self.skipped > 0 {
                format!(" ({} cases not run after the first failures)", self.skipped)
            } else {
                String::new()
            },
            self.failures.join("\n  ")
        );
    }
}

// ----- service stores ----------------------------------------------------------------

/// Drains storage mode and returns the uids in delivery order.
#[allow(dead_code)] // Only the service tests that check what is left use it.
pub fn drain(store: &ServiceStore) -> Vec<Uuid> {
    store.set_storage_mode().unwrap();
    let mut out = Vec::new();
    while let Some(e) = store.peek().unwrap() {
        store.ack(e.uid).unwrap();
        out.push(e.uid);
    }
    out
}

/// Runs `check` on a fresh memory store and on a fresh file store (a new
/// service in a temporary directory), both opened with `options`.
#[allow(dead_code)] // Only the tests run at both levels use it.
pub fn at_both_levels_with(options: &ServiceOptions, check: impl Fn(&ServiceStore)) {
    let memory = ServiceStore::open_memory(options).unwrap();
    check(&memory);
    let dir = tempfile::tempdir().unwrap();
    let file = ServiceStore::open_file(dir.path(), Uuid::new_v4(), options).unwrap();
    check(&file);
}

// ----- a custom level 2 that fails on command ------------------------------------------

/// Switches shared between a test and its [`FlakyLog`].
#[allow(dead_code)] // Only the tests with a failing custom backend use it.
#[derive(Clone, Default)]
pub struct Control {
    /// How many of the next appends fail.
    pub failing_appends: Arc<AtomicU32>,
    /// Every call fails (a dead disk).
    pub dead: Arc<AtomicBool>,
    /// Sequence numbers whose reads fail.
    pub bad_reads: Arc<Mutex<std::collections::HashSet<u64>>>,
}

/// A custom level-2 backend: a [`MemoryLog`] that outlives the store (so a
/// "reopen" sees the same records) and fails on command.
#[allow(dead_code)] // Only the tests with a failing custom backend use it.
pub struct FlakyLog {
    inner: Arc<Mutex<MemoryLog>>,
    control: Control,
}

impl FlakyLog {
    fn check(&self) -> Result<()> {
        if self.control.dead.load(Ordering::SeqCst) {
            return Err(Error::Backend("the device is gone".into()));
        }
        Ok(())
    }
}

impl RecordLog for FlakyLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.check()?;
        let fail = self
            .control
            .failing_appends
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(Error::Io {
                context: "append to the test device".into(),
                source: std::io::Error::other("injected write error"),
            });
        }
        self.inner.lock().unwrap().append(payload)
    }
    fn remove(&mut self, seq: u64, why: Removal) -> Result<()> {
        self.check()?;
        self.inner.lock().unwrap().remove(seq, why)
    }
    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()> {
        self.check()?;
        if self.control.bad_reads.lock().unwrap().contains(&seq) {
            return Err(Error::Backend(format!("record {seq} is unreadable")));
        }
        self.inner.lock().unwrap().read(seq, out)
    }
    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        self.check()?;
        self.inner.lock().unwrap().scan(visit)
    }
    fn barrier(&mut self) -> Result<()> {
        self.check()
    }
    fn commit(&mut self) -> Result<()> {
        self.check()
    }
    fn flush(&mut self) -> Result<()> {
        self.check()
    }
    fn clear(&mut self) -> Result<()> {
        self.check()?;
        self.inner.lock().unwrap().clear()
    }
    fn metadata(&mut self) -> Result<Vec<u8>> {
        self.check()?;
        self.inner.lock().unwrap().metadata()
    }
    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        self.check()?;
        self.inner.lock().unwrap().set_metadata(meta)
    }
}

/// Opens a store on a [`FlakyLog`] over `inner`, switched by `control`.
#[allow(dead_code)] // Only the tests with a failing custom backend use it.
pub fn open_flaky(
    inner: &Arc<Mutex<MemoryLog>>,
    control: &Control,
    options: &ServiceOptions,
) -> ServiceStore {
    let log = FlakyLog {
        inner: inner.clone(),
        control: control.clone(),
    };
    ServiceStore::open_custom(Box::new(log), options).unwrap()
}

/// Which calls of a counting backend fail.
#[allow(dead_code)] // Only the tests that fail the n-th backend call use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// None: the clean run.
    Never,
    /// Only call N (a transient error).
    Once(u64),
    /// Call N and every later one (the device is gone).
    From(u64),
}

#[allow(dead_code)] // Only the tests that fail the n-th backend call use it.
impl Fault {
    /// Whether call `n` (counted from 1) fails.
    pub fn fails(self, n: u64) -> bool {
        match self {
            Fault::Never => false,
            Fault::Once(at) => n == at,
            Fault::From(at) => n >= at,
        }
    }
}

// ----- a test binary that is its own child ------------------------------------------------

/// Spawns `child` (this test binary as its own child, stdout piped), reads
/// up to `rng.below(max_lines)` of its report lines, lets it run
/// `rng.below(max_delay_us)` microseconds more, so that the kill lands
/// anywhere inside an operation and not only between two, SIGKILLs it and
/// returns every line it printed.
#[allow(dead_code)] // Only the SIGKILL tests use it.
pub fn kill_at_random(
    child: &mut Command,
    rng: &mut Rng,
    max_lines: u64,
    max_delay_us: u64,
) -> std::result::Result<String, String> {
    let mut child = child
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    let wanted = rng.below(max_lines);
    for _ in 0..wanted {
        if reader.read_line(&mut seen).map_err(|e| e.to_string())? == 0 {
            break;
        }
    }
    let spin = Instant::now();
    let delay = Duration::from_micros(rng.below(max_delay_us));
    while spin.elapsed() < delay {
        std::hint::spin_loop();
    }
    child.kill().map_err(|e| e.to_string())?;
    child.wait().map_err(|e| e.to_string())?;
    reader
        .read_to_string(&mut seen)
        .map_err(|e| e.to_string())?;
    Ok(seen)
}

/// The number in the environment variable `key` (0 when unset or not a
/// number): how the parent passes a child its start and seed.
#[allow(dead_code)] // Only the SIGKILL tests use it.
pub fn env_number(key: &str) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

// ----- property tests ----------------------------------------------------------------

/// `cases` cases, and no failure file written next to the tests.
#[allow(dead_code)] // Only the model tests use it.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        cases,
        ..ProptestConfig::default()
    }
}

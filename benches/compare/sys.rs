//! What the comparison reads from the system beyond `common`'s counters:
//! the whole block-device stat line (read sectors, write requests, flush
//! requests), `read_bytes` of `/proc/self/io`, free space, the page cache
//! drop of the cold reopens, and a [`DeviceLayer`] counting the journal's
//! syncs.
// statvfs, sync and geteuid are libc calls; the crate denies unsafe code.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use softnet_persistence::{Device, DeviceLayer, Syncer};

/// Fields of `/sys/dev/block/<major>:<minor>/stat` (0-based, see the
/// kernel's Documentation/block/stat.rst).
const READ_SECTORS: usize = 2;
const WRITE_IOS: usize = 4;
const WRITE_SECTORS: usize = 6;
/// Present since Linux 5.5 (17 fields).
const FLUSH_IOS: usize = 15;

/// Counters of the process and of the block device under a directory.
pub struct Counters {
    device_stat: Option<PathBuf>,
}

/// The counters at one moment.
#[derive(Clone, Default)]
pub struct Snapshot {
    read_bytes: Option<u64>,
    write_bytes: Option<u64>,
    device: Option<Vec<u64>>,
}

/// What happened between two snapshots.
#[derive(Clone, Copy, Default, Debug)]
pub struct Delta {
    /// `read_bytes` of `/proc/self/io`: bytes this process caused to be
    /// fetched from the storage layer (page faults of its maps included).
    pub read_bytes: Option<u64>,
    /// `write_bytes` of `/proc/self/io`.
    pub write_bytes: Option<u64>,
    /// Sectors read by the whole device, in bytes.
    pub device_read_bytes: Option<u64>,
    /// Write requests completed by the whole device.
    pub device_writes: Option<u64>,
    /// Sectors written by the whole device, in bytes.
    pub device_write_bytes: Option<u64>,
    /// Flush (cache flush) requests completed by the whole device.
    pub device_flushes: Option<u64>,
}

impl Counters {
    /// The counters for files in `dir` (same device lookup as `common`).
    pub fn for_dir(dir: &Path) -> Counters {
        let device_stat = std::fs::metadata(dir).ok().and_then(|m| {
            let dev = m.dev();
            let path = PathBuf::from(format!(
                "/sys/dev/block/{}:{}/stat",
                libc::major(dev),
                libc::minor(dev)
            ));
            path.exists().then_some(path)
        });
        Counters { device_stat }
    }

    /// Reads every counter now.
    pub fn read(&self) -> Snapshot {
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let device = self.device_stat.as_ref().and_then(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let v: Vec<u64> = s
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            (v.len() > WRITE_SECTORS).then_some(v)
        });
        Snapshot {
            read_bytes: field("read_bytes:"),
            write_bytes: field("write_bytes:"),
            device,
        }
    }
}

impl Delta {
    /// From `a` to `b`.
    pub fn between(a: &Snapshot, b: &Snapshot) -> Delta {
        let diff = |x: Option<u64>, y: Option<u64>| x.zip(y).map(|(x, y)| y.saturating_sub(x));
        let dev = |i: usize| {
            a.device
                .as_ref()
                .zip(b.device.as_ref())
                .and_then(|(x, y)| Some(y.get(i)?.saturating_sub(*x.get(i)?)))
        };
        Delta {
            read_bytes: diff(a.read_bytes, b.read_bytes),
            write_bytes: diff(a.write_bytes, b.write_bytes),
            device_read_bytes: dev(READ_SECTORS).map(|s| s * 512),
            device_writes: dev(WRITE_IOS),
            device_write_bytes: dev(WRITE_SECTORS).map(|s| s * 512),
            device_flushes: dev(FLUSH_IOS),
        }
    }
}

/// Bytes free for an unprivileged user on the file system of `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero bytes are a valid `statvfs` (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid, writable
    // `statvfs` that outlives the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    // Both are u64 here, but not on every target.
    #[allow(clippy::unnecessary_cast)]
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    (rc == 0).then_some(free)
}

/// Whether the process runs as root (needed to drop the page cache).
pub fn is_root() -> bool {
    // SAFETY: no arguments, no memory touched, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`: the whole machine's page
/// cache, dentries and inodes.
pub fn drop_caches() -> io::Result<()> {
    // SAFETY: no arguments, no memory touched, cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3")
}

// ----- counting the journal's syncs -------------------------------------------

/// Wraps every device of a journal and counts the `Device::sync` calls (one
/// per `msync(MS_SYNC)` the library's own device makes).
pub struct SyncCounter {
    syncs: Arc<AtomicU64>,
}

impl SyncCounter {
    /// A layer and the count it adds to.
    pub fn new() -> (Arc<SyncCounter>, Arc<AtomicU64>) {
        let syncs = Arc::new(AtomicU64::new(0));
        (
            Arc::new(SyncCounter {
                syncs: Arc::clone(&syncs),
            }),
            syncs,
        )
    }
}

impl DeviceLayer for SyncCounter {
    fn wrap(&self, _path: &Path, device: Box<dyn Device>) -> Box<dyn Device> {
        Box::new(Counted {
            inner: device,
            syncs: Arc::clone(&self.syncs),
        })
    }
}

struct Counted {
    inner: Box<dyn Device>,
    syncs: Arc<AtomicU64>,
}

impl Device for Counted {
    fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.inner.bytes_mut()
    }

    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync(offset, len)
    }

    fn check(&self) -> io::Result<()> {
        self.inner.check()
    }

    // Passes the map's syncer on (counted too): without it the store keeps
    // every sync under its lock and concurrent raises share none.
    fn syncer(&self) -> Option<Arc<dyn Syncer>> {
        Some(Arc::new(CountedSyncer {
            inner: self.inner.syncer()?,
            syncs: Arc::clone(&self.syncs),
        }))
    }
}

struct CountedSyncer {
    inner: Arc<dyn Syncer>,
    syncs: Arc<AtomicU64>,
}

impl Syncer for CountedSyncer {
    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync(offset, len)
    }
    fn prefault(&self, offset: usize, len: usize) {
        self.inner.prefault(offset, len)
    }
}

/// Minor page faults taken by the calling thread so far
/// (`getrusage(RUSAGE_THREAD)`), or `None` where that is not available.
pub fn thread_minor_faults() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the pointed-to memory,
    // which is a valid, writable rusage; it was zeroed, so it is
    // initialised whether or not the call succeeds.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    // SAFETY: zero-initialised above, written by the kernel on success.
    let usage = unsafe { usage.assume_init() };
    (rc == 0).then_some(usage.ru_minflt as u64)
}

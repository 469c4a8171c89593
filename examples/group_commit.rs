//! Group commit, measured: 1, 2, 4 and 8 threads raising into one
//! `Durability::Sync` file store for a few seconds each; prints raises per
//! second and syncs per raise (docs/BEHAVIOUR.md section 3.7).
//!
//! ```text
//! cargo run --release --example group_commit [seconds per run] [dir]
//! ```
//!
//! The directory (default `target/tmp/group_commit`) should be on the disk
//! to measure, not tmpfs. Syncs are counted by a device layer that passes
//! the map's `Syncer` on, counting there too: a layer that did not would
//! keep every sync under the store's lock (one per raise).

#[path = "../benches/common/lap.rs"]
mod lap;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use softnet_persistence::{
    Device, DeviceLayer, Durability, EventKind, ServiceOptions, ServiceStore, Syncer, Uuid,
};

/// Counts the syncs of every device it wraps, both kinds.
struct CountSyncs(Arc<AtomicU64>);

struct Counted<T: ?Sized> {
    inner: Box<T>,
    syncs: Arc<AtomicU64>,
}

struct CountedSyncer {
    inner: Arc<dyn Syncer>,
    syncs: Arc<AtomicU64>,
}

impl DeviceLayer for CountSyncs {
    fn wrap(&self, _path: &Path, device: Box<dyn Device>) -> Box<dyn Device> {
        Box::new(Counted {
            inner: device,
            syncs: Arc::clone(&self.0),
        })
    }
}

impl Device for Counted<dyn Device> {
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

    fn syncer(&self) -> Option<Arc<dyn Syncer>> {
        Some(Arc::new(CountedSyncer {
            inner: self.inner.syncer()?,
            syncs: Arc::clone(&self.syncs),
        }))
    }
}

impl Syncer for CountedSyncer {
    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync(offset, len)
    }
}

fn run(dir: &Path, threads: usize, secs: f64) -> (f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the directory");
    let syncs = Arc::new(AtomicU64::new(0));
    let options = ServiceOptions {
        capacity: 64 << 20,
        durability: Durability::Sync,
        device_layer: Some(Arc::new(CountSyncs(Arc::clone(&syncs)))),
        ..ServiceOptions::default()
    };
    let service = Uuid::from_u128(0x6c);
    // A journal in service (its ring lapped), from a cold page cache when
    // run as root.
    lap::lap(dir, service, options.capacity);
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    let store = ServiceStore::open_file(dir, service, &options).expect("open");
    let (stop, raised) = (AtomicBool::new(false), AtomicU64::new(0));
    let before = syncs.load(Ordering::Relaxed);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let args = [7u8; 64];
                    store
                        .raise(EventKind::Queueing, "sensor/temp-0001", &args)
                        .expect("raise");
                    raised.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        store.journal_path().is_some(),
        "the store fell back to level 1"
    );
    let raised = raised.load(Ordering::Relaxed) as f64;
    let syncs = (syncs.load(Ordering::Relaxed) - before) as f64;
    store.close().expect("close");
    let _ = std::fs::remove_dir_all(dir);
    (raised / elapsed, syncs / raised)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/group_commit"));
    println!(
        "Durability::Sync raises into one file store in {}",
        dir.display()
    );
    println!("threads   raises/s   syncs per raise");
    for threads in [1, 2, 4, 8] {
        let (rate, per) = run(&dir, threads, secs);
        println!("{threads:>7} {rate:>10.0} {per:>17.3}");
    }
}

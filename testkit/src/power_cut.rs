//! A simulated power cut, through the library's public device seam
//! ([`DeviceLayer`]): every journal device the store maps is wrapped so
//! that it keeps a copy of what the storage device holds (the bytes of
//! each page as of its last sync). A power cut at a chosen sync, or now,
//! leaves that copy, where each 512-byte sector written since its page was
//! last synced was either lost or (at random) written back by the kernel on
//! its own before the cut.
//!
//! The layer passes the map's [`Syncer`] on, so a store on it syncs in
//! groups (outside its lock, several threads' records in one sync) as on
//! the real device. The syncer never reads the map (the journal writes it
//! meanwhile, from other threads): it reads the pages it syncs from the
//! file, as another program would, before the sync, so the copy it keeps
//! holds what was written before the sync began and nothing later.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use softnet_persistence::{Device, DeviceLayer, Syncer};

/// Granularity at which a device may tear a write.
const SECTOR: usize = 512;
/// What `msync` writes: whole pages.
const PAGE: usize = 4096;

/// What the device holds for one mapped file, and the cut armed on it.
struct DeviceCopy {
    /// The same file, to read what the map holds now (a shared map and the
    /// file are the same page cache).
    file: File,
    durable: Vec<u8>,
    syncs: u64,
    /// (sync number, seed).
    armed: Option<(u64, u64)>,
    image: Option<Vec<u8>>,
    /// How long each sync takes, besides the real one (a slow device).
    sync_time: Duration,
}

/// The image a cut leaves: `durable`, with each sector that differs from
/// `now` taken from `now` where `keep_unsynced(sector)` says so.
fn cut_image(durable: &[u8], now: &[u8], keep_unsynced: &mut dyn FnMut(usize) -> bool) -> Vec<u8> {
    let mut image = durable.to_vec();
    for (sector, chunk) in image.chunks_mut(SECTOR).enumerate() {
        let start = sector * SECTOR;
        let current = &now[start..start + chunk.len()];
        if current != chunk && keep_unsynced(sector) {
            chunk.copy_from_slice(current);
        }
    }
    image
}

/// A xorshift coin, seeded.
fn coin(seed: u64) -> impl FnMut(usize) -> bool {
    let mut rng = seed | 1;
    move |_| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng & 1 == 1
    }
}

struct CutDevice {
    inner: Box<dyn Device>,
    copy: Arc<Mutex<DeviceCopy>>,
}

impl Device for CutDevice {
    fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.inner.bytes_mut()
    }

    fn check(&self) -> io::Result<()> {
        self.inner.check()
    }

    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        let mut copy = self.copy.lock().unwrap();
        copy.syncs += 1;
        if let Some((at, seed)) = copy.armed {
            if at == copy.syncs {
                // Just before this sync reaches the device.
                let image = cut_image(&copy.durable, self.inner.bytes(), &mut coin(seed));
                copy.image = Some(image);
                copy.armed = None;
            }
        }
        self.inner.sync(offset, len)?;
        std::thread::sleep(copy.sync_time);
        let now = self.inner.bytes();
        let start = offset - offset % PAGE;
        let end = (offset + len).next_multiple_of(PAGE).min(now.len());
        copy.durable[start..end].copy_from_slice(&now[start..end]);
        Ok(())
    }

    fn syncer(&self) -> Option<Arc<dyn Syncer>> {
        Some(Arc::new(CutSyncer {
            inner: self.inner.syncer()?,
            copy: Arc::clone(&self.copy),
        }))
    }
}

/// The syncer of a [`CutDevice`]: see the module docs.
struct CutSyncer {
    inner: Arc<dyn Syncer>,
    copy: Arc<Mutex<DeviceCopy>>,
}

impl CutSyncer {
    /// The file's bytes in `range`, read from the file.
    fn read(copy: &DeviceCopy, start: usize, end: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; end - start];
        copy.file.read_exact_at(&mut bytes, start as u64)?;
        Ok(bytes)
    }
}

impl Syncer for CutSyncer {
    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        // Held through the sync: syncs of one file are counted, and reach
        // the copy, one at a time.
        let mut copy = self.copy.lock().unwrap();
        copy.syncs += 1;
        let start = offset - offset % PAGE;
        let end = (offset + len)
            .next_multiple_of(PAGE)
            .min(copy.durable.len());
        let pages = CutSyncer::read(&copy, start, end)?;
        if let Some((at, seed)) = copy.armed {
            if at == copy.syncs {
                let now = CutSyncer::read(&copy, 0, copy.durable.len())?;
                copy.image = Some(cut_image(&copy.durable, &now, &mut coin(seed)));
                copy.armed = None;
            }
        }
        self.inner.sync(offset, len)?;
        std::thread::sleep(copy.sync_time);
        copy.durable[start..end].copy_from_slice(&pages);
        Ok(())
    }
}

/// The device most recently mapped by a store: the current journal file
/// (a resize or salvage maps a new one).
type Current = Arc<Mutex<Option<Arc<Mutex<DeviceCopy>>>>>;

struct Layer {
    current: Current,
    sync_time: Duration,
}

impl DeviceLayer for Layer {
    fn wrap(&self, path: &Path, device: Box<dyn Device>) -> Box<dyn Device> {
        let file = File::open(path).expect("the journal file just mapped");
        let copy = Arc::new(Mutex::new(DeviceCopy {
            file,
            durable: device.bytes().to_vec(),
            syncs: 0,
            armed: None,
            image: None,
            sync_time: self.sync_time,
        }));
        *self.current.lock().unwrap() = Some(Arc::clone(&copy));
        Box::new(CutDevice {
            inner: device,
            copy,
        })
    }
}

/// The test's handle on a store's simulated device: give [`PowerCut::layer`]
/// to the store's options, then count syncs, arm a cut or take an image.
#[derive(Clone, Default)]
pub struct PowerCut {
    current: Current,
    sync_time: Duration,
}

impl PowerCut {
    /// A simulation with no device yet.
    pub fn new() -> PowerCut {
        PowerCut::default()
    }

    /// A simulation whose syncs take `sync_time` each (a slow device), so
    /// that threads of one store find a sync running and share the next.
    pub fn with_sync_time(sync_time: Duration) -> PowerCut {
        PowerCut {
            sync_time,
            ..PowerCut::default()
        }
    }

    /// The layer to put in `ServiceOptions::device_layer` or
    /// `ClientOptions::device_layer`.
    pub fn layer(&self) -> Arc<dyn DeviceLayer> {
        Arc::new(Layer {
            current: Arc::clone(&self.current),
            sync_time: self.sync_time,
        })
    }

    fn device(&self) -> Arc<Mutex<DeviceCopy>> {
        let current = self.current.lock().unwrap();
        Arc::clone(current.as_ref().expect("the store has mapped its file"))
    }

    /// True once the store has mapped a file.
    pub fn has_device(&self) -> bool {
        self.current.lock().unwrap().is_some()
    }

    /// Syncs of the current file so far.
    pub fn sync_count(&self) -> u64 {
        self.device().lock().unwrap().syncs
    }

    /// Captures the image a power cut leaves just before sync number `at`
    /// (counting from 1 over the current file's map), keeping unsynced
    /// sectors at random (seeded).
    pub fn arm(&self, at: u64, seed: u64) {
        let device = self.device();
        let mut copy = device.lock().unwrap();
        copy.armed = Some((at, seed));
        copy.image = None;
    }

    /// Whether the armed cut has captured its image (its sync began): a
    /// call that returned before this says false was durable before the
    /// cut.
    pub fn has_image(&self) -> bool {
        self.device().lock().unwrap().image.is_some()
    }

    /// The image the armed cut captured, if its sync happened.
    pub fn take_image(&self) -> Option<Vec<u8>> {
        self.device().lock().unwrap().image.take()
    }

    /// The file as a power cut now would leave it (the store must be idle):
    /// each sector written since its page was last synced is kept where
    /// `keep_unsynced(sector)` says so, lost otherwise.
    pub fn image_now(&self, keep_unsynced: &mut dyn FnMut(usize) -> bool) -> Vec<u8> {
        let device = self.device();
        let copy = device.lock().unwrap();
        let mut now = vec![0u8; copy.durable.len()];
        copy.file
            .read_exact_at(&mut now, 0)
            .expect("read the journal file");
        cut_image(&copy.durable, &now, keep_unsynced)
    }
}

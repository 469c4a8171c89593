//! Custom level-2 backends that fail on command.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use softnet_persistence::{
    Error, MemoryLog, RecordLog, Removal, Result, ServiceOptions, ServiceStore,
};

/// Switches shared between a test and its [`FlakyLog`].
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// None: the clean run.
    Never,
    /// Only call N (a transient error).
    Once(u64),
    /// Call N and every later one (the device is gone).
    From(u64),
}

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

//! A journal written whole and published once durable (`create.rs`'s
//! `build`: salvage, a capacity change, renumbering) syncs its records
//! together, not one by one, and holds all of them.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::backend::RecordLog;
use crate::journal::device::{Device, DeviceLayer};
use crate::journal::{Durability, Journal, JournalConfig};

/// Counts the syncs of the devices it wraps (without a syncer, every sync
/// goes through `Device::sync`).
struct Count(Arc<AtomicUsize>);

struct Counted {
    inner: Box<dyn Device>,
    syncs: Arc<AtomicUsize>,
}

impl DeviceLayer for Count {
    fn wrap(&self, _path: &Path, inner: Box<dyn Device>) -> Box<dyn Device> {
        let syncs = Arc::clone(&self.0);
        Box::new(Counted { inner, syncs })
    }
}

impl Device for Counted {
    fn bytes(&self) -> &[u8] {
        self.inner.bytes()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.inner.bytes_mut()
    }

    fn sync(&mut self, offset: usize, len: usize) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.inner.sync(offset, len)
    }
}

#[test]
fn a_rewritten_sync_journal_syncs_its_records_together() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicUsize::new(0));
    let config = JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: uuid::Uuid::from_u128(15),
        capacity: 1 << 20,
        durability: Durability::Sync,
        device_layer: Some(Arc::new(Count(Arc::clone(&syncs)))),
    };
    let path = dir.path().join("rewrite.j");
    let mut j = Journal::open(&path, &config).unwrap().0;
    for i in 0..2000u32 {
        j.append(&i.to_le_bytes().repeat(20)).unwrap();
        j.commit().unwrap();
    }
    assert!(syncs.load(Ordering::SeqCst) >= 2000, "one sync per commit");
    syncs.store(0, Ordering::SeqCst);
    j.rewrite(2 << 20, &[]).unwrap();
    let rewrite = syncs.load(Ordering::SeqCst);
    assert!(rewrite <= 4, "{rewrite} syncs to rewrite 2000 records");
    drop(j);
    let mut j = Journal::open(&path, &config).unwrap().0;
    let mut seen = Vec::new();
    j.scan(&mut |_, payload| {
        seen.push(u32::from_le_bytes(payload[..4].try_into().unwrap()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, (0..2000).collect::<Vec<u32>>());
}

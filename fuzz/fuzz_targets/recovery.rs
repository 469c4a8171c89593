//! Fuzzes the journal's recovery: any bytes at a journal's path must open
//! without a panic, and every event it yields must be well formed.
//!
//! The input is laid over a valid journal file (so the fuzzer starts from a
//! real header and real records and mutates them) and written at the
//! journal's path; the store is opened, drained with peek/ack, and closed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use softnet_persistence::{Durability, EventKind, ServiceOptions, ServiceStore, Uuid};

const SERVICE: Uuid = Uuid::from_u128(0xf0f0_f0f0);

fn options() -> ServiceOptions {
    ServiceOptions {
        capacity: 8192,
        durability: Durability::None,
        ..ServiceOptions::default()
    }
}

/// A temp dir, on tmpfs if there is one (files are made and dropped at
/// every run).
fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

/// A real journal with a few events, the base the input is laid over.
fn seed_file() -> &'static Vec<u8> {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = temp_dir();
        let store = ServiceStore::open_file(dir.path(), SERVICE, &options()).expect("open");
        for (i, kind) in [
            EventKind::Queueing,
            EventKind::Replacing,
            EventKind::Queueing,
        ]
        .into_iter()
        .enumerate()
        {
            store.raise(kind, "Sensor", &[i as u8; 20]).expect("raise");
        }
        let path = store.journal_path().expect("level 2");
        store.close().expect("close");
        std::fs::read(path).expect("read")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut file = seed_file().clone();
    // The first 8 bytes of input choose where the rest lands, so mutations
    // reach the header, the records and the end of the ring alike.
    let (at, patch) = match data.split_first_chunk::<8>() {
        Some((at, patch)) => (u64::from_le_bytes(*at) as usize % file.len(), patch),
        None => (0, data),
    };
    let end = (at + patch.len()).min(file.len());
    file[at..end].copy_from_slice(&patch[..end - at]);
    if patch.len() > file.len() - at && patch.len() % 2 == 1 {
        file.truncate(at + patch.len() / 2 % (file.len() - at + 1));
    }
    let dir = temp_dir();
    let name = format!("softnet.service.persistence_{}.ssp", SERVICE.hyphenated());
    std::fs::write(dir.path().join(name), &file).expect("write");
    let Ok(store) = ServiceStore::open_file(dir.path(), SERVICE, &options()) else {
        return;
    };
    let mut seen = 0;
    while let Ok(Some(event)) = store.peek() {
        assert!(!event.name.is_empty() && event.name.len() <= 256);
        assert!(event.args.len() <= 2048);
        assert!(store.ack(event.uid).is_ok());
        seen += 1;
        assert!(seen <= 10_000, "more events than the file can hold");
    }
});

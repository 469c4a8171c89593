//! Brings a new journal to the state of one in service: its ring lapped
//! once, every block written through the map and synced. A fresh file's
//! blocks are preallocated but never written, and the first sync of each
//! costs the file system a metadata write more (the extent changes from
//! unwritten to written) than the syncs of a journal in service. Shared by
//! benches/compare (threads section) and examples/group_commit.rs.
//!
//! The ring is written by the library itself (events raised and acked with
//! `Durability::None`), not with `write()`: pages a `write()` put in the
//! page cache can be large folios, and the `msync` of one dirty byte then
//! writes back the whole folio (about 240 KiB per raise measured here with
//! the ring written by 1 MiB `pwrite`s).

use std::path::Path;

use softnet_persistence::{
    Durability, EventKind, ServiceOptions, ServiceStore, Uuid, MAX_ARGS_LEN,
};

/// Raises and acknowledges events of the largest size in the journal of
/// `uid` in `dir` (`capacity` bytes of ring) until more than its capacity
/// went through the ring, then closes it.
pub fn lap(dir: &Path, uid: Uuid, capacity: usize) {
    let options = ServiceOptions {
        capacity,
        durability: Durability::None,
        ..ServiceOptions::default()
    };
    let store = ServiceStore::open_file(dir, uid, &options).expect("open the journal to lap");
    let args = vec![0x5a; MAX_ARGS_LEN];
    for _ in 0..=capacity / MAX_ARGS_LEN {
        store
            .raise(EventKind::Queueing, "lap", &args)
            .expect("raise");
        let event = store.peek().expect("peek").expect("the event just raised");
        store.ack(event.uid).expect("ack");
    }
    store.close().expect("close the lapped journal");
}

//! An append that needs the room a removal freed waits until that removal
//! is durable (`group.rs`, `Freed`): a power cut must never keep the new
//! record and lose the removal, which would leave more pending records
//! than the capacity (and the oldest, maybe a returned raise, dropped at
//! open). An append that fits without that room does not wait.

use uuid::Uuid;

use crate::backend::{RecordLog, Removal};
use crate::journal::{Durability, Journal, JournalConfig, SyncTicket};

/// 72 bytes in the file (a 32-byte header and 40 bytes of payload).
const PAYLOAD: [u8; 40] = [7; 40];
const CAPACITY: u64 = 8192;

fn journal(dir: &std::path::Path) -> Journal {
    let config = JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: Uuid::from_u128(13),
        capacity: CAPACITY,
        durability: Durability::Sync,
        device_layer: None,
    };
    Journal::open(&dir.join("freed.j"), &config).unwrap().0
}

/// Appends `n` records, each synced; returns their ids.
fn fill(j: &mut Journal, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let id = j.append(&PAYLOAD).unwrap();
            j.commit().unwrap();
            j.take_ticket().unwrap().wait().unwrap();
            id
        })
        .collect()
}

/// Removes `id` (a cache-mode ack: not the oldest) and hands its sync
/// over without waiting for it.
fn remove(j: &mut Journal, id: u64) -> SyncTicket {
    j.remove(id, Removal::Acknowledged).unwrap();
    j.commit().unwrap();
    j.take_ticket().unwrap()
}

fn resolved(t: &SyncTicket) -> bool {
    t.group.is_resolved(t.number)
}

#[test]
fn an_append_needing_the_room_of_a_removal_in_a_running_sync_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    // 113 records of 72 bytes: 8136 of 8192.
    let ids = fill(&mut j, 113);
    let t = remove(&mut j, ids[50]);
    assert!(!resolved(&t));
    // 8064 live + 72: fits only with the 72 bytes the removal freed.
    j.append(&PAYLOAD).unwrap();
    assert!(
        resolved(&t),
        "the removal was made durable before the append"
    );
    assert!(t.wait().is_ok());
}

#[test]
fn an_append_that_fits_anyway_shares_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(dir.path());
    let ids = fill(&mut j, 100);
    let t = remove(&mut j, ids[50]);
    j.append(&PAYLOAD).unwrap();
    j.commit().unwrap();
    assert!(
        !resolved(&t),
        "no sync under the lock for an append that fits"
    );
    let next = j.take_ticket().unwrap();
    next.wait().unwrap();
    assert!(resolved(&t), "one sync covered both");
}

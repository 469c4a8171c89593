//! Recovery tells a sync that a power cut tore (a later record on the
//! device without an earlier one that was never confirmed durable: an
//! interrupted write, nothing lost, no evidence copy) from damage to a
//! durable record (corruption, counted, the file set aside), by the durable
//! watermark every record carries (docs/FORMAT.md, record bytes 13..16). A
//! version-1 file (zeros there) is judged exactly as before.

use std::path::Path;

use uuid::Uuid;

use crate::backend::RecordLog;
use crate::journal::format::{self, record_len, seal_record, slot, DATA_OFFSET, TYPE_DATA};
use crate::journal::recovery::{recover, Damage, End};
use crate::journal::{Durability, Journal, JournalConfig};
use crate::report::FailureKind;

const SIZE: u64 = 4096;
const PAYLOAD: usize = 40;

/// Writes data record `seq` (its id too) at `pos`, `unsynced` records
/// above the durable watermark; returns where the next one starts.
fn write(data: &mut [u8], pos: u64, seq: u64, unsynced: u64) -> u64 {
    let p = pos as usize;
    data[p + 32..p + 32 + PAYLOAD].fill(seq as u8);
    seal_record(&mut data[p..], TYPE_DATA, seq, seq, unsynced, PAYLOAD);
    pos + record_len(PAYLOAD)
}

/// Records 1..=n with the given watermarks; returns the data and where
/// each record starts.
fn log(unsynced: &[u64]) -> (Vec<u8>, Vec<u64>) {
    let mut data = vec![0u8; SIZE as usize];
    let (mut pos, mut starts) = (0, Vec::new());
    for (i, &u) in unsynced.iter().enumerate() {
        starts.push(pos);
        pos = write(&mut data, pos, i as u64 + 1, u);
    }
    (data, starts)
}

fn ids(live: &[crate::journal::ring::Slot]) -> Vec<u64> {
    live.iter().map(|s| s.id).collect()
}

#[test]
fn a_record_no_later_one_vouches_for_is_torn_not_lost() {
    // Records 4 and 5 went out in one sync: 5 was written while 4 was not
    // yet durable (1 record above the watermark). The cut kept 5, not 4.
    let (mut data, starts) = log(&[0, 0, 0, 0, 1]);
    data[starts[3] as usize..starts[4] as usize].fill(0);
    let r = recover(&data, SIZE, (0, 1), None);
    let torn = Damage {
        pos: starts[3],
        first_seq: 4,
        records: 1,
        lost: 0,
        torn: 1,
    };
    assert_eq!(r.damage, vec![torn]);
    assert_eq!(ids(&r.live()), vec![1, 2, 3, 5]);
    assert!(r.needs_salvage() && !r.corrupt());
    assert_eq!((r.lost(), r.torn()), (0, 1));
}

#[test]
fn a_damaged_record_a_later_one_vouches_for_is_corruption() {
    // Record 6 was written once 4 and 5 were durable (watermark 0): the
    // damage to 4 is damage to a durable record.
    let (mut data, starts) = log(&[0, 0, 0, 0, 1, 0]);
    data[starts[3] as usize + 40] ^= 0x5a;
    let r = recover(&data, SIZE, (0, 1), None);
    assert_eq!(
        r.damage,
        vec![Damage {
            pos: starts[3],
            first_seq: 4,
            records: 1,
            lost: 1,
            torn: 0
        }]
    );
    assert!(r.corrupt());
    assert_eq!(ids(&r.live()), vec![1, 2, 3, 5, 6]);
}

#[test]
fn a_run_is_split_where_the_watermark_ends() {
    // 3, 4, 5 damaged; 6 says 2 records before it were not durable (4 and
    // 5): 3 was durable (corruption), 4 and 5 torn.
    let (mut data, starts) = log(&[0, 0, 0, 1, 2, 2]);
    for &s in &starts[2..5] {
        data[s as usize + 40] ^= 0x5a;
    }
    let r = recover(&data, SIZE, (0, 1), None);
    assert_eq!(r.damage.len(), 1);
    let d = r.damage[0];
    assert_eq!((d.records, d.lost, d.torn), (3, 1, 2));
    assert!(r.corrupt());
}

#[test]
fn version_1_records_vouch_for_everything_before_them() {
    // All zeros (what version 1 wrote): damage in the middle is corruption,
    // exactly as before the watermark existed.
    let (mut data, starts) = log(&[0; 5]);
    data[starts[2] as usize + 40] ^= 0x5a;
    let r = recover(&data, SIZE, (0, 1), None);
    assert_eq!((r.damage.len(), r.lost(), r.torn()), (1, 1, 0));
    assert!(r.corrupt());
    assert_eq!(r.end, End::Clean);
}

fn config(durability: Durability) -> JournalConfig {
    JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: Uuid::from_u128(12),
        capacity: 8192,
        durability,
        device_layer: None,
    }
}

/// Appends one record and commits; waits for its sync unless `wait` is
/// false (its ticket is dropped: the sync is left to the next one).
fn put(j: &mut Journal, byte: u8, wait: bool) -> u64 {
    let id = j.append(&[byte; PAYLOAD]).unwrap();
    j.commit().unwrap();
    let ticket = j
        .take_ticket()
        .expect("Sync hands its sync over to the group");
    if wait {
        ticket.wait().unwrap();
    }
    id
}

/// Fills the bytes of record `index` (0-based, all records of PAYLOAD
/// bytes from the start of the ring) of the file with zeros.
fn wipe(path: &Path, index: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let at = DATA_OFFSET + index * record_len(PAYLOAD);
    f.write_all_at(&[0u8; 72], at).unwrap();
}

fn set_aside_copies(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".corrupt-")
        })
        .count()
}

fn reopen(path: &Path) -> (Vec<u64>, Vec<crate::report::Failure>) {
    let (mut j, reports) = Journal::open(path, &config(Durability::Sync)).unwrap();
    let mut ids = Vec::new();
    j.scan(&mut |id, _| {
        ids.push(id);
        Ok(())
    })
    .unwrap();
    (ids, reports)
}

#[test]
fn a_torn_group_in_a_real_file_reopens_as_an_interrupted_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.j");
    {
        let (mut j, _) = Journal::open(&path, &config(Durability::Sync)).unwrap();
        for b in 1..=3 {
            put(&mut j, b, true);
        }
        // Record 4's sync is handed over and not made before record 5 is
        // written: both would go out in one sync.
        put(&mut j, 4, false);
        put(&mut j, 5, true);
    }
    // The cut kept record 5 and lost record 4.
    wipe(&path, 3);
    let (ids, reports) = reopen(&path);
    assert_eq!(ids, vec![1, 2, 3, 5]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(
        reports[0].kind,
        FailureKind::InterruptedWrite,
        "{}",
        reports[0]
    );
    assert_eq!(reports[0].events_lost, 0);
    assert_eq!(
        set_aside_copies(dir.path()),
        0,
        "nothing to keep as evidence"
    );
    // Rewritten: the next open finds nothing wrong.
    assert!(reopen(&path).1.is_empty());
}

#[test]
fn damage_a_later_record_proves_durable_is_corruption_in_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.j");
    {
        let (mut j, _) = Journal::open(&path, &config(Durability::Sync)).unwrap();
        put(&mut j, 1, true);
        put(&mut j, 2, false);
        put(&mut j, 3, true);
        // Written once 2 and 3 were durable.
        put(&mut j, 4, true);
    }
    wipe(&path, 1);
    let (ids, reports) = reopen(&path);
    assert_eq!(ids, vec![1, 3, 4]);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].kind, FailureKind::Corruption);
    assert_eq!(reports[0].events_lost, 1);
    assert_eq!(set_aside_copies(dir.path()), 1);
}

/// Sets both header slots of the file to version 1 (what version 1 wrote:
/// with one thread every watermark is 0, the same record bytes).
fn to_version_1(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    for at in format::SLOT_OFFSETS {
        let mut s = [0u8; format::SLOT_LEN];
        f.read_exact_at(&mut s, at as u64).unwrap();
        s[slot::VERSION..slot::VERSION + 4].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32fast::hash(&s[..slot::CRC]);
        s[slot::CRC..].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&s, at as u64).unwrap();
    }
}

/// The version in the header slot in force.
fn version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    let slots = format::SLOT_OFFSETS.map(|at| format::Header::decode(&bytes[at..]).unwrap());
    let newest = slots.iter().max_by_key(|h| h.generation).unwrap();
    newest.version
}

#[test]
fn a_version_1_file_is_read_as_before_and_its_header_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.j");
    {
        let (mut j, _) = Journal::open(&path, &config(Durability::Sync)).unwrap();
        for b in 1..=4 {
            put(&mut j, b, true);
        }
    }
    to_version_1(&path);
    assert_eq!(version(&path), 1);
    let (ids, reports) = reopen(&path);
    assert_eq!((ids, reports.len()), (vec![1, 2, 3, 4], 0));
    assert_eq!(version(&path), 3, "upgraded before any record is written");
    // Damage in the middle of a version-1 file: corruption, as before.
    to_version_1(&path);
    wipe(&path, 1);
    let (ids, reports) = reopen(&path);
    assert_eq!(ids, vec![1, 3, 4]);
    assert_eq!(reports[0].kind, FailureKind::Corruption, "as in version 1");
    assert_eq!(reports[0].events_lost, 1);
    assert_eq!(set_aside_copies(dir.path()), 1);
}

/// Found by the recovery fuzz target: past a damaged record, a wrap marker
/// newer than the chain that cannot be one (far from the end of the ring,
/// it would fill more than a record's length). Recovery looked it up again
/// and again, one damaged run each time, until memory ran out. It is now
/// part of the damage, and the record after it continues the log.
#[test]
fn a_marker_that_cannot_be_one_past_damage_is_damage_not_a_loop() {
    let (mut data, starts) = log(&[0, 0, 0]);
    data[starts[2] as usize + 32] ^= 0xff; // record 3 is damaged
    let marker = starts[2] + record_len(PAYLOAD);
    seal_record(&mut data[marker as usize..], format::TYPE_WRAP, 4, 0, 0, 0);
    write(&mut data, marker + 32, 5, 0);
    let r = recover(&data, SIZE, (0, 1), None);
    assert_eq!(ids(&r.live()), vec![1, 2, 5]);
    let runs: Vec<(u64, u64)> = r.damage.iter().map(|d| (d.first_seq, d.records)).collect();
    assert_eq!(runs, vec![(3, 1), (4, 1)]);
}

//! Invariant: a full disk never costs a readable journal. Reopening with
//! another capacity keeps every pending event when the rewrite cannot be
//! written (the journal keeps its capacity and says so), a damaged journal
//! that cannot be repaired is left as it is (no evidence copy per attempt),
//! and a journal of another user is refused by name. On a tmpfs and on an
//! ext4 in a loop device, both full (docs/BEHAVIOUR.md section 5).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use softnet_persistence::{
    Durability, EventKind, FailureKind, Level, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{collect_into, Reports};

use crate::mounts::{need_root, Mount};

const SERVICE: Uuid = Uuid::from_u128(0xf011_d15c);

fn options(capacity: usize, reports: &Reports) -> ServiceOptions {
    ServiceOptions {
        capacity,
        durability: Durability::Sync,
        on_failure: Some(collect_into(reports)),
        ..ServiceOptions::default()
    }
}

/// A journal of `capacity` in `dir` with as many 200-byte events as fit
/// (nothing dropped): their uids.
fn fill_journal(dir: &Path, capacity: usize) -> Result<Vec<Uuid>, String> {
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, SERVICE, &options(capacity, &reports))
        .map_err(|e| e.to_string())?;
    let mut uids = Vec::new();
    for n in 0u32.. {
        let uid = store
            .raise(EventKind::Queueing, "Reading", &[n as u8; 200])
            .map_err(|e| e.to_string())?;
        if store.stats().dropped_events > 0 {
            break;
        }
        uids.push(uid);
    }
    // The last raise dropped the oldest: what is pending now.
    let pending: Vec<Uuid> = store
        .pending()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| e.uid)
        .collect();
    Ok(pending)
}

fn pending(store: &ServiceStore) -> Result<Vec<Uuid>, String> {
    Ok(store
        .pending()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|e| e.uid)
        .collect())
}

/// Reopens with `capacity` on the full disk: level 2, every event kept, one
/// CapacityUnchanged report, the old capacity.
fn reopen_on_full_disk(
    dir: &Path,
    kept: &[Uuid],
    old: usize,
    capacity: usize,
) -> Result<(), String> {
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir, SERVICE, &options(capacity, &reports))
        .map_err(|e| e.to_string())?;
    let stats = store.stats();
    let got = pending(&store)?;
    let reports = reports.lock().unwrap().clone();
    if stats.level != Level::Persistent || got != kept {
        return Err(format!(
            "capacity {old} -> {capacity} on a full disk: level {:?}, {} of {} events kept \
             (before the change: level 1 and most events reported lost); reports {reports:?}",
            stats.level,
            got.len(),
            kept.len()
        ));
    }
    let unchanged = reports
        .iter()
        .any(|r| r.kind == FailureKind::CapacityUnchanged);
    if !unchanged || stats.capacity_bytes != old as u64 || stats.dropped_events != 0 {
        return Err(format!(
            "capacity {old} -> {capacity}: expected one CapacityUnchanged report and the old \
             capacity, got {reports:?}, capacity {}, {} dropped",
            stats.capacity_bytes, stats.dropped_events
        ));
    }
    println!(
        "full_disk: {} events, capacity {old} -> {capacity} on a full disk: all kept at level 2, \
         capacity stays {old}",
        kept.len()
    );
    Ok(())
}

/// A damaged journal on a full disk: its repair cannot be written; it stays
/// as it was and no `.corrupt-` copy is made, however often it is opened.
fn damaged_on_full_disk(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(
        "softnet.service.persistence_{}.ssp",
        SERVICE.hyphenated()
    ));
    let mut bytes = fs::read(&path).map_err(|e| e.to_string())?;
    // A byte of the tenth record's payload: records of 280 bytes (a 32-byte
    // header, then 40 + 7 + 200 bytes of event, padded to 8) from offset 8192.
    bytes[8192 + 9 * 280 + 100] ^= 0x5a;
    fs::write(&path, &bytes).map_err(|e| e.to_string())?;
    for attempt in 0..3 {
        let reports = Reports::default();
        let store = ServiceStore::open_file(dir, SERVICE, &options(64 << 10, &reports))
            .map_err(|e| e.to_string())?;
        drop(store);
        let copies = fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
            })
            .count();
        if copies != 0 || fs::read(&path).map_err(|e| e.to_string())? != bytes {
            return Err(format!(
                "open {attempt} of a damaged journal on a full disk made {copies} set-aside \
                 copies or changed it (before: one more copy per open)"
            ));
        }
    }
    println!(
        "full_disk: a damaged journal on a full disk opened 3 times: left as it was, no copies"
    );
    Ok(())
}

fn scenario(mount: &Mount) -> Result<(), String> {
    let dir = mount.dir.join("journal");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let kept = fill_journal(&dir, 64 << 10)?;
    mount.fill()?;
    reopen_on_full_disk(&dir, &kept, 64 << 10, 256 << 10)?;
    reopen_on_full_disk(&dir, &kept, 64 << 10, 16 << 10)?;
    damaged_on_full_disk(&dir)
}

/// A journal owned by another user is refused by name, not used.
fn another_users_journal(work: &Path) -> Result<(), String> {
    let dir = work.join("owned");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    fill_journal(&dir, 16 << 10)?;
    let path = dir.join(format!(
        "softnet.service.persistence_{}.ssp",
        SERVICE.hyphenated()
    ));
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
    let reports = Reports::default();
    let store = ServiceStore::open_file(&dir, SERVICE, &options(16 << 10, &reports))
        .map_err(|e| e.to_string())?;
    let reports = reports.lock().unwrap().clone();
    let named = reports
        .iter()
        .any(|r| r.message.contains("belongs to user 65534"));
    if store.level() != Level::Memory || !named {
        return Err(format!(
            "another user's journal was used or not named: {reports:?}"
        ));
    }
    if fs::metadata(&path).map_err(|e| e.to_string())?.uid() != 65534 {
        return Err("another user's journal was changed".into());
    }
    Ok(())
}

/// The test: on a full tmpfs, then on a full ext4 in a loop device.
pub fn test() -> Result<(), String> {
    need_root()?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    {
        let tmpfs = Mount::tmpfs("1M", &work.path().join("tmpfs"))?;
        scenario(&tmpfs)?;
    }
    {
        let ext4 = Mount::small_ext4(work.path(), "ext4", 8)?;
        scenario(&ext4)?;
    }
    another_users_journal(work.path())
}

//! Invariant: whatever is found at the journal's name, or claimed by its
//! header, open neither stalls, nor crashes, nor blames the wrong cause:
//! a symbolic link or a non-regular file is refused by name, a journal
//! readable by others is made private, a header claiming a huge ring on a
//! small file opens at once, and sequence numbers near their end are
//! renumbered instead of running out (docs/BEHAVIOUR.md section 5).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use softnet_persistence::{
    Durability, ErrorKind, EventKind, FailureKind, Level, ServiceOptions, ServiceStore, Uuid,
};
use testkit::{collect_into, journal_name, scratch_dir, Reports, SLOT_LEN, SLOT_OFFSETS};

const SERVICE: Uuid = Uuid::from_u128(0x4057_11e5);

fn options(reports: &Reports) -> ServiceOptions {
    ServiceOptions {
        capacity: 8192,
        durability: Durability::Sync,
        on_failure: Some(collect_into(reports)),
        ..ServiceOptions::default()
    }
}

/// The store opened at level 1 and said why, in a report naming `words`.
fn assert_fell_back_saying(store: &ServiceStore, reports: &Reports, words: &str) {
    assert_eq!(store.level(), Level::Memory);
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].kind, FailureKind::Fallback);
    assert!(
        reports[0].message.contains(words),
        "the report says what is wrong ({words}): {}",
        reports[0].message
    );
}

#[test]
fn a_dangling_symlink_at_the_journal_name_is_named_not_called_locked() {
    let dir = scratch_dir();
    let path = dir.path().join(journal_name(SERVICE));
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).unwrap();
    let reports = Reports::default();
    // Before: Error::Locked ("locked by another process"), the wrong cause.
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    assert_fell_back_saying(&store, &reports, "symbolic link");
    assert!(
        !dir.path().join("nowhere").exists(),
        "nothing was created through the link"
    );
}

#[test]
fn a_symlink_to_a_real_journal_is_not_followed() {
    let dir = scratch_dir();
    let elsewhere = scratch_dir();
    let store =
        ServiceStore::open_file(elsewhere.path(), SERVICE, &options(&Reports::default())).unwrap();
    store.raise(EventKind::Queueing, "Temp", b"1").unwrap();
    let target = store.journal_path().unwrap();
    drop(store);
    std::os::unix::fs::symlink(&target, dir.path().join(journal_name(SERVICE))).unwrap();
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    assert_fell_back_saying(&store, &reports, "symbolic link");
}

#[test]
fn a_directory_at_the_journal_name_is_named() {
    let dir = scratch_dir();
    fs::create_dir(dir.path().join(journal_name(SERVICE))).unwrap();
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    assert_fell_back_saying(&store, &reports, "not a regular file");
}

#[test]
fn a_journal_readable_by_others_is_made_private() {
    let dir = scratch_dir();
    let store =
        ServiceStore::open_file(dir.path(), SERVICE, &options(&Reports::default())).unwrap();
    let path = store.journal_path().unwrap();
    drop(store);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    assert_eq!(store.level(), Level::Persistent);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "before: left at 0666");
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn an_empty_directory_is_refused_not_the_current_one() {
    let reports = Reports::default();
    let err = ServiceStore::open_file("", SERVICE, &options(&reports)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = softnet_persistence::ClientStore::open_file("", "broker", "key", &Default::default())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

/// Rewrites both header slots of the journal at `path` with `edit`, and
/// their CRCs (docs/FORMAT.md: the CRC-32 of bytes 0..252 is at 252).
fn patch_header(path: &Path, edit: impl Fn(&mut [u8])) {
    let mut bytes = fs::read(path).unwrap();
    for at in SLOT_OFFSETS {
        let slot = &mut bytes[at..at + SLOT_LEN];
        edit(slot);
        let crc = crc32fast::hash(&slot[..252]);
        slot[252..256].copy_from_slice(&crc.to_le_bytes());
    }
    fs::write(path, bytes).unwrap();
}

fn empty_journal(dir: &Path) -> std::path::PathBuf {
    let store = ServiceStore::open_file(dir, SERVICE, &options(&Reports::default())).unwrap();
    let path = store.journal_path().unwrap();
    drop(store);
    path
}

#[test]
fn a_header_claiming_a_huge_ring_on_a_small_file_opens_at_once() {
    let dir = scratch_dir();
    let path = empty_journal(dir.path());
    // data_size (slot offset 48) of 2^40 bytes on a file of a few KiB, with
    // a valid CRC: the old recovery searched every offset of it (about 3.6
    // minutes for 2^40).
    patch_header(&path, |slot| {
        slot[48..56].copy_from_slice(&(1u64 << 40).to_le_bytes());
    });
    let (done, finished) = mpsc::channel();
    let dir_path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let started = Instant::now();
        let reports = Reports::default();
        let store = ServiceStore::open_file(&dir_path, SERVICE, &options(&reports)).unwrap();
        store.raise(EventKind::Queueing, "Temp", b"1").unwrap();
        let _ = done.send((
            started.elapsed(),
            store.level(),
            reports.lock().unwrap().len(),
        ));
    });
    // Not a performance figure (the benchmarks measure open): a hang check
    // with a margin of thousands over what open takes.
    let (took, level, reports) = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("open of a crafted header must not stall");
    println!("crafted 2^40-byte header on a small file: open + raise took {took:?}");
    assert_eq!(level, Level::Persistent);
    assert!(reports >= 1, "the truncated, impossible file is reported");
}

#[test]
fn sequence_numbers_near_their_end_are_renumbered() {
    let dir = scratch_dir();
    let path = empty_journal(dir.path());
    // tail_seq (slot offset 72): the next record would be numbered near
    // u64::MAX. Before: raises fell back to level 1 or failed with a
    // "custom backend failed" error once the numbers wrapped.
    patch_header(&path, |slot| {
        slot[72..80].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    });
    let reports = Reports::default();
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    let mut raised = Vec::new();
    for n in 0..20u8 {
        raised.push(store.raise(EventKind::Queueing, "Temp", &[n]).unwrap());
    }
    assert_eq!(
        store.level(),
        Level::Persistent,
        "{:?}",
        reports.lock().unwrap()
    );
    drop(store);
    let store = ServiceStore::open_file(dir.path(), SERVICE, &options(&reports)).unwrap();
    let pending: Vec<Uuid> = store.pending().unwrap().iter().map(|e| e.uid).collect();
    assert_eq!(pending, raised);
    assert!(
        reports.lock().unwrap().is_empty(),
        "{:?}",
        reports.lock().unwrap()
    );
}

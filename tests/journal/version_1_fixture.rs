//! A journal written by the release whose format was version 1 (committed
//! as tests/fixtures/service-v1.ssp) opens with every pending event, the
//! raise times unknown, and is converted to the current version: its
//! header says so before anything new is written, and new events carry
//! their raise time beside the old ones.
//!
//! The fixture was written by that release (commit 847a795) with: a
//! journal of 8 KiB capacity for service uid 0x5eed0001, events raised with
//! uids 0xF10001..=0xF10005 (Queueing "Reading" "t=20.5", Queueing
//! "Reading" "t=20.7", Replacing "Door" "open", Private "Setpoint" "21" for
//! client 7, Replacing-null "Alarm"), then the first one peeked and
//! acknowledged, and the store closed.

use softnet_persistence::{EventKind, ServiceOptions, ServiceStore, Uuid};
use testkit::{u32_at, u64_at};

const FIXTURE: &[u8] = include_bytes!("../fixtures/service-v1.ssp");
const SERVICE: u128 = 0x5eed_0001;
const JOURNAL: &str = "softnet.service.persistence_00000000-0000-0000-0000-00005eed0001.ssp";

/// Kind, name, arguments, client id and uid of a pending event.
type Pending = (EventKind, &'static str, &'static [u8], Option<i64>, u128);

/// The version of the header that counts: header writes alternate between
/// slot 0 (offset 0) and slot 1 (offset 4096), and the valid slot (its
/// CRC at slot offset 252 matches bytes 0..252) with the higher generation
/// (u64 at slot offset 16) wins (docs/FORMAT.md, "Header slot").
fn current_version(file: &[u8]) -> u32 {
    let newest = [0usize, 4096]
        .into_iter()
        .map(|at| &file[at..at + 256])
        .filter(|slot| u32_at(slot, 252) == crc32fast::hash(&slot[..252]))
        .max_by_key(|slot| u64_at(slot, 16))
        .expect("a valid header slot");
    u32_at(newest, 8)
}

fn expected() -> Vec<Pending> {
    vec![
        (EventKind::Queueing, "Reading", b"t=20.7", None, 0xF1_0002),
        (EventKind::Replacing, "Door", b"open", None, 0xF1_0003),
        (EventKind::Private, "Setpoint", b"21", Some(7), 0xF1_0004),
        (EventKind::ReplacingNull, "Alarm", b"", None, 0xF1_0005),
    ]
}

#[test]
fn a_version_1_journal_opens_with_its_events_and_is_converted() {
    assert_eq!(
        current_version(FIXTURE),
        1,
        "the fixture is a version 1 file"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JOURNAL);
    std::fs::write(&path, FIXTURE).unwrap();
    let options = ServiceOptions {
        capacity: 8 * 1024,
        ..ServiceOptions::default()
    };
    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = failures.clone();
    let options = ServiceOptions {
        on_failure: Some(std::sync::Arc::new(move |f| {
            seen.lock().unwrap().push(f.clone())
        })),
        ..options
    };
    let store = ServiceStore::open_file(dir.path(), Uuid::from_u128(SERVICE), &options).unwrap();
    assert_eq!(store.level().number(), 2);
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    let pending = store.pending().unwrap();
    let got: Vec<_> = pending
        .iter()
        .map(|e| {
            (
                e.kind,
                e.name.as_str(),
                e.args.as_slice(),
                e.client_id,
                e.uid.as_u128(),
            )
        })
        .collect();
    assert_eq!(got, expected());
    assert!(
        pending.iter().all(|e| e.raised_at_ms.is_none()),
        "{pending:?}"
    );
    assert!(
        pending.windows(2).all(|w| w[0].seq < w[1].seq),
        "{pending:?}"
    );
    // Converted: the header carries the current version before any write.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(current_version(&bytes), 3);

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    store
        .raise(EventKind::Queueing, "Reading", b"t=21.0")
        .unwrap();
    store.close().unwrap();

    let store = ServiceStore::open_file(dir.path(), Uuid::from_u128(SERVICE), &options).unwrap();
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 5);
    let newest = &pending[4];
    assert_eq!(newest.args, b"t=21.0");
    assert!(newest.raised_at_ms.unwrap() >= before, "{newest:?}");
    assert!(newest.seq > pending[3].seq);
    assert!(pending[..4].iter().all(|e| e.raised_at_ms.is_none()));
    // Delivered in raise order, old events first.
    assert_eq!(store.peek().unwrap().unwrap().uid.as_u128(), 0xF1_0002);
    assert!(failures.lock().unwrap().is_empty());
}

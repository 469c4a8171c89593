//! Invariant: a written journal matches docs/FORMAT.md byte for byte (the
//! offsets below are the documented numbers, not the code's constants).

use std::os::unix::fs::PermissionsExt;

use softnet_persistence::{Event, EventKind, ServiceOptions, ServiceStore, Uuid};
use testkit::{u32_at, u64_at};

fn crc_of_record(rec: &[u8], payload_len: usize) -> u32 {
    crc32fast::hash(&rec[8..32 + payload_len])
}

/// The wall clock in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn journal_bytes_match_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let options = ServiceOptions {
        capacity: 8192,
        ..ServiceOptions::default()
    };
    let first = Event {
        kind: EventKind::Queueing,
        name: "Temp".into(),
        args: b"21.5".to_vec(),
        client_id: None,
        uid: Uuid::from_u128(0xaaaa),
        seq: 0,
        raised_at_ms: None,
    };
    let second = Event {
        kind: EventKind::Private,
        name: "Door".into(),
        args: b"open!".to_vec(),
        client_id: Some(-2),
        uid: Uuid::from_u128(0xbbbb),
        seq: 0,
        raised_at_ms: None,
    };
    let storage_uid;
    let path;
    // Wall-clock readings around each raise: the raise time stored with
    // the event lies between them.
    let (before1, after1, before2, after2);
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        storage_uid = store.storage_uid();
        path = store.journal_path().unwrap();
        before1 = now_ms();
        store.raise_event(&first).unwrap();
        after1 = now_ms();
        before2 = now_ms();
        store.raise_event(&second).unwrap();
        after2 = now_ms();
        assert_eq!(store.peek().unwrap().unwrap().uid, first.uid);
        store.ack(first.uid).unwrap();
    }
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        "softnet.service.persistence_12345678-9abc-def0-1234-56789abcdef0.ssp"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let file = std::fs::read(&path).unwrap();

    // data_size = roundup(capacity + 4 * 2432 + 128, 4096)
    let data_size = (8192u64 + 4 * 2432 + 128).next_multiple_of(4096);
    assert_eq!(file.len() as u64, 8192 + data_size);

    // Header: the valid slot (0 or 4096) with the higher generation.
    let valid: Vec<(usize, &[u8])> = [0usize, 4096]
        .iter()
        .map(|&at| (at, &file[at..at + 256]))
        .filter(|(_, s)| u32_at(s, 252) == crc32fast::hash(&s[..252]))
        .collect();
    assert_eq!(
        valid.len(),
        2,
        "both slots written (the metadata goes to both)"
    );
    let (at, h) = *valid.iter().max_by_key(|(_, s)| u64_at(s, 16)).unwrap();
    let older = valid.iter().find(|(a, _)| *a != at).unwrap().1;
    assert_eq!(
        &older[80..101],
        &h[80..101],
        "both slots carry the metadata"
    );
    assert_eq!(&h[0..8], b"SNPSVCJ1");
    assert_eq!(u32_at(h, 8), 3, "version");
    assert_eq!(u32_at(h, 12), 256, "slot_len");
    assert_eq!(
        at as u64,
        4096 * (u64_at(h, 16) % 2),
        "generation g lives in slot g mod 2"
    );
    assert_eq!(&h[24..40], service.as_bytes(), "owner uid");
    assert_eq!(u64_at(h, 40), 8192, "data_offset");
    assert_eq!(u64_at(h, 48), data_size, "data_size");
    assert_eq!(u64_at(h, 56), 8192, "capacity");
    assert_eq!(u64_at(h, 64) % 8, 0, "tail_pos");
    assert_eq!(u32_at(h, 80), 17, "meta_len");
    assert_eq!(h[84], 1, "meta version");
    assert_eq!(&h[85..101], storage_uid.as_bytes(), "storage uid");
    assert!(
        u64_at(h, 148) >= u64_at(h, 72),
        "head hint: at or past the tail's sequence number"
    );
    assert!(h[156..252].iter().all(|&b| b == 0), "reserved");

    // First record at data offset 0: the acknowledged Queueing event. Its
    // payload: 40 fixed bytes (with the raise time), the name, the args.
    let r1 = &file[8192..];
    let len1 = 40 + 4 + 4;
    assert_eq!(u32_at(r1, 0), crc_of_record(r1, len1), "crc");
    assert_eq!(r1[4], b'A', "state: acknowledged");
    assert_eq!(&r1[5..8], &[0, 0, 0]);
    assert_eq!(u32_at(r1, 8) as usize, len1);
    assert_eq!(r1[12], 1, "type: data");
    assert_eq!(
        &r1[13..16],
        &[0, 0, 0],
        "unsynced: one thread with Sync, every record before it was durable"
    );
    assert_eq!(u64_at(r1, 16), 1, "seq");
    assert_eq!(u64_at(r1, 24), 1, "id");
    let p1 = &r1[32..32 + len1];
    assert_eq!(p1[0], 2, "kind queueing");
    assert_eq!(p1[1], 2, "flags: has raise time");
    assert_eq!(u16::from_le_bytes([p1[2], p1[3]]), 4, "name length");
    assert_eq!(u16::from_le_bytes([p1[4], p1[5]]), 4, "args length");
    assert_eq!(&p1[6..8], &[0, 0]);
    assert_eq!(u64_at(p1, 8), 0, "no client id");
    assert_eq!(&p1[16..32], first.uid.as_bytes());
    let t1 = u64_at(p1, 32);
    assert!(
        (before1..=after1).contains(&t1),
        "raise time {t1}: the wall clock in ms when raised ({before1}..={after1})"
    );
    assert_eq!(&p1[40..44], b"Temp");
    assert_eq!(&p1[44..48], b"21.5");

    // Second record right after the first, padded to 8: 32 + 48 = 80.
    let r2 = &file[8192 + 80..];
    let len2 = 40 + 4 + 5;
    assert_eq!(u32_at(r2, 8) as usize, len2);
    assert_eq!(r2[4], b'L', "state: live");
    assert_eq!(&r2[5..8], &[0, 0, 0], "reserved");
    assert_eq!(&r2[13..16], &[0, 0, 0], "unsynced");
    assert_eq!(u64_at(r2, 16), 2, "seq");
    assert_eq!(u64_at(r2, 24), 2, "id");
    assert_eq!(u32_at(r2, 0), crc_of_record(r2, len2));
    let p2 = &r2[32..32 + len2];
    assert_eq!(p2[0], 4, "kind private");
    assert_eq!(p2[1], 1 | 2, "flags: has client id, has raise time");
    assert_eq!(u16::from_le_bytes([p2[2], p2[3]]), 4, "name length");
    assert_eq!(u16::from_le_bytes([p2[4], p2[5]]), 5, "args length");
    assert_eq!(&p2[6..8], &[0, 0]);
    assert_eq!(i64::from_le_bytes(p2[8..16].try_into().unwrap()), -2);
    assert_eq!(&p2[16..32], second.uid.as_bytes());
    let t2 = u64_at(p2, 32);
    assert!(
        (before2..=after2).contains(&t2),
        "raise time {t2}: the wall clock in ms when raised ({before2}..={after2})"
    );
    assert!(t1 <= t2, "raised in this order: {t1} then {t2}");
    assert_eq!(&p2[40..44], b"Door");
    assert_eq!(&p2[44..49], b"open!");
    // Padding after the payload (32 + 49 = 81 -> 88) is zero.
    assert!(r2[81..88].iter().all(|&b| b == 0));
    // And the stats agree with the documented record sizes.
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(store.stats().used_bytes, 88);
    // The raise time read back is the one in the file.
    let pending = store.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].uid, second.uid);
    assert_eq!(pending[0].raised_at_ms, Some(t2));
}

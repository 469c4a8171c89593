//! Invariant: capacity is counted in bytes of stored records; when a new
//! event does not fit, the oldest pending events are dropped to make room
//! (each drop counted and reported), or, with `Overflow::RejectNew`, the new
//! event is refused as storage full and nothing is dropped.

use std::collections::VecDeque;

use softnet_persistence::{
    Error, ErrorKind, EventKind, FailureKind, Overflow, ServiceOptions, ServiceStore, Uuid,
    MAX_ARGS_LEN, MAX_CAPACITY, MAX_NAME_LEN,
};
use testkit::{collect_into, drain, Reports};

/// Bytes one stored event costs: a 32-byte record header plus the encoded
/// event (40 fixed bytes with the raise time, the name, the arguments),
/// rounded up to 8.
fn cost(name: &str, args_len: usize) -> u64 {
    (32 + (40 + name.len() + args_len)).next_multiple_of(8) as u64
}

fn options_with_reports(
    memory: usize,
    file: usize,
    overflow: Overflow,
) -> (ServiceOptions, Reports) {
    let reports = Reports::default();
    let options = ServiceOptions {
        capacity: file,
        memory_capacity: memory,
        overflow,
        on_failure: Some(collect_into(&reports)),
        ..Default::default()
    };
    (options, reports)
}

/// A 4 KiB memory store with `overflow`, and its reports.
fn memory_store(overflow: Overflow) -> (ServiceStore, Reports) {
    let (options, reports) = options_with_reports(4096, 0, overflow);
    (ServiceStore::open_memory(&options).unwrap(), reports)
}

fn reported_drops(reports: &Reports) -> u64 {
    let reports = reports.lock().unwrap();
    for r in reports.iter() {
        assert_eq!(r.kind, FailureKind::CapacityDrop, "unexpected report {r}");
        assert!(r.events_lost > 0, "a drop report without drops: {r}");
    }
    reports.iter().map(|r| r.events_lost).sum()
}

/// Rounding matters: 51 events of 80 bytes fit in a 4096-byte store (not
/// 56 of 73); the 52nd drops one.
fn fifty_one_fit_then_one_drops(store: &ServiceStore) {
    for _ in 0..51 {
        store.raise(EventKind::Queueing, "T", b"").unwrap();
    }
    assert_eq!(store.stats().dropped_events, 0);
    store.raise(EventKind::Queueing, "T", b"").unwrap();
    assert_eq!(store.stats().dropped_events, 1);
}

#[test]
fn record_cost_is_header_plus_encoded_event_rounded_to_8() {
    assert_eq!(cost("T", 0), 80);
    assert_eq!(cost("Exact", 59), 136);
    assert_eq!(cost("Ev", 20), 96);
    let store = ServiceStore::open_memory(&Default::default()).unwrap();
    let mut expected = 0;
    for (name, len) in [("T", 0), ("Exact", 59), ("Ev", 20), ("Abcdefg", 1)] {
        store
            .raise(EventKind::Queueing, name, &vec![7; len])
            .unwrap();
        expected += cost(name, len);
        assert_eq!(store.stats().used_bytes, expected, "{name}/{len}");
    }
    store.raise_private("P", b"xy", -1).unwrap();
    expected += cost("P", 2);
    assert_eq!(store.stats().used_bytes, expected);
}

/// Fills the store with events of one size and checks the exact count that
/// fits before the first drop.
fn check_exact_fit(store: &ServiceStore, reports: &Reports, capacity: u64, name: &str, len: usize) {
    let size = cost(name, len);
    let fit = capacity / size;
    let mut raised = Vec::new();
    for i in 0..fit {
        let args = vec![i as u8; len];
        raised.push(store.raise(EventKind::Queueing, name, &args).unwrap());
    }
    let stats = store.stats();
    assert_eq!(stats.capacity_bytes, capacity);
    assert_eq!(stats.used_bytes, fit * size);
    assert_eq!(stats.dropped_events, 0, "{fit} events of {size} bytes fit");
    assert_eq!(reported_drops(reports), 0);
    // One more: exactly the oldest goes.
    raised.push(
        store
            .raise(EventKind::Queueing, name, &vec![0xEE; len])
            .unwrap(),
    );
    let stats = store.stats();
    assert_eq!(stats.dropped_events, 1, "{name}/{len}: {stats:?}");
    assert_eq!(stats.pending_events, fit);
    assert_eq!(stats.used_bytes, fit * size);
    assert_eq!(reported_drops(reports), 1);
    assert_eq!(stats.failures, 0, "a capacity drop is not a failure");
    assert_eq!(drain(store), raised[1..]);
}

#[test]
fn memory_exact_fit_and_first_drop() {
    for (name, len) in [("Exact", 59), ("T", 0), ("Ev", 20)] {
        let (store, reports) = memory_store(Overflow::DropOldest);
        check_exact_fit(&store, &reports, 4096, name, len);
    }
    let (store, reports) = memory_store(Overflow::DropOldest);
    fifty_one_fit_then_one_drops(&store);
    assert_eq!(reported_drops(&reports), 1);
}

#[test]
fn file_exact_fit_and_first_drop() {
    for (name, len) in [("Exact", 59), ("T", 0), ("Ev", 20)] {
        let dir = tempfile::tempdir().unwrap();
        let (options, reports) = options_with_reports(0, 8192, Overflow::DropOldest);
        let store = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options).unwrap();
        check_exact_fit(&store, &reports, 8192, name, len);
    }
}

/// Raises events of varied sizes into a store and checks every step
/// against a FIFO model that drops from the front.
fn check_against_model(store: &ServiceStore, reports: &Reports, capacity: u64, seed: u64) {
    let mut model: VecDeque<(Uuid, u64)> = VecDeque::new();
    let mut dropped = 0u64;
    let mut x = seed;
    for i in 0..400u32 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = match (x >> 33) % 10 {
            0 => MAX_ARGS_LEN,
            1..=3 => ((x >> 40) % 600) as usize,
            _ => ((x >> 40) % 64) as usize,
        };
        let name = format!("N{}", i % 11);
        let size = cost(&name, len);
        let kind = if i % 3 == 0 {
            EventKind::Private
        } else {
            EventKind::Queueing
        };
        let args = vec![i as u8; len];
        let uid = match kind {
            EventKind::Private => store.raise_private(&name, &args, i64::from(i)).unwrap(),
            _ => store.raise(kind, &name, &args).unwrap(),
        };
        let used: u64 = model.iter().map(|e| e.1).sum();
        let mut used = used;
        while used + size > capacity {
            let (_, s) = model.pop_front().unwrap();
            used -= s;
            dropped += 1;
        }
        model.push_back((uid, size));
        let stats = store.stats();
        assert_eq!(stats.dropped_events, dropped, "raise {i}");
        assert_eq!(stats.pending_events, model.len() as u64, "raise {i}");
        assert_eq!(stats.used_bytes, used + size, "raise {i}");
        assert!(
            stats.used_bytes <= stats.capacity_bytes,
            "raise {i}: {stats:?}"
        );
        assert_eq!(
            reported_drops(reports),
            dropped,
            "raise {i}: every drop reported"
        );
    }
    assert!(
        dropped > 100,
        "the test must overflow many times: {dropped}"
    );
    assert_eq!(store.stats().failures, 0);
    assert_eq!(
        drain(store),
        model.iter().map(|e| e.0).collect::<Vec<_>>(),
        "the newest events survive, in order"
    );
}

#[test]
fn memory_drops_the_oldest_to_fit_the_new() {
    let (store, reports) = memory_store(Overflow::DropOldest);
    check_against_model(&store, &reports, 4096, 11);
}

#[test]
fn file_drops_the_oldest_to_fit_the_new() {
    let dir = tempfile::tempdir().unwrap();
    let (options, reports) = options_with_reports(0, 8192, Overflow::DropOldest);
    let store = ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options).unwrap();
    check_against_model(&store, &reports, 8192, 12);
}

#[test]
fn a_largest_event_drops_as_many_as_needed() {
    let (store, reports) = memory_store(Overflow::DropOldest);
    // A full store: 51 small events of 80 bytes (4096 / 80 = 51).
    let small: Vec<Uuid> = (0..51)
        .map(|_| store.raise(EventKind::Queueing, "T", b"").unwrap())
        .collect();
    assert_eq!(store.stats().dropped_events, 0);
    let name = "B".repeat(MAX_NAME_LEN);
    let big_cost = cost(&name, MAX_ARGS_LEN);
    // 32 + roundup(40 + 256 + 2048, 8) = 32 + 2344.
    assert_eq!(big_cost, 2376);
    let big = store
        .raise(EventKind::Queueing, &name, &vec![1; MAX_ARGS_LEN])
        .unwrap();
    // Keep the newest k small ones with 80 k + 2376 <= 4096: k = 21
    // (1720 / 80 = 21.5), so 51 - 21 = 30 are dropped.
    assert_eq!(store.stats().dropped_events, 30);
    assert_eq!(reported_drops(&reports), 30);
    assert_eq!(store.stats().used_bytes, 21 * 80 + 2376);
    assert_eq!(store.stats().pending_events, 22);
    let mut expected = small[30..].to_vec();
    expected.push(big);
    assert_eq!(drain(&store), expected);

    // Two largest events cannot share a 4 KiB store.
    let first = store
        .raise(EventKind::Queueing, &name, &vec![2; MAX_ARGS_LEN])
        .unwrap();
    let second = store
        .raise(EventKind::Queueing, &name, &vec![3; MAX_ARGS_LEN])
        .unwrap();
    assert_ne!(first, second);
    assert_eq!(store.stats().dropped_events, 31);
    assert_eq!(reported_drops(&reports), 31);
    assert_eq!(drain(&store), vec![second]);
}

#[test]
fn collapse_frees_room_before_anything_is_dropped() {
    let (store, reports) = memory_store(Overflow::DropOldest);
    // 136-byte events: 29 Queueing and one Replacing fill 30 * 136 = 4080
    // bytes, too full for one more (4080 + 136 > 4096) without a collapse.
    let mut raised: Vec<Uuid> = (0..29)
        .map(|i| store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap())
        .collect();
    store
        .raise(EventKind::Replacing, "Exact", &[0; 59])
        .unwrap();
    assert_eq!(store.stats().used_bytes, 30 * 136);
    let newest = store
        .raise(EventKind::Replacing, "Exact", &[1; 59])
        .unwrap();
    let stats = store.stats();
    assert_eq!(stats.dropped_events, 0, "the superseded instance made room");
    assert_eq!(stats.superseded_events, 1);
    assert_eq!(reported_drops(&reports), 0);
    raised.push(newest);
    assert_eq!(drain(&store), raised);
}

#[test]
fn reject_new_refuses_and_drops_nothing() {
    let (store, reports) = memory_store(Overflow::RejectNew);
    // 41 events of 96 bytes: the most that leave room for a 136-byte one
    // ((4096 - 136) / 96 = 41.25).
    let mut raised: Vec<Uuid> = (0..41)
        .map(|i| store.raise(EventKind::Queueing, "Ev", &[i; 20]).unwrap())
        .collect();
    assert_eq!(store.stats().used_bytes, 41 * 96);
    // 4096 - 3936 = 160 bytes are free: a 136-byte event fits, then nothing
    // does (24 bytes left, the smallest event takes 80).
    raised.push(store.raise(EventKind::Queueing, "Exact", &[0; 59]).unwrap());
    let before = store.stats();
    assert_eq!(before.used_bytes, 41 * 96 + 136);
    let err = store.raise(EventKind::Queueing, "T", b"").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    match err {
        Error::StorageFull {
            needed,
            available,
            capacity,
        } => assert_eq!((needed, available, capacity), (80, 24, 4096)),
        other => panic!("expected StorageFull, got {other:?}"),
    }
    let err = store.raise_private("P", &[0; 100], 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    let after = store.stats();
    assert_eq!(after.rejected_events, 2);
    assert_eq!(after.dropped_events, 0);
    assert_eq!(after.pending_events, before.pending_events);
    assert_eq!(after.used_bytes, before.used_bytes);
    assert_eq!(reported_drops(&reports), 0);
    // Room made by an ack is usable again.
    let head = store.peek().unwrap().unwrap();
    store.ack(head.uid).unwrap();
    raised.remove(0);
    raised.push(store.raise(EventKind::Queueing, "Ev", &[9; 20]).unwrap());
    assert_eq!(store.stats().rejected_events, 2);
    assert_eq!(drain(&store), raised);
}

#[test]
fn reject_new_at_level_2() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let (options, reports) = options_with_reports(0, 8192, Overflow::RejectNew);
    let raised: Vec<Uuid>;
    {
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        // 136-byte events: 8192 / 136 = 60 fit (8160 bytes), leaving 32
        // bytes, less than the 80 of the smallest event.
        raised = (0..60)
            .map(|i| store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap())
            .collect();
        assert_eq!(store.stats().used_bytes, 60 * 136);
        let err = store.raise(EventKind::Queueing, "T", b"").unwrap_err();
        assert!(
            matches!(
                err,
                Error::StorageFull {
                    needed: 80,
                    available: 32,
                    capacity: 8192
                }
            ),
            "{err:?}"
        );
        assert_eq!(store.stats().rejected_events, 1);
        assert_eq!(store.stats().dropped_events, 0);
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(
        store
            .raise(EventKind::Queueing, "T", b"")
            .unwrap_err()
            .kind(),
        ErrorKind::StorageFull
    );
    assert_eq!(reported_drops(&reports), 0);
    assert_eq!(
        drain(&store),
        raised,
        "the rejected events were never stored"
    );
}

#[test]
fn capacity_values_are_normalised() {
    let memory = |given: usize| {
        let options = ServiceOptions {
            memory_capacity: given,
            capacity: 1,
            ..Default::default()
        };
        ServiceStore::open_memory(&options)
            .unwrap()
            .stats()
            .capacity_bytes
    };
    assert_eq!(memory(0), 16 * 1024);
    assert_eq!(memory(1), 4096);
    assert_eq!(memory(4095), 4096);
    assert_eq!(memory(4096), 4096);
    assert_eq!(memory(5000), 5000);

    let file = |given: usize| {
        let dir = tempfile::tempdir().unwrap();
        let options = ServiceOptions {
            capacity: given,
            memory_capacity: 1,
            ..Default::default()
        };
        ServiceStore::open_file(dir.path(), Uuid::new_v4(), &options)
            .unwrap()
            .stats()
            .capacity_bytes
    };
    assert_eq!(file(0), 1024 * 1024);
    assert_eq!(file(1), 8192);
    assert_eq!(file(8191), 8192);
    assert_eq!(file(8192), 8192);
    assert_eq!(file(20_000), 20_000);

    // The raised minimum is really enforced, not just displayed.
    let options = ServiceOptions {
        memory_capacity: 100,
        ..Default::default()
    };
    let store = ServiceStore::open_memory(&options).unwrap();
    fifty_one_fit_then_one_drops(&store);
}

#[test]
fn absurd_capacity_is_an_invalid_argument() {
    let options = ServiceOptions {
        // 4 GiB + 1 on a 64-bit build, 1 GiB + 1 on a 32-bit one.
        memory_capacity: MAX_CAPACITY + 1,
        ..Default::default()
    };
    let err = ServiceStore::open_memory(&options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn shrinking_the_capacity_at_reopen_drops_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let raised: Vec<Uuid>;
    {
        let (options, reports) = options_with_reports(0, 16384, Overflow::DropOldest);
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        raised = (0..100)
            .map(|i| store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap())
            .collect();
        assert_eq!(store.stats().dropped_events, 0);
        assert_eq!(reported_drops(&reports), 0);
    }
    // 100 events of 136 bytes (13,600) fit in 16 KiB; 8 KiB keeps the
    // newest 8192 / 136 = 60 and drops the 40 oldest.
    let (options, reports) = options_with_reports(0, 8192, Overflow::DropOldest);
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    let stats = store.stats();
    assert_eq!(stats.capacity_bytes, 8192);
    assert_eq!(stats.pending_events, 60);
    assert_eq!(stats.dropped_events, 40);
    assert!(stats.used_bytes <= 8192);
    assert_eq!(
        reported_drops(&reports),
        40,
        "the drops at open are reported"
    );
    drop(store);
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(store.stats().dropped_events, 0, "nothing more to drop");
    assert_eq!(drain(&store), raised[40..]);
}

#[test]
fn drops_continue_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let service = Uuid::new_v4();
    let (options, reports) = options_with_reports(0, 8192, Overflow::DropOldest);
    let mut raised = Vec::new();
    {
        // 136-byte events: 8192 / 136 = 60 fit, so 70 drop 10.
        let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
        for i in 0..70u8 {
            raised.push(store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap());
        }
        assert_eq!(store.stats().dropped_events, 10);
    }
    let store = ServiceStore::open_file(dir.path(), service, &options).unwrap();
    assert_eq!(store.stats().pending_events, 60);
    for i in 0..10u8 {
        raised.push(store.raise(EventKind::Queueing, "Exact", &[i; 59]).unwrap());
    }
    assert_eq!(store.stats().dropped_events, 10);
    assert_eq!(reported_drops(&reports), 20);
    assert_eq!(drain(&store), raised[20..]);
}

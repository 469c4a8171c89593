//! Invariant: with a head hint, recovery reads the live records and a
//! bounded stretch past them, and still finds everything the full search
//! found that a crash can leave there. Without a hint, or when the log
//! ends before it (damage), it searches the whole free ring as before.
//!
//! The data region here is 4 MiB, far larger than `HINT_WINDOW`, so the
//! bound is visible: a valid newer record placed past the window is found
//! by the full search and not by the bounded one.

use crate::journal::format::{record_len, seal_record, TYPE_DATA};
use crate::journal::recovery::{recover, End, HINT_WINDOW};

const SIZE: u64 = 4 << 20;

/// Writes a data record with sequence number and id `seq` at `pos`;
/// returns where the next one starts.
fn write(data: &mut [u8], pos: u64, seq: u64) -> u64 {
    let payload = [seq as u8; 40];
    let p = pos as usize;
    data[p + 32..p + 32 + payload.len()].copy_from_slice(&payload);
    seal_record(&mut data[p..], TYPE_DATA, seq, seq, 0, payload.len());
    pos + record_len(payload.len())
}

/// A log of `count` records from sequence number 1 at position 0.
fn log(count: u64) -> (Vec<u8>, u64) {
    let mut data = vec![0u8; SIZE as usize];
    let mut pos = 0;
    for seq in 1..=count {
        pos = write(&mut data, pos, seq);
    }
    (data, pos)
}

#[test]
fn a_record_far_past_the_end_is_searched_for_only_without_a_hint() {
    let (mut data, end) = log(100);
    // A stale-looking but plausible newer record 1 MiB past the end: what a
    // full search would take for the continuation after damage.
    let far = end + (1 << 20);
    assert!(far - end > HINT_WINDOW);
    write(&mut data, far, 101);
    let full = recover(&data, SIZE, (0, 1), None);
    assert_eq!(full.damage.len(), 1, "the full search finds it");
    let bounded = recover(&data, SIZE, (0, 1), Some(101));
    assert!(bounded.damage.is_empty(), "the bounded search stops short");
    assert_eq!(bounded.end, End::Clean);
    assert_eq!(bounded.live().len(), 100);
}

#[test]
fn damage_after_the_hint_is_found_within_the_window() {
    // The header was last written at sequence number 60; records 61..=100
    // came after it; record 70 is damaged.
    let (mut data, _) = log(100);
    let at_70 = (69 * record_len(40)) as usize;
    data[at_70 + 40] ^= 0x5a;
    let r = recover(&data, SIZE, (0, 1), Some(60));
    assert_eq!(r.damage.len(), 1);
    assert_eq!(r.damage[0].records, 1);
    assert_eq!(r.damage[0].lost, 1);
    assert_eq!(
        r.live().len(),
        99,
        "the 30 records after the damage are kept"
    );
}

#[test]
fn a_log_that_ends_before_the_hint_is_searched_in_full() {
    // Damage at record 50, the hint says the log reached 101: the records
    // after the damage lie far away (a lost erase block of 1 MiB).
    let (mut data, _) = log(50);
    let at_50 = (49 * record_len(40)) as usize;
    data[at_50 + 40] ^= 0x5a;
    let mut pos = 49 * record_len(40) + (1 << 20);
    for seq in 51..=100 {
        pos = write(&mut data, pos, seq);
    }
    let r = recover(&data, SIZE, (0, 1), Some(101));
    assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
    assert_eq!(r.live().len(), 49 + 50);
}

#[test]
fn a_torn_last_record_past_the_hint_is_still_an_interrupted_write() {
    let (mut data, end) = log(100);
    let torn = write(&mut data, end, 101);
    data[end as usize + 40] ^= 0xff;
    assert!(torn > end);
    let r = recover(&data, SIZE, (0, 1), Some(90));
    assert_eq!(r.end, End::Interrupted { pos: end });
    assert!(r.damage.is_empty());
    assert_eq!(r.live().len(), 100);
}

#[test]
fn the_window_continues_at_the_start_of_the_ring() {
    // The log ends 8 KiB before the end of the ring; the record after
    // damaged record 3 of the tail end wrapped to position 0.
    let start = SIZE - 8192;
    let mut data = vec![0u8; SIZE as usize];
    let mut pos = start;
    for seq in 1..=3 {
        pos = write(&mut data, pos, seq);
    }
    let damaged = pos;
    pos = write(&mut data, pos, 4);
    data[damaged as usize + 40] ^= 0x5a;
    assert!(pos < SIZE);
    // Record 5 went to the start of the ring (an implicit wrap).
    write(&mut data, 0, 5);
    let r = recover(&data, SIZE, (start, 1), Some(3));
    assert_eq!(r.damage.len(), 1, "found past the wrap");
    assert_eq!(r.live().len(), 4);
}

//! Invariant: walking the chain with the CRCs checked on a second thread
//! gives exactly what one thread checking each record gives: the same
//! ring (records, states, head) and the same counts, for an intact log
//! and for every kind of damage (a CRC that does not match sends it back
//! to one checked walk), across the batches handed to the second thread
//! and across a wrap marker.

use crate::journal::chain::walk;
use crate::journal::format::{record_len, seal_record, TYPE_DATA, TYPE_WRAP};
use crate::journal::ring::Ring;

const SIZE: u64 = 1 << 20;
const RECORDS: u64 = 3000;

/// A log of `RECORDS` records from sequence number 1 at position 0, and
/// where each record starts.
fn log() -> (Vec<u8>, Vec<usize>) {
    let mut data = vec![0u8; SIZE as usize];
    let (mut pos, mut starts) = (0u64, Vec::new());
    for seq in 1..=RECORDS {
        let payload = [seq as u8; 72];
        let p = pos as usize;
        starts.push(p);
        data[p + 32..p + 32 + payload.len()].copy_from_slice(&payload);
        seal_record(&mut data[p..], TYPE_DATA, seq, seq, 0, payload.len());
        pos += record_len(payload.len());
    }
    (data, starts)
}

/// Both walks of `data`, as text (ring and counts).
fn both(data: &[u8]) -> (String, String) {
    let start = || Ring::new(SIZE, 0, 1);
    let one = walk(data, SIZE, start, false);
    let two = walk(data, SIZE, start, true);
    (format!("{one:?}"), format!("{two:?}"))
}

#[test]
fn an_intact_log_walks_the_same_with_a_second_thread() {
    let (data, _) = log();
    let (one, two) = both(&data);
    assert_eq!(one, two);
    let (ring, _) = walk(&data, SIZE, || Ring::new(SIZE, 0, 1), true);
    assert_eq!(ring.next_seq(), RECORDS + 1, "every record was taken");
}

#[test]
fn damage_anywhere_walks_the_same_with_a_second_thread() {
    let (clean, starts) = log();
    // A payload byte (CRC fails, header fine), the CRC itself, the length,
    // the sequence number and the state byte (outside the CRC) of records
    // at the start, in the middle and at the end.
    for &victim in &[0usize, 1, 1500, 2998, 2999] {
        for offset in [40usize, 0, 8, 16, 4] {
            let mut data = clean.clone();
            data[starts[victim] + offset] ^= 0x24;
            let (one, two) = both(&data);
            assert_eq!(one, two, "record {victim}, byte {offset} changed");
        }
    }
}

#[test]
fn a_payload_damaged_record_ends_both_walks_before_it() {
    let (mut data, starts) = log();
    data[starts[1500] + 40] ^= 1;
    let (ring, _) = walk(&data, SIZE, || Ring::new(SIZE, 0, 1), true);
    assert_eq!(ring.next_seq(), 1501, "records 1..=1500 taken, 1501 not");
}

#[test]
fn a_chain_across_a_wrap_marker_walks_the_same_with_a_second_thread() {
    // 100 records end 40 bytes short of the ring's end: a wrap marker fills
    // them, and the chain goes on from the start of the ring.
    let rec = record_len(72);
    let start = SIZE - 100 * rec - 40;
    let mut data = vec![0u8; SIZE as usize];
    let (mut pos, mut marker) = (start, 0);
    for seq in 1..=RECORDS {
        if seq == 101 {
            marker = pos as usize;
            seal_record(&mut data[marker..], TYPE_WRAP, seq, 0, 0, 0);
            pos = 0;
            continue;
        }
        let p = pos as usize;
        data[p + 32..p + 32 + 72].copy_from_slice(&[seq as u8; 72]);
        seal_record(&mut data[p..], TYPE_DATA, seq, seq, 0, 72);
        pos += rec;
    }
    let walked = |data: &[u8], second| walk(data, SIZE, || Ring::new(SIZE, start, 1), second);
    let (ring, _) = walked(&data, true);
    assert_eq!(ring.next_seq(), RECORDS + 1, "every record and the marker");
    assert_eq!(
        format!("{:?}", walked(&data, false)),
        format!("{:?}", walked(&data, true))
    );
    // The marker's CRC (it covers its header) is checked like a record's.
    data[marker] ^= 1;
    let (ring, _) = walked(&data, true);
    assert_eq!(ring.next_seq(), 101, "the chain ends before the marker");
    assert_eq!(
        format!("{:?}", walked(&data, false)),
        format!("{:?}", walked(&data, true))
    );
}

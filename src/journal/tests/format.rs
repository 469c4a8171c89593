//! The format's codecs and constants against docs/FORMAT.md.

use uuid::Uuid;

use crate::journal::format::*;

fn sample_header() -> Header {
    Header {
        magic: *b"SNPSVCJ1",
        version: VERSION,
        generation: 7,
        owner: Uuid::from_u128(0x1234),
        data_offset: DATA_OFFSET,
        data_size: 16384,
        capacity: 8192,
        tail_pos: 64,
        tail_seq: 99,
        meta: vec![1, 2, 3],
        head_seq: 140,
    }
}

#[test]
fn header_round_trips() {
    let h = sample_header();
    assert_eq!(Header::decode(&h.encode()).unwrap(), h);
}

#[test]
fn header_rejects_impossible_geometry_with_a_valid_crc() {
    for tail_pos in [u64::MAX - 7, 16384, 16384 - 24] {
        let mut h = sample_header();
        h.tail_pos = tail_pos;
        assert_eq!(
            Header::decode(&h.encode()),
            Err(SlotError::Damaged),
            "{tail_pos}"
        );
    }
    let mut h = sample_header();
    h.data_size = u64::MAX - 7;
    assert_eq!(Header::decode(&h.encode()), Err(SlotError::Damaged));
}

#[test]
fn header_rejects_every_flipped_bit_and_truncation() {
    let image = sample_header().encode();
    for bit in 0..SLOT_LEN * 8 {
        let mut b = image;
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(Header::decode(&b).is_err(), "bit {bit}");
    }
    for len in 0..SLOT_LEN {
        assert!(Header::decode(&image[..len]).is_err());
    }
    assert_eq!(Header::decode(&[0u8; SLOT_LEN]), Err(SlotError::Blank));
}

fn record_image(seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; record_len(payload.len()) as usize];
    b[record::HEADER_LEN..record::HEADER_LEN + payload.len()].copy_from_slice(payload);
    seal_record(&mut b, TYPE_DATA, seq, seq, 0, payload.len());
    b
}

#[test]
fn record_round_trips() {
    let b = record_image(5, b"hello");
    let (h, p) = decode_record(&b, 0, b.len() as u64).unwrap();
    assert_eq!(
        (h.seq, h.id, h.state, h.kind, p),
        (5, 5, STATE_LIVE, TYPE_DATA, &b"hello"[..])
    );
    assert_eq!(b.len(), 40);
}

#[test]
fn torn_or_flipped_records_are_rejected() {
    let b = record_image(5, b"0123456789abcdef");
    for len in 0..b.len() {
        assert!(
            decode_record(&b[..len], 0, b.len() as u64).is_none(),
            "torn at {len}"
        );
    }
    for bit in 0..b.len() * 8 {
        let byte = bit / 8;
        let mut c = b.clone();
        c[byte] ^= 1 << (bit % 8);
        let decoded = decode_record(&c, 0, c.len() as u64);
        if byte == record::STATE {
            // The state byte is outside the CRC by design; the caller
            // judges it.
            assert!(decoded.is_some());
        } else if byte >= record::HEADER_LEN + 16 {
            // Padding after the payload is not part of the record.
            assert!(decoded.is_some());
        } else {
            assert!(decoded.is_none(), "bit {bit}");
        }
    }
}

#[test]
fn the_durable_watermark_round_trips_saturated_and_reserved_a_stays_zero() {
    for (unsynced, stored) in [
        (0u64, 0u32),
        (5, 5),
        (0xFF_FFFF, 0xFF_FFFF),
        (1 << 30, 0xFF_FFFF),
    ] {
        let mut b = vec![0u8; 40];
        b[32..37].copy_from_slice(b"hello");
        seal_record(&mut b, TYPE_DATA, 1 << 26, 9, unsynced, 5);
        let (h, _) = decode_record(&b, 0, 40).unwrap();
        assert_eq!(
            (h.unsynced, h.seq, h.id),
            (stored, 1 << 26, 9),
            "{unsynced}"
        );
        assert_eq!(
            b[record::UNSYNCED..record::UNSYNCED + 3],
            stored.to_le_bytes()[..3]
        );
    }
    // Version 1 wrote zeros there: the same bytes decode as "all durable".
    let b = record_image(5, b"hello");
    assert_eq!(decode_record(&b, 0, 40).unwrap().0.unsynced, 0);
    // The other reserved bytes must still be zero (outside the CRC).
    let mut c = b.clone();
    c[record::RESERVED_A + 1] = 1;
    assert!(decode_record(&c, 0, 40).is_none());
}

#[test]
fn record_past_ring_end_is_rejected() {
    let b = record_image(1, b"abc");
    assert!(decode_record(&b, 0, b.len() as u64 - 8).is_none());
}

#[test]
fn states_are_two_bits_apart() {
    let states = [
        STATE_LIVE,
        STATE_ACKED,
        STATE_SUPERSEDED,
        STATE_DROPPED,
        STATE_INVALIDATED,
        STATE_EXPIRED,
    ];
    for (i, a) in states.iter().enumerate() {
        for b in &states[i + 1..] {
            assert!((a ^ b).count_ones() >= 2, "{} {}", *a as char, *b as char);
        }
    }
}

#[test]
fn data_size_leaves_room() {
    assert!(data_size_for(8192) >= 8192 + 4 * MAX_RECORD_LEN);
    assert_eq!(data_size_for(1 << 20) % 4096, 0);
}

#[test]
fn crate_constants_are_the_documented_numbers() {
    use crate::journal::format::{self, record, slot};
    assert_eq!(format::DATA_OFFSET, 8192);
    assert_eq!(format::SLOT_OFFSETS, [0, 4096]);
    assert_eq!(format::SLOT_LEN, 256);
    assert_eq!(
        [
            slot::MAGIC,
            slot::VERSION,
            slot::SLOT_LEN,
            slot::GENERATION,
            slot::OWNER_UID,
            slot::DATA_OFFSET,
            slot::DATA_SIZE,
            slot::CAPACITY,
            slot::TAIL_POS,
            slot::TAIL_SEQ,
            slot::META_LEN,
            slot::META,
            slot::CRC
        ],
        [0, 8, 12, 16, 24, 40, 48, 56, 64, 72, 80, 84, 252]
    );
    assert_eq!(
        [
            record::CRC,
            record::STATE,
            record::RESERVED_A,
            record::COVERED,
            record::LEN,
            record::TYPE,
            record::UNSYNCED,
            record::SEQ,
            record::ID,
            record::HEADER_LEN
        ],
        [0, 4, 5, 8, 8, 12, 13, 16, 24, 32]
    );
    assert_eq!((format::VERSION, format::OLDEST_VERSION), (3, 1));
    assert_eq!(format::MAX_UNSYNCED, 0xFF_FFFF);
    assert_eq!(format::MAX_PAYLOAD_LEN, 2400);
    assert_eq!(format::MAX_RECORD_LEN, 2432);
    assert_eq!(
        [
            format::STATE_LIVE,
            format::STATE_ACKED,
            format::STATE_SUPERSEDED,
            format::STATE_DROPPED,
            format::STATE_INVALIDATED,
            format::STATE_EXPIRED
        ],
        *b"LASXVO"
    );
}

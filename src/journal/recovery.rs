//! Recovery: rebuild the ring's picture from a journal's bytes.
//!
//! The chain starts at the header's tail and continues while each record is
//! valid (structure, CRC) and carries the next sequence number. The first
//! record that fails ends the log, so a torn write and stale bytes from an
//! earlier lap can never be read as events. Then the rest of the region is
//! searched for valid records newer than the end: if any exist, the end was
//! damage in the middle of the log, not the log's natural end, and what lay
//! behind it is reported lost.

use crate::journal::format::{self, decode_record, record, RecordHeader, STATE_LIVE, TYPE_WRAP};
use crate::journal::ring::{normalize, Ring, Slot};

/// How the chain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Zeroes or stale bytes from an earlier lap: the natural end.
    Clean,
    /// Non-zero bytes where the log ends (a partial record from an
    /// interrupted write, or a damaged last record), and nothing newer
    /// after it.
    Interrupted {
        /// Where the partial record starts in the data region.
        pos: u64,
    },
    /// Valid records newer than the end exist: the log was damaged.
    Damaged {
        /// Where the chain broke.
        pos: u64,
        /// Live records found beyond the break.
        live_beyond: u64,
        /// Highest sequence number seen beyond the break.
        max_seq: u64,
    },
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The ring, tail to head, with live and removed records.
    pub ring: Ring,
    /// How the chain ended.
    pub end: End,
    /// Records whose state byte held an unknown value (kept as live).
    pub unknown_states: u64,
    /// The data region is shorter than the header says (truncated file).
    pub truncated: bool,
}

impl Recovered {
    /// True when the file must be set aside and rewritten.
    pub fn needs_salvage(&self) -> bool {
        self.truncated || self.unknown_states > 0 || matches!(self.end, End::Damaged { .. })
    }

    /// The lowest sequence number a rewritten file may start at without
    /// any old byte ever looking like a continuation.
    pub fn next_free_seq(&self) -> u64 {
        match self.end {
            End::Damaged { max_seq, .. } => max_seq.max(self.ring.next_seq() - 1) + 1,
            _ => self.ring.next_seq(),
        }
    }
}

/// Walks the chain of `data` (the data region; may be shorter than
/// `ring_size` if the file was truncated) from `(tail_pos, tail_seq)`.
pub(crate) fn recover(data: &[u8], ring_size: u64, tail_pos: u64, tail_seq: u64) -> Recovered {
    let mut ring = Ring::new(ring_size, tail_pos, tail_seq);
    // At most one record per 40 bytes of ring (the smallest record): a
    // virtual reservation; only the slots filled are touched.
    ring.reserve((data.len() / 40).min(1 << 24));
    let mut pos = ring.head();
    let mut walked = 0u64;
    let mut unknown_states = 0u64;
    while let Some((h, _)) = decode_record(data, pos, ring_size) {
        if h.seq != ring.next_seq() {
            break;
        }
        let Some((slot, next)) = chained_slot(&h, pos, ring_size) else {
            break;
        };
        if h.kind != TYPE_WRAP && !format::is_known_state(h.state) {
            unknown_states += 1;
        }
        walked += u64::from(slot.len);
        if walked >= ring_size {
            // A chain longer than the ring can only come from damage that
            // happens to validate; never loop around it.
            break;
        }
        ring.push_recovered(slot, next);
        pos = ring.head();
    }
    let truncated = (data.len() as u64) < ring_size;
    let end = classify_end(data, ring_size, &ring, tail_pos);
    Recovered {
        ring,
        end,
        unknown_states,
        truncated,
    }
}

/// The slot of a valid record or wrap marker at `pos` that continues the
/// chain, and where the next one starts; `None` for a marker that cannot
/// be one (it would fill more than a record's length).
fn chained_slot(h: &RecordHeader, pos: u64, ring_size: u64) -> Option<(Slot, u64)> {
    if h.kind == TYPE_WRAP {
        // A marker fills what a record did not fit into.
        let len = u32::try_from(ring_size - pos).ok()?;
        if u64::from(len) >= format::MAX_RECORD_LEN {
            return None;
        }
        let slot = Slot {
            pos,
            len,
            payload: 0,
            id: 0,
            live: false,
        };
        return Some((slot, 0));
    }
    let known = format::is_known_state(h.state);
    let slot = Slot {
        pos,
        len: h.record_len() as u32,
        // Validity checked it is at most MAX_PAYLOAD_LEN.
        payload: h.len as u16,
        id: h.id,
        // An unknown state keeps the record: it is intact and ours, and a
        // repeat is better than a loss (the broker drops repeats by uid).
        live: h.state == STATE_LIVE || !known,
    };
    Some((slot, pos + h.record_len()))
}

/// Decides whether the chain ended naturally, on an interrupted write, or
/// on damage, by looking for newer valid records outside the chain.
fn classify_end(data: &[u8], ring_size: u64, ring: &Ring, tail_pos: u64) -> End {
    let pos = ring.head();
    let expected = ring.next_seq();
    let mut live_beyond = 0u64;
    let mut max_seq = 0u64;
    let mut found = false;
    // The chain occupies [tail, pos); search the rest of the ring.
    let tail = normalize(ring_size, tail_pos);
    let free = if pos == tail {
        ring_size
    } else {
        (tail + ring_size - pos) % ring_size
    };
    let mut offset = 0u64;
    // A plausible sequence is at most one record per header-length byte
    // beyond the expected one.
    let horizon = expected.saturating_add(ring_size / record::HEADER_LEN as u64);
    while offset < free {
        let at = (pos + offset) % ring_size;
        offset += 8;
        let Some(seq) = format::get_u64(data, at as usize + record::SEQ) else {
            continue;
        };
        if seq < expected || seq > horizon {
            continue;
        }
        if let Some((h, _)) = decode_record(data, at, ring_size) {
            found = true;
            max_seq = max_seq.max(h.seq);
            if h.kind != TYPE_WRAP && h.state == STATE_LIVE {
                live_beyond += 1;
            }
        }
    }
    if found {
        return End::Damaged {
            pos,
            live_beyond,
            max_seq,
        };
    }
    // The writer zeroes the header-sized stretch after every record, so a
    // log that ended cleanly ends on zeroes. Anything else is the partial
    // record of a write that began and did not finish, or damage to what
    // was the last record: both are reported.
    let start = pos as usize;
    match data.get(start..start + record::HEADER_LEN) {
        Some(head) if head.iter().any(|&b| b != 0) => End::Interrupted { pos },
        _ => End::Clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::format::{record_len, seal_record, TYPE_DATA};

    const SIZE: u64 = 4096;

    fn write(data: &mut [u8], pos: u64, seq: u64, payload: &[u8]) -> u64 {
        let p = pos as usize;
        data[p + 32..p + 32 + payload.len()].copy_from_slice(payload);
        seal_record(&mut data[p..], TYPE_DATA, seq, seq, payload.len());
        pos + record_len(payload.len())
    }

    fn ids(r: &Recovered) -> Vec<u64> {
        r.ring.live_in_id_order().iter().map(|s| s.id).collect()
    }

    #[test]
    fn clean_chain_on_zeroes() {
        let mut data = vec![0u8; SIZE as usize];
        let mut pos = 0;
        for seq in 1..=3 {
            pos = write(&mut data, pos, seq, b"payload");
        }
        let r = recover(&data, SIZE, 0, 1);
        assert_eq!(ids(&r), vec![1, 2, 3]);
        assert_eq!(r.end, End::Clean);
        assert!(!r.needs_salvage());
    }

    #[test]
    fn torn_last_record_is_an_interrupted_write() {
        let mut data = vec![0u8; SIZE as usize];
        let pos = write(&mut data, 0, 1, b"one");
        let torn = pos;
        write(&mut data, pos, 2, b"two two two");
        data[torn as usize + 32] ^= 0xff; // a payload byte never made it
        let r = recover(&data, SIZE, 0, 1);
        assert_eq!(ids(&r), vec![1]);
        assert_eq!(r.end, End::Interrupted { pos: torn });
    }

    #[test]
    fn damage_in_the_middle_is_detected_and_counted() {
        let mut data = vec![0u8; SIZE as usize];
        let mut pos = 0;
        let mut starts = Vec::new();
        for seq in 1..=5 {
            starts.push(pos);
            pos = write(&mut data, pos, seq, b"0123456789");
        }
        data[starts[2] as usize + 40] ^= 1; // record 3's payload
        let r = recover(&data, SIZE, 0, 1);
        assert_eq!(ids(&r), vec![1, 2]);
        assert_eq!(
            r.end,
            End::Damaged {
                pos: starts[2],
                live_beyond: 2,
                max_seq: 5
            }
        );
        assert!(r.needs_salvage());
        assert_eq!(r.next_free_seq(), 6);
    }

    #[test]
    fn zeroed_end_after_a_lap_is_clean_and_stale_bytes_are_not() {
        let mut data = vec![0u8; SIZE as usize];
        // An earlier lap wrote seqs 1..=3; the current chain starts at 0
        // with seq 10 and overwrote only the first record.
        let mut pos = 0;
        for seq in 1..=3 {
            pos = write(&mut data, pos, seq, b"old old old");
        }
        let end = write(&mut data, 0, 10, b"new new new") as usize;
        let r = recover(&data, SIZE, 0, 10);
        assert_eq!(ids(&r), vec![10]);
        assert_eq!(r.end, End::Interrupted { pos: end as u64 }, "stale bytes");
        // What the writer does: zero the stretch after the record.
        data[end..end + 32].fill(0);
        let r = recover(&data, SIZE, 0, 10);
        assert_eq!(r.end, End::Clean);
    }

    #[test]
    fn unknown_state_is_kept_and_flagged() {
        let mut data = vec![0u8; SIZE as usize];
        write(&mut data, 0, 1, b"x");
        data[record::STATE] = 0x7f;
        let r = recover(&data, SIZE, 0, 1);
        assert_eq!(ids(&r), vec![1]);
        assert_eq!(r.unknown_states, 1);
        assert!(r.needs_salvage());
    }

    #[test]
    fn truncated_data_region_is_flagged() {
        let mut data = vec![0u8; SIZE as usize];
        let pos = write(&mut data, 0, 1, b"x");
        write(&mut data, pos, 2, b"y");
        let r = recover(&data[..pos as usize + 8], SIZE, 0, 1);
        assert_eq!(ids(&r), vec![1]);
        assert!(r.truncated && r.needs_salvage());
    }
}

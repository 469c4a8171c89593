//! Recovery: rebuild the ring's picture from a journal's bytes.
//!
//! The chain starts at the header's tail and continues while each record is
//! valid (structure, CRC) and carries the next sequence number, so a torn
//! write and stale bytes from an earlier lap are never read as events.
//! Where a record fails, the rest of the ring is searched for valid records
//! with newer sequence numbers (`resync.rs`): if there are none, that is
//! the log's natural end (clean, or a write cut short); if there are, the
//! record was damaged in the middle of the log, and the chain continues at
//! the oldest newer record. Only the damaged records are lost: every intact
//! record, before and after the damage, is kept (the file is then salvaged:
//! rewritten with them).
//!
//! Not every damaged record in the middle was durable: one sync may carry
//! the records of several operations (group commit, a Batch), and a power
//! cut during it can leave a later record on the device without an earlier
//! one. Each record says how many before it were not yet known durable
//! when it was written (its *durable watermark*, `seq - unsynced`: every
//! record below it was durable). A damaged record that some intact record
//! puts below its watermark was durable, and its damage is corruption; one
//! that no intact record vouches for was never confirmed durable (its call
//! never returned, or a Batch had not synced it yet): a *torn* record of an
//! interrupted sync, which costs nothing.

use std::collections::BTreeMap;

use crate::journal::chain::{self, next_in_chain, Check, Walk};
use crate::journal::format::{self, record};
use crate::journal::resync::{lost_in, newer_records, DamagedRun, Salvage};
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
}

/// Damaged records in the middle of the log, skipped by recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Where the first damaged record starts in the data region.
    pub pos: u64,
    /// The sequence number of the first damaged record.
    pub first_seq: u64,
    /// Records (sequence numbers) that could not be read.
    pub records: u64,
    /// Of those, how many held pending events (or may have: a record
    /// whose header is unreadable counts as one) and were durable.
    pub lost: u64,
    /// Of those, how many (the last ones) no intact record vouches for:
    /// torn by an interrupted sync, not damaged (see the module docs).
    pub torn: u64,
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The ring, tail to head, with live and removed records: the whole log
    /// when there is no damage, the part before the first damage otherwise.
    pub ring: Ring,
    /// How the chain ended.
    pub end: End,
    /// Damage in the middle of the log, in log order.
    pub damage: Vec<Damage>,
    /// With damage: every intact live record, in id order.
    pub intact: Vec<Slot>,
    /// Records whose state byte held an unknown value (kept as live).
    pub unknown_states: u64,
    /// The data region is shorter than the header says (truncated file).
    pub truncated: bool,
    /// The lowest sequence number no byte of the file carries.
    next_free_seq: u64,
}

impl Recovered {
    /// True when the file must be rewritten.
    pub fn needs_salvage(&self) -> bool {
        self.truncated || self.unknown_states > 0 || !self.damage.is_empty()
    }

    /// True when the file is damaged, not only torn by an interrupted sync:
    /// it is then set aside as evidence.
    pub fn corrupt(&self) -> bool {
        self.truncated || self.unknown_states > 0 || self.damage.iter().any(|d| d.torn < d.records)
    }

    /// Records in the middle of the log torn by an interrupted sync.
    pub fn torn(&self) -> u64 {
        self.damage.iter().map(|d| d.torn).sum()
    }

    /// The lowest sequence number a rewritten file may start at without
    /// any old byte ever looking like a continuation.
    pub fn next_free_seq(&self) -> u64 {
        self.next_free_seq
    }

    /// Every intact live record, in id order.
    pub fn live(&self) -> Vec<Slot> {
        if self.damage.is_empty() {
            self.ring.live_in_id_order()
        } else {
            self.intact.clone()
        }
    }

    /// Pending events lost to damage.
    pub fn lost(&self) -> u64 {
        self.damage.iter().map(|d| d.lost).sum()
    }
}

/// How far past the end of the log recovery searches for newer records
/// when the log reaches the header's head hint: the writer writes the
/// header at least every `HINT_EVERY` bytes of records, so whatever a crash
/// left past the hint lies within two of those stretches (the newer of the
/// two header slots may be the one a crash tore) and a few records' worth
/// of wrap filler.
pub(crate) const HINT_WINDOW: u64 =
    2 * crate::journal::write::HINT_EVERY + 4 * format::MAX_RECORD_LEN;
/// Slots reserved beyond the head hint's count (records written after the
/// header last recorded the hint); more grow the table as needed.
const RESERVE_SLACK: usize = 4096;

// docs/FORMAT.md (Recovery, step 4) gives this number.
const _: () = assert!(HINT_WINDOW == 271_872);

/// Walks the chain of `data` (the data region; may be shorter than
/// `ring_size` if the file was truncated) from `(tail_pos, tail_seq)`.
/// `head_hint`: the header's head hint, if it has one (every record before
/// that sequence number was written). When the log reaches it, only
/// [`HINT_WINDOW`] bytes past its end are searched for newer records;
/// otherwise (an older file, or damage before the hint) the whole free
/// part of the ring is.
pub(crate) fn recover(
    data: &[u8],
    ring_size: u64,
    (tail_pos, tail_seq): (u64, u64),
    head_hint: Option<u64>,
) -> Recovered {
    // Room for the slots at once: as many as the head hint says were
    // written since the tail (and some more, for records written after
    // the hint), never more than one per 40 bytes of ring (the smallest
    // record). Sized by what is stored, not by the capacity: a 1 GiB ring
    // would otherwise reserve (and tear down) hundreds of MiB per open.
    let most = data.len() / 40;
    let hinted = head_hint.and_then(|h| usize::try_from(h.saturating_sub(tail_seq)).ok());
    let expected = hinted.map_or(most, |n| n.saturating_add(RESERVE_SLACK));
    let start = || {
        let mut ring = Ring::new(ring_size, tail_pos, tail_seq);
        ring.reserve(expected.min(most).min(1 << 24));
        ring
    };
    let long = hinted.is_some_and(|n| n >= chain::SECOND_THREAD_FROM);
    let (ring, mut walk) = chain::walk(data, ring_size, start, long);
    let truncated = (data.len() as u64) < ring_size;
    let tail = normalize(ring_size, tail_pos);
    let search = match head_hint {
        Some(hint) if ring.next_seq() >= hint => HINT_WINDOW,
        _ => ring_size,
    };
    let beyond = newer_records(
        data,
        ring_size,
        (ring.head(), tail),
        ring.next_seq(),
        search,
    );
    if beyond.is_empty() {
        return Recovered {
            end: natural_end(data, ring.head()),
            next_free_seq: ring.next_seq(),
            ring,
            damage: Vec::new(),
            intact: Vec::new(),
            unknown_states: walk.unknown_states,
            truncated,
        };
    }
    let (intact, damage, end, next_free_seq) = resync(data, ring_size, &ring, &beyond, &mut walk);
    Recovered {
        ring,
        end,
        damage,
        intact,
        unknown_states: walk.unknown_states,
        truncated,
        next_free_seq,
    }
}

/// Continues the chain past damage: each time the chain breaks and a newer
/// valid record exists, the records in between are damage and the chain
/// goes on from the oldest newer record. Returns the intact live records,
/// the damage, how the log ended and the next free sequence number.
///
/// The search for the next newer record starts (`from`) after the last one
/// found, also when that one did not chain (a wrap marker that cannot be
/// one): it is then part of the next damaged run, rather than found again
/// for ever.
fn resync(
    data: &[u8],
    ring_size: u64,
    ring: &Ring,
    beyond: &BTreeMap<u64, u64>,
    walk: &mut Walk,
) -> (Vec<Slot>, Vec<Damage>, End, u64) {
    let mut salvage = Salvage::from_live(ring.live_in_id_order());
    let mut runs = Vec::new();
    let (mut pos, mut seq, mut from) = (ring.head(), ring.next_seq(), ring.next_seq());
    while let Some((&found_seq, &found_pos)) = beyond.range(from..).next() {
        runs.push(DamagedRun {
            pos,
            next: found_pos,
            first_seq: seq,
            records: found_seq - seq,
        });
        (pos, seq) = (found_pos, found_seq);
        while let Some((slot, next)) = next_in_chain(data, ring_size, pos, seq, walk, Check::Crc) {
            salvage.push(seq, slot);
            pos = normalize(ring_size, next);
            seq += 1;
        }
        from = seq.max(found_seq.saturating_add(1));
        if walk.walked >= ring_size {
            // A chain longer than the ring: damage that validates. Not every
            // record was read, so none is taken as torn.
            walk.durable = u64::MAX;
            break;
        }
    }
    // Counted once every intact record is known: a damaged original whose
    // relocated copy comes after it cost nothing, and a damaged record is
    // durable only if an intact record puts it below its watermark.
    let damage = runs
        .into_iter()
        .map(|run| {
            let durable = run.records.min(walk.durable.saturating_sub(run.first_seq));
            let proven = DamagedRun {
                records: durable,
                ..run
            };
            Damage {
                pos: run.pos,
                first_seq: run.first_seq,
                records: run.records,
                lost: lost_in(data, ring_size, proven, |id| salvage.holds(id)),
                torn: run.records - durable,
            }
        })
        .collect();
    let highest = beyond.keys().next_back().copied().unwrap_or(0);
    let next_free = seq.max(highest.saturating_add(1));
    (
        salvage.live_in_id_order(),
        damage,
        natural_end(data, pos),
        next_free,
    )
}

/// How a log whose chain ends at `pos`, with nothing newer after it,
/// ended. The writer zeroes the header-sized stretch after every record,
/// so a log that ended cleanly ends on zeroes. Anything else is the partial
/// record of a write that began and did not finish, or damage to what was
/// the last record: both are reported.
fn natural_end(data: &[u8], pos: u64) -> End {
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
        seal_record(&mut data[p..], TYPE_DATA, seq, seq, 0, payload.len());
        pos + record_len(payload.len())
    }

    fn ids(r: &Recovered) -> Vec<u64> {
        r.live().iter().map(|s| s.id).collect()
    }

    #[test]
    fn clean_chain_on_zeroes() {
        let mut data = vec![0u8; SIZE as usize];
        let mut pos = 0;
        for seq in 1..=3 {
            pos = write(&mut data, pos, seq, b"payload");
        }
        let r = recover(&data, SIZE, (0, 1), None);
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
        let r = recover(&data, SIZE, (0, 1), None);
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
        let r = recover(&data, SIZE, (0, 1), None);
        let kept: Vec<u64> = r.live().iter().map(|s| s.id).collect();
        assert_eq!(
            kept,
            vec![1, 2, 4, 5],
            "intact records before and after are kept"
        );
        assert_eq!(
            r.damage,
            vec![Damage {
                pos: starts[2],
                first_seq: 3,
                records: 1,
                lost: 1,
                torn: 0,
            }]
        );
        assert_eq!(r.end, End::Clean);
        assert!(r.needs_salvage());
        assert_eq!(r.next_free_seq(), 6);
    }

    #[test]
    fn damage_to_a_removed_record_or_the_tail_loses_only_what_was_live() {
        let mut data = vec![0u8; SIZE as usize];
        let mut pos = 0;
        let mut starts = Vec::new();
        for seq in 1..=5 {
            starts.push(pos);
            pos = write(&mut data, pos, seq, b"0123456789");
        }
        // Record 2 was acknowledged (state byte outside the CRC), then its
        // payload was damaged; record 1, at the tail, is damaged too.
        data[starts[1] as usize + record::STATE] = format::STATE_ACKED;
        data[starts[1] as usize + 40] ^= 1;
        data[starts[0] as usize + 20] ^= 4;
        let r = recover(&data, SIZE, (0, 1), None);
        let kept: Vec<u64> = r.live().iter().map(|s| s.id).collect();
        assert_eq!(kept, vec![3, 4, 5]);
        assert_eq!(r.damage.len(), 1, "{:?}", r.damage);
        assert_eq!(
            (r.damage[0].records, r.damage[0].lost),
            (2, 1),
            "record 2 was removed: only record 1 is lost"
        );
        assert_eq!(r.lost(), 1);
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
        let r = recover(&data, SIZE, (0, 10), None);
        assert_eq!(ids(&r), vec![10]);
        assert_eq!(r.end, End::Interrupted { pos: end as u64 }, "stale bytes");
        // What the writer does: zero the stretch after the record.
        data[end..end + 32].fill(0);
        let r = recover(&data, SIZE, (0, 10), None);
        assert_eq!(r.end, End::Clean);
    }

    #[test]
    fn unknown_state_is_kept_and_flagged() {
        let mut data = vec![0u8; SIZE as usize];
        write(&mut data, 0, 1, b"x");
        data[record::STATE] = 0x7f;
        let r = recover(&data, SIZE, (0, 1), None);
        assert_eq!(ids(&r), vec![1]);
        assert_eq!(r.unknown_states, 1);
        assert!(r.needs_salvage());
    }

    #[test]
    fn truncated_data_region_is_flagged() {
        let mut data = vec![0u8; SIZE as usize];
        let pos = write(&mut data, 0, 1, b"x");
        write(&mut data, pos, 2, b"y");
        let r = recover(&data[..pos as usize + 8], SIZE, (0, 1), None);
        assert_eq!(ids(&r), vec![1]);
        assert!(r.truncated && r.needs_salvage());
    }
}

//! Recovery past damage: finding the records that continue the log after a
//! damaged one, counting what the damage cost, and collecting the intact
//! records for the repaired file.

use std::collections::{BTreeMap, HashMap};

use crate::journal::format::{
    self, decode_record, get_u32, get_u64, record, record_len, MAX_PAYLOAD_LEN, TYPE_WRAP,
};
use crate::journal::ring::{normalize, Slot};

/// The valid records with a sequence number from `expected` on, found in
/// the free part of the ring (`[from, tail)`, cyclic) that `data` holds,
/// searching at most `limit` bytes of it: sequence number -> position. A
/// plausible sequence number is at most one record per header length of
/// ring beyond the expected one; older ones are stale records of earlier
/// laps.
pub(crate) fn newer_records(
    data: &[u8],
    ring_size: u64,
    (from, tail): (u64, u64),
    expected: u64,
    limit: u64,
) -> BTreeMap<u64, u64> {
    let free = if from == tail {
        ring_size
    } else {
        (tail + ring_size - from) % ring_size
    }
    .min(limit);
    let horizon = expected.saturating_add(ring_size / record::HEADER_LEN as u64);
    let present = data.len() as u64;
    let mut found = BTreeMap::new();
    let mut offset = 0u64;
    while offset < free {
        let at = (from + offset) % ring_size;
        if at >= present {
            // Past the end of a truncated file: nothing more until the
            // ring wraps to 0.
            offset += ring_size - at;
            continue;
        }
        offset += 8;
        let Some(seq) = get_u64(data, at as usize + record::SEQ) else {
            continue;
        };
        if seq < expected || seq > horizon {
            continue;
        }
        if decode_record(data, at, ring_size).is_some() {
            found.entry(seq).or_insert(at);
        }
    }
    found
}

/// A run of damaged records in the middle of the log: `records` records
/// from sequence number `first_seq`, the first at `pos`, before the intact
/// record at `next`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DamagedRun {
    pub pos: u64,
    pub next: u64,
    pub first_seq: u64,
    pub records: u64,
}

/// Pending events lost in `run`. Each damaged record is judged by what its
/// header still says: a wrap marker or a removed record cost nothing, nor
/// does the original of a record whose relocated copy was kept (`kept`
/// says which ids the repaired log holds). An original's id is its
/// sequence number: if the repaired log holds the id that is the expected
/// sequence number, the record with that sequence number was its original,
/// and a header that still shows that number as its id or its sequence
/// number (one damaged byte cannot change both) is that record.
/// A live record, or one whose header is unreadable, costs one. The next
/// damaged record is found through the length field when it is plausible;
/// past that, each record counts as one. So the count can be too high
/// (an unreadable header that was a removed record), never too low.
pub(crate) fn lost_in(
    data: &[u8],
    ring_size: u64,
    run: DamagedRun,
    kept: impl Fn(u64) -> bool,
) -> u64 {
    let mut lost = 0;
    let mut at = Some(run.pos);
    for i in 0..run.records {
        let Some(p) = at else {
            lost += 1;
            continue;
        };
        let judged = judge(data, ring_size, p, run.next);
        let seq = run.first_seq + i;
        let relocated = kept(seq) && (judged.id == Some(seq) || judged.seq == Some(seq));
        lost += u64::from(judged.cost && !relocated);
        at = judged.following;
    }
    lost
}

/// What the header of one damaged record still says.
struct Judged {
    /// It may have held a pending event.
    cost: bool,
    /// Where the next record starts, if that can be told.
    following: Option<u64>,
    /// The id and sequence number the header claims.
    id: Option<u64>,
    seq: Option<u64>,
}

/// Judges the damaged record at `p` (see [`lost_in`]).
fn judge(data: &[u8], ring_size: u64, p: u64, next: u64) -> Judged {
    let at = p as usize;
    let kind = data.get(at + record::TYPE).copied();
    let state = data.get(at + record::STATE).copied();
    let len = get_u32(data, at + record::LEN);
    let id = get_u64(data, at + record::ID);
    // A marker: its type, or (its type byte damaged) its zero length and
    // id with a live state byte, which markers always have. A single
    // damaged byte cannot erase both signs; a zeroed header (a lost
    // sector) is not a marker.
    let marker = kind == Some(TYPE_WRAP)
        || (len == Some(0) && id == Some(0) && state == Some(format::STATE_LIVE));
    if marker {
        return Judged {
            cost: false,
            following: (next != 0).then_some(0),
            id: None,
            seq: None,
        };
    }
    // Only data records are ever given a removed state.
    let removed = state.is_some_and(|s| format::is_known_state(s) && s != format::STATE_LIVE);
    let following = len
        .filter(|&l| l > 0 && l as usize <= MAX_PAYLOAD_LEN)
        .map(|l| normalize(ring_size, p + record_len(l as usize)))
        .filter(|&f| f != next && f < ring_size);
    Judged {
        cost: !removed,
        following,
        id,
        seq: get_u64(data, at + record::SEQ),
    }
}

/// The intact records of a damaged log, collected as recovery walks the
/// pieces of its chain in sequence order: a relocated copy (its id is not
/// its sequence number) replaces the older copy of the same record, live or
/// not, as in the ring (`Ring::push_recovered`).
#[derive(Debug, Default)]
pub(crate) struct Salvage {
    by_id: HashMap<u64, Slot>,
}

impl Salvage {
    /// Starts from the live records of the chain before the damage.
    pub(crate) fn from_live(live: Vec<Slot>) -> Salvage {
        Salvage {
            by_id: live.into_iter().map(|s| (s.id, s)).collect(),
        }
    }

    /// Adds the record or marker with sequence number `seq`.
    pub(crate) fn push(&mut self, seq: u64, slot: Slot) {
        if slot.id == 0 {
            return; // a wrap marker
        }
        if slot.id == seq {
            if slot.live {
                self.by_id.insert(slot.id, slot);
            }
        } else if slot.live {
            self.by_id.insert(slot.id, slot);
        } else {
            self.by_id.remove(&slot.id);
        }
    }

    /// Whether the record with this id is kept.
    pub(crate) fn holds(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// The live records, in id order.
    pub(crate) fn live_in_id_order(&self) -> Vec<Slot> {
        let mut out: Vec<Slot> = self.by_id.values().copied().collect();
        out.sort_unstable_by_key(|s| s.id);
        out
    }
}

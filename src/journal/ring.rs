//! The journal's in-memory picture of its ring: where each record is, which
//! are live, where the next one goes. Pure bookkeeping, no I/O, so every
//! placement rule is unit- and property-tested on its own.
//!
//! Positions are byte offsets in the data region `[0, size)`. Records are
//! laid one after another from the tail to the head; when one does not fit
//! before the end, a wrap marker fills the rest and the record starts at 0.
//! A position with fewer than [`HEADER_LEN`] bytes before the end is never
//! used: the head jumps to 0 ("implicit wrap"), and so does recovery.
//!
//! Invariants:
//! - every record and marker starts at a position with at least
//!   `HEADER_LEN` bytes before the end, and so does the head;
//! - `slots` holds every record and marker from the tail to the head, in
//!   sequence order, `slots[i]` having sequence `front_seq + i`;
//! - the head never catches up with the limit it writes against: a write
//!   needs its length plus one header of room (the stretch after a record
//!   is zeroed, see `place`), so `head == limit` means the ring is empty.

use std::collections::{HashMap, VecDeque};

use crate::journal::format::record::HEADER_LEN;

const HEADER: u64 = HEADER_LEN as u64;

/// One record or wrap marker in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// Position in the data region.
    pub pos: u64,
    /// Record id (0 for a marker).
    pub id: u64,
    /// Bytes occupied (record length; for a marker, up to the region end).
    pub len: u32,
    /// Payload bytes of a record (0 for a marker): lets a scan hand out
    /// payloads without touching the record headers again.
    pub payload: u16,
    /// True while the record holds a live event.
    pub live: bool,
}

/// Where a write of a given length goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Start of the record.
    pub pos: u64,
    /// Position of the wrap marker to write first, if the record wraps.
    pub marker: Option<u64>,
    /// The head after the write.
    pub new_head: u64,
}

/// The ring's bookkeeping.
#[derive(Debug)]
pub(crate) struct Ring {
    size: u64,
    slots: VecDeque<Slot>,
    front_seq: u64,
    next_seq: u64,
    head: u64,
    /// id -> sequence of its newest copy, for records whose copy was moved
    /// (relocation, rebuild). Records never moved have id == sequence.
    moved: HashMap<u64, u64>,
    live_bytes: u64,
    live_count: u64,
}

impl Ring {
    /// An empty ring of `size` bytes whose next record is `next_seq` at `head`.
    pub fn new(size: u64, head: u64, next_seq: u64) -> Ring {
        debug_assert!(size.is_multiple_of(8) && size >= 4 * HEADER);
        Ring {
            size,
            slots: VecDeque::new(),
            front_seq: next_seq,
            next_seq,
            head: normalize(size, head),
            moved: HashMap::new(),
            live_bytes: 0,
            live_count: 0,
        }
    }

    /// Makes room for `additional` more slots at once (recovery knows
    /// roughly how many are coming; growing by doubling would copy and
    /// touch the memory several times).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional);
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub fn live_count(&self) -> u64 {
        self.live_count
    }

    /// Position and sequence of the oldest slot (the head and the next
    /// sequence when empty).
    pub fn tail(&self) -> (u64, u64) {
        match self.slots.front() {
            Some(s) => (s.pos, self.front_seq),
            None => (self.head, self.next_seq),
        }
    }

    /// Free bytes from the head forward to `limit`.
    pub fn room(&self, limit: u64) -> u64 {
        room_between(self.size, self.head, limit)
    }

    /// Where a record of `len` bytes goes when writes may not reach
    /// `limit`, or `None` if it does not fit. The header-sized stretch after
    /// the record must fit too: the writer zeroes it, so that recovery finds
    /// zeroes, not stale bytes, where the log ends.
    pub fn place(&self, len: u64, limit: u64) -> Option<Placement> {
        let room = self.room(limit);
        let (pos, marker, consumed) = if self.size - self.head >= len {
            (self.head, None, len)
        } else {
            (0, Some(self.head), self.size - self.head + len)
        };
        let end = pos + len;
        let new_head = normalize(self.size, end);
        let consumed = consumed + if new_head == 0 { self.size - end } else { 0 };
        (consumed + HEADER <= room).then_some(Placement {
            pos,
            marker,
            new_head,
        })
    }

    /// Records a written placement: the marker (if any) and the record,
    /// with their sequence numbers. `id` is given for a copy of an existing
    /// record, whose older copy then stops being live. Returns the record's
    /// sequence.
    pub fn push(&mut self, p: Placement, len: u64, payload: u16, id: Option<u64>) -> u64 {
        if let Some(at) = p.marker {
            self.push_slot(Slot {
                pos: at,
                // Less than one record: the record did not fit there.
                len: (self.size - at) as u32,
                payload: 0,
                id: 0,
                live: false,
            });
        }
        let seq = self.next_seq;
        let slot = Slot {
            pos: p.pos,
            len: len as u32,
            payload,
            id: id.unwrap_or(seq),
            live: true,
        };
        self.push_live_or_dead(slot);
        self.head = p.new_head;
        seq
    }

    /// Adds a slot found by recovery, in chain order; the next record
    /// starts at `next_pos`.
    pub fn push_recovered(&mut self, slot: Slot, next_pos: u64) {
        self.push_live_or_dead(slot);
        self.head = normalize(self.size, next_pos);
    }

    fn push_live_or_dead(&mut self, slot: Slot) {
        let seq = self.next_seq;
        self.push_slot(slot);
        if slot.id != 0 && slot.id != seq {
            // A moved copy: the older copy of the same record stops being
            // the record, whatever state the newer copy is in (a copy that
            // was acknowledged must not bring its original back).
            let older = self.moved.get(&slot.id).copied().unwrap_or(slot.id);
            self.kill(older, slot.id);
            if slot.live {
                self.moved.insert(slot.id, seq);
            } else {
                self.moved.remove(&slot.id);
            }
        }
        if slot.live {
            self.live_bytes += u64::from(slot.len);
            self.live_count += 1;
        }
    }

    fn push_slot(&mut self, slot: Slot) {
        if self.slots.is_empty() {
            self.front_seq = self.next_seq;
        }
        self.slots.push_back(slot);
        self.next_seq += 1;
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.front_seq)?).ok()?;
        (i < self.slots.len()).then_some(i)
    }

    /// Marks the slot at `seq` dead if it is the live copy of `id`.
    fn kill(&mut self, seq: u64, id: u64) -> bool {
        let Some(i) = self.index(seq) else {
            return false;
        };
        let slot = &mut self.slots[i];
        if !slot.live || slot.id != id {
            return false;
        }
        slot.live = false;
        self.live_bytes -= u64::from(slot.len);
        self.live_count -= 1;
        true
    }

    /// The live slot of record `id`, with its sequence.
    pub fn find(&self, id: u64) -> Option<(u64, Slot)> {
        let seq = self.moved.get(&id).copied().unwrap_or(id);
        let slot = *self.slots.get(self.index(seq)?)?;
        (slot.live && slot.id == id).then_some((seq, slot))
    }

    /// Marks record `id` removed. False if it is not live.
    pub fn remove(&mut self, id: u64) -> bool {
        let seq = self.moved.get(&id).copied().unwrap_or(id);
        if !self.kill(seq, id) {
            return false;
        }
        self.moved.remove(&id);
        self.drop_dead_front();
        true
    }

    /// The oldest live slot.
    pub fn front_live(&self) -> Option<Slot> {
        self.slots.iter().find(|s| s.live).copied()
    }

    /// Pops dead slots off the tail.
    pub fn drop_dead_front(&mut self) {
        while matches!(self.slots.front(), Some(s) if !s.live) {
            self.slots.pop_front();
            self.front_seq += 1;
        }
        if self.slots.is_empty() {
            self.front_seq = self.next_seq;
        }
    }

    /// Forgets every record (the caller persists the new tail).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.moved.clear();
        self.front_seq = self.next_seq;
        self.live_bytes = 0;
        self.live_count = 0;
    }

    /// The live records, in id order.
    pub fn live_in_id_order(&self) -> Vec<Slot> {
        let mut out = Vec::with_capacity(self.live_count as usize);
        let pushed: Result<(), ()> = self.try_for_each_live(|slot| {
            out.push(slot);
            Ok(())
        });
        debug_assert!(pushed.is_ok());
        out
    }

    /// Visits the live records in id order (raise order) until `visit`
    /// fails, without allocating when no record was moved: then chain
    /// order is id order.
    pub fn try_for_each_live<E>(
        &self,
        mut visit: impl FnMut(Slot) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut live = self.slots.iter().filter(|s| s.live).copied();
        if self.moved.is_empty() {
            live.try_for_each(visit)
        } else {
            let mut sorted: Vec<Slot> = live.collect();
            sorted.sort_unstable_by_key(|s| s.id);
            sorted.into_iter().try_for_each(&mut visit)
        }
    }

    /// Number of slots (records and markers) between tail and head.
    #[cfg(test)]
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

/// The head after a write ending at `end`: 0 when too little room remains
/// before the end of the region for another record header.
pub(crate) fn normalize(size: u64, end: u64) -> u64 {
    if size - end.min(size) < HEADER {
        0
    } else {
        end
    }
}

/// Free bytes from `head` forward to `limit` in a ring of `size` (both
/// positions in the ring). Without a division: this runs several times per
/// append.
pub(crate) fn room_between(size: u64, head: u64, limit: u64) -> u64 {
    debug_assert!(head < size && limit < size, "{head} {limit} {size}");
    if limit > head {
        limit - head
    } else {
        limit + size - head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_wraps_and_never_reaches_the_tail() {
        let mut r = Ring::new(256, 0, 1);
        let mut ids = Vec::new();
        loop {
            let (tail, _) = r.tail();
            match r.place(64, tail) {
                Some(p) => ids.push(r.push(p, 64, 0, None)),
                None => break,
            }
        }
        // 256 bytes hold three 64-byte records: a fourth would meet the tail.
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(r.remove(1));
        let (tail, seq) = r.tail();
        assert_eq!((tail, seq), (64, 2));
        let p = r.place(64, tail).unwrap();
        assert_eq!((p.pos, p.marker, p.new_head), (192, None, 0));
        assert_eq!(r.push(p, 64, 0, None), 4);
        // The head is now 0 with 64 bytes to the tail: a 64-byte record
        // would meet it; a 32-byte one fits with its zeroed stretch.
        assert!(r.place(64, 64).is_none());
        assert!(r.place(40, 64).is_none());
        assert!(r.place(32, 64).is_some());
    }

    #[test]
    fn record_that_does_not_fit_before_the_end_wraps_with_a_marker() {
        let mut r = Ring::new(512, 0, 1);
        for len in [160, 160, 64] {
            let p = r.place(len, r.tail().0).unwrap();
            r.push(p, len, 0, None);
        }
        assert!(r.remove(1) && r.remove(2));
        assert_eq!(r.tail(), (320, 3));
        // head at 384: 128 left before the end, a 136-byte record wraps.
        let p = r.place(136, r.tail().0).unwrap();
        assert_eq!((p.pos, p.marker, p.new_head), (0, Some(384), 136));
        assert_eq!(r.push(p, 136, 0, None), 5, "the marker took sequence 4");
        assert_eq!(r.slot_count(), 3);
        // 184 bytes to the tail: 152 + 32 fit, 160 + 32 do not.
        assert!(r.place(152, 320).is_some());
        assert!(r.place(160, 320).is_none());
    }

    #[test]
    fn implicit_wrap_when_less_than_a_header_remains() {
        let mut r = Ring::new(256, 0, 1);
        // Filling the ring to its last byte would make head == tail.
        assert!(r.place(232, 0).is_none());
        for _ in 0..2 {
            let p = r.place(64, r.tail().0).unwrap();
            r.push(p, 64, 0, None);
        }
        assert!(r.remove(1));
        // 128..232 leaves 24 bytes, too few for a header: the head goes to 0.
        let p = r.place(104, r.tail().0).unwrap();
        assert_eq!((p.pos, p.marker, p.new_head), (128, None, 0));
        r.push(p, 104, 0, None);
        assert_eq!(r.room(r.tail().0), 64);
    }

    #[test]
    fn moved_records_are_found_under_their_id() {
        let mut r = Ring::new(1024, 0, 1);
        for _ in 0..3 {
            let p = r.place(64, r.tail().0).unwrap();
            r.push(p, 64, 0, None);
        }
        // Copy record 1 to the head: the original stops being live.
        let p = r.place(64, r.tail().0).unwrap();
        assert_eq!(r.push(p, 64, 0, Some(1)), 4);
        assert_eq!(r.find(1).unwrap().0, 4);
        assert_eq!(r.live_count(), 3);
        r.drop_dead_front();
        assert_eq!(r.tail(), (64, 2));
        assert_eq!(
            r.live_in_id_order()
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(r.remove(1));
        assert!(r.find(1).is_none());
        assert!(!r.remove(1));
        assert_eq!(r.live_count(), 2);
    }

    #[test]
    fn recovered_copy_kills_the_original() {
        let mut r = Ring::new(1024, 0, 1);
        let slot = |pos, id| Slot {
            pos,
            len: 64,
            payload: 32,
            id,
            live: true,
        };
        r.push_recovered(slot(0, 1), 64);
        r.push_recovered(slot(64, 2), 128);
        r.push_recovered(slot(128, 1), 192);
        assert_eq!(r.live_count(), 2);
        assert_eq!(r.find(1).unwrap().0, 3);
        assert_eq!(r.live_bytes(), 128);
    }

    #[test]
    fn removed_copy_does_not_bring_its_original_back() {
        let mut r = Ring::new(1024, 0, 1);
        let slot = |pos, id, live| Slot {
            pos,
            len: 64,
            payload: 32,
            id,
            live,
        };
        r.push_recovered(slot(0, 1, true), 64);
        r.push_recovered(slot(64, 1, false), 128);
        assert_eq!(r.live_count(), 0);
        assert!(r.find(1).is_none());
    }
}

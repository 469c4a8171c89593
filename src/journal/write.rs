//! Writing the journal: placing records in the ring, reclaiming space,
//! header updates and syncs. The order of these writes is what makes the
//! journal crash-safe (the rules are listed in `log.rs`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::journal::durability::Durability;
use crate::journal::format::{
    decode_record, record, record_len, seal_record, Header, DATA_OFFSET, MAX_PAYLOAD_LEN,
    MAX_RECORD_LEN, SLOT_LEN, SLOT_OFFSETS, TYPE_DATA, TYPE_WRAP, VERSION,
};
use crate::journal::log::Journal;
use crate::journal::ring::{room_between, Placement, Slot};

/// Room the ring keeps free after every write, so the oldest live record
/// can always be copied to the head (with a wrap) when holes behind it must
/// be reclaimed.
const RELOCATION_RESERVE: u64 = 2 * MAX_RECORD_LEN + 64;

/// The header is written again (with a fresh head hint) once this many
/// bytes of ring were placed since it was last written, so the records a
/// crash leaves past the hint lie within `recovery::HINT_WINDOW` of the end
/// of the log, and an open reads no more than that past the live records.
/// One header write per 128 KiB of records: about one extra page per 1,300
/// records of 100 bytes.
pub(super) const HINT_EVERY: u64 = 128 * 1024;

impl Journal {
    /// The data region (the ring).
    pub(super) fn data(&self) -> &[u8] {
        self.device
            .bytes()
            .get(DATA_OFFSET as usize..)
            .unwrap_or_default()
    }

    /// The file offset of ring position `pos`.
    pub(super) fn data_offset(&self, pos: u64) -> usize {
        (DATA_OFFSET + pos) as usize
    }

    pub(super) fn write_header(&mut self) {
        self.generation += 1;
        let (tail_pos, tail_seq) = self.persisted_tail;
        let header = Header {
            magic: self.config.magic,
            version: VERSION,
            generation: self.generation,
            owner: self.config.owner,
            data_offset: DATA_OFFSET,
            data_size: self.ring.size(),
            capacity: self.config.capacity,
            tail_pos,
            tail_seq,
            meta: self.meta.clone(),
            // Every record before this sequence number is in the map now.
            head_seq: self.ring.next_seq(),
        };
        self.since_header = 0;
        // The slot not holding the current generation: alternate.
        let at = SLOT_OFFSETS[(self.generation % 2) as usize];
        self.device.bytes_mut()[at..at + SLOT_LEN].copy_from_slice(&header.encode());
        self.dirty.add(at, SLOT_LEN);
    }

    /// Moves the header's tail up to the ring's tail, after making every
    /// data write durable (so nothing the old tail protected is needed).
    pub(super) fn persist_tail(&mut self) -> Result<()> {
        self.sync_if_ordered()?;
        self.persisted_tail = self.ring.tail();
        self.write_header();
        self.sync_if_ordered()
    }

    /// Syncs what is written unless the setting promises nothing across a
    /// power cut (then page-cache order is all that matters).
    pub(super) fn sync_if_ordered(&mut self) -> Result<()> {
        if self.policy.orders_writes() && !self.dirty.is_empty() {
            self.sync_dirty()?;
        }
        Ok(())
    }

    /// Makes everything written so far durable, under the store's lock:
    /// the dirty span and every span handed to the group (`group.rs`,
    /// `Group::sync_all`), whose waiters it releases.
    pub(super) fn sync_dirty(&mut self) -> Result<()> {
        self.sync_through(self.ring.next_seq())
    }

    /// [`Journal::sync_dirty`], when the records written so far end below
    /// `written` (a wrap marker is written before the ring counts it).
    fn sync_through(&mut self, written: u64) -> Result<()> {
        let own = self.dirty.take();
        let group = Arc::clone(&self.group);
        let device = &mut self.device;
        group
            .sync_all(own, written, |start, len| device.sync(start, len))
            .map_err(|e| Error::io("sync", self.file.path(), e))?;
        self.freed.synced();
        self.policy.synced();
        self.chain_unsynced = false;
        // What the waiting removals were ordered after is on the device
        // now. Their records cannot have been overwritten meanwhile: space
        // is reused only after the header's tail moves, which syncs first.
        self.removals_wait = false;
        for (at, state) in std::mem::take(&mut self.waiting_removals) {
            self.device.bytes_mut()[at] = state;
            self.dirty.add(at, 1);
        }
        Ok(())
    }

    /// Sync, with a device that syncs concurrently: the operation's writes
    /// go to the group, synced outside the store's lock (`group.rs`); the
    /// store takes the ticket (`take_ticket`) and waits on it once its lock
    /// is released. The next operation's records may join the same sync:
    /// each carries how far it is above the durable watermark, so recovery
    /// tells a group a power cut tore from damage.
    pub(super) fn hand_over(&mut self) {
        if let Some(span) = self.dirty.take() {
            let ticket = self
                .group
                .hand_over(span, self.ring.next_seq(), self.ticket);
            self.freed.handed_over(ticket);
            self.ticket = Some(ticket);
        }
        self.policy.synced();
        self.chain_unsynced = false;
    }

    /// What a record with sequence number `seq` carries in its header
    /// (`format::record::UNSYNCED`): how far it is above the lowest
    /// sequence number not known durable. Never more than the truth (a
    /// smaller value only makes recovery count damage as corruption, as
    /// version 1 did); 0 with `None`, which promises nothing across a
    /// power cut.
    fn unsynced_before(&self, seq: u64) -> u64 {
        if !self.policy.orders_writes() {
            return 0;
        }
        seq.saturating_sub(self.group.durable_seq())
    }

    /// The ring has no room for a record of `len` bytes: only possible if
    /// the journal's user appended past the capacity it sized the ring for.
    fn no_room(&self, len: u64) -> Error {
        Error::StorageFull {
            needed: len,
            available: self.config.capacity.saturating_sub(self.ring.live_bytes()),
            capacity: self.config.capacity,
        }
    }

    /// Finds room for `len` bytes at the head against the persisted tail,
    /// moving the persisted tail up if that gives the room.
    fn placement(&mut self, len: u64) -> Result<Placement> {
        if let Some(p) = self.ring.place(len, self.persisted_tail.0) {
            return Ok(p);
        }
        self.persist_tail()?;
        self.ring
            .place(len, self.persisted_tail.0)
            .ok_or_else(|| self.no_room(len))
    }

    /// Writes a wrap marker at ring position `at` (a record did not fit
    /// before the end of the ring).
    fn write_marker(&mut self, at: u64) {
        let seq = self.ring.next_seq();
        let start = self.data_offset(at);
        let unsynced = self.unsynced_before(seq);
        seal_record(
            &mut self.device.bytes_mut()[start..],
            TYPE_WRAP,
            seq,
            0,
            unsynced,
            0,
        );
        self.dirty.add(start, record::HEADER_LEN);
        self.chain_unsynced = true;
    }

    /// Appends a record of `payload_len` bytes that `fill` writes in place
    /// (straight into the map: a raise's record is not built elsewhere and
    /// copied); `RecordLog::append` with the bytes copied.
    pub(crate) fn append_with(
        &mut self,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        if self.ring.next_seq() > u64::MAX - 4 {
            return Err(Error::Io {
                context: format!(
                    "append to {}: its sequence numbers are used up; reopen the store to \
                     renumber the journal",
                    self.path().display()
                ),
                source: std::io::Error::other("sequence numbers exhausted"),
            });
        }
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(Error::invalid(format!(
                "record of {payload_len} bytes exceeds the journal limit of {MAX_PAYLOAD_LEN}"
            )));
        }
        let len = record_len(payload_len);
        let result = self
            .settle_freed(len)
            .and_then(|()| self.make_room(len))
            .and_then(|()| self.write_at_head_with(payload_len, None, fill));
        self.device
            .check()
            .map_err(|e| Error::io("append to", self.path(), e))?;
        result
    }

    /// Writes a record at the head; `id` is given for a copy of an existing
    /// record. Returns the record's id.
    pub(super) fn write_at_head(&mut self, payload: &[u8], id: Option<u64>) -> Result<u64> {
        self.write_at_head_with(payload.len(), id, |bytes| bytes.copy_from_slice(payload))
    }

    /// As [`Journal::write_at_head`], with the payload's `payload_len`
    /// bytes written in place by `fill`.
    fn write_at_head_with(
        &mut self,
        payload_len: usize,
        id: Option<u64>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<u64> {
        let len = record_len(payload_len);
        let head_before = self.ring.head();
        let p = self.placement(len)?;
        if let Some(at) = p.marker {
            self.write_marker(at);
        }
        if self.chain_unsynced && self.policy.durability() == Durability::Sync {
            // One operation writing two chain records (a wrap marker and its
            // record, a relocated copy and the next record): the device may
            // complete the writes of one msync in any order, and a later
            // record on disk without the earlier one reads as damage in the
            // middle of the log. With Sync, each goes out on its own.
            self.sync_through(self.ring.next_seq() + u64::from(p.marker.is_some()))?;
        }
        let seq = self.ring.next_seq() + u64::from(p.marker.is_some());
        let id = id.unwrap_or(seq);
        let start = self.data_offset(p.pos);
        let body = start + record::HEADER_LEN;
        let unsynced = self.unsynced_before(seq);
        let bytes = self.device.bytes_mut();
        // The padding after the payload is zero: the record's last 8 bytes
        // are zeroed first (a fixed-size store; records are whole words),
        // then the payload and the header are written over what is not
        // padding.
        let end = start + len as usize;
        bytes[end - 8..end].copy_from_slice(&[0; 8]);
        fill(&mut bytes[body..body + payload_len]);
        seal_record(
            &mut bytes[start..],
            TYPE_DATA,
            seq,
            id,
            unsynced,
            payload_len,
        );
        self.dirty.add(start, len as usize);
        let pushed = self.ring.push(p, len, payload_len as u16, Some(id));
        debug_assert_eq!(pushed, seq);
        self.chain_unsynced = true;
        self.zero_after(p.new_head);
        // Bytes placed, the marker's filler included.
        let placed = room_between(self.ring.size(), head_before, p.new_head);
        self.since_header += placed;
        if let Some(prefault) = &mut self.prefault {
            prefault.advanced(placed, p.new_head, self.ring.size(), DATA_OFFSET);
        }
        if self.since_header >= HINT_EVERY {
            // Goes out with this record's sync. Written before the record
            // reaches the device, the hint is only too high, which costs
            // the next open a full search, never a wrong result.
            self.write_header();
        }
        Ok(id)
    }

    /// Zeroes the header-sized stretch at the new head (placement kept it
    /// free): a clean end of the log reads as zeroes, so recovery can tell
    /// stale or damaged bytes from the end of the log.
    fn zero_after(&mut self, head: u64) {
        let end = self.data_offset(head);
        let bytes = self.device.bytes_mut();
        // Compared a word at a time: this runs on every append.
        let header = &bytes[end..end + record::HEADER_LEN];
        if header
            .chunks_exact(8)
            .any(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) != 0)
        {
            bytes[end..end + record::HEADER_LEN].fill(0);
            self.dirty.add(end, record::HEADER_LEN);
        }
    }

    /// Makes sure a record of `len` bytes fits and leaves the relocation
    /// reserve free, by reclaiming dead space behind the tail and, where a
    /// live record pins the tail in front of holes, copying it to the head.
    pub(super) fn make_room(&mut self, len: u64) -> Result<()> {
        let mut budget = self.ring.live_count() + 1;
        loop {
            self.ring.drop_dead_front();
            let (tail, _) = self.ring.tail();
            if let Some(p) = self.ring.place(len, tail) {
                let after = room_between(self.ring.size(), p.new_head, tail);
                if after >= RELOCATION_RESERVE {
                    return Ok(());
                }
            }
            let front = match self.ring.front_live() {
                Some(front) if budget > 0 => front,
                _ => return Err(self.no_room(len)),
            };
            budget -= 1;
            self.relocate(front)?;
        }
    }

    /// Copies the live record pinning the tail to the head. A record that
    /// fails its checksum cannot be copied: it is dropped (its state byte
    /// says so) and handed to the store as lost (`take_lost`).
    fn relocate(&mut self, front: Slot) -> Result<()> {
        let mut payload = std::mem::take(&mut self.scratch);
        let result = match self.read_slot(front, &mut payload) {
            Ok(()) => self.write_at_head(&payload, Some(front.id)).map(|_| ()),
            Err(e) if e.kind() == crate::error::ErrorKind::Format => {
                self.drop_damaged(front);
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.scratch = payload;
        result
    }

    /// Stops holding a live record that failed its checksum.
    pub(super) fn drop_damaged(&mut self, slot: Slot) {
        let at = self.data_offset(slot.pos) + record::STATE;
        self.device.bytes_mut()[at] = crate::journal::format::STATE_DROPPED;
        self.dirty.add(at, 1);
        self.ring.remove(slot.id);
        self.lost.push(slot.id);
    }

    /// The payload of a live slot, checked again against its CRC.
    pub(super) fn payload(&self, slot: Slot) -> Result<&[u8]> {
        match decode_record(self.data(), slot.pos, self.ring.size()) {
            Some((h, payload)) if h.id == slot.id => Ok(payload),
            _ => Err(Error::format(format!(
                "{}: record {} at data offset {} no longer passes its checksum (the file \
                 was changed behind the journal's back or the medium is failing)",
                self.path().display(),
                slot.id,
                slot.pos
            ))),
        }
    }

    pub(super) fn read_slot(&self, slot: Slot, out: &mut Vec<u8>) -> Result<()> {
        let payload = self.payload(slot)?;
        out.clear();
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The live records with their payloads, for a rewrite; a record that
    /// fails its checksum is dropped and handed to the store as lost.
    pub(super) fn live_records(&mut self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(self.ring.live_count() as usize);
        for slot in self.ring.live_in_id_order() {
            let mut payload = Vec::new();
            match self.read_slot(slot, &mut payload) {
                Ok(()) => out.push((slot.id, payload)),
                Err(e) if e.kind() == crate::error::ErrorKind::Format => self.drop_damaged(slot),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub(super) fn missing(&self, id: u64) -> Error {
        Error::state(format!("{}: no pending record {id}", self.path().display()))
    }
}

//! The journal: a [`RecordLog`] in a preallocated, memory-mapped, locked,
//! checksummed ring file. Opening, recovery and salvage are in `open.rs`.
//!
//! Write rules that make it crash-safe (see `docs/FORMAT.md`):
//! - a record is written whole at the head and covered by its CRC; the
//!   chain only continues through records whose sequence follows;
//! - removal writes one state byte in place;
//! - the header's tail only moves forward when space behind it is about to
//!   be reused, and only after the data written so far is synced, so
//!   recovery never starts on bytes that were overwritten, and a moved copy
//!   is durable before its original is given up;
//! - a file is created, resized or salvaged by writing a complete new file
//!   under a temporary name and renaming it into place.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::journal::durability::{Durability, SyncPolicy};
use crate::journal::file::LockedFile;
use crate::journal::format::{
    data_size_for, decode_record, record, record_len, seal_record, Header, DATA_OFFSET,
    MAX_META_LEN, MAX_PAYLOAD_LEN, MAX_RECORD_LEN, SLOT_LEN, SLOT_OFFSETS, STATE_ACKED,
    STATE_DROPPED, STATE_INVALIDATED, STATE_SUPERSEDED, TYPE_DATA, TYPE_WRAP, VERSION,
};
use crate::journal::mmap::MappedFile;
use crate::journal::ring::{room_between, Placement, Ring, Slot};
use crate::service::backend::{RecordLog, Removal};

/// Room the ring keeps free after every write, so the oldest live record
/// can always be copied to the head (with a wrap) when holes behind it must
/// be reclaimed.
const RELOCATION_RESERVE: u64 = 2 * MAX_RECORD_LEN + 64;

/// What a journal is for and how it behaves.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// File magic (what kind of journal).
    pub magic: [u8; 8],
    /// The owner uid written in the header (the service uid); a file with
    /// another owner is foreign.
    pub owner: Uuid,
    /// Logical capacity: bytes of live records the ring must hold.
    pub capacity: u64,
    /// When writes are forced to the device.
    pub durability: Durability,
}

/// The span of the file written since the last sync. One span, synced by
/// one `msync`: the kernel writes only the dirty pages inside it, and every
/// `msync` call costs a device flush of its own, so several small calls
/// cost more than one wide one.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    span: Option<(usize, usize)>,
}

impl Dirty {
    fn add(&mut self, start: usize, len: usize) {
        let end = start + len;
        self.span = Some(match self.span {
            Some((a, b)) => (a.min(start), b.max(end)),
            None => (start, end),
        });
    }

    fn is_empty(&self) -> bool {
        self.span.is_none()
    }
}

/// A level-2 record log in a journal file. See the module docs.
#[derive(Debug)]
pub struct Journal {
    pub(super) file: LockedFile,
    pub(super) map: MappedFile,
    pub(super) config: JournalConfig,
    pub(super) generation: u64,
    pub(super) meta: Vec<u8>,
    /// Where the header currently says recovery starts.
    pub(super) persisted_tail: (u64, u64),
    pub(super) ring: Ring,
    pub(super) dirty: Dirty,
    /// A chain record (record or wrap marker) was written since the last
    /// sync.
    pub(super) chain_unsynced: bool,
    /// Batch: removals wait for the next sync (see `barrier`).
    pub(super) removals_wait: bool,
    /// State bytes to write after the next sync: (file offset, state).
    pub(super) waiting_removals: Vec<(usize, u8)>,
    pub(super) policy: SyncPolicy,
    pub(super) scratch: Vec<u8>,
}

impl Journal {
    /// The journal file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Logical capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.config.capacity
    }

    /// Bytes of live records.
    pub fn live_bytes(&self) -> u64 {
        self.ring.live_bytes()
    }

    /// Number of live records.
    pub fn live_count(&self) -> u64 {
        self.ring.live_count()
    }

    /// The durability setting.
    pub fn durability(&self) -> Durability {
        self.policy.durability()
    }

    /// Bytes a payload of `len` bytes occupies in the journal.
    pub fn record_len(len: usize) -> u64 {
        record_len(len)
    }

    /// Rewrites the file for a new capacity if it differs. The live records
    /// must fit: the store drops what does not before calling this.
    pub fn resize(&mut self, capacity: u64) -> Result<()> {
        if capacity == self.config.capacity && self.ring.size() == data_size_for(capacity) {
            return Ok(());
        }
        if self.ring.live_bytes() > capacity {
            return Err(Error::invalid(format!(
                "{}: {} bytes of events do not fit in a capacity of {capacity}",
                self.path().display(),
                self.ring.live_bytes()
            )));
        }
        let records = self.live_records()?;
        let mut config = self.config.clone();
        config.capacity = capacity;
        let path = self.path().to_path_buf();
        let next = self.ring.next_seq();
        *self = Journal::rebuild(&path, &config, next, &self.meta.clone(), &records)?;
        Ok(())
    }

    /// Fault injection: the file as a power cut now would leave it (see
    /// `MappedFile::power_cut_image`).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn power_cut_image(&self, keep_unsynced: &mut dyn FnMut(usize) -> bool) -> Vec<u8> {
        self.map.power_cut_image(keep_unsynced)
    }

    /// Fault injection: see `MappedFile::arm_power_cut`.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn arm_power_cut(&mut self, at_sync: u64, seed: u64) {
        self.map.arm_power_cut(at_sync, seed);
    }

    /// Fault injection: the image captured by an armed power cut.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn take_power_cut_image(&mut self) -> Option<Vec<u8>> {
        self.map.take_power_cut_image()
    }

    /// Fault injection: syncs done on this file so far.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn sync_count(&self) -> u64 {
        self.map.sync_count()
    }

    // ----- writing ----------------------------------------------------

    fn data(&self) -> &[u8] {
        self.map
            .bytes()
            .get(DATA_OFFSET as usize..)
            .unwrap_or_default()
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
        };
        // The slot not holding the current generation: alternate.
        let at = SLOT_OFFSETS[(self.generation % 2) as usize];
        self.map.bytes_mut()[at..at + SLOT_LEN].copy_from_slice(&header.encode());
        self.dirty.add(at, SLOT_LEN);
    }

    /// Moves the header's tail up to the ring's tail, after making every
    /// data write durable (so nothing the old tail protected is needed).
    fn persist_tail(&mut self) -> Result<()> {
        self.sync_if_ordered()?;
        self.persisted_tail = self.ring.tail();
        self.write_header();
        self.sync_if_ordered()
    }

    /// Syncs what is written unless the setting promises nothing across a
    /// power cut (then page-cache order is all that matters).
    fn sync_if_ordered(&mut self) -> Result<()> {
        if self.policy.orders_writes() && !self.dirty.is_empty() {
            self.sync_dirty()?;
        }
        Ok(())
    }

    pub(super) fn sync_dirty(&mut self) -> Result<()> {
        if let Some((start, end)) = self.dirty.span.take() {
            self.map
                .sync(start, end - start)
                .map_err(|e| Error::io("sync", self.file.path(), e))?;
        }
        self.policy.synced();
        self.chain_unsynced = false;
        // What the waiting removals were ordered after is on the device
        // now. Their records cannot have been overwritten meanwhile: space
        // is reused only after the header's tail moves, which syncs first.
        self.removals_wait = false;
        for (at, state) in std::mem::take(&mut self.waiting_removals) {
            self.map.bytes_mut()[at] = state;
            self.dirty.add(at, 1);
        }
        Ok(())
    }

    fn full_error(&self, len: u64) -> Error {
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
            .ok_or_else(|| self.full_error(len))
    }

    /// Writes a record at the head; `id` is given for a copy of an existing
    /// record. Returns the record's id.
    pub(super) fn write_at_head(&mut self, payload: &[u8], id: Option<u64>) -> Result<u64> {
        let len = record_len(payload.len());
        let p = self.placement(len)?;
        if let Some(at) = p.marker {
            let seq = self.ring.next_seq();
            let start = (DATA_OFFSET + at) as usize;
            let bytes = self.map.bytes_mut();
            seal_record(&mut bytes[start..], TYPE_WRAP, seq, 0, 0);
            self.dirty.add(start, record::HEADER_LEN);
            self.chain_unsynced = true;
        }
        if self.chain_unsynced && self.policy.durability() == Durability::Sync {
            // One operation writing two chain records (a wrap marker and its
            // record, a relocated copy and the next record): the device may
            // complete the writes of one msync in any order, and a later
            // record on disk without the earlier one reads as damage in the
            // middle of the log. With Sync, each goes out on its own.
            self.sync_dirty()?;
        }
        let seq = self.ring.next_seq() + u64::from(p.marker.is_some());
        let id = id.unwrap_or(seq);
        let start = (DATA_OFFSET + p.pos) as usize;
        let body = start + record::HEADER_LEN;
        let bytes = self.map.bytes_mut();
        bytes[body..body + payload.len()].copy_from_slice(payload);
        bytes[body + payload.len()..start + len as usize].fill(0);
        seal_record(&mut bytes[start..], TYPE_DATA, seq, id, payload.len());
        self.dirty.add(start, len as usize);
        let pushed = self.ring.push(p, len, payload.len() as u16, Some(id));
        debug_assert_eq!(pushed, seq);
        self.chain_unsynced = true;
        // Zero the header-sized stretch at the new head (placement kept it
        // free): a clean end of the log reads as zeroes, so recovery can
        // tell stale or damaged bytes from the end of the log.
        let end = (DATA_OFFSET + p.new_head) as usize;
        let bytes = self.map.bytes_mut();
        if bytes[end..end + record::HEADER_LEN].iter().any(|&b| b != 0) {
            bytes[end..end + record::HEADER_LEN].fill(0);
            self.dirty.add(end, record::HEADER_LEN);
        }
        Ok(id)
    }

    /// Makes sure a record of `len` bytes fits and leaves the relocation
    /// reserve free, by reclaiming dead space behind the tail and, where a
    /// live record pins the tail in front of holes, copying it to the head.
    fn make_room(&mut self, len: u64) -> Result<()> {
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
                _ => return Err(self.full_error(len)),
            };
            budget -= 1;
            self.relocate(front)?;
        }
    }

    fn relocate(&mut self, front: Slot) -> Result<()> {
        let mut payload = std::mem::take(&mut self.scratch);
        let result = self
            .read_slot(front, &mut payload)
            .and_then(|()| self.write_at_head(&payload, Some(front.id)));
        self.scratch = payload;
        result.map(|_| ())
    }

    /// The payload of a live slot, checked again against its CRC.
    fn payload(&self, slot: Slot) -> Result<&[u8]> {
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

    fn read_slot(&self, slot: Slot, out: &mut Vec<u8>) -> Result<()> {
        let payload = self.payload(slot)?;
        out.clear();
        out.extend_from_slice(payload);
        Ok(())
    }

    fn live_records(&self) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::with_capacity(self.ring.live_count() as usize);
        for slot in self.ring.live_in_id_order() {
            let mut payload = Vec::new();
            self.read_slot(slot, &mut payload)?;
            out.push((slot.id, payload));
        }
        Ok(out)
    }

    fn missing(&self, id: u64) -> Error {
        Error::state(format!("{}: no pending record {id}", self.path().display()))
    }
}

impl Journal {
    /// Stops counting record `id` as live without writing anything: for a
    /// caller whose recovery tells the newest record from older ones by
    /// itself (the client store keeps the highest id per name). The record
    /// stays readable to recovery until its space is reused.
    pub fn forget(&mut self, id: u64) -> Result<()> {
        if self.ring.remove(id) {
            Ok(())
        } else {
            Err(self.missing(id))
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Batch promises a sync within its limits, checked on each call; an
        // idle store that is closed would otherwise never get it.
        if matches!(self.policy.durability(), Durability::Batch { .. }) && !self.dirty.is_empty() {
            let _ = RecordLog::flush(self);
        }
    }
}

impl RecordLog for Journal {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::invalid(format!(
                "record of {} bytes exceeds the journal limit of {MAX_PAYLOAD_LEN}",
                payload.len()
            )));
        }
        let len = record_len(payload.len());
        // One record of slack: a Replacing raise writes the new instance
        // before removing the old one (see `RecordLog::barrier`); the ring's
        // spare room (`data_size_for`) accounts for it.
        if self.ring.live_bytes() + len > self.config.capacity + MAX_RECORD_LEN {
            return Err(self.full_error(len));
        }
        self.make_room(len)?;
        self.write_at_head(payload, None)
    }

    fn remove(&mut self, id: u64, why: Removal) -> Result<()> {
        let (_, slot) = self.ring.find(id).ok_or_else(|| self.missing(id))?;
        let state = match why {
            Removal::Acknowledged => STATE_ACKED,
            Removal::Superseded => STATE_SUPERSEDED,
            Removal::Dropped => STATE_DROPPED,
            Removal::Invalidated => STATE_INVALIDATED,
        };
        let at = (DATA_OFFSET + slot.pos) as usize + record::STATE;
        if self.removals_wait {
            // Behind a Batch barrier: written once the records before it are
            // on the device (see `barrier`).
            self.waiting_removals.push((at, state));
        } else {
            self.map.bytes_mut()[at] = state;
            self.dirty.add(at, 1);
        }
        self.ring.remove(id);
        Ok(())
    }

    fn read(&mut self, id: u64, out: &mut Vec<u8>) -> Result<()> {
        let (_, slot) = self.ring.find(id).ok_or_else(|| self.missing(id))?;
        self.read_slot(slot, out)
    }

    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        // Recovery checked every record's CRC moments ago (and records
        // written since were written by us), so the scan that loads the
        // store hands out the payloads as the ring knows them, without
        // reading the record headers again; `read` checks the CRC.
        let data = self.data();
        let mut result = Ok(());
        self.ring.for_each_live(|slot| {
            if result.is_err() {
                return;
            }
            let start = slot.pos as usize + record::HEADER_LEN;
            result = match data.get(start..start + usize::from(slot.payload)) {
                Some(payload) => visit(slot.id, payload),
                None => self
                    .payload(slot)
                    .and_then(|payload| visit(slot.id, payload)),
            };
        });
        result
    }

    /// Sync: syncs now. Batch: removals from here on wait, in memory, for
    /// the next sync (at the batch boundary), and are written right after
    /// it, so a power cut can never keep a removal and lose the record
    /// written before it, and a Replacing raise or a full store does not
    /// cost a sync each. None: nothing to order.
    fn barrier(&mut self) -> Result<()> {
        match self.policy.durability() {
            Durability::Sync => self.sync_if_ordered(),
            Durability::Batch { .. } => {
                self.removals_wait |= !self.dirty.is_empty();
                Ok(())
            }
            Durability::None => Ok(()),
        }
    }

    fn commit(&mut self) -> Result<()> {
        if !self.dirty.is_empty() && self.policy.operation_done() {
            self.sync_dirty()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.sync_dirty()?;
        // Removals that waited for that sync are written now: sync them too.
        if !self.dirty.is_empty() {
            self.sync_dirty()?;
        }
        Ok(())
    }

    fn clear(&mut self) -> Result<()> {
        self.ring.clear();
        self.persist_tail()
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        Ok(self.meta.clone())
    }

    fn set_metadata(&mut self, meta: &[u8]) -> Result<()> {
        if meta.len() > MAX_META_LEN {
            return Err(Error::invalid(format!(
                "metadata of {} bytes exceeds {MAX_META_LEN}",
                meta.len()
            )));
        }
        self.meta = meta.to_vec();
        // Into both slots, one after the other: if the newer slot is later
        // damaged, the older one still carries the metadata.
        self.write_header();
        self.sync_if_ordered()?;
        self.write_header();
        self.sync_if_ordered()
    }
}

/// Where the journal of a service lives: `softnet.service.persistence_<uid>.ssp`.
pub fn service_journal_path(dir: &Path, service_uid: Uuid) -> PathBuf {
    dir.join(format!(
        "softnet.service.persistence_{}.ssp",
        service_uid.hyphenated()
    ))
}

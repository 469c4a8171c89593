//! The [`Journal`]: a [`RecordLog`] in a journal file. Opening, recovery and
//! salvage are in `open.rs` and `salvage.rs`, the writing itself in
//! `write.rs`.
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
//!   under a temporary name and renaming it into place;
//! - every record carries how far its sequence number is above the lowest
//!   one not yet known durable (0 when all before it are durable), so that
//!   recovery can tell a sync a power cut tore from damage to a durable
//!   record; the end-of-operation sync of `Durability::Sync` is handed to
//!   the journal's group and made outside the store's lock, shared with
//!   the other threads' operations (`group.rs`); every other sync is made
//!   under the lock and covers what was handed over too.
//!
//! The journal does not count live bytes against a capacity of its own:
//! its user owns the capacity and never appends past it (docs/ARCHITECTURE.md,
//! "One owner per concept"). The ring is sized for that capacity plus the
//! room it needs to move records (`format::data_size_for`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use crate::backend::{RecordLog, Removal};
use crate::error::{Error, Result};
use crate::journal::device::{Device, SharedLayer};
use crate::journal::durability::{Dirty, Durability, SyncPolicy};
use crate::journal::file::LockedFile;
use crate::journal::format::{
    data_size_for, record, record_len, MAX_META_LEN, STATE_ACKED, STATE_DROPPED, STATE_EXPIRED,
    STATE_INVALIDATED, STATE_SUPERSEDED,
};
use crate::journal::group::{Freed, Group, SyncTicket};
use crate::journal::prefault::Prefault;
use crate::journal::ring::Ring;

/// What a journal is for and how it behaves: given by its user.
#[derive(Clone)]
pub(crate) struct JournalConfig {
    /// What kind of file it is, for messages ("service journal").
    pub kind: &'static str,
    /// File magic (what kind of journal).
    pub magic: [u8; 8],
    /// The owner uid written in the header; a file with another owner is
    /// foreign.
    pub owner: Uuid,
    /// Bytes of live records the ring must hold (the user's capacity).
    pub capacity: u64,
    /// When writes are forced to the device.
    pub durability: Durability,
    /// Wraps the device of every file the journal maps.
    pub device_layer: Option<SharedLayer>,
}

/// A level-2 record log in a journal file. See the module docs.
pub(crate) struct Journal {
    pub(super) file: LockedFile,
    pub(super) device: Box<dyn Device>,
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
    /// The fork generation the journal was opened in: in a forked child it
    /// is the parent's, and the child never writes it (`fork.rs`).
    pub(super) fork_generation: u64,
    /// Records found damaged while moving them, dropped; the store learns
    /// of them through `take_lost`.
    pub(super) lost: Vec<u64>,
    /// Ring bytes placed since the header was last written (its head hint
    /// is that far behind; see `write.rs`, `HINT_EVERY`).
    pub(super) since_header: u64,
    /// The syncs shared with other threads, and the durable watermark.
    pub(super) group: Arc<Group>,
    /// The ticket of the last sync handed to the group and not yet taken
    /// by the store (`take_ticket`).
    pub(super) ticket: Option<u64>,
    /// Room freed by removals not yet known durable (see `Freed`).
    pub(super) freed: Freed,
    /// Pages prepared ahead of the head (`prefault.rs`): `None` and
    /// `Batch` with a device that can (the map).
    pub(super) prefault: Option<Prefault>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path())
            .field("capacity", &self.config.capacity)
            .field("live_count", &self.ring.live_count())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Whether `take_lost` has anything to hand over (asked after every
    /// call, without a call through the trait).
    pub(crate) fn has_lost(&self) -> bool {
        !self.lost.is_empty()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The capacity the ring is sized for.
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

    /// Rewrites the file for a new capacity if it differs. The live records
    /// must fit: the user drops what does not before calling this.
    pub fn resize(&mut self, capacity: u64) -> Result<()> {
        if capacity == self.config.capacity && self.ring.size() == data_size_for(capacity) {
            return Ok(());
        }
        self.rewrite(capacity, &[])
    }

    /// Writes a new file for `capacity` holding every live record but those
    /// in `skip`, and replaces this one with it atomically: until the new
    /// file is durable under the journal's name, the old one is intact. On
    /// an error (a full disk) nothing changed.
    pub fn rewrite(&mut self, capacity: u64, skip: &[u64]) -> Result<()> {
        crate::journal::format::check_capacity(self.path(), capacity, usize::BITS)?;
        let skip: std::collections::HashSet<u64> = skip.iter().copied().collect();
        let mut records = self.live_records()?;
        records.retain(|(id, _)| !skip.contains(id));
        let kept: u64 = records.iter().map(|(_, p)| record_len(p.len())).sum();
        if kept > capacity {
            return Err(Error::invalid(format!(
                "{}: {kept} bytes of records do not fit in a capacity of {capacity}",
                self.path().display(),
            )));
        }
        let mut config = self.config.clone();
        config.capacity = capacity;
        let path = self.path().to_path_buf();
        let next = self.ring.next_seq();
        let rebuilt = Journal::rebuild(&path, &config, next, &self.meta.clone(), &records)?;
        let lost = std::mem::take(&mut self.lost);
        *self = rebuilt;
        self.lost = lost;
        Ok(())
    }

    /// Rewrites the file with its live records numbered from 1 (ids and
    /// sequence numbers), keeping their order.
    pub(super) fn renumber(&mut self) -> Result<()> {
        let records: Vec<(u64, Vec<u8>)> = self
            .live_records()?
            .into_iter()
            .zip(1..)
            .map(|((_, payload), id)| (id, payload))
            .collect();
        let path = self.path().to_path_buf();
        let rebuilt = Journal::rebuild(&path, &self.config, 1, &self.meta.clone(), &records)?;
        let lost = std::mem::take(&mut self.lost);
        *self = rebuilt;
        self.lost = lost;
        Ok(())
    }

    /// Stops counting record `id` as live without writing anything: for a
    /// user whose recovery tells the newest record from older ones by
    /// itself (the client file keeps the highest id per name). The record
    /// stays readable to recovery until its space is reused.
    pub fn forget(&mut self, id: u64) -> Result<()> {
        if self.ring.remove(id) {
            Ok(())
        } else {
            Err(self.missing(id))
        }
    }

    /// The ticket of the sync the last operations handed over, if any: the
    /// store waits on it once its lock is released (`shell.rs`).
    pub fn take_ticket(&mut self) -> Option<SyncTicket> {
        let number = self.ticket.take()?;
        Some(SyncTicket {
            group: Arc::clone(&self.group),
            number,
        })
    }

    /// Whether `ticket` is one of this journal's (not of one it replaced).
    pub fn owns(&self, ticket: &SyncTicket) -> bool {
        ticket.is_of(&self.group)
    }

    /// Sync: hand the end-of-operation sync to the group, to be made
    /// outside the lock, when the device can sync concurrently.
    fn hands_over(&self) -> bool {
        self.policy.durability() == Durability::Sync && self.group.concurrent()
    }

    /// Before appending `len` bytes: if the live records, this one and the
    /// records removed in syncs still running would not fit the capacity,
    /// the record needs room those removals freed, and they are made
    /// durable first, under the lock (see `Freed`).
    pub(super) fn settle_freed(&mut self, len: u64) -> Result<()> {
        let in_flight = self.freed.in_flight(&self.group);
        if in_flight > 0 && self.ring.live_bytes() + len + in_flight > self.config.capacity {
            self.sync_dirty()?;
        }
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if crate::journal::fork::generation() != self.fork_generation {
            // A forked child's copy of the parent's journal: not ours.
            return;
        }
        // Batch promises a sync within its limits, checked on each call; an
        // idle store that is closed would otherwise never get it.
        if matches!(self.policy.durability(), Durability::Batch { .. }) && !self.dirty.is_empty() {
            let _ = RecordLog::flush(self);
        }
        // No waiter is left on a sync of this file: its records are in the
        // file that replaces it, or were moved by a fallback, or the store
        // is closed (a close flushes first).
        self.group.retire();
    }
}

/// The state byte a removal writes.
fn removed_state(why: Removal) -> u8 {
    match why {
        Removal::Acknowledged => STATE_ACKED,
        Removal::Superseded => STATE_SUPERSEDED,
        Removal::Dropped => STATE_DROPPED,
        Removal::Invalidated => STATE_INVALIDATED,
        Removal::Expired => STATE_EXPIRED,
    }
}

impl RecordLog for Journal {
    fn append(&mut self, payload: &[u8]) -> Result<u64> {
        self.append_with(payload.len(), |bytes| bytes.copy_from_slice(payload))
    }

    fn remove(&mut self, id: u64, why: Removal) -> Result<()> {
        let (_, slot) = self.ring.find(id).ok_or_else(|| self.missing(id))?;
        let at = self.data_offset(slot.pos) + record::STATE;
        let state = removed_state(why);
        if self.removals_wait {
            // Behind a Batch barrier: written once the records before it are
            // on the device (see `barrier`).
            self.waiting_removals.push((at, state));
        } else {
            self.device.bytes_mut()[at] = state;
            self.dirty.add(at, 1);
        }
        if self.hands_over() {
            self.freed.removed(u64::from(slot.len));
        }
        self.ring.remove(id);
        self.device
            .check()
            .map_err(|e| Error::io("remove a record from", self.path(), e))
    }

    fn read(&mut self, id: u64, out: &mut Vec<u8>) -> Result<()> {
        let (_, slot) = self.ring.find(id).ok_or_else(|| self.missing(id))?;
        // After a fault the fallback reads what is left through here: a
        // record that passes its checksum was read whole (a lost page reads
        // as zeros), so only a fault during this read, or a failed read,
        // is an error of the device.
        let faulted_before = self.device.check().is_err();
        let result = self.read_slot(slot, out);
        match self.device.check() {
            Err(e) if !faulted_before || result.is_err() => Err(Error::io("read", self.path(), e)),
            _ => result,
        }
    }

    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        // Recovery checked every record's CRC moments ago (and records
        // written since were written by us), so the scan that loads the
        // store hands out the payloads as the ring knows them, without
        // reading the record headers again; `read` checks the CRC.
        let data = self.data();
        let result = self.ring.try_for_each_live(|slot| {
            let start = slot.pos as usize + record::HEADER_LEN;
            match data.get(start..start + usize::from(slot.payload)) {
                Some(payload) => visit(slot.id, payload),
                None => self
                    .payload(slot)
                    .and_then(|payload| visit(slot.id, payload)),
            }
        });
        self.device
            .check()
            .map_err(|e| Error::io("scan", self.path(), e))?;
        result
    }

    /// Sync: syncs now. Batch: removals from here on wait, in memory, for
    /// the next sync (at the batch boundary), and are written right after
    /// it, so a power cut can never keep a removal and lose the record
    /// written before it, and a Replacing raise or a full store does not
    /// cost a sync each. None: nothing to order.
    fn barrier(&mut self) -> Result<()> {
        let result = match self.policy.durability() {
            Durability::Sync => self.sync_if_ordered(),
            Durability::Batch { .. } => {
                self.removals_wait |= !self.dirty.is_empty();
                Ok(())
            }
            Durability::None => Ok(()),
        };
        self.device
            .check()
            .map_err(|e| Error::io("sync", self.path(), e))?;
        result
    }

    /// Sync: the operation's writes go to the group, to be synced once the
    /// store's lock is released (with those of other threads), if the
    /// device can; otherwise, and for Batch, synced here.
    fn commit(&mut self) -> Result<()> {
        if !self.dirty.is_empty() && self.policy.operation_done() {
            if self.hands_over() {
                self.hand_over();
            } else {
                self.sync_dirty()?;
            }
        }
        self.device
            .check()
            .map_err(|e| Error::io("commit", self.path(), e))
    }

    fn flush(&mut self) -> Result<()> {
        self.sync_dirty()?;
        // Removals that waited for that sync are written now: sync them too.
        if !self.dirty.is_empty() {
            self.sync_dirty()?;
        }
        self.device
            .check()
            .map_err(|e| Error::io("flush", self.path(), e))
    }

    fn clear(&mut self) -> Result<()> {
        self.ring.clear();
        let result = self.persist_tail();
        self.device
            .check()
            .map_err(|e| Error::io("clear", self.path(), e))?;
        result
    }

    fn take_lost(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.lost)
    }

    fn metadata(&mut self) -> Result<Vec<u8>> {
        self.device
            .check()
            .map_err(|e| Error::io("read the metadata of", self.path(), e))?;
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
        let result = self.sync_if_ordered().and_then(|()| {
            self.write_header();
            self.sync_if_ordered()
        });
        self.device
            .check()
            .map_err(|e| Error::io("write the metadata of", self.path(), e))?;
        result
    }
}

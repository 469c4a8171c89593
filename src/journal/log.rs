//! The journal: a [`RecordLog`] in a preallocated, memory-mapped, locked,
//! checksummed ring file.
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
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{
    self, data_size_for, decode_record, record, record_len, seal_record, Header, DATA_OFFSET,
    MAX_META_LEN, MAX_PAYLOAD_LEN, MAX_RECORD_LEN, SLOT_LEN, SLOT_OFFSETS, STATE_ACKED,
    STATE_DROPPED, STATE_INVALIDATED, STATE_LIVE, STATE_SUPERSEDED, TYPE_DATA, TYPE_WRAP, VERSION,
};
use crate::journal::mmap::MappedFile;
use crate::journal::recovery::{recover, End, Recovered};
use crate::journal::ring::{room_between, Placement, Ring, Slot};
use crate::report::{Failure, FailureKind};
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
struct Dirty {
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
    file: LockedFile,
    map: MappedFile,
    config: JournalConfig,
    generation: u64,
    meta: Vec<u8>,
    /// Where the header currently says recovery starts.
    persisted_tail: (u64, u64),
    ring: Ring,
    dirty: Dirty,
    policy: SyncPolicy,
    scratch: Vec<u8>,
}

impl Journal {
    /// Opens the journal at `path`, creating it if absent, recovering and if
    /// needed salvaging it. The reports say what recovery found (a damaged
    /// file set aside, an interrupted write discarded).
    ///
    /// An existing file keeps its own capacity; see [`Journal::resize`].
    pub fn open(path: &Path, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        if config.capacity == 0 || config.capacity > 1 << 40 {
            return Err(Error::invalid(format!(
                "journal capacity {} is out of range",
                config.capacity
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Error::Io {
                    context: format!(
                        "the directory {} does not exist or is not a directory",
                        dir.display()
                    ),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "create it, or choose an existing directory",
                    ),
                });
            }
        }
        file::remove_stale_temps(path);
        for _ in 0..4 {
            if let Some(existing) = file::open_locked(path)? {
                return Journal::open_existing(existing, config);
            }
            let temp = file::create_temp(path)?;
            let mut journal = Journal::format(temp, config, config.capacity, 1, &[])?;
            journal.sync_dirty()?;
            if file::publish_new(&mut journal.file, path)? {
                return Ok((journal, Vec::new()));
            }
        }
        Err(Error::Locked {
            path: path.to_path_buf(),
        })
    }

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

    // ----- creation, recovery, salvage -------------------------------

    /// Lays out an empty journal in the fresh file `file`.
    fn format(
        file: LockedFile,
        config: &JournalConfig,
        capacity: u64,
        first_seq: u64,
        meta: &[u8],
    ) -> Result<Journal> {
        let data_size = data_size_for(capacity);
        let total = DATA_OFFSET + data_size;
        file.preallocate(total)?;
        let map = map_file(&file, total)?;
        let mut config = config.clone();
        config.capacity = capacity;
        let mut journal = Journal {
            map,
            policy: SyncPolicy::new(config.durability),
            config,
            generation: 0,
            meta: meta.to_vec(),
            persisted_tail: (0, first_seq),
            ring: Ring::new(data_size, 0, first_seq),
            dirty: Dirty::default(),
            scratch: Vec::new(),
            file,
        };
        journal.write_header();
        Ok(journal)
    }

    /// Writes a complete new journal holding `records` (id, payload) under
    /// a temporary name and renames it over `path`.
    fn rebuild(
        path: &Path,
        config: &JournalConfig,
        first_seq: u64,
        meta: &[u8],
        records: &[(u64, Vec<u8>)],
    ) -> Result<Journal> {
        let temp = file::create_temp(path)?;
        let mut journal = Journal::format(temp, config, config.capacity, first_seq, meta)?;
        for (id, payload) in records {
            journal.write_at_head(payload, Some(*id))?;
        }
        journal.sync_dirty()?;
        file::publish_replacement(&mut journal.file, path)?;
        Ok(journal)
    }

    fn open_existing(file: LockedFile, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let len = file.len()?;
        let mut page = vec![0u8; DATA_OFFSET as usize];
        let readable = read_prefix(&file, &mut page)?;
        let header = match choose_header(&page[..readable]) {
            Ok(h) => h,
            Err(why) => return Journal::replace_foreign(file, config, &why, len),
        };
        if header.magic != config.magic {
            let why = format!(
                "it is not a {} (its magic is {:?})",
                describe_magic(&config.magic),
                String::from_utf8_lossy(&header.magic)
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        if header.version != VERSION {
            let why = format!(
                "it has format version {}, this library reads version {VERSION}",
                header.version
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        if header.owner != config.owner {
            let why = format!(
                "its owner uid is {}, not {} (another service or client wrote it)",
                header.owner, config.owner
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        let wanted = DATA_OFFSET + header.data_size;
        let map = map_file(&file, wanted.min(len))?;
        let data = map.bytes().get(DATA_OFFSET as usize..).unwrap_or_default();
        let recovered = recover(data, header.data_size, header.tail_pos, header.tail_seq);
        if recovered.needs_salvage() {
            let live = collect_live(data, header.data_size, &recovered.ring);
            drop(map);
            return Journal::salvage(file, config, &header, &recovered, live);
        }
        let mut reports = Vec::new();
        if let End::Interrupted { pos } = recovered.end {
            reports.push(Failure {
                kind: FailureKind::InterruptedWrite,
                message: format!(
                    "{}: discarded a partial record at data offset {pos}, left by a write \
                     that was interrupted (crash or power cut) before it completed; no \
                     stored event was lost",
                    path.display()
                ),
                events_lost: 0,
            });
        }
        let mut config = config.clone();
        // The file's own capacity. Live bytes may exceed it for a moment
        // (a crash between writing a record and retiring the one it
        // replaces); the owner settles that before appending anything.
        config.capacity = header.capacity;
        let journal = Journal {
            map,
            policy: SyncPolicy::new(config.durability),
            config,
            generation: header.generation,
            meta: header.meta,
            persisted_tail: (header.tail_pos, header.tail_seq),
            ring: recovered.ring,
            dirty: Dirty::default(),
            scratch: Vec::new(),
            file,
        };
        Ok((journal, reports))
    }

    /// Sets a damaged file aside and rewrites it with every intact record
    /// that came before the damage.
    fn salvage(
        file: LockedFile,
        config: &JournalConfig,
        header: &Header,
        recovered: &Recovered,
        live: Vec<(u64, Vec<u8>)>,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let mut what = Vec::new();
        let mut lost = 0;
        if let End::Damaged {
            pos, live_beyond, ..
        } = recovered.end
        {
            what.push(format!(
                "a damaged record at data offset {pos} ended the log with {live_beyond} \
                 pending event(s) behind it"
            ));
            lost = live_beyond;
        }
        if recovered.truncated {
            what.push("the file is shorter than its header says (truncated)".to_string());
        }
        if recovered.unknown_states > 0 {
            what.push(format!(
                "{} record(s) had an unreadable state byte and were kept as pending (they \
                 may be delivered twice; the broker drops repeats by uid)",
                recovered.unknown_states
            ));
        }
        let aside = file::set_aside(&path)?;
        let kept_bytes: u64 = live.iter().map(|(_, p)| record_len(p.len())).sum();
        let mut config = config.clone();
        config.capacity = header.capacity.max(kept_bytes).max(1);
        let journal = Journal::rebuild(
            &path,
            &config,
            recovered.next_free_seq(),
            &header.meta,
            &live,
        )?;
        drop(file);
        let report = Failure {
            kind: FailureKind::Corruption,
            message: format!(
                "{}: {}; kept {} intact pending event(s) and continued with a repaired \
                 file; the damaged file is kept as {}",
                path.display(),
                what.join("; "),
                live.len(),
                aside.display()
            ),
            events_lost: lost,
        };
        Ok((journal, vec![report]))
    }

    /// Sets a foreign or unreadable file aside and starts a new, empty one.
    fn replace_foreign(
        file: LockedFile,
        config: &JournalConfig,
        why: &str,
        len: u64,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let lost = count_live_looking_records(&file, len);
        let aside = file::set_aside(&path)?;
        let temp = file::create_temp(&path)?;
        let mut journal = Journal::format(temp, config, config.capacity, 1, &[])?;
        journal.sync_dirty()?;
        file::publish_replacement(&mut journal.file, &path)?;
        drop(file);
        let report = Failure {
            kind: FailureKind::Corruption,
            message: format!(
                "{} could not be used because {why}; it was kept as {} and a new, empty \
                 journal was started ({lost} live record(s) in it are lost)",
                path.display(),
                aside.display()
            ),
            events_lost: lost,
        };
        Ok((journal, vec![report]))
    }

    // ----- writing ----------------------------------------------------

    fn data(&self) -> &[u8] {
        self.map
            .bytes()
            .get(DATA_OFFSET as usize..)
            .unwrap_or_default()
    }

    fn write_header(&mut self) {
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

    fn sync_dirty(&mut self) -> Result<()> {
        if let Some((start, end)) = self.dirty.span.take() {
            self.map
                .sync(start, end - start)
                .map_err(|e| Error::io("sync", self.file.path(), e))?;
        }
        self.policy.synced();
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
    fn write_at_head(&mut self, payload: &[u8], id: Option<u64>) -> Result<u64> {
        let len = record_len(payload.len());
        let p = self.placement(len)?;
        if let Some(at) = p.marker {
            let seq = self.ring.next_seq();
            let start = (DATA_OFFSET + at) as usize;
            let bytes = self.map.bytes_mut();
            seal_record(&mut bytes[start..], TYPE_WRAP, seq, 0, 0);
            self.dirty.add(start, record::HEADER_LEN);
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
        let pushed = self.ring.push(p, len, Some(id));
        debug_assert_eq!(pushed, seq);
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
            let _ = self.sync_dirty();
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
        self.map.bytes_mut()[at] = state;
        self.dirty.add(at, 1);
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
        // store takes the payloads as they are; `read` checks again.
        let data = self.data();
        let mut result = Ok(());
        self.ring.for_each_live(|slot| {
            if result.is_err() {
                return;
            }
            let start = (slot.pos as usize) + record::HEADER_LEN;
            let len =
                format::get_u32(data, slot.pos as usize + record::LEN).unwrap_or(u32::MAX) as usize;
            result = match data.get(start..start.saturating_add(len)) {
                Some(payload) if len + record::HEADER_LEN <= slot.len as usize => {
                    visit(slot.id, payload)
                }
                // Not even the length checks out: the checked path says why.
                _ => self
                    .payload(slot)
                    .and_then(|payload| visit(slot.id, payload)),
            };
        });
        result
    }

    fn barrier(&mut self) -> Result<()> {
        self.sync_if_ordered()
    }

    fn commit(&mut self) -> Result<()> {
        if !self.dirty.is_empty() && self.policy.operation_done() {
            self.sync_dirty()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.sync_dirty()
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

/// What kind of file a magic stands for, for messages.
fn describe_magic(magic: &[u8; 8]) -> &'static str {
    match magic {
        m if *m == format::SERVICE_MAGIC => "softnet service journal",
        m if *m == format::CLIENT_MAGIC => "softnet client persistence file",
        _ => "softnet journal of the expected kind",
    }
}

fn map_file(file: &LockedFile, len: u64) -> Result<MappedFile> {
    let len = usize::try_from(len).map_err(|_| Error::invalid("journal too large to map"))?;
    MappedFile::map(file, len).map_err(|e| Error::io("map", file.path(), e))
}

/// Reads up to `buf.len()` bytes from the start of the file.
fn read_prefix(file: &LockedFile, buf: &mut [u8]) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.file().read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", file.path(), e)),
        }
    }
    Ok(done)
}

/// The valid header slot with the higher generation, or why there is none.
fn choose_header(page: &[u8]) -> std::result::Result<Header, String> {
    let slots: Vec<_> = SLOT_OFFSETS
        .iter()
        .map(|&at| Header::decode(page.get(at..).unwrap_or_default()))
        .collect();
    let best = slots
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .max_by_key(|h| h.generation)
        .cloned();
    match best {
        Some(h) => Ok(h),
        None if page.len() < SLOT_OFFSETS[1] + SLOT_LEN => Err(format!(
            "it is too short ({} bytes) to hold a journal header",
            page.len()
        )),
        None if slots.iter().all(|s| *s == Err(format::SlotError::Blank)) => {
            Err("its header is blank (it was never completely written)".to_string())
        }
        None => Err("neither header slot passes its checksum".to_string()),
    }
}

fn collect_live(data: &[u8], ring_size: u64, ring: &Ring) -> Vec<(u64, Vec<u8>)> {
    ring.live_in_id_order()
        .into_iter()
        .filter_map(|slot| {
            decode_record(data, slot.pos, ring_size).map(|(_, payload)| (slot.id, payload.to_vec()))
        })
        .collect()
}

/// Counts records in an unusable file that pass their checksum and say
/// they are live: what the report calls lost.
fn count_live_looking_records(file: &LockedFile, len: u64) -> u64 {
    if len <= DATA_OFFSET {
        return 0;
    }
    let Ok(map) = map_file(file, len) else {
        return 0;
    };
    let data = &map.bytes()[DATA_OFFSET as usize..];
    let size = data.len() as u64;
    let mut pos = 0u64;
    let mut count = 0;
    while pos + record::HEADER_LEN as u64 <= size {
        match decode_record(data, pos, size) {
            Some((h, _)) => {
                if h.kind == TYPE_DATA && h.state == STATE_LIVE {
                    count += 1;
                }
                pos += h.record_len();
            }
            None => pos += 8,
        }
    }
    count
}

/// Where the journal of a service lives: `softnet.service.persistence_<uid>.ssp`.
pub fn service_journal_path(dir: &Path, service_uid: Uuid) -> PathBuf {
    dir.join(format!(
        "softnet.service.persistence_{}.ssp",
        service_uid.hyphenated()
    ))
}

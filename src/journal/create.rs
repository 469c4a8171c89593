//! Laying out new journal files: an empty one, or one rebuilt from the
//! records of another (resize, salvage). A new file is written complete
//! under a temporary name before it is published.

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::journal::device::{layered, Device};
use crate::journal::durability::{Dirty, Durability, SyncPolicy};
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{data_size_for, DATA_OFFSET};
use crate::journal::group::Group;
use crate::journal::log::{Journal, JournalConfig};
use crate::journal::mmap::MappedFile;
use crate::journal::prefault::Prefault;
use crate::journal::ring::Ring;

impl Journal {
    /// A journal over a mapped file whose header is at `generation` with
    /// `meta`, and whose ring is `ring` (its tail is where the header's tail
    /// says, for a new file; the caller sets it otherwise). Nothing is
    /// written or pending yet.
    pub(super) fn assemble(
        file: LockedFile,
        device: Box<dyn Device>,
        config: JournalConfig,
        generation: u64,
        meta: Vec<u8>,
        ring: Ring,
    ) -> Journal {
        // What the file holds now is what the next record is measured
        // against: a record of it that never reached the device is not
        // known to the new writer, and claiming it durable only makes
        // recovery count its damage as corruption (the safe side).
        let syncer = device.syncer();
        let prefault = match (config.durability, &syncer) {
            (Durability::None | Durability::Batch { .. }, Some(syncer)) => {
                Some(Prefault::new(Arc::clone(syncer)))
            }
            _ => None,
        };
        let group = Group::new(syncer, ring.next_seq());
        Journal {
            group,
            prefault,
            ticket: None,
            freed: Default::default(),
            device,
            policy: SyncPolicy::new(config.durability),
            config,
            generation,
            meta,
            persisted_tail: ring.tail(),
            ring,
            dirty: Dirty::default(),
            chain_unsynced: false,
            removals_wait: false,
            waiting_removals: Vec::new(),
            scratch: Vec::new(),
            fork_generation: crate::journal::fork::generation(),
            lost: Vec::new(),
            since_header: 0,
            file,
        }
    }

    /// Lays out an empty journal in the fresh file `file`.
    pub(super) fn format(
        file: LockedFile,
        config: &JournalConfig,
        capacity: u64,
        first_seq: u64,
        meta: &[u8],
    ) -> Result<Journal> {
        let data_size = data_size_for(capacity);
        let total = DATA_OFFSET + data_size;
        file.preallocate(total)?;
        let device = map_file(&file, total, config)?;
        let mut config = config.clone();
        config.capacity = capacity;
        let ring = Ring::new(data_size, 0, first_seq);
        let mut journal = Journal::assemble(file, device, config, 0, meta.to_vec(), ring);
        // Both slots, before the file is published: a file never exists
        // with one slot valid and the other blank.
        journal.write_header();
        journal.write_header();
        Ok(journal)
    }

    /// Writes a complete new journal holding `records` (id, payload) under
    /// a temporary name and renames it over `path`.
    pub(super) fn rebuild(
        path: &Path,
        config: &JournalConfig,
        first_seq: u64,
        meta: &[u8],
        records: &[(u64, Vec<u8>)],
    ) -> Result<Journal> {
        let mut journal = Journal::build(path, config, first_seq, meta, records)?;
        file::publish_replacement(&mut journal.file, path)?;
        Ok(journal)
    }

    /// Writes a complete new journal holding `records` under a temporary
    /// name next to `path`, durable, not yet published (dropped, it is
    /// removed).
    pub(super) fn build(
        path: &Path,
        config: &JournalConfig,
        first_seq: u64,
        meta: &[u8],
        records: &[(u64, Vec<u8>)],
    ) -> Result<Journal> {
        let temp = file::create_temp(path)?;
        let mut journal = Journal::format(temp, config, config.capacity, first_seq, meta)?;
        for (id, payload) in records {
            // The file is published only once it is durable as a whole:
            // none of its records is ever seen without those before it, so
            // neither the watermark nor the order of their writes needs a
            // sync between two of them (with `Sync`, one per record made a
            // salvage of 100,000 events take 12 s).
            journal.group.assume_durable(journal.ring.next_seq());
            journal.chain_unsynced = false;
            journal.write_at_head(payload, Some(*id))?;
        }
        // The head hint covers every record: the next open reads no more
        // than the live records.
        journal.write_header();
        journal.sync_dirty()?;
        Ok(journal)
    }
}

/// Maps `len` bytes of `file` and puts the map under the configured layer.
pub(super) fn map_file(
    file: &LockedFile,
    len: u64,
    config: &JournalConfig,
) -> Result<Box<dyn Device>> {
    let map = MappedFile::map_locked(file, len)?;
    Ok(layered(
        config.device_layer.as_ref(),
        file.path(),
        Box::new(map),
    ))
}

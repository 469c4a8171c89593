//! Opening a service store: loading its index from the backend, settling
//! the storage uid, marking what was stored as ancient, and bringing the
//! store back within its capacity.

use uuid::Uuid;

use crate::backend::{stored_size, Removal};
use crate::error::{Error, Result};
use crate::report::FailureKind;
use crate::service::codec;
use crate::service::core::{Core, META_VERSION};
use crate::service::index::{Index, NO_PIPE};

impl Core {
    /// Loads the index from the backend, settles the storage uid, marks
    /// everything loaded as ancient and enforces the capacity.
    pub(super) fn load(&mut self) -> Result<()> {
        let Some(bad) = self.load_index() else {
            return Ok(());
        };
        for id in bad {
            self.discard_corrupt(id, "its length is impossible for an event")?;
        }
        self.load_storage_uid()?;
        match self.backend.file_capacity() {
            Some(written) if written != self.capacity => self.change_capacity(written)?,
            _ => self.settle_capacity()?,
        }
        self.commit()
    }

    /// The journal was written for another capacity than the one asked for
    /// now: it is rewritten for the new one, without the events that no
    /// longer fit (older Replacing instances first, then the oldest). Those
    /// are dropped, and reported, only once the new file is durable. If the
    /// rewrite fails (a full disk), the journal keeps the capacity it has,
    /// nothing is dropped, and the report says so.
    fn change_capacity(&mut self, written: u64) -> Result<()> {
        let wanted = self.capacity;
        let (superseded, dropped) = self.capacity_victims(wanted)?;
        let skip: Vec<u64> = superseded.iter().chain(&dropped).copied().collect();
        if let Err(e) = self.backend.rewrite_journal(wanted, &skip) {
            self.forget_lost();
            self.capacity = written;
            let at = self.backend.describe();
            self.report(
                FailureKind::CapacityUnchanged,
                format!(
                    "{at} was written for a capacity of {written} bytes; rewriting it for the \
                     {wanted} bytes asked for failed ({e}), so it keeps {written} bytes and \
                     nothing was dropped (free disk space and reopen the store to apply the \
                     new capacity)"
                ),
                0,
            );
            return self.settle_capacity();
        }
        self.forget_lost();
        for id in &superseded {
            if self.index.remove(*id).is_some() {
                self.counters.superseded += 1;
            }
        }
        let over = dropped
            .iter()
            .filter(|&&id| self.index.remove(id).is_some())
            .count() as u64;
        self.counters.dropped += over;
        if over > 0 {
            self.report(
                FailureKind::CapacityDrop,
                format!(
                    "the stored events exceeded the new capacity of {wanted} bytes (the journal \
                     was written for {written}): the {over} oldest were dropped, after the \
                     rewritten journal was on the device"
                ),
                over,
            );
        }
        Ok(())
    }

    /// What must go for the pending events to fit `capacity`: older
    /// instances of Replacing events, then the oldest events.
    fn capacity_victims(&mut self, capacity: u64) -> Result<(Vec<u64>, Vec<u64>)> {
        if self.index.used() <= capacity {
            return Ok((Vec::new(), Vec::new()));
        }
        self.ensure_names()?;
        let superseded = self.index.older_replacing_instances();
        let gone: std::collections::HashSet<u64> = superseded.iter().copied().collect();
        let mut used = self.index.used()
            - self
                .index
                .entries()
                .filter(|e| gone.contains(&e.id))
                .map(|e| u64::from(e.size))
                .sum::<u64>();
        let mut dropped = Vec::new();
        for entry in self.index.entries().filter(|e| !gone.contains(&e.id)) {
            if used <= capacity {
                break;
            }
            used -= u64::from(entry.size);
            dropped.push(entry.id);
        }
        Ok((superseded, dropped))
    }

    /// Scans the backend into the index; returns the records whose length
    /// is impossible for an event, or `None` if the scan failed (the store
    /// then fell back to level 1 with nothing pending).
    fn load_index(&mut self) -> Option<Vec<u64>> {
        self.index = Index::default();
        self.index.reserve(self.backend.len_hint());
        let mut bad = Vec::new();
        let mut last = 0u64;
        let mut order_error = None;
        let scanned = {
            let Core { backend, index, .. } = self;
            backend.log().scan(&mut |id, payload| {
                if id <= last {
                    order_error.get_or_insert((last, id));
                    return Ok(());
                }
                last = id;
                if payload.len() < codec::FIXED_LEN || payload.len() > codec::MAX_ENCODED_LEN {
                    bad.push(id);
                }
                index.push(id, stored_size(payload.len()) as u32, NO_PIPE);
                Ok(())
            })
        };
        let scanned = scanned.and_then(|()| match order_error {
            None => Ok(()),
            Some((before, id)) => Err(Error::Backend(format!(
                "scan returned record {id} after {before}: records must come in increasing \
                 sequence order"
            ))),
        });
        if let Err(e) = scanned {
            // The stored events cannot be listed, so none can be moved.
            self.index = Index::default();
            self.fall_back(&Error::Backend(format!(
                "{e}; the events it held could not be read and are lost (how many is unknown)"
            )));
            return None;
        }
        // Everything loaded is ancient, whatever happens next.
        self.index.ancient_max = last;
        Some(bad)
    }

    /// Takes the storage uid from the backend's metadata, or makes one.
    fn load_storage_uid(&mut self) -> Result<()> {
        let meta = self.call(|log| log.metadata())?;
        match meta.as_slice() {
            [META_VERSION, uid @ ..] if uid.len() == 16 => {
                self.storage_uid =
                    Uuid::from_slice(uid).unwrap_or_else(|_| crate::journal::new_uid());
            }
            _ => {
                self.storage_uid = crate::journal::new_uid();
                if self.index.live() > 0 {
                    let at = self.backend.describe();
                    self.report(
                        FailureKind::Corruption,
                        format!(
                            "{at} holds {} pending event(s) but no readable storage uid; a new \
                             one ({}) was made, so the broker will treat those events as \
                             ancient data and they will be invalidated when it remembers another \
                             uid",
                            self.index.live(),
                            self.storage_uid
                        ),
                        0,
                    );
                }
                self.save_storage_uid()?;
            }
        }
        Ok(())
    }

    /// Brings the loaded events within the capacity: older instances of
    /// Replacing events first, then the oldest events.
    fn settle_capacity(&mut self) -> Result<()> {
        if self.index.used() > self.capacity {
            // Over capacity at open: a crash between writing a Replacing
            // instance and removing the one it supersedes leaves both (one
            // record over), or the capacity was lowered. Nothing is in
            // flight after a restart, so older instances go first, as the
            // next raise of their name would do; then the oldest events.
            self.ensure_names()?;
            for id in self.index.older_replacing_instances() {
                if self.remove(id, Removal::Superseded)? {
                    self.counters.superseded += 1;
                }
            }
        }
        let over = self.drop_oldest_until(0)?;
        if over > 0 {
            self.report(
                FailureKind::CapacityDrop,
                format!(
                    "the stored events exceeded the configured capacity of {} bytes at open: \
                     dropped the {over} oldest",
                    self.capacity
                ),
                over,
            );
        }
        Ok(())
    }

    pub(super) fn save_storage_uid(&mut self) -> Result<()> {
        let mut meta = vec![META_VERSION];
        meta.extend_from_slice(self.storage_uid.as_bytes());
        self.call(|log| log.set_metadata(&meta))
    }
}

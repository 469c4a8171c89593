//! Storing events: validation, Replacing collapse, and the capacity (the
//! oldest dropped, or the new one refused).

use crate::backend::{stored_size, Level, Removal};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::report::FailureKind;
use crate::service::codec::{Record, Stamp};
use crate::service::core::level::Backend;
use crate::service::core::Core;
use crate::service::index::Entry;
use crate::service::options::Overflow;

impl Core {
    pub fn raise(
        &mut self,
        kind: EventKind,
        name: &str,
        args: &[u8],
        client_id: Option<i64>,
        stamp: Stamp,
    ) -> Result<()> {
        self.validator.check(kind, name, args, client_id)?;
        let record = Record {
            kind,
            name,
            args,
            client_id,
            stamp,
        };
        let result = self.store(&record);
        self.raise_slack = 0;
        result
    }

    /// Pending instances of a Replacing name that a new raise supersedes:
    /// all but the one in flight, oldest first.
    fn supersede_candidates(&mut self, name: &str) -> Result<Vec<Entry>> {
        self.ensure_names()?;
        let Some(pipe) = self
            .index
            .pipe_of(EventKind::Replacing, name)
            .and_then(|p| self.index.pipe(p))
        else {
            return Ok(Vec::new());
        };
        let cache_flight = pipe.in_flight.and(pipe.ids.front().copied());
        let storage_flight = self.index.storage_in_flight.map(|f| f.0);
        let ids: Vec<u64> = pipe
            .ids
            .iter()
            .copied()
            .filter(|&id| Some(id) != cache_flight && Some(id) != storage_flight)
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.index.get(id))
            .collect())
    }

    /// Drops the oldest pending events until the store is back within its
    /// capacity, and reports the drops. Never drops the newest event (one
    /// record is always smaller than the capacity).
    fn drop_to_capacity(&mut self, name: &str) -> Result<()> {
        let dropped = self.drop_oldest_until(0)?;
        if dropped > 0 {
            self.report(
                FailureKind::CapacityDrop,
                format!(
                    "capacity of {} bytes reached: dropped the {dropped} oldest pending \
                     event(s) to store '{name}'",
                    self.capacity
                ),
                dropped,
            );
        }
        Ok(())
    }

    /// Refuses a record of `size` bytes that does not fit under the
    /// reject-new policy, once `freed` bytes are superseded.
    fn check_room(&mut self, size: u64, freed: u64) -> Result<()> {
        let used = self.index.used();
        if used - freed + size <= self.capacity || self.overflow != Overflow::RejectNew {
            return Ok(());
        }
        self.counters.rejected += 1;
        Err(Error::StorageFull {
            needed: size,
            available: self.capacity.saturating_sub(used),
            capacity: self.capacity,
        })
    }

    /// Appends a record; its id must be above every id the store handed
    /// out (a backend that breaks this is a failed level 2). The journal
    /// has the record written straight into its map; other backends are
    /// handed its bytes.
    fn append(&mut self, record: &Record) -> Result<u64> {
        let direct = match &mut self.backend {
            Backend::Journal(journal) => {
                Some(journal.append_with(record.len(), |bytes| record.write_to(bytes)))
            }
            _ => None,
        };
        let id = match direct {
            Some(result) => self.after_direct(result, |core| core.append_bytes(record))?,
            None => self.append_bytes(record)?,
        };
        if id > self.index.max_id() {
            return Ok(id);
        }
        let broken = Error::Backend(format!(
            "append returned sequence {id}, not above {}",
            self.index.max_id()
        ));
        if self.level() == Level::Memory {
            return Err(broken);
        }
        self.fall_back(&broken);
        self.append_bytes(record)
    }

    /// Appends the record's bytes through the backend's `append`.
    fn append_bytes(&mut self, record: &Record) -> Result<u64> {
        let mut buf = std::mem::take(&mut self.buf);
        record.encode_into(&mut buf);
        let result = self.call(|log| log.append(&buf));
        self.buf = buf;
        result
    }

    /// Stores one event. The new record is written first and made
    /// durable before anything it displaces (superseded instances, the
    /// oldest events when full) is removed, so a crash or power cut in
    /// between leaves both, never neither: the store is then one record over
    /// its capacity until the next raise or open settles it (the journal
    /// sizes its ring for that record).
    fn store(&mut self, record: &Record) -> Result<()> {
        let (kind, name) = (record.kind, record.name);
        let size = stored_size(record.len());
        let candidates = if kind.is_replacing() {
            self.supersede_candidates(name)?
        } else {
            Vec::new()
        };
        let freed: u64 = candidates.iter().map(|e| u64::from(e.size)).sum();
        self.check_room(size, freed)?;
        let id = self.append(record)?;
        let pipe = self.index.intern(kind, name);
        self.index.push(id, size as u32, pipe);
        // Stored: from here until what it displaces is gone, a fallback
        // leaves this much over the capacity for drop_to_capacity below.
        self.raise_slack = size;
        if !candidates.is_empty() || self.index.used() > self.capacity {
            self.call(|log| log.barrier())?;
        }
        for c in &candidates {
            if self.remove(c.id, Removal::Superseded)? {
                self.counters.superseded += 1;
            }
        }
        // Also settles a capacity that a fallback above made smaller.
        self.drop_to_capacity(name)?;
        self.commit()?;
        if self.index.get(id).is_none() {
            // Level 2 died after taking the event and before it could be read
            // back into level 1: the event is still in hand, store it again.
            let again = self.append_bytes(record)?;
            self.index.push(again, size as u32, pipe);
            self.drop_to_capacity(name)?;
        }
        Ok(())
    }
}

//! Reading, removing and indexing pending records: the helpers every
//! operation of the store is built from.

use uuid::Uuid;

use crate::backend::{Level, Removal};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::report::FailureKind;
use crate::service::codec;
use crate::service::core::Core;
use crate::service::options::Mode;

impl Core {
    /// Removes a pending event. `false` if it was no longer pending (a
    /// fallback in between found it unreadable and reported it lost).
    pub(super) fn remove(&mut self, id: u64, why: Removal) -> Result<bool> {
        if self.index.get(id).is_none() {
            return Ok(false);
        }
        self.removing = Some(id);
        let removed = self.call(|log| log.remove(id, why));
        if self.removing.take().is_none() {
            // Level 2 failed during this removal, and the fallback left the
            // record behind: the removal is complete at level 1.
            return Ok(true);
        }
        if removed.is_err() && self.index.get(id).is_none() {
            return Ok(false);
        }
        removed?;
        Ok(self.index.remove(id).is_some())
    }

    /// Drops the oldest pending events until `extra` more bytes fit.
    /// Returns how many were dropped.
    pub(super) fn drop_oldest_until(&mut self, extra: u64) -> Result<u64> {
        let mut dropped = 0;
        while self.index.used() + extra > self.capacity {
            let Some(front) = self.index.front() else {
                break;
            };
            if self.remove(front.id, Removal::Dropped)? {
                self.counters.dropped += 1;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Removes a record that cannot be decoded, and reports it.
    pub(super) fn discard_corrupt(&mut self, id: u64, why: &str) -> Result<()> {
        if !self.remove(id, Removal::Dropped)? {
            return Ok(());
        }
        let at = self.backend.describe();
        self.report(
            FailureKind::Corruption,
            format!("pending record {id} in {at} is unreadable ({why}); it was discarded"),
            1,
        );
        Ok(())
    }

    /// Reads and decodes a pending event; `None` if it was corrupt (then it
    /// is discarded and reported) or lost in a fallback (reported there).
    pub(super) fn load_event(&mut self, id: u64) -> Result<Option<Event>> {
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.read_into(id, &mut buf);
        let decoded = read.map(|found| found.then(|| codec::decode(&buf, id)));
        self.buf = buf;
        match decoded? {
            None => Ok(None),
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(e)) => {
                self.discard_corrupt(id, &e.to_string())?;
                Ok(None)
            }
        }
    }

    /// Reads a pending record into `buf`; `false` if a fallback during the
    /// read found it unreadable (it is then no longer pending).
    ///
    /// A record that fails its checksum (`Error::Format` from the backend)
    /// is skipped and reported, at the level the store runs at; any other
    /// error is a failure of level 2 (as in `call`).
    fn read_into(&mut self, id: u64, buf: &mut Vec<u8>) -> Result<bool> {
        let read = self.log().read(id, buf);
        self.forget_lost();
        let error = match read {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == ErrorKind::Format => {
                self.discard_corrupt(id, &e.to_string())?;
                return Ok(false);
            }
            Err(e) => e,
        };
        if self.level() != Level::Persistent {
            // Not pending any more: a fallback earlier in this operation
            // found it unreadable (and reported it).
            return match self.index.get(id) {
                None => Ok(false),
                Some(_) => Err(error),
            };
        }
        self.fall_back(&error);
        match self.log().read(id, buf) {
            Ok(()) => Ok(true),
            Err(_) if self.index.get(id).is_none() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The uid of a pending event: from the flight record if known.
    pub(super) fn uid_of(&mut self, id: u64, known: Option<Uuid>) -> Result<Option<Uuid>> {
        match known {
            Some(uid) => Ok(Some(uid)),
            None => Ok(self.load_event(id)?.map(|e| e.uid)),
        }
    }

    /// Builds the name index on first need (it is not needed to open the
    /// store and drain it in storage mode).
    pub(super) fn ensure_names(&mut self) -> Result<()> {
        if self.index.names_built() {
            return Ok(());
        }
        self.index.start_names();
        let result = self.assign_names();
        if result.is_err() {
            self.index.drop_names();
        }
        result
    }

    fn assign_names(&mut self) -> Result<()> {
        let ids: Vec<u64> = self.index.entries().map(|e| e.id).collect();
        let mut buf = std::mem::take(&mut self.buf);
        let mut corrupt = Vec::new();
        let mut result = Ok(());
        for id in ids {
            match self.read_into(id, &mut buf) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            match codec::decode_key(&buf) {
                Ok((kind, name)) => {
                    let pipe = self.index.intern(kind, name);
                    self.index.assign(id, pipe);
                }
                Err(e) => corrupt.push((id, e.to_string())),
            }
        }
        self.buf = buf;
        result?;
        for (id, why) in corrupt {
            self.discard_corrupt(id, &why)?;
        }
        Ok(())
    }

    pub(super) fn require_mode(&self, wanted: Mode, op: &str) -> Result<()> {
        if self.mode == wanted {
            return Ok(());
        }
        let hint = match wanted {
            Mode::Storage => {
                "the store is in cache mode (peek() found the backlog drained); use \
                 peek_name/ack_name, or set_storage_mode() after a disconnect"
            }
            Mode::Cache => {
                "the store is in storage mode until peek() finds the backlog drained; use \
                 peek/ack"
            }
        };
        Err(Error::state(format!(
            "{op} is a {wanted} operation: {hint}"
        )))
    }
}

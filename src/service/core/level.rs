//! Levels: which backend holds the records, and falling back from level 2
//! to level 1 when it fails (docs/BEHAVIOUR.md section 5). The level of a
//! store changes here and nowhere else.

use std::path::Path;

use crate::backend::{Level, MemoryLog, RecordLog, Removal};
use crate::error::{Error, Result};
use crate::journal::{Journal, SyncTicket};
use crate::report::FailureKind;
use crate::service::core::Core;

/// The backend of a store, by level.
pub(super) enum Backend {
    /// Level 1.
    Memory(MemoryLog),
    /// Level 2, the journal file.
    Journal(Box<Journal>),
    /// Level 2, user code.
    Custom(Box<dyn RecordLog>),
}

impl Backend {
    pub fn log(&mut self) -> &mut dyn RecordLog {
        match self {
            Backend::Memory(m) => m,
            Backend::Journal(j) => j.as_mut(),
            Backend::Custom(c) => c.as_mut(),
        }
    }

    pub fn level(&self) -> Level {
        match self {
            Backend::Memory(_) => Level::Memory,
            Backend::Journal(_) | Backend::Custom(_) => Level::Persistent,
        }
    }

    /// Where the records are, for messages.
    pub fn describe(&self) -> String {
        match self {
            Backend::Memory(_) => "the level-1 memory store".to_string(),
            Backend::Journal(j) => format!("journal {}", j.path().display()),
            Backend::Custom(_) => "the custom level-2 backend".to_string(),
        }
    }

    pub fn journal_path_ref(&self) -> Option<&Path> {
        match self {
            Backend::Journal(j) => Some(j.path()),
            _ => None,
        }
    }

    /// How many records a scan will visit, when the backend knows (for
    /// sizing the index at once).
    pub fn len_hint(&self) -> usize {
        match self {
            Backend::Journal(j) => usize::try_from(j.live_count()).unwrap_or(0),
            _ => 0,
        }
    }

    /// The capacity the journal file was written with (level 2 on a file).
    pub fn file_capacity(&self) -> Option<u64> {
        match self {
            Backend::Journal(j) => Some(j.capacity()),
            _ => None,
        }
    }

    /// Rewrites the journal file for `capacity`, leaving out the records
    /// in `skip` (see `Journal::rewrite`).
    pub fn rewrite_journal(&mut self, capacity: u64, skip: &[u64]) -> Result<()> {
        match self {
            Backend::Journal(j) => j.rewrite(capacity, skip),
            _ => Ok(()),
        }
    }
}

impl Core {
    /// The backend of the current level.
    pub(super) fn log(&mut self) -> &mut dyn RecordLog {
        self.backend.log()
    }

    /// Makes one backend call. If level 2 fails it, the store falls back to
    /// level 1 (moving what it can read) and makes the same call there, so
    /// an operation never runs twice: it continues where it was, at level 1.
    pub(super) fn call<T>(&mut self, f: impl Fn(&mut dyn RecordLog) -> Result<T>) -> Result<T> {
        let result = match f(self.log()) {
            Err(e) if self.level() == Level::Persistent => {
                self.fall_back(&e);
                f(self.log())
            }
            result => result,
        };
        self.forget_lost();
        result
    }

    /// Ends an operation (`RecordLog::commit`), as [`Core::call`] would;
    /// the journal is called directly rather than through the trait (every
    /// operation ends so).
    pub(super) fn commit(&mut self) -> Result<()> {
        let direct = match &mut self.backend {
            Backend::Journal(journal) => RecordLog::commit(journal.as_mut()),
            _ => return self.call(|log| log.commit()),
        };
        self.after_direct(direct, |core| core.call(|log| log.commit()))
    }

    /// What [`Core::call`] does after a call made on the journal directly:
    /// if it failed, fall back to level 1 and make the call `again` there.
    pub(super) fn after_direct<T>(
        &mut self,
        result: Result<T>,
        again: impl FnOnce(&mut Core) -> Result<T>,
    ) -> Result<T> {
        match result {
            Ok(value) => {
                self.forget_lost();
                Ok(value)
            }
            Err(e) => {
                self.fall_back(&e);
                again(self)
            }
        }
    }

    /// The journal's sync of the call that handed it over (group commit,
    /// `shell.rs`) failed once the call was done: the store falls back as
    /// that call would have, if the ticket's journal is still its level 2.
    pub(super) fn handed_over_sync_failed(&mut self, ticket: &SyncTicket, error: std::io::Error) {
        let Backend::Journal(j) = &self.backend else {
            return;
        };
        if !j.owns(ticket) {
            return;
        }
        let cause = Error::io("sync", j.path(), error);
        self.fall_back(&cause);
    }

    /// Forgets the records the backend dropped as damaged on its own (see
    /// `RecordLog::take_lost`), and reports each.
    pub(super) fn forget_lost(&mut self) {
        match &self.backend {
            Backend::Memory(_) => return,
            Backend::Journal(j) if !j.has_lost() => return,
            _ => {}
        }
        for id in self.log().take_lost() {
            if self.index.remove(id).is_some() {
                let at = self.backend.describe();
                self.report(
                    FailureKind::Corruption,
                    format!(
                        "pending record {id} in {at} failed its checksum when it was moved \
                         (damaged on the medium, or changed by another program); it was \
                         dropped and the store continues at this level"
                    ),
                    1,
                );
            }
        }
    }

    /// Level 2 failed with `cause`: continue at level 1 with the configured
    /// memory capacity and a new storage uid, moving every pending event
    /// that can still be read (oldest dropped if they do not fit), and
    /// report what was lost. The old file stays on disk.
    pub(super) fn fall_back(&mut self, cause: &Error) {
        let what = self.backend.describe();
        let unreadable = self.move_to_memory();
        self.capacity = self.memory_capacity;
        // The broker's duplicate detection for the moved events is tied to
        // the uid they were stored under: remembered for the handshake.
        self.previous_storage_uid = Some(self.storage_uid);
        self.previous_uid_max_id = self.index.max_id();
        self.storage_uid = crate::journal::new_uid();
        // Memory operations cannot fail; the result is checked anyway.
        let _ = self.save_storage_uid();
        let over = self.drop_over_memory_capacity();
        self.report_fallback(&what, cause, unreadable, over);
    }

    /// Replaces the backend with memory holding every pending record that
    /// can still be read, under its id; returns how many could not.
    fn move_to_memory(&mut self) -> u64 {
        let mut old = std::mem::replace(&mut self.backend, Backend::Memory(MemoryLog::new()));
        let mut memory = MemoryLog::numbered_after(self.index.max_id());
        let mut unreadable = Vec::new();
        let mut left_behind = None;
        let mut buf = Vec::new();
        for entry in self.index.entries() {
            if self.removing == Some(entry.id) {
                left_behind = self.removing.take();
                continue;
            }
            let moved = old
                .log()
                .read(entry.id, &mut buf)
                .and_then(|()| memory.insert(entry.id, &buf));
            if moved.is_err() {
                unreadable.push(entry.id);
            }
        }
        drop(old);
        for id in unreadable.iter().chain(&left_behind) {
            self.index.remove(*id);
        }
        self.backend = Backend::Memory(memory);
        unreadable.len() as u64
    }

    /// Drops the oldest moved events beyond the memory capacity; returns
    /// how many. A raise in progress may stand one record over the
    /// capacity; it settles that itself, as capacity drops, once done.
    fn drop_over_memory_capacity(&mut self) -> u64 {
        let mut over = 0u64;
        while self.index.used() > self.capacity + self.raise_slack {
            let Some(front) = self.index.front() else {
                break;
            };
            let _ = self.log().remove(front.id, Removal::Dropped);
            self.index.remove(front.id);
            over += 1;
        }
        over
    }

    /// Reports that `what` failed with `cause` and the store continues at
    /// level 1, with what the move cost.
    pub(super) fn report_fallback(
        &mut self,
        what: &str,
        cause: &Error,
        unreadable: u64,
        over: u64,
    ) {
        let moved = self.index.live();
        let lost = unreadable + over;
        self.report(
            FailureKind::Fallback,
            format!(
                "{what} failed ({cause}); continuing at level 1 (memory, {} bytes) with new \
                 storage uid {}: moved {moved} pending event(s), lost {lost} ({unreadable} \
                 unreadable, {over} beyond the memory capacity); pending events now survive an \
                 outage but not a restart. The file, if any, is left on disk (fix the cause, then \
                 reopen the store to run at level 2 again)",
                self.capacity, self.storage_uid
            ),
            lost,
        );
    }
}

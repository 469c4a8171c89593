//! Levels: which backend holds the records, and falling back from level 2
//! to level 1 when it fails (SPEC section 5).

use std::path::PathBuf;

use uuid::Uuid;

use crate::error::Result;
use crate::journal::Journal;
use crate::report::FailureKind;
use crate::service::backend::{RecordLog, Removal};
use crate::service::core::Core;
use crate::service::memory::MemoryLog;
use crate::service::Level;

/// The backend of a store, by level.
pub(crate) enum Backend {
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

    pub fn journal_path(&self) -> Option<PathBuf> {
        match self {
            Backend::Journal(j) => Some(j.path().to_path_buf()),
            _ => None,
        }
    }

    /// How many records a scan will visit, when the backend knows (for
    /// sizing the index at once).
    pub fn len_hint(&self) -> usize {
        match self {
            Backend::Journal(j) => j.live_count() as usize,
            _ => 0,
        }
    }

    /// Makes the journal file match the configured capacity (the live
    /// records already fit).
    pub fn fit_capacity(&mut self, capacity: u64) -> Result<()> {
        match self {
            Backend::Journal(j) => j.resize(capacity),
            _ => Ok(()),
        }
    }
}

impl Core {
    /// Level 2 failed with `cause`: continue at level 1 with the configured
    /// memory capacity and a new storage uid, moving every pending event
    /// that can still be read (oldest dropped if they do not fit), and
    /// report what was lost. The old file stays on disk.
    pub fn fall_back(&mut self, cause: &crate::Error) {
        let what = self.backend.describe();
        self.fall_back_from(&what, cause);
    }

    /// As [`Core::fall_back`], naming the failed level `what` (the journal
    /// that could not even be opened, say).
    pub fn fall_back_from(&mut self, what: &str, cause: &crate::Error) {
        let mut old = std::mem::replace(&mut self.backend, Backend::Memory(MemoryLog::new()));
        let mut memory = MemoryLog::numbered_after(self.index.max_id());
        let mut unreadable = Vec::new();
        let mut buf = Vec::new();
        for entry in self.index.entries() {
            let moved = old
                .log()
                .read(entry.id, &mut buf)
                .and_then(|()| memory.insert(entry.id, &buf));
            if moved.is_err() {
                unreadable.push(entry.id);
            }
        }
        drop(old);
        for id in &unreadable {
            self.index.remove(*id);
        }
        self.backend = Backend::Memory(memory);
        self.capacity = self.memory_capacity;
        // The broker's duplicate detection for the moved events is tied to
        // the uid they were stored under: remembered for the handshake.
        self.previous_storage_uid = Some(self.storage_uid);
        self.storage_uid = Uuid::new_v4();
        // Memory operations cannot fail; the results are checked anyway.
        let _ = self.save_storage_uid();
        let mut over = 0u64;
        // A raise in progress may stand one record over the capacity; it
        // settles that itself, as capacity drops, once it has finished.
        while self.index.used() > self.capacity + self.raise_slack {
            let Some(front) = self.index.front() else {
                break;
            };
            let _ = self.log().remove(front.id, Removal::Dropped);
            self.index.remove(front.id);
            over += 1;
        }
        let moved = self.index.live();
        let lost = unreadable.len() as u64 + over;
        self.report(
            FailureKind::Fallback,
            format!(
                "{what} failed ({cause}); continuing at level 1 (memory, {} bytes) with new \
                 storage uid {}: moved {moved} pending event(s), lost {lost} ({} unreadable, \
                 {over} beyond the memory capacity); pending events now survive an outage but \
                 not a restart. The file, if any, is left on disk",
                self.capacity,
                self.storage_uid,
                unreadable.len()
            ),
            lost,
        );
    }
}

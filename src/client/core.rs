//! The state of a client store behind its lock: the ids it knows, and the
//! level that keeps them (falling back to memory, the only place the level
//! changes). Its fields are private to this module.

use std::collections::HashMap;
use std::path::Path;

use crate::backend::{IdStore, Level};
use crate::client::file::ClientFile;
use crate::client::options::ClientStats;
use crate::error::{Error, Result};
use crate::event::validate_name;
use crate::journal::SyncTicket;
use crate::report::{Failure, FailureKind};
use crate::shell::{StoreState, Words};

/// Where the ids are kept, by level.
pub(crate) enum IdBackend {
    /// Level 1: the store's map is all there is.
    Memory,
    /// Level 2, the client file.
    File(Box<ClientFile>),
    /// Level 2, user code.
    Custom(Box<dyn IdStore>),
}

impl IdBackend {
    fn store(&mut self) -> Option<&mut dyn IdStore> {
        match self {
            IdBackend::Memory => None,
            IdBackend::File(f) => Some(f.as_mut()),
            IdBackend::Custom(c) => Some(c.as_mut()),
        }
    }

    fn describe(&self) -> String {
        match self {
            IdBackend::Memory => "the level-1 memory store".to_string(),
            IdBackend::File(f) => format!("client file {}", f.path().display()),
            IdBackend::Custom(_) => "the custom level-2 backend".to_string(),
        }
    }
}

/// See the module docs.
pub(crate) struct ClientCore {
    backend: IdBackend,
    ids: HashMap<String, i64>,
    failures: u64,
    reports: Vec<Failure>,
    closed: bool,
}

impl ClientCore {
    /// A store over `backend`, loading every id it holds; `reports` are
    /// what opening it found.
    pub fn open(backend: IdBackend, reports: Vec<Failure>) -> ClientCore {
        let mut core = ClientCore {
            backend,
            ids: HashMap::new(),
            failures: 0,
            reports: Vec::new(),
            closed: false,
        };
        for r in reports {
            core.report(r.kind, r.message, r.events_lost);
        }
        core.load();
        core
    }

    /// A store whose level 2 (`what`) could not even be opened: it starts
    /// in memory and reports why.
    pub fn without_level_2(what: &str, cause: &Error) -> ClientCore {
        let mut core = ClientCore::open(IdBackend::Memory, Vec::new());
        core.report_fallback(what, cause);
        core
    }

    fn load(&mut self) {
        let mut loaded = Vec::new();
        let mut invalid = Vec::new();
        self.backend_call(|s| {
            s.load(&mut |name, id| match validate_name(name) {
                Ok(()) => loaded.push((name.to_owned(), id)),
                Err(e) => invalid.push(e.to_string()),
            })
        });
        self.ids.extend(loaded);
        if let Some(first) = invalid.first() {
            let what = self.backend.describe();
            self.report(
                FailureKind::Corruption,
                format!(
                    "{what} returned {} subscription(s) whose name breaks the rules (first: \
                     {first}); they were ignored",
                    invalid.len()
                ),
                invalid.len() as u64,
            );
        }
    }

    pub fn level(&self) -> Level {
        match self.backend {
            IdBackend::Memory => Level::Memory,
            _ => Level::Persistent,
        }
    }

    fn report(&mut self, kind: FailureKind, message: String, lost: u64) {
        self.failures += 1;
        self.reports.push(Failure {
            kind,
            message,
            events_lost: lost,
        });
    }

    /// Level 2 failed: keep going in memory with every id known. Nothing is
    /// lost but durability.
    fn fall_back(&mut self, cause: &Error) {
        let what = self.backend.describe();
        self.backend = IdBackend::Memory;
        self.report_fallback(&what, cause);
    }

    fn report_fallback(&mut self, what: &str, cause: &Error) {
        self.report(
            FailureKind::Fallback,
            format!(
                "{what} failed ({cause}); continuing at level 1 (memory) with all {} known \
                 subscription id(s): duplicates are still dropped, but after a restart the \
                 first event of each subscription may be handled again. The file, if any, is \
                 left on disk",
                self.ids.len()
            ),
            0,
        );
    }

    /// Runs a backend call; a failure moves the store to level 1.
    fn backend_call(&mut self, call: impl FnOnce(&mut dyn IdStore) -> Result<()>) {
        if let Some(store) = self.backend.store() {
            if let Err(e) = call(store) {
                self.fall_back(&e);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<i64> {
        self.ids.get(name).copied()
    }

    pub fn put(&mut self, name: &str, id: i64) -> Result<()> {
        validate_name(name)?;
        self.backend_call(|s| s.put(name, id));
        match self.ids.get_mut(name) {
            Some(stored) => *stored = id,
            None => {
                self.ids.insert(name.to_owned(), id);
            }
        }
        Ok(())
    }

    /// Every (name, id) pair, sorted by name.
    pub fn entries(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self.ids.iter().map(|(k, v)| (k.clone(), *v)).collect();
        out.sort_unstable();
        out
    }

    pub fn reset(&mut self) {
        self.backend_call(|s| s.clear());
        self.ids.clear();
    }

    pub fn flush(&mut self) {
        self.backend_call(|s| s.flush());
    }

    pub fn stats(&self) -> ClientStats {
        ClientStats {
            level: self.level(),
            subscriptions: self.ids.len() as u64,
            failures: self.failures,
        }
    }

    /// Flushes and lets go of the backend; later calls are refused.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.flush();
        self.closed = true;
        self.backend = IdBackend::Memory;
    }
}

/// What a client store's readers return, as of the last call that
/// finished (see `shell.rs`; the file's path is published beside it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientView {
    pub stats: ClientStats,
    pub closed: bool,
}

impl StoreState for ClientCore {
    type View = ClientView;

    fn take_reports(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.reports)
    }

    fn is_closed(&self) -> bool {
        self.closed
    }

    fn view(&self) -> ClientView {
        ClientView {
            stats: self.stats(),
            closed: self.closed,
        }
    }

    fn to_words(view: &ClientView, words: &mut Words) {
        words[0] = u64::from(view.stats.level.number());
        words[1] = view.stats.subscriptions;
        words[2] = view.stats.failures;
        words[3] = u64::from(view.closed);
    }

    fn from_words(words: &Words) -> ClientView {
        ClientView {
            stats: ClientStats {
                level: Level::of_number(words[0]),
                subscriptions: words[1],
                failures: words[2],
            },
            closed: words[3] == 1,
        }
    }

    fn path(&self) -> Option<&Path> {
        match &self.backend {
            IdBackend::File(f) => Some(f.path()),
            _ => None,
        }
    }

    fn take_ticket(&mut self) -> Option<SyncTicket> {
        match &mut self.backend {
            IdBackend::File(f) => f.take_ticket(),
            _ => None,
        }
    }

    /// The sync of a put (group commit) failed once the put was done: fall
    /// back as the put would have, if that file is still level 2.
    fn sync_failed(&mut self, ticket: &SyncTicket, error: std::io::Error) {
        let IdBackend::File(f) = &self.backend else {
            return;
        };
        if f.owns(ticket) {
            let cause = Error::io("sync", f.path(), error);
            self.fall_back(&cause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_comes_back_from_its_words_as_it_went_in() {
        for (level, closed) in [(Level::Memory, true), (Level::Persistent, false)] {
            let stats = ClientStats {
                level,
                subscriptions: 3,
                failures: u64::MAX,
            };
            let mut words = [0; crate::shell::VIEW_WORDS];
            ClientCore::to_words(&ClientView { stats, closed }, &mut words);
            let back = ClientCore::from_words(&words);
            assert_eq!((back.stats, back.closed), (stats, closed));
        }
    }
}

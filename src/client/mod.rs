//! Client persistence: the id of the last event handled per subscription,
//! so a client hands each event to its application once (SPEC section 4).

pub mod backend;
pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use self::backend::IdStore;
use self::file::ClientFile;
use crate::error::{Error, Result};
use crate::event::validate_name;
use crate::journal::Durability;
use crate::report::{Failure, FailureCallback, FailureKind};
use crate::service::Level;

/// How to open a client store.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// When the file forces puts to the device (file level only).
    pub durability: Durability,
    /// Called with every failure report, after the store's lock is released.
    pub on_failure: Option<FailureCallback>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("durability", &self.durability)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

/// A snapshot of a client store's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientStats {
    /// Current level (it drops to 1 after a level-2 failure).
    pub level: Level,
    /// Subscriptions with a stored id.
    pub subscriptions: u64,
    /// Failure reports so far (fallback, corruption, interrupted writes).
    pub failures: u64,
}

/// In which order [`ClientStore::handle`] records an event and hands it to
/// the application; it decides what a crash between the two costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandlerOrder {
    /// Handle, then record the id (the Softnet behaviour): at least once. A
    /// crash after the handler ran and before the id is stored hands the
    /// event to the application again after the restart (one duplicate per
    /// subscription at most). A handler error leaves the id unrecorded, so
    /// the event is handled again when the broker redelivers it.
    #[default]
    RecordAfterHandle,
    /// Record the id, then handle: at most once. A crash after the id is
    /// stored and before the handler finished means the application never
    /// sees that event. A handler error does not unrecord it.
    RecordBeforeHandle,
}

/// What [`ClientStore::handle`] did with an incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Its id equals the stored one: acknowledge it to the broker without
    /// handing it to the application.
    Duplicate,
    /// The handler ran and succeeded; acknowledge it.
    Handled,
}

/// A failure of [`ClientStore::handle`].
#[derive(Debug)]
pub enum HandleError<E> {
    /// The application's handler failed (see [`HandlerOrder`] for whether
    /// the id was recorded).
    Handler(E),
    /// The store refused (invalid name, closed).
    Store(Error),
}

impl<E: fmt::Display> fmt::Display for HandleError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Handler(e) => write!(f, "event handler failed: {e}"),
            HandleError::Store(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for HandleError<E> {}

enum IdBackend {
    /// CPL-1: the store's map is all there is.
    Memory,
    File(Box<ClientFile>),
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

struct ClientCore {
    backend: IdBackend,
    ids: HashMap<String, i64>,
    failures: u64,
    reports: Vec<Failure>,
    closed: bool,
}

impl ClientCore {
    fn level(&self) -> Level {
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
    fn fall_back(&mut self, what: &str, cause: &Error) {
        self.backend = IdBackend::Memory;
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
                let what = self.backend.describe();
                self.fall_back(&what, &e);
            }
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        self.check_open()?;
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
}

/// Keeps the last handled instance id per subscription (event name).
///
/// `Send + Sync`; each call takes an internal lock. Reads are answered from
/// memory at every level.
pub struct ClientStore {
    core: Mutex<ClientCore>,
    on_failure: Option<FailureCallback>,
}

impl fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClientStore {
    fn build(backend: IdBackend, reports: Vec<Failure>, options: &ClientOptions) -> ClientStore {
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
        let mut loaded = Vec::new();
        let mut invalid = Vec::new();
        core.backend_call(|s| {
            s.load(&mut |name, id| match validate_name(name) {
                Ok(()) => loaded.push((name.to_owned(), id)),
                Err(e) => invalid.push(e.to_string()),
            })
        });
        core.ids.extend(loaded);
        if let Some(first) = invalid.first() {
            let what = core.backend.describe();
            core.report(
                FailureKind::Corruption,
                format!(
                    "{what} returned {} subscription(s) whose name breaks the rules (first: \
                     {first}); they were ignored",
                    invalid.len()
                ),
                invalid.len() as u64,
            );
        }
        let store = ClientStore {
            core: Mutex::new(core),
            on_failure: options.on_failure.clone(),
        };
        let reports = std::mem::take(&mut store.core.lock().reports);
        store.dispatch(reports);
        store
    }

    /// A level-1 (memory) store: survives reconnects, not restarts.
    pub fn open_memory(options: &ClientOptions) -> ClientStore {
        ClientStore::build(IdBackend::Memory, Vec::new(), options)
    }

    /// A level-2 store in `softnet.client.persistence_<server>_<client-key>.scp`
    /// in `dir`. A damaged file is salvaged and reported; an I/O error
    /// starts the store at level 1 (reported). Errors: [`Error::Locked`],
    /// [`Error::InvalidArgument`] (a server address or key that cannot be
    /// part of a file name).
    pub fn open_file(
        dir: impl AsRef<Path>,
        server_address: &str,
        client_key: &str,
        options: &ClientOptions,
    ) -> Result<ClientStore> {
        match ClientFile::open(dir.as_ref(), server_address, client_key, options.durability) {
            Ok((file, reports)) => Ok(ClientStore::build(
                IdBackend::File(Box::new(file)),
                reports,
                options,
            )),
            Err(e @ (Error::Locked { .. } | Error::InvalidArgument(_))) => Err(e),
            Err(e) => {
                let path = file::client_file_path(dir.as_ref(), server_address, client_key)?;
                let store = ClientStore::build(IdBackend::Memory, Vec::new(), options);
                let reports = {
                    let mut core = store.core.lock();
                    core.fall_back(&format!("opening client file {}", path.display()), &e);
                    std::mem::take(&mut core.reports)
                };
                store.dispatch(reports);
                Ok(store)
            }
        }
    }

    /// A level-2 store kept by user code. A backend error makes the store
    /// continue in memory (reported).
    pub fn open_custom(backend: Box<dyn IdStore>, options: &ClientOptions) -> ClientStore {
        ClientStore::build(IdBackend::Custom(backend), Vec::new(), options)
    }

    fn dispatch(&self, reports: Vec<Failure>) {
        if let Some(callback) = &self.on_failure {
            for report in &reports {
                callback(report);
            }
        }
    }

    fn with<T>(&self, op: impl FnOnce(&mut ClientCore) -> Result<T>) -> Result<T> {
        let (result, reports) = {
            let mut core = self.core.lock();
            let result = op(&mut core);
            (result, std::mem::take(&mut core.reports))
        };
        self.dispatch(reports);
        result
    }

    /// The last handled id of `name`, if any. An invalid name is an
    /// [`Error::InvalidArgument`], as for `put`.
    pub fn get(&self, name: &str) -> Result<Option<i64>> {
        validate_name(name)?;
        let core = self.core.lock();
        core.check_open()?;
        Ok(core.ids.get(name).copied())
    }

    /// Records `id` as the last handled id of `name` (durably at level 2,
    /// as the durability setting says).
    pub fn put(&self, name: &str, id: i64) -> Result<()> {
        self.with(|c| c.put(name, id))
    }

    /// True when `id` equals the stored id of `name`: the event was handled
    /// already; acknowledge it without handing it to the application.
    pub fn is_duplicate(&self, name: &str, id: i64) -> Result<bool> {
        Ok(self.get(name)? == Some(id))
    }

    /// Every (name, id) pair, sorted by name: what a stateless client sends
    /// the broker when it connects.
    pub fn entries(&self) -> Result<Vec<(String, i64)>> {
        let core = self.core.lock();
        core.check_open()?;
        let mut out: Vec<(String, i64)> = core.ids.iter().map(|(k, v)| (k.clone(), *v)).collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Decides what to do with an incoming event and does it: a duplicate
    /// is reported as such without calling `handler`; otherwise the handler
    /// runs and the id is recorded, in the given `order` (see
    /// [`HandlerOrder`] for what a crash in between costs). Either way the
    /// caller then acknowledges the event to the broker (unless the handler
    /// failed under `RecordAfterHandle`).
    pub fn handle<E>(
        &self,
        name: &str,
        id: i64,
        order: HandlerOrder,
        handler: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Delivery, HandleError<E>> {
        if self.is_duplicate(name, id).map_err(HandleError::Store)? {
            return Ok(Delivery::Duplicate);
        }
        match order {
            HandlerOrder::RecordAfterHandle => {
                handler().map_err(HandleError::Handler)?;
                self.put(name, id).map_err(HandleError::Store)?;
            }
            HandlerOrder::RecordBeforeHandle => {
                self.put(name, id).map_err(HandleError::Store)?;
                handler().map_err(HandleError::Handler)?;
            }
        }
        Ok(Delivery::Handled)
    }

    /// Forgets every stored id.
    pub fn reset(&self) -> Result<()> {
        self.with(|c| {
            c.check_open()?;
            c.backend_call(|s| s.clear());
            c.ids.clear();
            Ok(())
        })
    }

    /// Forces every put to the device.
    pub fn flush(&self) -> Result<()> {
        self.with(|c| {
            c.check_open()?;
            c.backend_call(|s| s.flush());
            Ok(())
        })
    }

    /// State and counters.
    pub fn stats(&self) -> ClientStats {
        let core = self.core.lock();
        ClientStats {
            level: core.level(),
            subscriptions: core.ids.len() as u64,
            failures: core.failures,
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.core.lock().level()
    }

    /// The client file, while at level 2 on a file.
    pub fn file_path(&self) -> Option<PathBuf> {
        match &self.core.lock().backend {
            IdBackend::File(f) => Some(f.path().to_path_buf()),
            _ => None,
        }
    }

    /// Flushes and releases the file; later calls return [`Error::Closed`]
    /// (closing again is fine).
    pub fn close(&self) -> Result<()> {
        self.with(|c| {
            if c.closed {
                return Ok(());
            }
            c.backend_call(|s| s.flush());
            c.closed = true;
            c.backend = IdBackend::Memory;
            Ok(())
        })
    }

    /// Fault injection: the journal of the client file, while at level 2.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn with_journal<T>(&self, f: impl FnOnce(&mut crate::Journal) -> T) -> Option<T> {
        match &mut self.core.lock().backend {
            IdBackend::File(file) => Some(f(file.journal_mut())),
            _ => None,
        }
    }
}

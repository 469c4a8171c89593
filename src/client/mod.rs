//! Client persistence: the id of the last event handled per subscription,
//! so a client hands each event to its application once
//! (docs/BEHAVIOUR.md section 4).
//!
//! - `options`: how a store is opened, what it reports, handler orders;
//! - `core`: the ids behind the lock, and the level that keeps them;
//! - `file`: level 2 in a journal file; `naming`: that file's name;
//!   `migrate`: files named by the old rule, found under the new name.

mod core;
mod file;
mod migrate;
mod naming;
mod options;

use std::fmt;
use std::path::{Path, PathBuf};

use self::core::{ClientCore, IdBackend};
use self::file::ClientFile;
use crate::backend::{IdStore, Level};
use crate::error::{Error, Result};
use crate::event::validate_name;
use crate::report::OpenPolicy;
use crate::shell::Shell;

// For tools that read a client file's bytes (`inspect`).
pub(crate) use self::file::{decode as decode_subscription, CLIENT_MAGIC};
pub use self::options::{ClientOptions, ClientStats, Delivery, HandleError, HandlerOrder};

/// Keeps the last handled instance id per subscription (event name).
///
/// `Send + Sync`; each call takes an internal lock. Reads are answered from
/// memory at every level.
pub struct ClientStore {
    shell: Shell<ClientCore>,
}

impl fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStore")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClientStore {
    fn from_core(core: ClientCore, options: &ClientOptions) -> ClientStore {
        ClientStore {
            shell: Shell::new(core, options.on_failure.clone()),
        }
    }

    /// A level-1 (memory) store: survives reconnects, not restarts.
    pub fn open_memory(options: &ClientOptions) -> ClientStore {
        ClientStore::from_core(ClientCore::open(IdBackend::Memory, Vec::new()), options)
    }

    /// A level-2 store in `softnet.client.persistence_<server>_<client-key>.scp`
    /// in `dir`, each part encoded: `A-Z a-z 0-9 . -` stay as they are,
    /// every other byte is written `%XX` (uppercase hex), so `fe80::1`
    /// becomes `fe80%3A%3A1` and `a_b` becomes `a%5Fb`, and no two pairs
    /// share a file.
    ///
    /// A file with the name the pair had before this encoding (`:` as `-`,
    /// the parts as they are) is renamed to the new name when its header
    /// says it was written for this pair, and left alone otherwise (it is
    /// another pair's, or damaged).
    ///
    /// A damaged file is salvaged and reported; an I/O error starts the
    /// store at level 1 (reported), or, with [`OpenPolicy::Strict`], fails
    /// the open. Errors: [`Error::Locked`],
    /// [`Error::InvalidArgument`] (a server address or key that cannot be
    /// part of a file name: empty, not printable ASCII, one of
    /// `/ \ * ? " < > |`, `:` in the key, or too long once encoded).
    pub fn open_file(
        dir: impl AsRef<Path>,
        server_address: &str,
        client_key: &str,
        options: &ClientOptions,
    ) -> Result<ClientStore> {
        if dir.as_ref().as_os_str().is_empty() {
            return Err(Error::invalid(
                "the client file's directory is empty (\"\"): give the directory the file is \
                 kept in (an empty path would put it in whatever the current directory is)",
            ));
        }
        let path = naming::client_file_path(dir.as_ref(), server_address, client_key)?;
        let owner = naming::owner_uid(server_address, client_key);
        let opened = migrate::adopt_old_file(&path, server_address, client_key)
            .and_then(|()| ClientFile::open(&path, owner, options));
        let core = match opened {
            Ok((file, reports)) => ClientCore::open(IdBackend::File(Box::new(file)), reports),
            Err(e @ (Error::Locked { .. } | Error::InvalidArgument(_))) => return Err(e),
            // The error names the file or directory, the cause and the fix.
            Err(e) if options.open_policy == OpenPolicy::Strict => return Err(e),
            Err(e) => {
                ClientCore::without_level_2(&format!("opening client file {}", path.display()), &e)
            }
        };
        Ok(ClientStore::from_core(core, options))
    }

    /// A level-2 store kept by user code. A backend error makes the store
    /// continue in memory (reported).
    pub fn open_custom(backend: Box<dyn IdStore>, options: &ClientOptions) -> ClientStore {
        ClientStore::from_core(
            ClientCore::open(IdBackend::Custom(backend), Vec::new()),
            options,
        )
    }

    /// The last handled id of `name`, if any. An invalid name is an
    /// [`Error::InvalidArgument`], as for `put`.
    pub fn get(&self, name: &str) -> Result<Option<i64>> {
        validate_name(name)?;
        self.shell.with(|c| Ok(c.get(name)))
    }

    /// Records `id` as the last handled id of `name` (durably at level 2,
    /// as the durability setting says).
    pub fn put(&self, name: &str, id: i64) -> Result<()> {
        self.shell.with(|c| c.put(name, id))
    }

    /// True when `id` equals the stored id of `name`: the event was handled
    /// already; acknowledge it without handing it to the application.
    pub fn is_duplicate(&self, name: &str, id: i64) -> Result<bool> {
        Ok(self.get(name)? == Some(id))
    }

    /// Every (name, id) pair, sorted by name: what a stateless client sends
    /// the broker when it connects.
    pub fn entries(&self) -> Result<Vec<(String, i64)>> {
        self.shell.with(|c| Ok(c.entries()))
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
        self.shell.with(|c| {
            c.reset();
            Ok(())
        })
    }

    /// Forces every put to the device.
    pub fn flush(&self) -> Result<()> {
        self.shell.with(|c| {
            c.flush();
            Ok(())
        })
    }

    /// State and counters.
    pub fn stats(&self) -> ClientStats {
        self.shell.read(|v| v.stats)
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.shell.read(|v| v.stats.level)
    }

    /// The client file, while at level 2 on a file.
    pub fn file_path(&self) -> Option<PathBuf> {
        self.shell.read_path()
    }

    /// `Err(`[`Error::State`]`)` in a forked child on its parent's handle,
    /// where every call but `close` is refused (docs/BEHAVIOUR.md section
    /// 5.8). The readers (`stats`, `level`...) have no error to return:
    /// there they return the parent's values as of the fork. Bindings call
    /// this first to refuse them too.
    pub fn check_process(&self) -> Result<()> {
        self.shell.check_process()
    }

    /// True once the store was closed.
    pub fn is_closed(&self) -> bool {
        self.shell.read(|v| v.closed)
    }

    /// Flushes and releases the file; later calls return [`Error::Closed`]
    /// (closing again is fine). In a forked child on the parent's handle it
    /// does nothing (the file is the parent's) and succeeds.
    pub fn close(&self) -> Result<()> {
        self.shell.close((), |c| c.close())
    }
}

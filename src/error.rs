//! The one error type of the crate.
//!
//! Every fallible operation returns [`Error`]. Corrupt input (a damaged file,
//! a malformed record from a custom backend) is an [`Error::Format`] value,
//! never a panic. The C ABI maps [`ErrorKind`] to status codes in one place,
//! the Python module to its exception hierarchy in one place.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context for an engineer in the field.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument broke a documented rule (event name, argument size,
    /// capacity, file name characters...). The message names the rule.
    InvalidArgument(String),
    /// The operating system refused a file operation.
    Io {
        /// What was being done, and to which file.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored data is corrupt, truncated or belongs to something else.
    Format(String),
    /// The event does not fit and the overflow policy is reject-new.
    StorageFull {
        /// Bytes the new record needs.
        needed: u64,
        /// Bytes free at the time of the call.
        available: u64,
        /// Configured capacity in bytes.
        capacity: u64,
    },
    /// Another process or handle holds the file's exclusive lock.
    Locked {
        /// The file that is locked.
        path: PathBuf,
    },
    /// The call is not valid in the store's current state (wrong mode, an
    /// ack whose uid is not the event in flight).
    State(String),
    /// The store was closed.
    Closed,
    /// A user-supplied backend reported a failure.
    Backend(String),
}

/// The category of an [`Error`], for mapping to status codes and exceptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::InvalidArgument`].
    InvalidArgument,
    /// See [`Error::Io`].
    Io,
    /// See [`Error::Format`].
    Format,
    /// See [`Error::StorageFull`].
    StorageFull,
    /// See [`Error::Locked`].
    Locked,
    /// See [`Error::State`].
    State,
    /// See [`Error::Closed`].
    Closed,
    /// See [`Error::Backend`].
    Backend,
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Io { .. } => ErrorKind::Io,
            Error::Format(_) => ErrorKind::Format,
            Error::StorageFull { .. } => ErrorKind::StorageFull,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::State(_) => ErrorKind::State,
            Error::Closed => ErrorKind::Closed,
            Error::Backend(_) => ErrorKind::Backend,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::InvalidArgument(message.into())
    }

    pub(crate) fn format(message: impl Into<String>) -> Error {
        Error::Format(message.into())
    }

    pub(crate) fn state(message: impl Into<String>) -> Error {
        Error::State(message.into())
    }

    /// An I/O error on `path` while doing `what` ("open", "sync"...).
    pub(crate) fn io(what: &str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            context: format!("{what} {}", path.display()),
            source,
        }
    }
}

impl Error {
    /// The category the `Display` text starts with ("invalid argument"),
    /// or `None` for the errors whose text says it itself (locked, closed).
    pub fn category(&self) -> Option<&'static str> {
        match self {
            Error::InvalidArgument(_) => Some("invalid argument"),
            Error::Io { .. } => Some("I/O error"),
            Error::Format(_) => Some("corrupt or foreign data"),
            Error::StorageFull { .. } => Some("storage full"),
            Error::State(_) => Some("wrong state"),
            Error::Backend(_) => Some("custom backend failed"),
            Error::Locked { .. } | Error::Closed => None,
        }
    }

    /// What happened, to which file, and what to do, without the category:
    /// for a caller that names the category itself (a C status, a Python
    /// exception class), so that it is not said twice.
    pub fn detail(&self) -> String {
        match self {
            Error::InvalidArgument(m) | Error::Format(m) | Error::State(m) | Error::Backend(m) => {
                m.clone()
            }
            Error::Io { context, source } => format!("{context}: {source}"),
            Error::StorageFull {
                needed,
                available,
                capacity,
            } => format!(
                "the event needs {needed} bytes, {available} of {capacity} are free and the \
                 overflow policy is reject-new (acknowledge pending events, raise the \
                 capacity, or use drop-oldest)"
            ),
            Error::Locked { path } => format!(
                "{} is locked by another process or handle; only one writer may open it \
                 (close the other handle first)",
                path.display()
            ),
            Error::Closed => "the store is closed".to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.category() {
            Some(category) => write!(f, "{category}: {}", self.detail()),
            None => f.write_str(&self.detail()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

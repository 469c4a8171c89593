//! Failure reports: how a store tells the application that something went
//! wrong and what it cost. Nothing is dropped silently: every report of a
//! failure reaches the failure callback (if one is set) and the store's
//! statistics, except where a callback loop holds reports back (then those
//! still reach the statistics, and one CallbackLoop report says so).

use std::fmt;
use std::sync::Arc;

/// What kind of failure a [`Failure`] reports. The discriminants are the
/// stable codes of the C ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Level 2 failed (I/O error, custom backend error); the store now runs
    /// at level 1 with a new storage uid.
    Fallback = 1,
    /// A damaged or foreign file was found at open; it was set aside and
    /// what could be kept was kept.
    Corruption = 2,
    /// Events were dropped to make room (drop-oldest overflow policy).
    CapacityDrop = 3,
    /// A partial record from an interrupted write was discarded at open.
    /// The write never completed, so no stored event was lost.
    InterruptedWrite = 4,
    /// Reports caused by the failure callback's own calls while it handled
    /// earlier reports were held back, to end a loop; they are counted in
    /// the statistics. This report is about the callback, not the store:
    /// it is not counted in `failures`, and `events_lost` is 0 (the
    /// held-back reports counted theirs).
    CallbackLoop = 5,
    /// The capacity asked for at open could not be applied to the journal
    /// (its rewrite failed, e.g. on a full disk): it keeps the capacity it
    /// was written with, and nothing was lost.
    CapacityUnchanged = 6,
    /// Pending events older than the store's age limit
    /// ([`ServiceOptions::max_age`](crate::ServiceOptions::max_age)) were
    /// dropped as they came up for delivery. The application asked for
    /// this: it is not counted in `failures`, and `events_lost` is 0 (the
    /// message says how many; `expired_events` in the statistics counts
    /// them).
    Expired = 7,
}

impl FailureKind {
    /// The stable numeric code.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Fallback => "fallback to level 1",
            FailureKind::Corruption => "corrupt file",
            FailureKind::CapacityDrop => "capacity drop",
            FailureKind::InterruptedWrite => "interrupted write",
            FailureKind::CallbackLoop => "reports held back",
            FailureKind::CapacityUnchanged => "capacity unchanged",
            FailureKind::Expired => "expired",
        })
    }
}

/// One failure report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What happened.
    pub kind: FailureKind,
    /// What happened, to which file, and what the store did about it.
    pub message: String,
    /// Events (or, for a client store, subscription ids) lost because of it.
    pub events_lost: u64,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({} lost)",
            self.kind, self.message, self.events_lost
        )
    }
}

/// The failure callback. It runs after the store's lock is released, on the
/// thread whose call caused the failure, so it may call back into the store.
/// Reports caused by those calls are delivered after it returns, never
/// recursively.
pub type FailureCallback = Arc<dyn Fn(&Failure) + Send + Sync>;

/// What opening a level-2 store (a journal or client file) does when the
/// file cannot be opened or created: an I/O error (a missing or read-only
/// directory, a full disk), a symbolic link or special file at its name, a
/// file of another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum OpenPolicy {
    /// Start at level 1 (memory) and report the fallback (the default):
    /// events are kept, but do not survive a restart.
    #[default]
    Fallback = 0,
    /// Fail the open with the error, which names the file or directory, the
    /// cause and what to do: for a device that must not run without its
    /// journal. A damaged or foreign file is still salvaged and reported,
    /// not an error; a file locked by another handle is an error either
    /// way.
    Strict = 1,
}

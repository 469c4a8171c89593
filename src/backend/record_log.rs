//! The record backend trait: where a service store keeps its bytes.
//!
//! A backend keeps ordered, opaque records and nothing else. Every rule of
//! docs/BEHAVIOUR.md section 3 (modes, collapse, capacity, reports) lives
//! once, in [`ServiceStore`](crate::ServiceStore); memory (level 1), the
//! journal (level 2) and user code (custom level 2) all plug in here the
//! same way.

use crate::error::Result;

/// Why a record is removed. Backends may keep it for forensics (the journal
/// writes it into the record's state byte); none may act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Removal {
    /// The broker acknowledged the event.
    Acknowledged,
    /// A newer instance of the same Replacing event made it obsolete.
    Superseded,
    /// Dropped to make room (capacity).
    Dropped,
    /// Discarded as ancient data (`invalidate_ancient`).
    Invalidated,
    /// Older than the store's age limit (`ServiceOptions::max_age`).
    Expired,
}

/// Ordered storage of opaque records, identified by sequence numbers.
///
/// Contract, which the store relies on and checks where it can:
/// - `append` accepts payloads of up to [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) bytes; the store
///   never hands it more, and it keeps no count of its own against the
///   store's capacity (the store owns the capacity).
/// - `append` returns a sequence number strictly greater than every number
///   it returned before, across reopen and `clear`.
/// - `scan` visits every record that was appended and not removed, in
///   increasing sequence order, with the bytes given to `append`.
/// - After `commit` returns, what the backend's durability promise covers
///   survives a crash; `flush` makes everything durable now.
/// - `barrier` makes the appends so far durable before any later write may
///   become durable: the store calls it between writing a newer instance of
///   a Replacing event and removing the older one, so that a power cut can
///   never lose both.
/// - An `Err` from any method is treated as a failure of the level: the
///   store moves what it can still read to memory and reports it.
pub trait RecordLog: Send {
    /// Stores a record; returns its sequence number.
    fn append(&mut self, payload: &[u8]) -> Result<u64>;
    /// Removes a live record.
    fn remove(&mut self, seq: u64, why: Removal) -> Result<()>;
    /// Copies one live record into `out` (replacing its contents). An
    /// [`Error::Format`](crate::Error::Format) says this one record is
    /// damaged (it fails its checksum): the store skips it, reports it (one
    /// event lost) and stays at this level. Any other error is a failure of
    /// the level.
    fn read(&mut self, seq: u64, out: &mut Vec<u8>) -> Result<()>;
    /// Visits every live record in sequence order.
    fn scan(&mut self, visit: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()>;
    /// Orders earlier appends before later writes (see the trait docs).
    fn barrier(&mut self) -> Result<()> {
        self.flush()
    }
    /// Ends one store operation; applies the backend's durability setting.
    fn commit(&mut self) -> Result<()>;
    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<()>;
    /// Removes every record. Sequence numbers keep growing afterwards.
    fn clear(&mut self) -> Result<()>;
    /// The metadata blob last set (empty if never set).
    fn metadata(&mut self) -> Result<Vec<u8>>;
    /// The records the backend found damaged and stopped holding on its
    /// own since the last call (a record it had to move or copy failed its
    /// checksum): the store forgets them and reports each as one event
    /// lost. Most backends never do this.
    fn take_lost(&mut self) -> Vec<u64> {
        Vec::new()
    }
    /// Replaces the metadata blob (at most [`MAX_METADATA_LEN`](crate::MAX_METADATA_LEN) bytes).
    fn set_metadata(&mut self, meta: &[u8]) -> Result<()>;
}

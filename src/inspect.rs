//! Read-only inspection of the library's files, for tools (the `snp`
//! command): [`inspect_journal`] reads a snapshot of a service journal
//! (`.ssp`) or client file (`.scp`) given as bytes, and says what an open
//! would recover from it: the header in force, every intact pending record
//! in delivery order, and the damage with its position and cost.
//! [`salvage_journal`] writes a repaired copy of such a snapshot to a new
//! file, with the journal's own rebuild.
//!
//! Nothing here opens, maps, locks or writes the inspected file: the caller
//! reads it. Corrupt bytes are an [`Error::Format`] value or a damage entry,
//! never a panic. How to read a file that a store is writing, and why two
//! snapshots that agree ([`JournalInspection::same_state`]) show the file
//! as it was at one instant, is in docs/TOOLS.md.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::backend::stored_size;
use crate::client::{decode_subscription, CLIENT_MAGIC};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::journal::{examine, write_copy, Examined, JournalCopy, SlotStatus};
use crate::service::{decode_stored_event, SERVICE_MAGIC};

/// File offset of a journal's data region (docs/FORMAT.md).
const DATA_OFFSET: u64 = 8192;

/// Which of the library's files a journal is, told by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalKind {
    /// A service journal (`.ssp`, magic `SNPSVCJ1`): pending events.
    Service,
    /// A client persistence file (`.scp`, magic `SNPCLNT1`): the last
    /// instance id per subscription.
    Client,
}

impl JournalKind {
    /// "service journal" or "client persistence file".
    pub fn describe(self) -> &'static str {
        match self {
            JournalKind::Service => "service journal",
            JournalKind::Client => "client persistence file",
        }
    }
}

/// What one of the two header slots holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSlot {
    /// It passes its checksum and is consistent.
    Valid {
        /// Its generation: the higher of the two valid slots is in force.
        generation: u64,
    },
    /// Zeroes: never written.
    Blank,
    /// It fails its checksum or holds an impossible field (a torn header
    /// write leaves one slot so; the other is then in force).
    Damaged,
}

/// What an intact pending record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordContent {
    /// An event of a service journal.
    Event(Event),
    /// A subscription of a client file: its name and the last instance id
    /// handled.
    Subscription {
        /// The subscription (event) name.
        name: String,
        /// The last instance id handled.
        last_id: i64,
    },
    /// The record passes its checksum but its payload is not a valid event
    /// or subscription (the store drops it at open, with a report).
    Unreadable {
        /// The payload as stored.
        payload: Vec<u8>,
        /// Why it cannot be decoded.
        why: String,
    },
}

/// An intact pending record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedRecord {
    /// Record id: delivery order (raise order for events).
    pub id: u64,
    /// Sequence number in the log (above `id` for a relocated copy).
    pub seq: u64,
    /// Where it starts in the ring (the file offset is 8192 more).
    pub pos: u64,
    /// Its state byte: `L`, or an unknown value (kept as pending).
    pub state: u8,
    /// Bytes it counts against the capacity.
    pub stored_size: u64,
    /// What it holds.
    pub content: RecordContent,
}

/// A run of damaged records in the middle of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalDamage {
    /// Where the first damaged record starts in the ring.
    pub pos: u64,
    /// The same position as a file offset.
    pub file_offset: u64,
    /// Sequence number of the first damaged record.
    pub first_seq: u64,
    /// Records (sequence numbers) that cannot be read.
    pub records: u64,
    /// Of those, pending events lost (a record whose header is unreadable
    /// counts as one: the count may be too high, never too low).
    pub lost: u64,
    /// Of those, the writes of a sync that a crash or power cut
    /// interrupted (never confirmed durable: nothing lost).
    pub torn: u64,
}

/// What a snapshot of a journal file holds; see [`inspect_journal`].
#[derive(Debug, Clone)]
pub struct JournalInspection {
    /// Service journal or client file.
    pub kind: JournalKind,
    /// Format version of the header in force.
    pub version: u32,
    /// Generation of the header in force.
    pub generation: u64,
    /// The owner uid: the service uid, or the client pair's derived uid.
    pub owner: Uuid,
    /// A service journal's storage uid (from its metadata), if readable.
    pub storage_uid: Option<Uuid>,
    /// Logical capacity: bytes of pending records the store allows.
    pub capacity: u64,
    /// Bytes of the ring.
    pub data_size: u64,
    /// Where the log starts: its ring position and sequence number.
    pub tail: (u64, u64),
    /// Bytes of the snapshot.
    pub file_len: u64,
    /// Bytes the pending records count against the capacity.
    pub used_bytes: u64,
    /// The two header slots.
    pub header_slots: [HeaderSlot; 2],
    /// Every intact pending record, in delivery (id) order.
    pub records: Vec<InspectedRecord>,
    /// Damage in the middle of the log, in log order.
    pub damage: Vec<JournalDamage>,
    /// Ring position of a partial record where the log ends: a write a
    /// crash interrupted (nothing lost), a write in progress (the file is
    /// in use), or a damaged last record.
    pub interrupted_at: Option<u64>,
    /// The file is shorter than its header says.
    pub truncated: bool,
    /// Records whose state byte is unknown (kept as pending).
    pub unknown_states: u64,
    examined: Examined,
}

impl JournalInspection {
    /// True when an open would rewrite the file: damage in the middle, a
    /// truncated file or unknown state bytes. (A partial record at the end
    /// is not damage: an open overwrites it.)
    pub fn is_damaged(&self) -> bool {
        !self.damage.is_empty() || self.truncated || self.unknown_states > 0
    }

    /// Pending events the damage cost.
    pub fn lost(&self) -> u64 {
        self.damage.iter().map(|d| d.lost).sum()
    }

    /// True when both snapshots show the same file state: the same header
    /// slots, the same records from the tail to the end of the log (state
    /// bytes included) and the same bytes where it ends; with damage or a
    /// partial record, the same data region. Two snapshots read one after
    /// the other that agree show the file as it was at an instant between
    /// them (docs/TOOLS.md).
    pub fn same_state(&self, other: &JournalInspection) -> bool {
        self.examined.signature() == other.examined.signature()
    }

    /// A client file's subscriptions, by name: (last instance id, record
    /// id) of the newest record of each name, as an open keeps them.
    pub fn subscriptions(&self) -> BTreeMap<String, (i64, u64)> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            if let RecordContent::Subscription { name, last_id } = &r.content {
                // Records are in id order: a later one is newer.
                out.insert(name.clone(), (*last_id, r.id));
            }
        }
        out
    }
}

/// Reads `bytes`, a whole service journal or client file, as an open would
/// recover it, without changing anything. Errors: [`Error::Format`] when
/// the bytes are not such a file (too short for the header pages, no valid
/// header slot, another magic, a version this library does not read); the
/// message says which.
pub fn inspect_journal(bytes: &[u8]) -> Result<JournalInspection> {
    let examined = examine(bytes).map_err(|why| Error::Format(format!("not usable: {why}")))?;
    let kind = match examined.magic {
        SERVICE_MAGIC => JournalKind::Service,
        CLIENT_MAGIC => JournalKind::Client,
        other => {
            return Err(Error::Format(format!(
                "not a softnet service journal or client file: its magic is {:?}",
                String::from_utf8_lossy(&other)
            )))
        }
    };
    let records: Vec<InspectedRecord> = examined
        .records
        .iter()
        .map(|r| InspectedRecord {
            id: r.id,
            seq: r.seq,
            pos: r.pos,
            state: r.state,
            stored_size: stored_size(r.payload.len()),
            content: content(kind, r.id, &r.payload),
        })
        .collect();
    Ok(JournalInspection {
        kind,
        version: examined.version,
        generation: examined.generation,
        owner: examined.owner,
        storage_uid: storage_uid(kind, &examined.meta),
        capacity: examined.capacity,
        data_size: examined.data_size,
        tail: examined.tail,
        file_len: bytes.len() as u64,
        used_bytes: records.iter().map(|r| r.stored_size).sum(),
        header_slots: examined.slots.map(|s| match s {
            SlotStatus::Valid(generation) => HeaderSlot::Valid { generation },
            SlotStatus::Blank => HeaderSlot::Blank,
            SlotStatus::Damaged => HeaderSlot::Damaged,
        }),
        records,
        damage: examined
            .damage
            .iter()
            .map(|d| JournalDamage {
                pos: d.pos,
                file_offset: DATA_OFFSET + d.pos,
                first_seq: d.first_seq,
                records: d.records,
                lost: d.lost,
                torn: d.torn,
            })
            .collect(),
        interrupted_at: examined.interrupted_at,
        truncated: examined.truncated,
        unknown_states: examined.unknown_states,
        examined,
    })
}

fn content(kind: JournalKind, id: u64, payload: &[u8]) -> RecordContent {
    let unreadable = |e: Error| RecordContent::Unreadable {
        payload: payload.to_vec(),
        why: e.to_string(),
    };
    match kind {
        JournalKind::Service => {
            decode_stored_event(payload, id).map_or_else(unreadable, RecordContent::Event)
        }
        JournalKind::Client => match decode_subscription(payload) {
            Ok((name, last_id)) => RecordContent::Subscription {
                name: name.to_owned(),
                last_id,
            },
            Err(e) => unreadable(e),
        },
    }
}

/// A service journal's metadata: byte 1 (its version) then the 16-byte
/// storage uid (docs/FORMAT.md).
fn storage_uid(kind: JournalKind, meta: &[u8]) -> Option<Uuid> {
    match (kind, meta) {
        (JournalKind::Service, [1, uid @ ..]) => Uuid::from_slice(uid).ok(),
        _ => None,
    }
}

/// Writes a repaired copy of `bytes` (a snapshot of a service journal or
/// client file) to `out`, which must not exist: every intact pending
/// record, in order and with its id, under the same owner, metadata
/// (storage uid) and capacity (or more, if the records kept need it), laid
/// out by the journal's own rebuild, durable before it appears at `out`.
/// The library opens it as a valid file of the same owner once it has the
/// owner's file name. Returns the inspection of `bytes` (what was kept and
/// lost). Errors: those of [`inspect_journal`]; an I/O error naming `out`.
pub fn salvage_journal(bytes: &[u8], out: &Path) -> Result<JournalInspection> {
    let inspection = inspect_journal(bytes)?;
    let examined = &inspection.examined;
    let records: Vec<(u64, Vec<u8>)> = examined
        .records
        .iter()
        .map(|r| (r.id, r.payload.clone()))
        .collect();
    let copy = JournalCopy {
        kind: inspection.kind.describe(),
        magic: examined.magic,
        owner: examined.owner,
        capacity: examined.capacity,
        meta: &examined.meta,
        first_seq: examined.next_free_seq,
        records: &records,
    };
    write_copy(out, &copy)?;
    Ok(inspection)
}

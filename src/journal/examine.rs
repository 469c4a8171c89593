//! Reading a journal from a snapshot of its bytes, without opening it as a
//! store: what recovery would find (the header in force, every intact
//! pending record in delivery order, the damage and what it costs), for
//! tools that look at a file another process may be writing. Nothing here
//! writes, maps or locks the file; the caller reads it (docs/TOOLS.md says
//! how, and why the result is consistent).
//!
//! And writing a repaired copy of such a snapshot to a new file, with the
//! journal's own rebuild (`create.rs`), as recovery does at open.

use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::journal::durability::Durability;
use crate::journal::file;
use crate::journal::format::{
    self, decode_record, record, Header, SlotError, DATA_OFFSET, SLOT_OFFSETS,
};
use crate::journal::log::{Journal, JournalConfig};
use crate::journal::open::choose_header;
use crate::journal::recovery::{recover, End, Recovered};

/// What one header slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotStatus {
    /// It passes its checksum; its generation.
    Valid(u64),
    /// Zeroes: never written.
    Blank,
    /// It fails its checksum or holds an impossible field.
    Damaged,
}

/// An intact pending record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExaminedRecord {
    pub id: u64,
    pub seq: u64,
    /// Where it starts in the data region.
    pub pos: u64,
    pub state: u8,
    pub payload: Vec<u8>,
}

/// Damaged records in the middle of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExaminedDamage {
    /// Where the first damaged record starts in the data region.
    pub pos: u64,
    pub first_seq: u64,
    pub records: u64,
    /// Pending events lost (see `recovery.rs`).
    pub lost: u64,
    /// Records of a sync a crash interrupted (nothing lost).
    pub torn: u64,
}

/// What a snapshot of a journal holds; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Examined {
    pub magic: [u8; 8],
    pub version: u32,
    pub generation: u64,
    pub owner: Uuid,
    pub data_size: u64,
    pub capacity: u64,
    /// Where the log starts: ring position and sequence number.
    pub tail: (u64, u64),
    pub meta: Vec<u8>,
    pub slots: [SlotStatus; 2],
    /// Every intact pending record, in id (delivery) order.
    pub records: Vec<ExaminedRecord>,
    pub damage: Vec<ExaminedDamage>,
    /// Where a partial record ends the log, if one does.
    pub interrupted_at: Option<u64>,
    /// The data region is shorter than the header says.
    pub truncated: bool,
    /// Records kept as pending whose state byte is unknown.
    pub unknown_states: u64,
    /// The lowest sequence number no byte of the file carries.
    pub next_free_seq: u64,
    /// The bytes the result depends on (see [`Examined::signature`]).
    signature: Vec<u8>,
}

impl Examined {
    /// The bytes the result was read from: the header pages, and the chain
    /// from the tail to where it ends plus the record header's length after
    /// it (which is zero at a clean end); the whole data region when the
    /// log is damaged, truncated or ends on a partial record. Two
    /// snapshots with the same signature describe the same file state.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// Reads a journal from `bytes`, a whole file. `Err` says, in words, why it
/// is not one (too short, no valid header slot, a version this library
/// does not read).
pub(crate) fn examine(bytes: &[u8]) -> std::result::Result<Examined, String> {
    let pages = DATA_OFFSET as usize;
    if bytes.len() < pages {
        return Err(format!(
            "it is {} bytes long, shorter than a journal's two header pages ({pages} bytes): \
             it is truncated, or not a journal",
            bytes.len()
        ));
    }
    let header = choose_header(&bytes[..pages])?;
    if !(format::OLDEST_VERSION..=format::VERSION).contains(&header.version) {
        return Err(format!(
            "it has format version {}, this library reads versions {} to {}",
            header.version,
            format::OLDEST_VERSION,
            format::VERSION
        ));
    }
    let data = &bytes[pages..];
    let ring = usize::try_from(header.data_size).unwrap_or(usize::MAX);
    let data = &data[..data.len().min(ring)];
    // As an open does: no hint when it is 0 or below the tail.
    let hint = (header.head_seq >= header.tail_seq).then_some(header.head_seq);
    let recovered = recover(
        data,
        header.data_size,
        (header.tail_pos, header.tail_seq),
        hint,
    );
    let records = live_records(data, &header, &recovered);
    let signature = signature(bytes, data, &header, &recovered);
    Ok(Examined {
        slots: slot_statuses(bytes),
        records,
        damage: damage_of(&recovered),
        interrupted_at: match recovered.end {
            End::Clean => None,
            End::Interrupted { pos } => Some(pos),
        },
        truncated: recovered.truncated,
        unknown_states: recovered.unknown_states,
        next_free_seq: recovered.next_free_seq(),
        signature,
        magic: header.magic,
        version: header.version,
        generation: header.generation,
        owner: header.owner,
        data_size: header.data_size,
        capacity: header.capacity,
        tail: (header.tail_pos, header.tail_seq),
        meta: header.meta,
    })
}

fn damage_of(recovered: &Recovered) -> Vec<ExaminedDamage> {
    recovered
        .damage
        .iter()
        .map(|d| ExaminedDamage {
            pos: d.pos,
            first_seq: d.first_seq,
            records: d.records,
            lost: d.lost,
            torn: d.torn,
        })
        .collect()
}

fn slot_statuses(bytes: &[u8]) -> [SlotStatus; 2] {
    SLOT_OFFSETS.map(|at| match Header::decode(&bytes[at..]) {
        Ok(h) => SlotStatus::Valid(h.generation),
        Err(SlotError::Blank) => SlotStatus::Blank,
        Err(SlotError::Damaged) => SlotStatus::Damaged,
    })
}

fn live_records(data: &[u8], header: &Header, recovered: &Recovered) -> Vec<ExaminedRecord> {
    recovered
        .live()
        .into_iter()
        .filter_map(|slot| {
            let (h, payload) = decode_record(data, slot.pos, header.data_size)?;
            Some(ExaminedRecord {
                id: slot.id,
                seq: h.seq,
                pos: slot.pos,
                state: h.state,
                payload: payload.to_vec(),
            })
        })
        .collect()
}

/// See [`Examined::signature`].
fn signature(bytes: &[u8], data: &[u8], header: &Header, recovered: &Recovered) -> Vec<u8> {
    let mut out = bytes[..DATA_OFFSET as usize].to_vec();
    if recovered.needs_salvage() || recovered.end != End::Clean {
        out.extend_from_slice(data);
        return out;
    }
    let (tail, head) = (header.tail_pos as usize, recovered.ring.head() as usize);
    let span = |from: usize, to: usize| data.get(from..to.min(data.len())).unwrap_or_default();
    if head >= tail {
        out.extend_from_slice(span(tail, head));
    } else {
        out.extend_from_slice(span(tail, data.len()));
        out.extend_from_slice(span(0, head));
    }
    out.extend_from_slice(span(head, head + record::HEADER_LEN));
    out
}

/// A journal to write as a new file: what [`write_copy`] needs.
pub(crate) struct JournalCopy<'a> {
    /// What kind of file it is, for messages.
    pub kind: &'static str,
    pub magic: [u8; 8],
    pub owner: Uuid,
    pub capacity: u64,
    pub meta: &'a [u8],
    /// The first sequence number (past every one the original holds).
    pub first_seq: u64,
    /// The records, in id order: (id, payload).
    pub records: &'a [(u64, Vec<u8>)],
}

/// Writes `copy` as a new, complete, durable journal at `out` (under a
/// temporary name, then linked into place). `out` must not exist: it is
/// never replaced.
pub(crate) fn write_copy(out: &Path, copy: &JournalCopy<'_>) -> Result<()> {
    let kept: u64 = copy
        .records
        .iter()
        .map(|(_, p)| format::record_len(p.len()))
        .sum();
    let config = JournalConfig {
        kind: copy.kind,
        magic: copy.magic,
        owner: copy.owner,
        capacity: copy.capacity.max(kept).max(1),
        durability: Durability::Sync,
        device_layer: None,
    };
    let mut journal = Journal::build(out, &config, copy.first_seq, copy.meta, copy.records)?;
    if !file::publish_new(&mut journal.file, out)? {
        return Err(Error::Io {
            context: format!("create {}", out.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it already exists; give a path that does not",
            ),
        });
    }
    Ok(())
}

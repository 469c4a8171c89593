//! A journal file read from outside, from docs/FORMAT.md alone (none of the
//! library's own code): the header slot in force and the chain of records
//! from its tail, so that a test knows which bytes belong to which record.
//!
//! Offsets are of the whole file unless a name says "data" (relative to the
//! data region, which starts at [`DATA_OFFSET`]).

use std::collections::HashMap;
use std::ops::Range;

use softnet_persistence::{Event, EventKind, Uuid};

use crate::files::{u32_at, u64_at, DATA_OFFSET, RECORD_HEADER, SLOT_LEN, SLOT_OFFSETS, STATE};

/// The longest payload the format allows (a stored event is at most 2344).
pub const MAX_PAYLOAD: u64 = 2400;
/// `MAX_RECORD_LEN`: a wrap marker only fills less than this.
pub const MAX_RECORD_LEN: u64 = 2432;
/// Record types.
pub const TYPE_DATA: u8 = 1;
pub const TYPE_WRAP: u8 = 2;

/// The header slot in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHeader {
    /// Which slot (0 at offset 0, 1 at offset 4096).
    pub slot: usize,
    pub magic: [u8; 8],
    pub generation: u64,
    pub owner: Uuid,
    pub data_size: u64,
    pub capacity: u64,
    pub tail_pos: u64,
    pub tail_seq: u64,
    pub meta: Vec<u8>,
}

/// Header slot `slot` (0 or 1), if it is valid (docs/FORMAT.md, "Header slot").
pub fn read_slot(bytes: &[u8], slot: usize) -> Option<SlotHeader> {
    let at = SLOT_OFFSETS[slot];
    let s = bytes.get(at..at + SLOT_LEN)?;
    if crc32fast::hash(&s[..252]) != u32_at(s, 252) || u32_at(s, 12) as usize != SLOT_LEN {
        return None;
    }
    let (meta_len, data_offset) = (u32_at(s, 80) as usize, u64_at(s, 40));
    let (data_size, tail_pos) = (u64_at(s, 48), u64_at(s, 64));
    let size_ok = data_size % 8 == 0 && (4096..=1 << 40).contains(&data_size);
    let tail_ok = tail_pos % 8 == 0 && tail_pos + RECORD_HEADER as u64 <= data_size;
    if meta_len > 64 || data_offset != DATA_OFFSET as u64 || !size_ok || !tail_ok {
        return None;
    }
    Some(SlotHeader {
        slot,
        magic: s[..8].try_into().unwrap(),
        generation: u64_at(s, 16),
        owner: Uuid::from_slice(&s[24..40]).unwrap(),
        data_size,
        capacity: u64_at(s, 56),
        tail_pos,
        tail_seq: u64_at(s, 72),
        meta: s[84..84 + meta_len].to_vec(),
    })
}

/// The valid slot with the higher generation.
pub fn choose_slot(bytes: &[u8]) -> Option<SlotHeader> {
    (0..2)
        .filter_map(|slot| read_slot(bytes, slot))
        .max_by_key(|h| h.generation)
}

/// One record (or wrap marker) of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Laid {
    /// Where it starts in the data region.
    pub pos: u64,
    /// Bytes it occupies in the ring (a marker: to the end of the ring).
    pub len: u64,
    pub payload_len: u64,
    pub kind: u8,
    pub state: u8,
    pub seq: u64,
    pub id: u64,
    /// Bytes 13..16 (version 2): how many records before this one were not
    /// yet known durable when it was written; 0 in version 1.
    pub unsynced: u32,
    /// Pending: state `L`, and no later copy of the same id in the chain.
    pub live: bool,
}

/// What a byte of a record is to recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Under the CRC: the header (but the state byte) and the payload.
    Covered,
    /// The state byte, outside the CRC.
    State,
    /// Padding after the payload, or the body of a wrap marker.
    Padding,
}

impl Laid {
    pub fn is_marker(&self) -> bool {
        self.kind == TYPE_WRAP
    }

    /// File offset of the record's first byte.
    pub fn start(&self) -> usize {
        DATA_OFFSET + self.pos as usize
    }

    /// File offset of the state byte.
    pub fn state_at(&self) -> usize {
        self.start() + STATE
    }

    /// File offsets of the header and payload (the CRC's run, plus the
    /// CRC and the state byte).
    pub fn covered(&self) -> Range<usize> {
        self.start()..self.start() + RECORD_HEADER + self.payload_len as usize
    }

    /// File offsets of the payload.
    pub fn payload_range(&self) -> Range<usize> {
        self.start() + RECORD_HEADER..self.covered().end
    }

    /// File offsets the record occupies.
    pub fn occupied(&self) -> Range<usize> {
        self.start()..self.start() + self.len as usize
    }

    /// What the byte at file offset `at` is to this record, if it is one
    /// of its bytes.
    pub fn part(&self, at: usize) -> Option<Part> {
        if !self.occupied().contains(&at) {
            None
        } else if at == self.state_at() {
            Some(Part::State)
        } else if self.covered().contains(&at) {
            Some(Part::Covered)
        } else {
            Some(Part::Padding)
        }
    }
}

/// A journal file: its header in force and its chain, tail to head.
#[derive(Debug, Clone)]
pub struct Layout {
    pub header: SlotHeader,
    pub records: Vec<Laid>,
    /// Data offset where the chain ends (the head).
    pub head: u64,
}

impl Layout {
    /// Reads `bytes` (a whole journal file); `None` if no header slot is
    /// valid.
    pub fn parse(bytes: &[u8]) -> Option<Layout> {
        let header = choose_slot(bytes)?;
        let data = bytes.get(DATA_OFFSET..).unwrap_or_default();
        let size = header.data_size;
        let (mut pos, mut seq, mut walked) = (header.tail_pos, header.tail_seq, 0);
        let mut records = Vec::new();
        while let Some(rec) = valid_record(data, size, pos, seq) {
            walked += rec.len;
            if walked >= size {
                break;
            }
            pos = if rec.is_marker() {
                0
            } else {
                rec.pos + rec.len
            };
            if size - pos < RECORD_HEADER as u64 {
                pos = 0; // implicit wrap
            }
            seq += 1;
            records.push(rec);
        }
        retire_copied(&mut records);
        Some(Layout {
            header,
            records,
            head: pos,
        })
    }

    /// The pending records, in chain order.
    pub fn live(&self) -> impl Iterator<Item = &Laid> + '_ {
        self.records.iter().filter(|r| r.live)
    }

    /// The record holding the byte at file offset `at`, and what that byte
    /// is to it.
    pub fn find(&self, at: usize) -> Option<(usize, Part)> {
        self.records
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.part(at).map(|p| (i, p)))
    }

    /// The payload of `rec` in `bytes`.
    pub fn payload<'a>(&self, bytes: &'a [u8], rec: &Laid) -> &'a [u8] {
        &bytes[rec.payload_range()]
    }
}

/// The record at data offset `pos` if it is valid (docs/FORMAT.md,
/// "Validity") and carries sequence number `seq`; not yet judged live.
fn valid_record(data: &[u8], size: u64, pos: u64, seq: u64) -> Option<Laid> {
    let p = pos as usize;
    let h = data.get(p..p + RECORD_HEADER)?;
    let (len, kind, id) = (u64::from(u32_at(h, 8)), h[12], u64_at(h, 24));
    let reserved_zero = h[5..8].iter().all(|&b| b == 0);
    let occupied = (RECORD_HEADER as u64 + len).next_multiple_of(8);
    let shape = match kind {
        TYPE_WRAP => len == 0 && id == 0 && size - pos < MAX_RECORD_LEN,
        TYPE_DATA => id <= seq,
        _ => false,
    };
    if pos + RECORD_HEADER as u64 > size
        || !reserved_zero
        || len > MAX_PAYLOAD
        || !shape
        || pos + occupied > size
        || u64_at(h, 16) != seq
    {
        return None;
    }
    let run = data.get(p + 8..p + RECORD_HEADER + len as usize)?;
    if crc32fast::hash(run) != u32_at(h, 0) {
        return None;
    }
    Some(Laid {
        pos,
        len: if kind == TYPE_WRAP {
            size - pos
        } else {
            occupied
        },
        payload_len: len,
        kind,
        state: h[STATE],
        seq,
        id,
        unsynced: u32::from_le_bytes([h[13], h[14], h[15], 0]),
        live: kind == TYPE_DATA && h[STATE] == b'L',
    })
}

/// A copy (id != seq) retires every older record of the same id.
fn retire_copied(records: &mut [Laid]) {
    let mut newest: HashMap<u64, usize> = HashMap::new();
    for i in 0..records.len() {
        let r = &records[i];
        if r.is_marker() {
            continue;
        }
        if let Some(&older) = newest.get(&r.id) {
            if r.id != r.seq {
                records[older].live = false;
            }
        }
        newest.insert(records[i].id, i);
    }
}

/// The event a service journal's record payload holds (docs/FORMAT.md,
/// "Event payload"), if it is well formed.
pub fn decode_event(payload: &[u8]) -> Option<Event> {
    let fixed = payload.get(..32)?;
    let kind = match fixed[0] {
        1 => EventKind::Replacing,
        2 => EventKind::Queueing,
        4 => EventKind::Private,
        5 => EventKind::ReplacingNull,
        _ => return None,
    };
    let n = usize::from(u16::from_le_bytes([fixed[2], fixed[3]]));
    let a = usize::from(u16::from_le_bytes([fixed[4], fixed[5]]));
    // Flags: bit 0 a client id, bit 1 a raise time (8 bytes before the name).
    let timed = fixed[1] & 2 == 2;
    let at = if timed { 40 } else { 32 };
    if payload.len() != at + n + a || fixed[1] & !3 != 0 {
        return None;
    }
    let client = u64_at(fixed, 8) as i64;
    Some(Event {
        kind,
        name: String::from_utf8(payload[at..at + n].to_vec()).ok()?,
        args: payload[at + n..].to_vec(),
        client_id: (fixed[1] & 1 == 1).then_some(client),
        uid: Uuid::from_slice(&fixed[16..32]).ok()?,
        seq: 0,
        raised_at_ms: timed.then(|| u64_at(payload, 32)),
    })
}

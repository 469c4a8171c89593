//! The journal's on-disk format: named offsets and the codecs of the header
//! slots and records. `docs/FORMAT.md` is the prose description of exactly
//! these constants; the unit tests below check the constants against it and
//! the journal tests check a written file.
//!
//! All integers are little-endian. Decoding never panics: every read is
//! bounds-checked and a bad field is a `None`/`Err`, not an abort.

use std::path::Path;

use uuid::Uuid;

use crate::error::Error;

/// Bytes of the two header pages; the data region starts here.
pub const DATA_OFFSET: u64 = 8192;
/// File offsets of the two header slots: separate 4 KiB pages, so that the
/// write of one (a whole page, on flash a whole program unit) never touches
/// the other.
pub const SLOT_OFFSETS: [usize; 2] = [0, 4096];
/// Bytes of one header slot, CRC included.
pub const SLOT_LEN: usize = 256;

/// Header slot field offsets (within the slot).
pub mod slot {
    /// `[u8; 8]` file magic.
    pub const MAGIC: usize = 0;
    /// `u32` format version.
    pub const VERSION: usize = 8;
    /// `u32` slot length ([`super::SLOT_LEN`]).
    pub const SLOT_LEN: usize = 12;
    /// `u64` generation; recovery takes the valid slot with the higher one.
    pub const GENERATION: usize = 16;
    /// `[u8; 16]` owner uid (the service uid of the file name).
    pub const OWNER_UID: usize = 24;
    /// `u64` offset of the data region in the file.
    pub const DATA_OFFSET: usize = 40;
    /// `u64` size of the data region (the ring) in bytes.
    pub const DATA_SIZE: usize = 48;
    /// `u64` logical capacity in bytes of live records.
    pub const CAPACITY: usize = 56;
    /// `u64` ring position (relative to the data region) where recovery starts.
    pub const TAIL_POS: usize = 64;
    /// `u64` sequence number expected at `TAIL_POS`.
    pub const TAIL_SEQ: usize = 72;
    /// `u32` length of the metadata blob.
    pub const META_LEN: usize = 80;
    /// `[u8; 64]` metadata blob (the store's storage uid).
    pub const META: usize = 84;
    /// `u64` head hint: every record with a sequence number from
    /// `TAIL_SEQ` up to (not including) this one was written before this
    /// slot was; 0 when unknown (a file of an earlier release). Recovery
    /// searches only a bounded stretch past the end of the log when the
    /// log reaches it (docs/FORMAT.md, Recovery).
    pub const HEAD_SEQ: usize = 148;
    /// `u32` CRC32 of bytes `0..CRC` of the slot.
    pub const CRC: usize = 252;
}

/// Record header field offsets (within the record).
pub mod record {
    /// `u32` CRC32 of bytes `COVERED..32 + len`: the rest of the header and
    /// the payload, one contiguous run.
    pub const CRC: usize = 0;
    /// `u8` state (live / removed how); outside the CRC, updated in place.
    pub const STATE: usize = 4;
    /// `[u8; 3]` reserved, zero.
    pub const RESERVED_A: usize = 5;
    /// First byte covered by the CRC.
    pub const COVERED: usize = 8;
    /// `u32` payload length.
    pub const LEN: usize = 8;
    /// `u8` record type.
    pub const TYPE: usize = 12;
    /// `u24` the durable watermark: how many records before this one were
    /// not yet known durable when it was written (its sequence number minus
    /// the lowest one not known durable), saturating at
    /// [`super::MAX_UNSYNCED`]; 0 in version 1.
    pub const UNSYNCED: usize = 13;
    /// `u64` sequence number: one more than the record before it.
    pub const SEQ: usize = 16;
    /// `u64` record id: its sequence number when first written; a copy made
    /// by relocation or rebuild keeps the original's id.
    pub const ID: usize = 24;
    /// Header length; the payload follows, padded to 8 bytes.
    pub const HEADER_LEN: usize = 32;
}

/// Format version written by this library: 3. Version 2 added the durable
/// watermark ([`record::UNSYNCED`]); version 3 changes nothing in the
/// journal's own layout: it marks files whose service events may carry a
/// raise time (src/service/codec.rs), which a release that reads only
/// versions 1 and 2 would take for damaged records.
pub const VERSION: u32 = 3;
/// The oldest version this library reads: 1, whose records have 0 where
/// version 2 has the watermark (which means every record before them was
/// durable: recovery judges damage exactly as version 1 did).
pub const OLDEST_VERSION: u32 = 1;
/// The largest value of [`record::UNSYNCED`] (it saturates there).
pub const MAX_UNSYNCED: u32 = 0xFF_FFFF;
/// Largest payload a record of the format may carry: a bound of the file
/// format (it sizes the ring's spare room), above what any user of the
/// journal appends.
pub const MAX_PAYLOAD_LEN: usize = 2400;
/// Largest record, header and padding included.
pub const MAX_RECORD_LEN: u64 = record_len(MAX_PAYLOAD_LEN);
/// Longest metadata blob: what a [`RecordLog`](crate::backend::RecordLog)
/// must keep.
pub const MAX_META_LEN: usize = crate::backend::MAX_METADATA_LEN;

// Every record a store may append fits the format, the metadata fits its
// place in the header slot (before the CRC), and a record takes in the file
// what the stores count against their capacity.
const _: () = assert!(crate::backend::MAX_RECORD_LEN <= MAX_PAYLOAD_LEN);
const _: () = assert!(slot::META + MAX_META_LEN <= slot::CRC);
const _: () = {
    let mut len = 0;
    while len <= MAX_PAYLOAD_LEN {
        assert!(record_len(len) == crate::backend::stored_size(len));
        len += 1;
    }
};

/// Record types.
pub const TYPE_DATA: u8 = 1;
/// A wrap marker: the next record is at the start of the data region.
pub const TYPE_WRAP: u8 = 2;

/// Record states. Printable so a hex dump reads well, and at least two bits
/// apart from each other, so a single flipped bit never turns one valid
/// state into another (it becomes an unknown state, which recovery keeps
/// as live and reports).
pub const STATE_LIVE: u8 = b'L';
/// Removed: the broker acknowledged it.
pub const STATE_ACKED: u8 = b'A';
/// Removed: superseded by a newer Replacing instance.
pub const STATE_SUPERSEDED: u8 = b'S';
/// Removed: dropped for capacity (or unreadable).
pub const STATE_DROPPED: u8 = b'X';
/// Removed: ancient data invalidated.
pub const STATE_INVALIDATED: u8 = b'V';
/// Removed: older than the store's age limit ("old"; version 3).
pub const STATE_EXPIRED: u8 = b'O';

/// True for every state a record may legitimately have.
pub fn is_known_state(state: u8) -> bool {
    matches!(
        state,
        STATE_LIVE
            | STATE_ACKED
            | STATE_SUPERSEDED
            | STATE_DROPPED
            | STATE_INVALIDATED
            | STATE_EXPIRED
    )
}

/// Bytes a record with `payload_len` bytes of payload occupies.
pub const fn record_len(payload_len: usize) -> u64 {
    (record::HEADER_LEN + payload_len).next_multiple_of(8) as u64
}

/// Size of the ring for a logical capacity, rounded up to a page: room for
/// `capacity` bytes of live records plus one record of transient overshoot
/// (a new Replacing instance is written before the old one is removed),
/// one record of waste where a record wraps, and two records of reserve so
/// the oldest live record can always be copied forward to reclaim the holes
/// behind it (see `log.rs`, `make_room`).
pub fn data_size_for(capacity: u64) -> u64 {
    (capacity + 4 * MAX_RECORD_LEN + 128).next_multiple_of(4096)
}

/// The largest capacity a journal is created or resized with, on any
/// build (what a build can map may be less: [`check_capacity`]).
pub const MAX_JOURNAL_CAPACITY: u64 = 1 << 40;

/// The file length of a new journal of `capacity` (at most
/// [`MAX_JOURNAL_CAPACITY`]) bytes: the header pages and the ring.
pub fn file_len_for(capacity: u64) -> u64 {
    DATA_OFFSET + data_size_for(capacity.min(MAX_JOURNAL_CAPACITY))
}

/// The longest file a build whose addresses have `pointer_bits` bits maps:
/// the map is one slice, and a slice spans at most `isize::MAX` bytes, so
/// 2 GiB less one byte on a 32-bit build (on a 64-bit one, far more than
/// the format's own bound).
pub fn max_map_len(pointer_bits: u32) -> u64 {
    1u64.checked_shl(pointer_bits.saturating_sub(1))
        .map_or(u64::MAX, |n| n - 1)
}

/// Refuses a capacity out of the format's range, or whose file a build with
/// `pointer_bits`-bit addresses cannot map.
pub fn check_capacity(path: &Path, capacity: u64, pointer_bits: u32) -> Result<(), Error> {
    if capacity == 0 || capacity > MAX_JOURNAL_CAPACITY {
        return Err(Error::invalid(format!(
            "{}: journal capacity {capacity} is out of range (1 to {MAX_JOURNAL_CAPACITY} bytes)",
            path.display()
        )));
    }
    let len = file_len_for(capacity);
    let max = max_map_len(pointer_bits);
    if len > max {
        return Err(Error::invalid(format!(
            "{}: a journal capacity of {capacity} bytes needs a file of {len} bytes, more \
             than a {pointer_bits}-bit build can map (at most {max} bytes); choose a smaller \
             capacity",
            path.display()
        )));
    }
    Ok(())
}

/// Refuses an existing journal that a build with `pointer_bits`-bit
/// addresses cannot map, before anything is mapped or written: its header
/// says it is `wanted` bytes long (the longer of its ring and what a
/// rebuild for its capacity lays out), the file has `len`. An I/O error
/// (the file cannot be used here, as when it cannot be opened), naming the
/// file and its size; the file is left as it is.
pub fn check_map_len(path: &Path, wanted: u64, len: u64, pointer_bits: u32) -> Result<(), Error> {
    let max = max_map_len(pointer_bits);
    if wanted <= max {
        return Ok(());
    }
    let size = if wanted == len {
        format!("it is a journal of {wanted} bytes")
    } else {
        format!("its header describes a journal of {wanted} bytes (the file has {len})")
    };
    Err(Error::Io {
        context: format!("map {}", path.display()),
        source: std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "{size}, more than a {pointer_bits}-bit build can map (at most {max} \
                 bytes); open it with a 64-bit build of the library"
            ),
        ),
    })
}

/// Whether this build can map the journal file of `len` bytes whose
/// header is `header`: the longer of its ring and of what a rebuild for its
/// capacity (a resize, a repair) lays out must fit ([`mappable_on`]).
pub fn check_mappable(path: &Path, header: &Header, len: u64) -> Result<Result<(), String>, Error> {
    mappable_on(path, header, len, usize::BITS)
}

/// [`check_mappable`] on a build whose addresses have `pointer_bits` bits.
/// A file too large to map (written by a 64-bit build, opened by a 32-bit
/// one) is refused before anything is mapped or written
/// ([`check_map_len`]); a header that describes more than the build can map
/// on a file it can map is damage, and why (`Ok(Err(why))`): the file is
/// replaced as an unusable one, as on any build when it is foreign.
pub fn mappable_on(
    path: &Path,
    header: &Header,
    len: u64,
    pointer_bits: u32,
) -> Result<Result<(), String>, Error> {
    let wanted = (DATA_OFFSET + header.data_size).max(file_len_for(header.capacity));
    let max = max_map_len(pointer_bits);
    if wanted <= max {
        return Ok(Ok(()));
    }
    if len <= max {
        return Ok(Err(format!(
            "its header describes a journal of {wanted} bytes on a file of {len} bytes, more \
             than a {pointer_bits}-bit build can map (at most {max} bytes)"
        )));
    }
    check_map_len(path, wanted, len, pointer_bits).map(Ok)
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn get_u24(b: &[u8], at: usize) -> Option<u32> {
    let v = b.get(at..at + 3)?;
    Some(u32::from_le_bytes([v[0], v[1], v[2], 0]))
}

pub(crate) fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// One header slot, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// File magic.
    pub magic: [u8; 8],
    /// Format version.
    pub version: u32,
    /// Slot generation.
    pub generation: u64,
    /// Owner uid (service uid).
    pub owner: Uuid,
    /// Data region offset.
    pub data_offset: u64,
    /// Data region size.
    pub data_size: u64,
    /// Logical capacity.
    pub capacity: u64,
    /// Where recovery starts.
    pub tail_pos: u64,
    /// Sequence number expected there.
    pub tail_seq: u64,
    /// Metadata blob.
    pub meta: Vec<u8>,
    /// The head hint ([`slot::HEAD_SEQ`]); 0 when unknown.
    pub head_seq: u64,
}

/// Why a header slot was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// Zero-filled: never written.
    Blank,
    /// Checksum mismatch or impossible field.
    Damaged,
}

impl Header {
    /// Encodes into a slot image.
    pub fn encode(&self) -> [u8; SLOT_LEN] {
        let mut b = [0u8; SLOT_LEN];
        put(&mut b, slot::MAGIC, &self.magic);
        put(&mut b, slot::VERSION, &self.version.to_le_bytes());
        put(&mut b, slot::SLOT_LEN, &(SLOT_LEN as u32).to_le_bytes());
        put(&mut b, slot::GENERATION, &self.generation.to_le_bytes());
        put(&mut b, slot::OWNER_UID, self.owner.as_bytes());
        put(&mut b, slot::DATA_OFFSET, &self.data_offset.to_le_bytes());
        put(&mut b, slot::DATA_SIZE, &self.data_size.to_le_bytes());
        put(&mut b, slot::CAPACITY, &self.capacity.to_le_bytes());
        put(&mut b, slot::TAIL_POS, &self.tail_pos.to_le_bytes());
        put(&mut b, slot::TAIL_SEQ, &self.tail_seq.to_le_bytes());
        let meta = &self.meta[..self.meta.len().min(MAX_META_LEN)];
        put(&mut b, slot::META_LEN, &(meta.len() as u32).to_le_bytes());
        put(&mut b, slot::META, meta);
        put(&mut b, slot::HEAD_SEQ, &self.head_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..slot::CRC]);
        put(&mut b, slot::CRC, &crc.to_le_bytes());
        b
    }

    /// Decodes a slot image; checks the CRC and the internal consistency
    /// of its fields (not the magic or version: the caller reports those).
    pub fn decode(b: &[u8]) -> Result<Header, SlotError> {
        let b = b.get(..SLOT_LEN).ok_or(SlotError::Damaged)?;
        if b.iter().all(|&x| x == 0) {
            return Err(SlotError::Blank);
        }
        let crc = get_u32(b, slot::CRC).ok_or(SlotError::Damaged)?;
        if crc != crc32fast::hash(&b[..slot::CRC]) {
            return Err(SlotError::Damaged);
        }
        let u64_at = |at| get_u64(b, at).ok_or(SlotError::Damaged);
        let meta_len = get_u32(b, slot::META_LEN).ok_or(SlotError::Damaged)? as usize;
        if meta_len > MAX_META_LEN || get_u32(b, slot::SLOT_LEN) != Some(SLOT_LEN as u32) {
            return Err(SlotError::Damaged);
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[slot::MAGIC..slot::MAGIC + 8]);
        let header = Header {
            magic,
            version: get_u32(b, slot::VERSION).ok_or(SlotError::Damaged)?,
            generation: u64_at(slot::GENERATION)?,
            owner: Uuid::from_slice(&b[slot::OWNER_UID..slot::OWNER_UID + 16])
                .map_err(|_| SlotError::Damaged)?,
            data_offset: u64_at(slot::DATA_OFFSET)?,
            data_size: u64_at(slot::DATA_SIZE)?,
            capacity: u64_at(slot::CAPACITY)?,
            tail_pos: u64_at(slot::TAIL_POS)?,
            tail_seq: u64_at(slot::TAIL_SEQ)?,
            meta: b[slot::META..slot::META + meta_len].to_vec(),
            head_seq: u64_at(slot::HEAD_SEQ)?,
        };
        let geometry_ok = header.data_offset == DATA_OFFSET
            && header.data_size >= 4096
            && header.data_size.is_multiple_of(8)
            && header.data_size <= (1 << 40)
            && header.capacity <= header.data_size
            && header.tail_pos.is_multiple_of(8)
            && header.tail_pos < header.data_size
            && header.data_size - header.tail_pos >= record::HEADER_LEN as u64;
        if !geometry_ok {
            return Err(SlotError::Damaged);
        }
        Ok(header)
    }
}

/// A record header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// State byte.
    pub state: u8,
    /// Record type.
    pub kind: u8,
    /// Sequence number.
    pub seq: u64,
    /// Record id.
    pub id: u64,
    /// The durable watermark ([`record::UNSYNCED`]).
    pub unsynced: u32,
}

impl RecordHeader {
    /// Total bytes of this record.
    pub fn record_len(&self) -> u64 {
        record_len(self.len as usize)
    }
}

/// Writes the header of a record whose payload (`payload_len` bytes) is
/// already in place after it in `rec`, computing the CRC over the covered
/// run. The state is live. `unsynced` is the durable watermark
/// ([`record::UNSYNCED`]), saturated at [`MAX_UNSYNCED`] here.
pub fn seal_record(rec: &mut [u8], kind: u8, seq: u64, id: u64, unsynced: u64, payload_len: usize) {
    rec[..record::HEADER_LEN].fill(0);
    put(rec, record::LEN, &(payload_len as u32).to_le_bytes());
    rec[record::STATE] = STATE_LIVE;
    rec[record::TYPE] = kind;
    let unsynced = unsynced.min(u64::from(MAX_UNSYNCED)) as u32;
    put(rec, record::UNSYNCED, &unsynced.to_le_bytes()[..3]);
    put(rec, record::SEQ, &seq.to_le_bytes());
    put(rec, record::ID, &id.to_le_bytes());
    let crc = crc32fast::hash(&rec[record::COVERED..record::HEADER_LEN + payload_len]);
    put(rec, record::CRC, &crc.to_le_bytes());
}

/// Decodes the record at `pos` of the data region `data` whose ring size is
/// `ring_size` (`data` may be shorter when the file was truncated). Returns
/// the header and payload if the record is structurally valid and its CRC
/// matches. The state byte is returned as found, not judged.
pub fn decode_record(data: &[u8], pos: u64, ring_size: u64) -> Option<(RecordHeader, &[u8])> {
    let header = decode_header(data, pos, ring_size)?;
    let start = pos as usize + record::HEADER_LEN;
    let payload = data.get(start..start + header.len as usize)?;
    crc_matches(data, pos, payload.len()).then_some((header, payload))
}

/// Whether the record at `pos`, whose header [`decode_header`] accepted
/// with a payload of `payload_len` bytes, matches its stored CRC: the check
/// [`decode_record`] adds, made apart by recovery (`journal/chain.rs`).
pub fn crc_matches(data: &[u8], pos: u64, payload_len: usize) -> bool {
    let Ok(start) = usize::try_from(pos) else {
        return false;
    };
    let end = payload_len
        .checked_add(record::HEADER_LEN)
        .and_then(|n| n.checked_add(start));
    let covered = end.and_then(|end| data.get(start.checked_add(record::COVERED)?..end));
    covered
        .zip(get_u32(data, start + record::CRC))
        .is_some_and(|(covered, stored)| crc32fast::hash(covered) == stored)
}

/// [`decode_record`] without the CRC: the header of a record at `pos`
/// whose fields are possible and whose bytes lie within `data`, whether or
/// not its CRC matches. Recovery walks a long chain by these while a second
/// thread checks the CRCs (`journal/chain.rs`).
pub fn decode_header(data: &[u8], pos: u64, ring_size: u64) -> Option<RecordHeader> {
    let start = usize::try_from(pos).ok()?;
    let head = data.get(start..start.checked_add(record::HEADER_LEN)?)?;
    let header = RecordHeader {
        len: get_u32(head, record::LEN)?,
        state: head[record::STATE],
        kind: head[record::TYPE],
        seq: get_u64(head, record::SEQ)?,
        id: get_u64(head, record::ID)?,
        unsynced: get_u24(head, record::UNSYNCED)?,
    };
    let reserved_zero = head[record::RESERVED_A..record::RESERVED_A + 3] == [0; 3];
    let kind_ok = match header.kind {
        TYPE_DATA => header.len as usize <= MAX_PAYLOAD_LEN && header.id <= header.seq,
        TYPE_WRAP => header.len == 0 && header.id == 0,
        _ => false,
    };
    let end = start + record::HEADER_LEN + header.len as usize;
    if !reserved_zero || !kind_ok || pos + header.record_len() > ring_size || end > data.len() {
        return None;
    }
    Some(header)
}

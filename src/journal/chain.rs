//! The chain of recovery (`recovery.rs`): from the tail, each record that
//! is valid (structure, CRC) and carries the next sequence number.
//!
//! A long chain (a large backlog at open) is walked by two threads at once:
//! this one by the record headers alone, judging everything but the CRC and
//! building the ring, while a second one follows the same chain by each
//! record's length, type and sequence number alone, checking its CRC (the
//! largest part of reading a record). For every record this thread takes,
//! both compute the same next position, and the checking walk stops where a
//! CRC fails, so if it gets at least as far as this one, every record taken
//! passed its CRC and the result is the one a single checked walk gives.
//! If it stopped short (a damaged record), or the thread could not be
//! started, the chain is walked again by this thread, checking each record
//! as it goes: damage costs a second walk; an intact log is taken in the
//! time of the slower of the two walks.

use crate::journal::format::{
    self, decode_header, decode_record, record, record_len, RecordHeader, MAX_PAYLOAD_LEN,
    STATE_LIVE, TYPE_WRAP,
};
use crate::journal::ring::{normalize, Ring, Slot};

/// Records the head hint must promise before the CRCs are checked on a
/// second thread: below that, starting the thread (tens of microseconds)
/// costs more than the checks it takes over (about 20 ns a record).
pub(super) const SECOND_THREAD_FROM: usize = 16_384;

/// What [`next_in_chain`] checks of a record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Check {
    /// Structure and CRC: the record is intact.
    Crc,
    /// Structure only: the CRC is checked by another walk of the chain.
    HeaderOnly,
}

/// Counts that the walks of one recovery share.
#[derive(Default, Debug)]
pub(super) struct Walk {
    /// Bytes of ring walked: a chain longer than the ring can only come from
    /// damage that happens to validate; never loop around it.
    pub walked: u64,
    pub unknown_states: u64,
    /// The highest durable watermark of the records walked: every record
    /// below it was durable.
    pub durable: u64,
}

/// The chain from the tail of the ring `start` makes, and the counts of
/// its walk; with `second_thread` (recovery: when the head hint promises
/// [`SECOND_THREAD_FROM`] records or more), the CRCs are checked on a
/// second thread (see the module docs).
pub(super) fn walk(
    data: &[u8],
    ring_size: u64,
    start: impl Fn() -> Ring,
    second_thread: bool,
) -> (Ring, Walk) {
    if second_thread && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
        if let Some(walked) = walk_checked_elsewhere(data, ring_size, start()) {
            return walked;
        }
    }
    let mut ring = start();
    let mut walk = Walk::default();
    extend(data, ring_size, &mut ring, &mut walk, Check::Crc);
    (ring, walk)
}

/// Pushes every record that continues the chain from the ring's head.
fn extend(data: &[u8], ring_size: u64, ring: &mut Ring, walk: &mut Walk, check: Check) {
    let mut pos = ring.head();
    while let Some((slot, next)) = next_in_chain(data, ring_size, pos, ring.next_seq(), walk, check)
    {
        ring.push_recovered(slot, next);
        pos = ring.head();
    }
}

/// The chain walked here by headers alone while a second thread walks it
/// checking each CRC; `None` if the thread could not be started or
/// failed, or its walk ended earlier (a record failed its CRC).
fn walk_checked_elsewhere(data: &[u8], ring_size: u64, mut ring: Ring) -> Option<(Ring, Walk)> {
    let (first_pos, first_seq) = (ring.head(), ring.next_seq());
    std::thread::scope(|scope| {
        let checker = std::thread::Builder::new()
            .name("snp-recover".into())
            .spawn_scoped(scope, move || {
                checked_until(data, ring_size, first_pos, first_seq)
            })
            .ok()?;
        let mut walk = Walk::default();
        extend(data, ring_size, &mut ring, &mut walk, Check::HeaderOnly);
        let checked_to = checker.join().ok()?;
        (checked_to >= ring.next_seq()).then_some((ring, walk))
    })
}

/// The checking walk (see the module docs): from `pos`, with sequence
/// number `seq`, follows the records by their length, type and sequence
/// number while each matches its CRC; returns the sequence number it
/// stopped at. It may go on past a record the other walk refuses (that
/// walk judges the rest of the header), never stops before one it takes,
/// and never walks more than the ring.
fn checked_until(data: &[u8], ring_size: u64, mut pos: u64, mut seq: u64) -> u64 {
    let mut walked = 0u64;
    loop {
        let Ok(at) = usize::try_from(pos) else {
            return seq;
        };
        let (Some(len), Some(kind), Some(found)) = (
            format::get_u32(data, at + record::LEN),
            data.get(at + record::TYPE),
            format::get_u64(data, at + record::SEQ),
        ) else {
            return seq;
        };
        let len = len as usize;
        if found != seq || len > MAX_PAYLOAD_LEN || !format::crc_matches(data, pos, len) {
            return seq;
        }
        let next = match *kind {
            TYPE_WRAP => ring_size,
            _ => pos + record_len(len),
        };
        walked += next - pos;
        if walked >= ring_size {
            return seq;
        }
        pos = normalize(ring_size, next);
        seq += 1;
    }
}

/// The record at `pos` if it continues the chain with sequence `seq`: its
/// slot and where the next one starts.
pub(super) fn next_in_chain(
    data: &[u8],
    ring_size: u64,
    pos: u64,
    seq: u64,
    walk: &mut Walk,
    check: Check,
) -> Option<(Slot, u64)> {
    let h = match check {
        Check::Crc => decode_record(data, pos, ring_size)?.0,
        Check::HeaderOnly => decode_header(data, pos, ring_size)?,
    };
    if h.seq != seq {
        return None;
    }
    let (slot, next) = chained_slot(&h, pos, ring_size)?;
    walk.walked += u64::from(slot.len);
    if walk.walked >= ring_size {
        return None;
    }
    if h.kind != TYPE_WRAP && !format::is_known_state(h.state) {
        walk.unknown_states += 1;
    }
    walk.durable = walk
        .durable
        .max(h.seq.saturating_sub(u64::from(h.unsynced)));
    Some((slot, next))
}

/// The slot of a valid record or wrap marker at `pos` that continues the
/// chain, and where the next one starts; `None` for a marker that cannot
/// be one (it would fill more than a record's length).
fn chained_slot(h: &RecordHeader, pos: u64, ring_size: u64) -> Option<(Slot, u64)> {
    if h.kind == TYPE_WRAP {
        // A marker fills what a record did not fit into.
        let len = u32::try_from(ring_size - pos).ok()?;
        if u64::from(len) >= format::MAX_RECORD_LEN {
            return None;
        }
        let slot = Slot {
            pos,
            len,
            payload: 0,
            id: 0,
            live: false,
        };
        return Some((slot, 0));
    }
    let known = format::is_known_state(h.state);
    let slot = Slot {
        pos,
        len: h.record_len() as u32,
        // Validity checked it is at most MAX_PAYLOAD_LEN.
        payload: h.len as u16,
        id: h.id,
        // An unknown state keeps the record: it is intact and ours, and a
        // repeat is better than a loss (the broker drops repeats by uid).
        live: h.state == STATE_LIVE || !known,
    };
    Some((slot, pos + h.record_len()))
}

//! The bytes of one stored event: what a service store hands its backend.
//!
//! ```text
//! offset size field
//!  0     1    kind code (1, 2, 4, 5)
//!  1     1    flags: bit 0 = has client id, bit 1 = has raise time;
//!             other bits zero
//!  2     2    name length n (u16 LE, 1..=256)
//!  4     2    arguments length a (u16 LE, 0..=2048)
//!  6     2    reserved, zero
//!  8     8    client id (i64 LE; zero when absent)
//! 16    16    uid
//! 32     8    raise time (u64 LE, ms since the Unix epoch), only with bit 1
//! f      n    name (ASCII); f = 40 with a raise time, else 32
//! f+n    a    arguments
//! ```
//!
//! The same bytes go to every backend, so capacity means the same at every
//! level. Decoding checks every field: a custom backend returning garbage
//! gives an error, never a panic or an invented event. Events stored by
//! releases before raise times have no bit 1 and decode with the raise
//! time unknown; this library always writes one (unless the clock reads
//! before 1970).

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{validate, Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};

/// Bytes before the name, without a raise time (the shortest record).
pub(crate) const FIXED_LEN: usize = 32;
/// Bytes of the raise time, when present.
const TIME_LEN: usize = 8;
/// Largest encoded event: what every record backend must accept.
pub(crate) const MAX_ENCODED_LEN: usize = FIXED_LEN + TIME_LEN + MAX_NAME_LEN + MAX_ARGS_LEN;
const _: () = assert!(MAX_ENCODED_LEN == crate::backend::MAX_RECORD_LEN);

const FLAG_CLIENT: u8 = 1;
const FLAG_TIME: u8 = 2;

/// What a [`Record`] stores beside the event's content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub uid: Uuid,
    /// Raise time, ms since the Unix epoch.
    pub raised_at_ms: Option<u64>,
}

impl Stamp {
    /// `uid`, raised now.
    pub(crate) fn now(uid: Uuid) -> Stamp {
        Stamp {
            uid,
            raised_at_ms: crate::event::now_ms(),
        }
    }
}

/// An already validated event to store: its bytes are written where the
/// backend keeps them ([`Record::write_to`]; for the journal, straight into
/// the map), or into a buffer ([`Record::encode_into`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub kind: EventKind,
    pub name: &'a str,
    pub args: &'a [u8],
    pub client_id: Option<i64>,
    pub stamp: Stamp,
}

impl Record<'_> {
    fn head_len(&self) -> usize {
        FIXED_LEN
            + if self.stamp.raised_at_ms.is_some() {
                TIME_LEN
            } else {
                0
            }
    }

    /// Bytes of the encoded record.
    pub(crate) fn len(&self) -> usize {
        self.head_len() + self.name.len() + self.args.len()
    }

    /// Writes the record into `out`, which is [`Record::len`] bytes long.
    pub(crate) fn write_to(&self, out: &mut [u8]) {
        let (head, rest) = out.split_at_mut(self.head_len());
        let (name, args) = rest.split_at_mut(self.name.len());
        // Every byte of the head is written (no fill first: this is per
        // raise).
        head[0] = self.kind.code();
        head[1] = if self.client_id.is_some() {
            FLAG_CLIENT
        } else {
            0
        };
        head[2..4].copy_from_slice(&(self.name.len() as u16).to_le_bytes());
        head[4..6].copy_from_slice(&(self.args.len() as u16).to_le_bytes());
        head[6..8].copy_from_slice(&[0, 0]);
        head[8..16].copy_from_slice(&self.client_id.unwrap_or(0).to_le_bytes());
        head[16..FIXED_LEN].copy_from_slice(self.stamp.uid.as_bytes());
        if let Some(ms) = self.stamp.raised_at_ms {
            head[1] |= FLAG_TIME;
            head[FIXED_LEN..].copy_from_slice(&ms.to_le_bytes());
        }
        name.copy_from_slice(self.name.as_bytes());
        args.copy_from_slice(self.args);
    }

    /// The record's bytes in `out` (replacing what it held).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.resize(self.len(), 0);
        self.write_to(out);
    }
}

/// The fixed part, checked for consistency with the payload length.
struct Fixed {
    kind: EventKind,
    /// Where the name starts.
    name_at: usize,
    name_len: usize,
    client_id: Option<i64>,
    uid: Uuid,
    raised_at_ms: Option<u64>,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn corrupt(why: &str) -> Error {
    Error::format(format!("stored event record is corrupt: {why}"))
}

fn fixed(b: &[u8]) -> Result<Fixed> {
    if b.len() < FIXED_LEN {
        return Err(corrupt("shorter than its fixed header"));
    }
    let kind = EventKind::from_code(b[0]).ok_or_else(|| corrupt("unknown event kind"))?;
    let flags = b[1];
    let name_len = u16::from_le_bytes([b[2], b[3]]) as usize;
    let args_len = u16::from_le_bytes([b[4], b[5]]) as usize;
    if flags & !(FLAG_CLIENT | FLAG_TIME) != 0 || b[6] != 0 || b[7] != 0 {
        return Err(corrupt("reserved bits set"));
    }
    let timed = flags & FLAG_TIME != 0;
    let name_at = if timed {
        FIXED_LEN + TIME_LEN
    } else {
        FIXED_LEN
    };
    if name_at + name_len + args_len != b.len() {
        return Err(corrupt("lengths do not add up"));
    }
    let client_id = (flags & FLAG_CLIENT != 0).then(|| u64_at(b, 8) as i64);
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&b[16..32]);
    Ok(Fixed {
        kind,
        name_at,
        name_len,
        client_id,
        uid: Uuid::from_bytes(uid),
        raised_at_ms: timed.then(|| u64_at(b, FIXED_LEN)),
    })
}

/// Decodes and fully validates a stored event; `seq` is the sequence
/// number its backend holds it under.
pub(crate) fn decode(b: &[u8], seq: u64) -> Result<Event> {
    let f = fixed(b)?;
    let name = std::str::from_utf8(&b[f.name_at..f.name_at + f.name_len])
        .map_err(|_| corrupt("name is not text"))?;
    let args = &b[f.name_at + f.name_len..];
    validate(f.kind, name, args, f.client_id).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Event {
        kind: f.kind,
        name: name.to_owned(),
        args: args.to_vec(),
        client_id: f.client_id,
        uid: f.uid,
        seq,
        raised_at_ms: f.raised_at_ms,
    })
}

/// The kind and name of a stored event, for indexing (validated).
pub(crate) fn decode_key(b: &[u8]) -> Result<(EventKind, &str)> {
    let f = fixed(b)?;
    let name = std::str::from_utf8(&b[f.name_at..f.name_at + f.name_len])
        .map_err(|_| corrupt("name is not text"))?;
    crate::event::validate_name(name).map_err(|e| corrupt(&e.to_string()))?;
    Ok((f.kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(raised_at_ms: Option<u64>) -> Vec<u8> {
        let mut b = Vec::new();
        let stamp = Stamp {
            uid: Uuid::from_u128(42),
            raised_at_ms,
        };
        let record = Record {
            kind: EventKind::Private,
            name: "Door",
            args: b"open",
            client_id: Some(-7),
            stamp,
        };
        assert_eq!(
            record.len(),
            FIXED_LEN + raised_at_ms.map_or(0, |_| TIME_LEN) + 8
        );
        record.encode_into(&mut b);
        b
    }

    #[test]
    fn round_trip() {
        let b = sample(Some(1_767_225_600_123));
        assert_eq!(b.len(), FIXED_LEN + TIME_LEN + 4 + 4);
        let e = decode(&b, 9).unwrap();
        assert_eq!(e.kind, EventKind::Private);
        assert_eq!(e.name, "Door");
        assert_eq!(e.args, b"open");
        assert_eq!(e.client_id, Some(-7));
        assert_eq!(e.uid, Uuid::from_u128(42));
        assert_eq!(e.seq, 9);
        assert_eq!(e.raised_at_ms, Some(1_767_225_600_123));
        assert_eq!(decode_key(&b).unwrap(), (EventKind::Private, "Door"));
    }

    #[test]
    fn events_without_a_raise_time_still_decode() {
        // As releases before raise times wrote them: 32 fixed bytes.
        let b = sample(None);
        assert_eq!(b.len(), FIXED_LEN + 4 + 4);
        assert_eq!(b[1], FLAG_CLIENT);
        let e = decode(&b, 1).unwrap();
        assert_eq!((e.name.as_str(), e.raised_at_ms), ("Door", None));
        assert_eq!(decode_key(&b).unwrap(), (EventKind::Private, "Door"));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        for b in [sample(None), sample(Some(5))] {
            for len in 0..b.len() {
                assert!(decode(&b[..len], 1).is_err(), "truncated at {len}");
            }
            // Flips in the fixed header that make the record inconsistent
            // (bit 1 of the flags moves the name by 8 bytes).
            for (byte, bit) in [
                (0usize, 0x40),
                (1, 0x40),
                (1, 0x02),
                (2, 0x40),
                (4, 0x40),
                (6, 0x40),
                (7, 0x40),
            ] {
                let mut c = b.clone();
                c[byte] ^= bit;
                assert!(decode(&c, 1).is_err(), "byte {byte} bit {bit:#x}");
            }
        }
        let mut c = sample(None);
        c[FIXED_LEN] = b'1'; // name must start with a letter
        assert!(decode(&c, 1).is_err());
        assert!(decode_key(&c).is_err());
    }
}

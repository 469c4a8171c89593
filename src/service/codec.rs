//! The bytes of one stored event: what a service store hands its backend.
//!
//! ```text
//! offset size field
//!  0     1    kind code (1, 2, 4, 5)
//!  1     1    flags: bit 0 = has client id; other bits zero
//!  2     2    name length n (u16 LE, 1..=256)
//!  4     2    arguments length a (u16 LE, 0..=2048)
//!  6     2    reserved, zero
//!  8     8    client id (i64 LE; zero when absent)
//! 16    16    uid
//! 32     n    name (ASCII)
//! 32+n   a    arguments
//! ```
//!
//! The same bytes go to every backend, so capacity means the same at every
//! level. Decoding checks every field: a custom backend returning garbage
//! gives an error, never a panic or an invented event.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{validate, Event, EventKind, MAX_ARGS_LEN, MAX_NAME_LEN};

/// Bytes before the name.
pub(crate) const FIXED_LEN: usize = 32;
/// Largest encoded event: what every record backend must accept.
pub(crate) const MAX_ENCODED_LEN: usize = FIXED_LEN + MAX_NAME_LEN + MAX_ARGS_LEN;
const _: () = assert!(MAX_ENCODED_LEN == crate::backend::MAX_RECORD_LEN);

const FLAG_CLIENT: u8 = 1;

/// Encodes an already validated event into `out` (cleared first).
pub(crate) fn encode(
    out: &mut Vec<u8>,
    kind: EventKind,
    name: &str,
    args: &[u8],
    client_id: Option<i64>,
    uid: Uuid,
) {
    out.clear();
    out.push(kind.code());
    out.push(if client_id.is_some() { FLAG_CLIENT } else { 0 });
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(&(args.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&client_id.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(uid.as_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(args);
}

/// The fixed part, checked for consistency with the payload length.
struct Fixed {
    kind: EventKind,
    name_len: usize,
    client_id: Option<i64>,
    uid: Uuid,
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
    if flags & !FLAG_CLIENT != 0 || b[6] != 0 || b[7] != 0 {
        return Err(corrupt("reserved bits set"));
    }
    if FIXED_LEN + name_len + args_len != b.len() {
        return Err(corrupt("lengths do not add up"));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[8..16]);
    let client_id = (flags & FLAG_CLIENT != 0).then(|| i64::from_le_bytes(id));
    let mut uid = [0u8; 16];
    uid.copy_from_slice(&b[16..32]);
    Ok(Fixed {
        kind,
        name_len,
        client_id,
        uid: Uuid::from_bytes(uid),
    })
}

/// Decodes and fully validates a stored event.
pub(crate) fn decode(b: &[u8]) -> Result<Event> {
    let f = fixed(b)?;
    let name = std::str::from_utf8(&b[FIXED_LEN..FIXED_LEN + f.name_len])
        .map_err(|_| corrupt("name is not text"))?;
    let args = &b[FIXED_LEN + f.name_len..];
    validate(f.kind, name, args, f.client_id).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Event {
        kind: f.kind,
        name: name.to_owned(),
        args: args.to_vec(),
        client_id: f.client_id,
        uid: f.uid,
    })
}

/// The kind and name of a stored event, for indexing (validated).
pub(crate) fn decode_key(b: &[u8]) -> Result<(EventKind, &str)> {
    let f = fixed(b)?;
    let name = std::str::from_utf8(&b[FIXED_LEN..FIXED_LEN + f.name_len])
        .map_err(|_| corrupt("name is not text"))?;
    crate::event::validate_name(name).map_err(|e| corrupt(&e.to_string()))?;
    Ok((f.kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        encode(
            &mut b,
            EventKind::Private,
            "Door",
            b"open",
            Some(-7),
            Uuid::from_u128(42),
        );
        b
    }

    #[test]
    fn round_trip() {
        let b = sample();
        assert_eq!(b.len(), FIXED_LEN + 4 + 4);
        let e = decode(&b).unwrap();
        assert_eq!(e.kind, EventKind::Private);
        assert_eq!(e.name, "Door");
        assert_eq!(e.args, b"open");
        assert_eq!(e.client_id, Some(-7));
        assert_eq!(e.uid, Uuid::from_u128(42));
        assert_eq!(decode_key(&b).unwrap(), (EventKind::Private, "Door"));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let b = sample();
        for len in 0..b.len() {
            assert!(decode(&b[..len]).is_err(), "truncated at {len}");
        }
        // Flips in the fixed header that make the record inconsistent.
        for byte in [0usize, 1, 2, 4, 6, 7] {
            let mut c = b.clone();
            c[byte] ^= 0x40;
            assert!(decode(&c).is_err(), "byte {byte}");
        }
        let mut c = b.clone();
        c[FIXED_LEN] = b'1'; // name must start with a letter
        assert!(decode(&c).is_err());
        assert!(decode_key(&c).is_err());
    }
}

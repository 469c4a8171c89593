//! Events as a service raises them: kinds, names, arguments, uids.

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest event name, in characters (all of them ASCII, so also bytes).
pub const MAX_NAME_LEN: usize = 256;
/// Longest argument payload, in bytes.
pub const MAX_ARGS_LEN: usize = 2048;

/// The four kinds of Softnet events. The discriminants are the wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventKind {
    /// The broker keeps only the newest instance. Carries arguments.
    Replacing = 1,
    /// FIFO on the broker. Carries arguments.
    Queueing = 2,
    /// FIFO per client on the broker; carries a target client id.
    Private = 4,
    /// "Condition cleared": same broker queue as [`EventKind::Replacing`], no arguments.
    ReplacingNull = 5,
}

impl EventKind {
    /// The wire code (1, 2, 4 or 5).
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a wire code, if it is one.
    pub fn from_code(code: u8) -> Option<EventKind> {
        match code {
            1 => Some(EventKind::Replacing),
            2 => Some(EventKind::Queueing),
            4 => Some(EventKind::Private),
            5 => Some(EventKind::ReplacingNull),
            _ => None,
        }
    }

    /// True for the two kinds that share a collapsing broker queue.
    pub fn is_replacing(self) -> bool {
        matches!(self, EventKind::Replacing | EventKind::ReplacingNull)
    }

    /// The pipeline an event of this kind belongs to: Replacing and
    /// Replacing-null share one per name.
    pub(crate) fn pipeline(self) -> EventKind {
        match self {
            EventKind::ReplacingNull => EventKind::Replacing,
            other => other,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Replacing => "replacing",
            EventKind::Queueing => "queueing",
            EventKind::Private => "private",
            EventKind::ReplacingNull => "replacing-null",
        })
    }
}

/// A stored event, as `peek` returns it.
///
/// Two events are equal when they are the same event: the same uid,
/// kind, name, arguments and client id. Where and when it was stored
/// (`seq`, `raised_at_ms`) is not compared: the same event read from a
/// store, or relayed into another one, equals the event that was raised.
#[derive(Debug, Clone, Eq)]
pub struct Event {
    /// Its kind.
    pub kind: EventKind,
    /// Its name (validated when raised).
    pub name: String,
    /// Opaque application bytes, 0..=2048 (always empty for Replacing-null).
    pub args: Vec<u8>,
    /// The target client of a Private event; `None` for the other kinds.
    pub client_id: Option<i64>,
    /// Identifies the event to the broker, which drops repeats.
    pub uid: Uuid,
    /// Its sequence number in the store that returned it: strictly
    /// greater than every event raised before it into the same store, and
    /// kept across restarts and a fallback to level 1 (docs/BEHAVIOUR.md
    /// section 3). 0 for an event not read from a store.
    pub seq: u64,
    /// When it was raised: wall clock, milliseconds since the Unix epoch.
    /// `None` when unknown (stored by a release before raise times, or
    /// raised while the clock read before 1970). [`ServiceStore::raise_event`](crate::ServiceStore::raise_event)
    /// keeps a known raise time; other raises take the clock's.
    pub raised_at_ms: Option<u64>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.uid == other.uid
            && self.kind == other.kind
            && self.name == other.name
            && self.args == other.args
            && self.client_id == other.client_id
    }
}

/// The wall clock in milliseconds since the Unix epoch, as a raise
/// records it; `None` if the clock reads before 1970.
pub(crate) fn now_ms() -> Option<u64> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Checks an event before it is stored; the error names the rule broken.
pub fn validate(kind: EventKind, name: &str, args: &[u8], client_id: Option<i64>) -> Result<()> {
    validate_name(name)?;
    validate_fields(kind, name, args, client_id)
}

/// [`validate`] for a store, which sees the same few names again and
/// again: the last name found valid is kept, and a raise of the same name
/// (one comparison of bytes) skips the name's rules.
#[derive(Debug, Default)]
pub(crate) struct Validator {
    /// Empty until a name was found valid (a valid name is never empty).
    valid_name: String,
}

impl Validator {
    pub(crate) fn check(
        &mut self,
        kind: EventKind,
        name: &str,
        args: &[u8],
        client_id: Option<i64>,
    ) -> Result<()> {
        if name.is_empty() || name != self.valid_name {
            validate_name(name)?;
            self.valid_name.clear();
            self.valid_name.push_str(name);
        }
        validate_fields(kind, name, args, client_id)
    }
}

/// The rules of [`validate`] after the name's.
fn validate_fields(kind: EventKind, name: &str, args: &[u8], client_id: Option<i64>) -> Result<()> {
    if args.len() > MAX_ARGS_LEN {
        return Err(Error::invalid(format!(
            "event '{name}': arguments are {} bytes, the limit is {MAX_ARGS_LEN}",
            args.len()
        )));
    }
    if kind == EventKind::ReplacingNull && !args.is_empty() {
        return Err(Error::invalid(format!(
            "event '{name}': a replacing-null event carries no arguments ({} bytes given)",
            args.len()
        )));
    }
    match (kind, client_id) {
        (EventKind::Private, None) => Err(Error::invalid(format!(
            "event '{name}': a private event needs the target client id"
        ))),
        (EventKind::Private, Some(_)) | (_, None) => Ok(()),
        (other, Some(_)) => Err(Error::invalid(format!(
            "event '{name}': only private events carry a client id, this one is {other}"
        ))),
    }
}

/// The characters allowed after the first one of an event name, indexed
/// by byte (a name is checked with one load per byte, no search):
/// [`ALLOWED`] for those allowed, with [`SPACE`] also set for the space.
const NAME_CHARS: [u8; 256] = {
    let mut table = [0; 256];
    let mut c = 0;
    while c < 256 {
        if (c as u8).is_ascii_alphanumeric() {
            table[c] = ALLOWED;
        }
        c += 1;
    }
    let others = b"_ .$*+()#@%&=':^[]-/!";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = ALLOWED;
        i += 1;
    }
    table[b' ' as usize] = ALLOWED | SPACE;
    table
};
const ALLOWED: u8 = 1;
const SPACE: u8 = 2;

/// Checks an event name: 1..=256 characters, an ASCII letter first, then
/// letters, digits and `_ .$*+()#@%&=':^[]-/!`, no trailing space and no
/// double space.
pub fn validate_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let first = match bytes.first() {
        None => return Err(Error::invalid("event name is empty")),
        Some(&c) => c,
    };
    if bytes.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "event name is {} characters long, the limit is {MAX_NAME_LEN}",
            name.chars().count()
        )));
    }
    if !first.is_ascii_alphabetic() {
        return Err(Error::invalid(format!(
            "event name {name:?} must start with an ASCII letter"
        )));
    }
    // One pass without a branch per byte: the table's entries of every
    // byte are ANDed (all allowed?) and ORed (a space anywhere?). Only a
    // name that fails, or has a space, is looked at again. The order of the
    // rules' errors: a bad character, a trailing space, a double space.
    let (mut all, mut any) = (ALLOWED, 0);
    for &c in bytes {
        let entry = NAME_CHARS[usize::from(c)];
        all &= entry;
        any |= entry;
    }
    if all & ALLOWED == 0 {
        let pos = bytes
            .iter()
            .position(|&c| NAME_CHARS[usize::from(c)] & ALLOWED == 0)
            .unwrap_or(0);
        let bad = name[pos..].chars().next().unwrap_or('?');
        return Err(Error::invalid(format!(
            "event name {name:?} contains {bad:?} at position {pos}; allowed are ASCII letters, \
             digits and _ .$*+()#@%&=':^[]-/!"
        )));
    }
    if any & SPACE == 0 {
        return Ok(());
    }
    if bytes.ends_with(b" ") {
        return Err(Error::invalid(format!(
            "event name {name:?} ends with a space"
        )));
    }
    if bytes.windows(2).any(|pair| pair == b"  ") {
        return Err(Error::invalid(format!(
            "event name {name:?} contains a double space"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validator_keeps_only_a_valid_name_and_still_checks_the_rest() {
        let mut v = Validator::default();
        let q = EventKind::Queueing;
        // Nothing kept yet: the empty name is not taken for the kept one.
        assert!(v.check(q, "", b"", None).is_err());
        v.check(q, "Door open", b"", None).unwrap();
        assert!(v.check(q, "", b"", None).is_err());
        for _ in 0..2 {
            let err = v.check(q, "Door  open", b"", None).unwrap_err();
            assert!(err.to_string().contains("double space"), "{err}");
        }
        v.check(q, "Door open", b"", None).unwrap();
        let big = vec![0u8; MAX_ARGS_LEN + 1];
        let err = v.check(q, "Door open", &big, None).unwrap_err();
        assert!(err.to_string().contains("arguments are"), "{err}");
        assert!(v.check(EventKind::Private, "Door open", b"", None).is_err());
        assert!(v.check(q, "Door open", b"", Some(1)).is_err());
        // A name that shares the valid one's start is checked in full.
        assert!(v.check(q, "Door open ", b"", None).is_err());
        assert!(v.check(q, "Door ope", b"", None).is_ok());
    }

    #[test]
    fn names_follow_the_rules() {
        for good in ["A", "Temperature", "a1_ .$*+()#@%&=':^[]-/!", "Door open"] {
            validate_name(good).unwrap();
        }
        validate_name(&"x".repeat(MAX_NAME_LEN)).unwrap();
        for (bad, why) in [
            ("", "empty"),
            ("1abc", "start with"),
            ("_abc", "start with"),
            ("abc ", "ends with a space"),
            ("a  b", "double space"),
            ("a\u{e9}", "contains"),
            ("a,b", "contains"),
            ("a\tb", "contains"),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let err = validate_name(&"x".repeat(MAX_NAME_LEN + 1)).unwrap_err();
        assert!(err.to_string().contains("257 characters"), "{err}");
        // The first bad character is named with its position, before a
        // trailing or double space is.
        let err = validate_name("ab  c,d\u{e9} ").unwrap_err().to_string();
        assert!(err.contains("',' at position 5"), "{err}");
        let err = validate_name("a  b ").unwrap_err().to_string();
        assert!(err.contains("ends with a space"), "{err}");
        validate_name("a b c").unwrap();
    }

    #[test]
    fn every_byte_is_judged_as_the_rule_lists_it() {
        let listed = "_ .$*+()#@%&=':^[]-/!";
        for b in 0..=255u8 {
            let allowed = b.is_ascii_alphanumeric() || listed.as_bytes().contains(&b);
            let name = [b'a', b, b'z'];
            match std::str::from_utf8(&name) {
                Ok(name) => assert_eq!(validate_name(name).is_ok(), allowed, "byte {b}"),
                Err(_) => assert!(!allowed),
            }
        }
    }

    #[test]
    fn arguments_and_client_ids_are_checked() {
        let big = vec![0u8; MAX_ARGS_LEN + 1];
        let err = validate(EventKind::Queueing, "A", &big, None).unwrap_err();
        assert!(err.to_string().contains("2049 bytes"), "{err}");
        validate(EventKind::Queueing, "A", &big[..MAX_ARGS_LEN], None).unwrap();
        assert!(validate(EventKind::ReplacingNull, "A", b"x", None).is_err());
        validate(EventKind::ReplacingNull, "A", b"", None).unwrap();
        assert!(validate(EventKind::Private, "A", b"", None).is_err());
        validate(EventKind::Private, "A", b"", Some(i64::MIN)).unwrap();
        assert!(validate(EventKind::Replacing, "A", b"", Some(1)).is_err());
    }

    #[test]
    fn kind_codes_round_trip() {
        for kind in [
            EventKind::Replacing,
            EventKind::Queueing,
            EventKind::Private,
            EventKind::ReplacingNull,
        ] {
            assert_eq!(EventKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(EventKind::from_code(3), None);
        assert_eq!(EventKind::from_code(0), None);
    }
}

//! The client file's name and owner uid, from the server address and the
//! client key (docs/FORMAT.md, "Client file").
//!
//! The name is `softnet.client.persistence_<server>_<client-key>.scp` with
//! each part encoded: `A-Z a-z 0-9 . -` stay as they are, every other byte
//! becomes `%XX` (uppercase hex). No encoded part contains `_`, and `%`
//! only starts an escape, so the name can be decoded back into the pair:
//! no two pairs share a file. (Before this encoding `:` became `-` and the
//! parts were joined as they were, so ("a_b", "c") and ("a", "b_c") shared
//! a name; `migrate` renames such files to their new names.)

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::error::{Error, Result};

const PREFIX: &str = "softnet.client.persistence_";
const SUFFIX: &str = ".scp";

/// Where a client's file lives (see the module docs for the encoding).
/// Characters that cannot be part of a portable file name are an error,
/// not silently changed.
pub(crate) fn client_file_path(
    dir: &Path,
    server_address: &str,
    client_key: &str,
) -> Result<PathBuf> {
    check_chars("server address", server_address, true)?;
    check_chars("client key", client_key, false)?;
    let server = encode_part(server_address);
    let key = encode_part(client_key);
    check_len("server address", server_address, &server)?;
    check_len("client key", client_key, &key)?;
    let name = format!("{PREFIX}{server}_{key}{SUFFIX}");
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(Error::invalid(format!(
            "server address and client key make a file name of {} bytes; with the suffixes \
             the library adds to temporary and set-aside copies, at most {MAX_FILE_NAME_LEN} \
             fit in the 255 bytes a file name may have (shorten the key; each character \
             other than A-Z a-z 0-9 . - takes 3 bytes)",
            name.len()
        )));
    }
    Ok(dir.join(name))
}

/// The name the pair's file had before the names were encoded: every `:`
/// of the server address as `-`, the parts joined as they are. Only for
/// finding such a file (`migrate`); the pair must have passed
/// `client_file_path`.
pub(crate) fn old_client_file_name(server_address: &str, client_key: &str) -> String {
    let server = server_address.replace(':', "-");
    format!("{PREFIX}{server}_{client_key}{SUFFIX}")
}

/// Longest client file name: 255 bytes (the usual file-system limit) minus
/// the longest suffix added to it (`.tmp-<pid>-<n>` while a file is being
/// written, `.corrupt-<unix-seconds>-<n>` when one is set aside).
const MAX_FILE_NAME_LEN: usize = 255 - 40;

/// Longest encoded server address or client key.
const MAX_PART_LEN: usize = 200;

/// Bytes a part keeps as they are in the file name.
fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// One part of the file name: kept bytes as they are, every other byte as
/// `%XX` (uppercase hex).
pub(crate) fn encode_part(part: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(part.len());
    for b in part.bytes() {
        if is_kept(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

fn check_chars(what: &str, given: &str, colon_allowed: bool) -> Result<()> {
    if given.is_empty() {
        return Err(Error::invalid(format!("the {what} is empty")));
    }
    let refused =
        |c: char| !c.is_ascii_graphic() || "/\\*?\"<>|".contains(c) || (c == ':' && !colon_allowed);
    if let Some(bad) = given.chars().find(|&c| refused(c)) {
        return Err(Error::invalid(format!(
            "the {what} {given:?} contains {bad:?}, which cannot be part of the client \
             persistence file name (allowed: printable ASCII except / \\ : * ? \" < > | and \
             space; ':' is allowed in a server address and is written %3A)"
        )));
    }
    Ok(())
}

fn check_len(what: &str, given: &str, encoded: &str) -> Result<()> {
    if encoded.len() > MAX_PART_LEN {
        return Err(Error::invalid(format!(
            "the {what} is {} bytes long and takes {} in the file name (each character other \
             than A-Z a-z 0-9 . - takes 3); at most {MAX_PART_LEN} fit in a file name",
            given.len(),
            encoded.len()
        )));
    }
    Ok(())
}

/// The owner uid written in a client file's header: derived from the server
/// address and client key, so a file of another pair (renamed, or from the
/// time two pairs could share a name) is told apart.
pub(crate) fn owner_uid(server_address: &str, client_key: &str) -> Uuid {
    let part = |salt: &str, a: &str, b: &str| {
        let mut h = crc32fast::Hasher::new();
        h.update(salt.as_bytes());
        h.update(a.as_bytes());
        h.update(&[0]);
        h.update(b.as_bytes());
        u128::from(h.finalize())
    };
    let (s, k) = (server_address, client_key);
    Uuid::from_u128(
        part("a", s, k) << 96 | part("b", s, k) << 64 | part("c", k, s) << 32 | part("d", k, s),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The pair a file name was made from; `None` if no pair makes it.
    fn decode_name(name: &str) -> Option<(String, String)> {
        let inner = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let (server, key) = inner.split_once('_')?;
        Some((decode_part(server)?, decode_part(key)?))
    }

    fn decode_part(part: &str) -> Option<String> {
        let mut out = Vec::new();
        let mut bytes = part.bytes();
        while let Some(b) = bytes.next() {
            match b {
                b'%' => {
                    let hex = [bytes.next()?, bytes.next()?];
                    let hex = std::str::from_utf8(&hex).ok()?;
                    if hex.bytes().any(|h| h.is_ascii_lowercase()) {
                        return None;
                    }
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                }
                b if is_kept(b) => out.push(b),
                _ => return None,
            }
        }
        String::from_utf8(out).ok()
    }

    fn name_of(server: &str, key: &str) -> String {
        let path = client_file_path(Path::new("/d"), server, key).unwrap();
        path.file_name().unwrap().to_str().unwrap().to_owned()
    }

    /// Every character the rules accept in a part (`:` only in a server).
    fn accepted(server: bool) -> Vec<char> {
        (' '..='~')
            .filter(|&c| check_chars("part", &c.to_string(), server).is_ok())
            .collect()
    }

    fn part(chars: Vec<char>, max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(chars), 1..=max)
            .prop_map(|v| v.into_iter().collect())
    }

    #[test]
    fn file_names() {
        let dir = Path::new("/d");
        for (server, key, name) in [
            ("broker.example.com", "K1", "broker.example.com_K1"),
            (
                "broker.example.com",
                "client-1",
                "broker.example.com_client-1",
            ),
            ("fe80::1", "key", "fe80%3A%3A1_key"),
            ("a_b", "c", "a%5Fb_c"),
            ("a", "b_c", "a_b%5Fc"),
            ("--1", "k", "--1_k"),
            ("::1", "k", "%3A%3A1_k"),
            ("[fe80::1]:7000", "100%", "%5Bfe80%3A%3A1%5D%3A7000_100%25"),
        ] {
            assert_eq!(
                client_file_path(dir, server, key).unwrap(),
                dir.join(format!("{PREFIX}{name}{SUFFIX}"))
            );
        }
        assert_eq!(
            old_client_file_name("fe80::1", "a_b"),
            format!("{PREFIX}fe80--1_a_b{SUFFIX}")
        );
        for (server, key) in [
            ("a/b", "k"),
            ("a", "k/"),
            ("", "k"),
            ("a", ""),
            ("a b", "k"),
            ("a", "k:1"),
            ("a", "k\\"),
            ("\u{e9}", "k"),
            (&"_".repeat(67), "k"),
        ] {
            let err = client_file_path(dir, server, key).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(_)),
                "{server:?} {key:?}"
            );
        }
        // The limits apply to the encoded name: 60 `_` take 180 bytes (a
        // 213-byte name), 67 take 201.
        assert!(client_file_path(dir, &"_".repeat(60), "k").is_ok());
        assert!(client_file_path(dir, &"_".repeat(61), "k").is_err());
    }

    #[test]
    fn owner_depends_on_both_parts() {
        assert_ne!(owner_uid("a_b", "c"), owner_uid("a", "b_c"));
        assert_eq!(owner_uid("a", "b"), owner_uid("a", "b"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, cases: 2000,
            ..ProptestConfig::default() })]

        /// Any accepted pair's name decodes back to exactly that pair, so
        /// no two pairs share a name.
        #[test]
        fn names_decode_to_their_pair(
            server in part(accepted(true), 30),
            key in part(accepted(false), 30),
        ) {
            let name = name_of(&server, &key);
            prop_assert_eq!(decode_name(&name), Some((server, key)));
        }

        /// Pairs over the characters that used to collide: equal names
        /// only for equal pairs.
        #[test]
        fn names_are_injective(
            a in part("ab_-:%3A.".chars().collect(), 6),
            b in part("ab_-%3A.".chars().collect(), 6),
            c in part("ab_-:%3A.".chars().collect(), 6),
            d in part("ab_-%3A.".chars().collect(), 6),
        ) {
            prop_assert_eq!(name_of(&a, &b) == name_of(&c, &d), (a, b) == (c, d));
        }

        /// A pair of only `A-Z a-z 0-9 . -` keeps the name it always had.
        #[test]
        fn plain_names_are_unchanged(
            server in "[A-Za-z0-9.-]{1,90}",
            key in "[A-Za-z0-9.-]{1,90}",
        ) {
            let name = name_of(&server, &key);
            prop_assert_eq!(&name, &format!("{PREFIX}{server}_{key}{SUFFIX}"));
            prop_assert_eq!(&name, &old_client_file_name(&server, &key));
        }
    }
}

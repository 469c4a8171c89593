//! Level 2 for clients (CPL-2): the last id per name in a journal file.
//!
//! Each put appends one record `[id: i64 LE][name]` and syncs it (one msync
//! with `Durability::Sync`); the previous record of that name is only
//! forgotten in memory. Recovery keeps, per name, the record with the
//! highest record id, so a put is atomic: a crash leaves the old record or
//! the new one. The ring reclaims forgotten records and relocates long-lived
//! ones, so the file stays bounded however many puts happen; it doubles (an
//! atomic rewrite) when the subscriptions fill half of it, so that copying
//! long-lived records forward stays rare.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::client::backend::IdStore;
use crate::error::{Error, Result};
use crate::event::validate_name;
use crate::journal::format::CLIENT_MAGIC;
use crate::journal::{Durability, Journal, JournalConfig};
use crate::report::{Failure, FailureKind};
use crate::service::backend::{RecordLog, Removal};

/// Initial logical capacity of a client file; it doubles when needed.
pub const INITIAL_CLIENT_CAPACITY: u64 = 16 * 1024;

/// Where a client's file lives:
/// `softnet.client.persistence_<server>_<client-key>.scp`, where `:` in the
/// server address (IPv6) becomes `-`. Characters that cannot be part of a
/// portable file name are an error, not silently changed.
pub fn client_file_path(dir: &Path, server_address: &str, client_key: &str) -> Result<PathBuf> {
    let server = server_address.replace(':', "-");
    check_name_part("server address", server_address, &server)?;
    check_name_part("client key", client_key, client_key)?;
    let name = format!("softnet.client.persistence_{server}_{client_key}.scp");
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(Error::invalid(format!(
            "server address and client key make a file name of {} bytes; with the suffixes \
             the library adds to temporary and set-aside copies, at most {MAX_FILE_NAME_LEN} \
             fit in the 255 bytes a file name may have (shorten the key)",
            name.len()
        )));
    }
    Ok(dir.join(name))
}

/// Longest client file name: 255 bytes (the usual file-system limit) minus
/// the longest suffix added to it (`.tmp-<pid>-<n>` while a file is being
/// written, `.corrupt-<unix-seconds>-<n>` when one is set aside).
const MAX_FILE_NAME_LEN: usize = 255 - 40;

fn check_name_part(what: &str, given: &str, part: &str) -> Result<()> {
    if part.is_empty() {
        return Err(Error::invalid(format!("the {what} is empty")));
    }
    if part.len() > 200 {
        return Err(Error::invalid(format!(
            "the {what} is {} bytes long; at most 200 fit in a file name",
            part.len()
        )));
    }
    if let Some(bad) = part
        .chars()
        .find(|&c| !c.is_ascii_graphic() || "/\\:*?\"<>|".contains(c))
    {
        return Err(Error::invalid(format!(
            "the {what} {given:?} contains {bad:?}, which cannot be part of the client \
             persistence file name (allowed: printable ASCII except / \\ : * ? \" < > | and \
             space; ':' is allowed in a server address and becomes '-')"
        )));
    }
    Ok(())
}

/// The owner uid written in a client file's header: derived from the server
/// address and client key, so two pairs that map to the same file name (the
/// `_` separator is ambiguous) are told apart.
fn owner_uid(server_address: &str, client_key: &str) -> Uuid {
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

fn encode(out: &mut Vec<u8>, name: &str, id: i64) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn decode(payload: &[u8]) -> Result<(&str, i64)> {
    let corrupt = |why: &str| Error::format(format!("client id record is corrupt: {why}"));
    if payload.len() < 9 {
        return Err(corrupt("too short"));
    }
    let id = i64::from_le_bytes(payload[..8].try_into().map_err(|_| corrupt("too short"))?);
    let name = std::str::from_utf8(&payload[8..]).map_err(|_| corrupt("name is not text"))?;
    validate_name(name).map_err(|e| corrupt(&e.to_string()))?;
    Ok((name, id))
}

/// The CPL-2 backend: see the module docs.
#[derive(Debug)]
pub struct ClientFile {
    journal: Journal,
    /// name -> (record id, instance id) of its newest record.
    entries: HashMap<String, (u64, i64)>,
    buf: Vec<u8>,
}

impl ClientFile {
    /// Opens (creating if absent) the client file in `dir`; the reports
    /// say what recovery found.
    pub fn open(
        dir: &Path,
        server_address: &str,
        client_key: &str,
        durability: Durability,
    ) -> Result<(ClientFile, Vec<Failure>)> {
        let path = client_file_path(dir, server_address, client_key)?;
        let config = JournalConfig {
            magic: CLIENT_MAGIC,
            owner: owner_uid(server_address, client_key),
            capacity: INITIAL_CLIENT_CAPACITY,
            durability,
        };
        let (mut journal, mut reports) = Journal::open(&path, &config)?;
        let mut records = Vec::new();
        journal.scan(&mut |rid, payload| {
            records.push((rid, payload.to_vec()));
            Ok(())
        })?;
        let mut entries: HashMap<String, (u64, i64)> = HashMap::new();
        let mut unreadable = 0u64;
        for (rid, payload) in records {
            match decode(&payload) {
                // Scan order is record-id order: a later record is newer.
                Ok((name, id)) => {
                    if let Some((older, _)) = entries.insert(name.to_owned(), (rid, id)) {
                        journal.forget(older)?;
                    }
                }
                Err(_) => {
                    journal.remove(rid, Removal::Dropped)?;
                    unreadable += 1;
                }
            }
        }
        if unreadable > 0 {
            reports.push(Failure {
                kind: FailureKind::Corruption,
                message: format!(
                    "{}: {unreadable} record(s) passed their checksum but do not hold a \
                     valid name and id; they were discarded",
                    path.display()
                ),
                events_lost: unreadable,
            });
        }
        journal.commit()?;
        Ok((
            ClientFile {
                journal,
                entries,
                buf: Vec::new(),
            },
            reports,
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.journal.path()
    }

    /// Fault injection: the journal underneath.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

impl IdStore for ClientFile {
    fn load(&mut self, visit: &mut dyn FnMut(&str, i64)) -> Result<()> {
        for (name, &(_, id)) in &self.entries {
            visit(name, id);
        }
        Ok(())
    }

    fn put(&mut self, name: &str, id: i64) -> Result<()> {
        let previous = self.entries.get(name).copied();
        if previous.map(|p| p.1) == Some(id) {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        encode(&mut buf, name, id);
        let len = Journal::record_len(buf.len());
        let capacity = self.journal.capacity();
        if 2 * (self.journal.live_bytes() + len) > capacity {
            // Keep the subscriptions under half the capacity: a ring nearly
            // full of long-lived records would copy them forward on most
            // puts (and sync its header often) to reuse the space between.
            let wanted = (capacity * 2).max(4 * (self.journal.live_bytes() + len));
            self.journal.resize(wanted)?;
        }
        let appended = self.journal.append(&buf);
        self.buf = buf;
        let rid = appended?;
        self.entries.insert(name.to_owned(), (rid, id));
        if let Some((older, _)) = previous {
            self.journal.forget(older)?;
        }
        self.journal.commit()
    }

    fn clear(&mut self) -> Result<()> {
        self.journal.clear()?;
        self.entries.clear();
        self.journal.commit()
    }

    fn flush(&mut self) -> Result<()> {
        self.journal.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let dir = Path::new("/d");
        assert_eq!(
            client_file_path(dir, "broker.example.com", "K1").unwrap(),
            Path::new("/d/softnet.client.persistence_broker.example.com_K1.scp")
        );
        assert_eq!(
            client_file_path(dir, "fe80::1", "key").unwrap(),
            Path::new("/d/softnet.client.persistence_fe80--1_key.scp")
        );
        for (server, key) in [
            ("a/b", "k"),
            ("a", "k/"),
            ("", "k"),
            ("a", ""),
            ("a b", "k"),
            ("a", "k:1"),
        ] {
            let err = client_file_path(dir, server, key).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument(_)),
                "{server:?} {key:?}"
            );
        }
    }

    #[test]
    fn owner_depends_on_both_parts() {
        assert_ne!(owner_uid("a_b", "c"), owner_uid("a", "b_c"));
        assert_eq!(owner_uid("a", "b"), owner_uid("a", "b"));
    }

    #[test]
    fn record_codec() {
        let mut b = Vec::new();
        encode(&mut b, "Temp", i64::MIN);
        assert_eq!(decode(&b).unwrap(), ("Temp", i64::MIN));
        assert!(decode(&b[..8]).is_err());
        b[8] = b'1';
        assert!(decode(&b).is_err());
    }
}

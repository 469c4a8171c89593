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
use std::path::Path;

use uuid::Uuid;

use crate::backend::{stored_size, IdStore, RecordLog, Removal};
use crate::client::options::ClientOptions;
use crate::error::{Error, Result};
use crate::event::validate_name;
use crate::journal::{Journal, JournalConfig, SyncTicket};
use crate::report::{Failure, FailureKind};

/// Initial capacity of a client file; it doubles when needed.
const INITIAL_CLIENT_CAPACITY: u64 = 16 * 1024;

/// Magic of a client persistence file (`.scp`, docs/FORMAT.md).
pub(crate) const CLIENT_MAGIC: [u8; 8] = *b"SNPCLNT1";

fn encode(out: &mut Vec<u8>, name: &str, id: i64) {
    out.clear();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// The subscription name and instance id of a record's payload.
pub(crate) fn decode(payload: &[u8]) -> Result<(&str, i64)> {
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
pub(crate) struct ClientFile {
    journal: Journal,
    /// name -> (record id, instance id) of its newest record.
    entries: HashMap<String, (u64, i64)>,
    /// Live bytes below which growing the file is not tried again (after
    /// it failed).
    grow_after: u64,
    buf: Vec<u8>,
}

impl ClientFile {
    /// Opens (creating if absent) the client file at `path`, written for
    /// `owner`; the reports say what recovery found.
    pub fn open(
        path: &Path,
        owner: Uuid,
        options: &ClientOptions,
    ) -> Result<(ClientFile, Vec<Failure>)> {
        let config = JournalConfig {
            kind: "client persistence file",
            magic: CLIENT_MAGIC,
            owner,
            capacity: INITIAL_CLIENT_CAPACITY,
            durability: options.durability,
            device_layer: options.device_layer.clone(),
        };
        let (mut journal, mut reports) = Journal::open(path, &config)?;
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
                grow_after: 0,
                buf: Vec::new(),
            },
            reports,
        ))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.journal.path()
    }

    /// The ticket of the sync the last put handed over (group commit).
    pub fn take_ticket(&mut self) -> Option<SyncTicket> {
        self.journal.take_ticket()
    }

    /// Whether `ticket` is this file's.
    pub fn owns(&self, ticket: &SyncTicket) -> bool {
        self.journal.owns(ticket)
    }
}

impl ClientFile {
    /// Writes the ids again whose records the journal dropped as damaged
    /// while it moved them (`RecordLog::take_lost`): the ids are known, only
    /// their copy on the device was lost.
    fn write_again(&mut self, mut lost: Vec<u64>) -> Result<()> {
        let mut buf = Vec::new();
        while !lost.is_empty() {
            for rid in lost {
                let Some((name, &(_, id))) = self.entries.iter().find(|(_, v)| v.0 == rid) else {
                    continue;
                };
                let name = name.clone();
                encode(&mut buf, &name, id);
                let again = self.journal.append(&buf)?;
                self.entries.insert(name, (again, id));
            }
            lost = self.journal.take_lost();
        }
        Ok(())
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
        let len = stored_size(buf.len());
        let capacity = self.journal.capacity();
        let live = self.journal.live_bytes();
        if 2 * (live + len) > capacity && live >= self.grow_after {
            // Keep the subscriptions under half the capacity: a ring nearly
            // full of long-lived records would copy them forward on most
            // puts (and sync its header often) to reuse the space between.
            let wanted = (capacity * 2).max(4 * (live + len));
            if let Err(e) = self.journal.resize(wanted) {
                // Growing only makes copying rare: while the ids fit, the
                // file goes on as it is (a full disk), and growing is tried
                // again once it holds an eighth more.
                if live + len > capacity {
                    return Err(e);
                }
                self.grow_after = live + capacity / 8;
            }
        }
        let appended = self.journal.append(&buf);
        self.buf = buf;
        let rid = appended?;
        self.entries.insert(name.to_owned(), (rid, id));
        let lost = self.journal.take_lost();
        if let Some((older, _)) = previous.filter(|p| !lost.contains(&p.0)) {
            self.journal.forget(older)?;
        }
        self.write_again(lost)?;
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
    fn record_codec() {
        let mut b = Vec::new();
        encode(&mut b, "Temp", i64::MIN);
        assert_eq!(decode(&b).unwrap(), ("Temp", i64::MIN));
        assert!(decode(&b[..8]).is_err());
        b[8] = b'1';
        assert!(decode(&b).is_err());
    }
}

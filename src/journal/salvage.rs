//! What happens to a damaged or foreign file at open: it is set aside as
//! evidence (`<name>.corrupt-<unix-seconds>`) and replaced, atomically, by a
//! new file holding every record that could be kept.

use crate::error::Result;
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{
    check_capacity, decode_record, is_known_state, max_map_len, record, record_len, Header,
    DATA_OFFSET, STATE_LIVE, TYPE_DATA,
};
use crate::journal::log::{Journal, JournalConfig};
use crate::journal::mmap::MappedFile;
use crate::journal::recovery::Recovered;
use crate::report::{Failure, FailureKind};

impl Journal {
    /// Sets a damaged file aside and rewrites it with every intact record,
    /// before and after the damage.
    pub(super) fn salvage(
        file: LockedFile,
        config: &JournalConfig,
        header: &Header,
        recovered: &Recovered,
        live: Vec<Kept>,
    ) -> Result<(Journal, Vec<Failure>)> {
        if !recovered.corrupt() {
            return Journal::repair_torn(file, config, header, recovered, live);
        }
        let path = file.path().to_path_buf();
        let (mut what, mut lost) = describe_damage(recovered);
        let (live, doubtful_dropped) = fit_doubtful(live, config.capacity);
        if doubtful_dropped > 0 {
            what.push(format!(
                "{doubtful_dropped} of the records with an unreadable state byte did not fit \
                 beside the pending events and were not kept (counted lost: they may have \
                 been pending)"
            ));
            lost += doubtful_dropped;
        }
        let kept_bytes: u64 = live.iter().map(|r| record_len(r.payload.len())).sum();
        let mut config = config.clone();
        // The capacity the store asks for now (the damaged header's may be
        // damage too), and never less than what was kept.
        config.capacity = config.capacity.max(kept_bytes);
        check_capacity(&path, config.capacity, usize::BITS)?;
        // The repaired file first: if it cannot be written (a full disk),
        // the damaged file stays as it is, and no evidence copy is made
        // that the next attempt would make again.
        let live: Vec<(u64, Vec<u8>)> = live.into_iter().map(|r| (r.id, r.payload)).collect();
        let mut journal = Journal::build(
            &path,
            &config,
            recovered.next_free_seq(),
            &header.meta,
            &live,
        )?;
        let aside = file::set_aside(&path)?;
        file::publish_replacement(&mut journal.file, &path)?;
        drop(file);
        let report = Failure {
            kind: FailureKind::Corruption,
            message: format!(
                "{}: {}; kept {} intact pending event(s) and continued with a repaired \
                 file; the damaged file is kept as {}",
                path.display(),
                what.join("; "),
                live.len(),
                aside.display()
            ),
            events_lost: lost,
        };
        Ok((journal, vec![report]))
    }

    /// Rewrites a file whose only damage is records torn by an interrupted
    /// sync (never confirmed durable: no call that wrote them returned)
    /// with every intact record, without setting it aside: an interrupted
    /// write, nothing lost.
    fn repair_torn(
        file: LockedFile,
        config: &JournalConfig,
        header: &Header,
        recovered: &Recovered,
        live: Vec<Kept>,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let live: Vec<(u64, Vec<u8>)> = live.into_iter().map(|r| (r.id, r.payload)).collect();
        let kept_bytes: u64 = live.iter().map(|(_, p)| record_len(p.len())).sum();
        let mut config = config.clone();
        // The file's own capacity, as an open without damage keeps it.
        config.capacity = header.capacity.max(kept_bytes);
        check_capacity(&path, config.capacity, usize::BITS)?;
        let mut journal = Journal::build(
            &path,
            &config,
            recovered.next_free_seq(),
            &header.meta,
            &live,
        )?;
        file::publish_replacement(&mut journal.file, &path)?;
        drop(file);
        let report = Failure {
            kind: FailureKind::InterruptedWrite,
            message: format!(
                "{}: discarded {} incomplete record(s) in the middle of the log: the writes \
                 of a sync that a crash or power cut interrupted, written with later ones \
                 that reached the device (no call that wrote them returned, so nothing \
                 stored was lost); kept {} pending event(s) and rewrote the file without them",
                path.display(),
                recovered.torn(),
                live.len()
            ),
            events_lost: 0,
        };
        Ok((journal, vec![report]))
    }

    /// Sets a foreign or unreadable file aside and starts a new, empty one.
    pub(super) fn replace_foreign(
        file: LockedFile,
        config: &JournalConfig,
        why: &str,
        len: u64,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let lost = count_live_looking_records(&file, len);
        let mut journal = Journal::build(&path, config, 1, &[], &[])?;
        let aside = file::set_aside(&path)?;
        file::publish_replacement(&mut journal.file, &path)?;
        drop(file);
        let report = Failure {
            kind: FailureKind::Corruption,
            message: format!(
                "{} could not be used because {why}; it was kept as {} and a new, empty \
                 {} was started ({lost} live record(s) in it are lost)",
                path.display(),
                aside.display(),
                config.kind
            ),
            events_lost: lost,
        };
        Ok((journal, vec![report]))
    }
}

/// What recovery found wrong, in words, and how many events it cost.
fn describe_damage(recovered: &Recovered) -> (Vec<String>, u64) {
    let mut what = Vec::new();
    let torn = recovered.torn();
    let damaged = recovered.damage.iter().filter(|d| d.torn < d.records);
    let records: u64 = damaged.clone().map(|d| d.records - d.torn).sum();
    if records > 0 {
        let at: Vec<String> = damaged.clone().take(8).map(|d| d.pos.to_string()).collect();
        let more = if damaged.count() > 8 { ", ..." } else { "" };
        what.push(format!(
            "{records} damaged record(s) in the middle of the log (at data offset(s) {}{more}) \
             were skipped, losing {} pending event(s); the intact records before and after \
             them were kept",
            at.join(", "),
            recovered.lost()
        ));
    }
    if torn > 0 {
        what.push(format!(
            "{torn} incomplete record(s) of a sync that a crash or power cut interrupted \
             were discarded (never confirmed durable: nothing lost)"
        ));
    }
    if recovered.truncated {
        what.push("the file is shorter than its header says (truncated)".to_string());
    }
    if recovered.unknown_states > 0 {
        what.push(format!(
            "{} record(s) had an unreadable state byte and were kept as pending (they \
             may be delivered twice; the broker drops repeats by uid)",
            recovered.unknown_states
        ));
    }
    (what, recovered.lost())
}

/// An intact live record recovery found, with its payload.
pub(super) struct Kept {
    id: u64,
    payload: Vec<u8>,
    /// Its state byte held an unknown value: kept as pending, though it
    /// may have been removed.
    doubtful: bool,
}

/// The intact live records recovery found, in id order, with their
/// payloads.
pub(super) fn collect_live(data: &[u8], header: &Header, recovered: &Recovered) -> Vec<Kept> {
    recovered
        .live()
        .into_iter()
        .filter_map(|slot| {
            decode_record(data, slot.pos, header.data_size).map(|(h, payload)| Kept {
                id: slot.id,
                payload: payload.to_vec(),
                doubtful: !is_known_state(h.state),
            })
        })
        .collect()
}

/// The records of `live` that fit in `capacity` bytes, and how many
/// doubtful ones were left out: when they do not all fit, the doubtful
/// records (oldest first) give way, never a record known to be pending
/// (a damaged state byte of an acknowledged record must not push out the
/// oldest pending event).
fn fit_doubtful(mut live: Vec<Kept>, capacity: u64) -> (Vec<Kept>, u64) {
    let mut bytes: u64 = live.iter().map(|r| record_len(r.payload.len())).sum();
    let mut dropped = 0;
    live.retain(|r| {
        if bytes <= capacity || !r.doubtful {
            return true;
        }
        bytes -= record_len(r.payload.len());
        dropped += 1;
        false
    });
    (live, dropped)
}

/// Counts records in an unusable file that pass their checksum and say
/// they are live: what the report calls lost.
fn count_live_looking_records(file: &LockedFile, len: u64) -> u64 {
    use crate::journal::device::Device;
    if len <= DATA_OFFSET {
        return 0;
    }
    // What this build can map of it (all of it on a 64-bit build).
    let len = len.min(max_map_len(usize::BITS));
    let Ok(map) = MappedFile::map_locked(file, len) else {
        return 0;
    };
    let data = &map.bytes()[DATA_OFFSET as usize..];
    let size = data.len() as u64;
    let mut pos = 0u64;
    let mut count = 0;
    while pos + record::HEADER_LEN as u64 <= size {
        match decode_record(data, pos, size) {
            Some((h, _)) => {
                if h.kind == TYPE_DATA && h.state == STATE_LIVE {
                    count += 1;
                }
                pos += h.record_len();
            }
            None => pos += 8,
        }
    }
    count
}

//! What happens to a damaged or foreign file at open: it is set aside as
//! evidence (`<name>.corrupt-<unix-seconds>`) and replaced, atomically, by a
//! new file holding every record that could be kept.

use crate::error::Result;
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{
    decode_record, record, record_len, Header, DATA_OFFSET, STATE_LIVE, TYPE_DATA,
};
use crate::journal::log::{Journal, JournalConfig};
use crate::journal::mmap::MappedFile;
use crate::journal::recovery::{End, Recovered};
use crate::journal::ring::Ring;
use crate::report::{Failure, FailureKind};

impl Journal {
    /// Sets a damaged file aside and rewrites it with every intact record
    /// that came before the damage.
    pub(super) fn salvage(
        file: LockedFile,
        config: &JournalConfig,
        header: &Header,
        recovered: &Recovered,
        live: Vec<(u64, Vec<u8>)>,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let (what, lost) = describe_damage(recovered);
        let aside = file::set_aside(&path)?;
        let kept_bytes: u64 = live.iter().map(|(_, p)| record_len(p.len())).sum();
        let mut config = config.clone();
        config.capacity = header.capacity.max(kept_bytes).max(1);
        let journal = Journal::rebuild(
            &path,
            &config,
            recovered.next_free_seq(),
            &header.meta,
            &live,
        )?;
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

    /// Sets a foreign or unreadable file aside and starts a new, empty one.
    pub(super) fn replace_foreign(
        file: LockedFile,
        config: &JournalConfig,
        why: &str,
        len: u64,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let lost = count_live_looking_records(&file, len);
        let aside = file::set_aside(&path)?;
        let temp = file::create_temp(&path)?;
        let mut journal = Journal::format(temp, config, config.capacity, 1, &[])?;
        journal.sync_dirty()?;
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

/// What recovery found wrong, in words, and how many records it cost.
fn describe_damage(recovered: &Recovered) -> (Vec<String>, u64) {
    let mut what = Vec::new();
    let mut lost = 0;
    if let End::Damaged {
        pos, live_beyond, ..
    } = recovered.end
    {
        what.push(format!(
            "a damaged record at data offset {pos} ended the log with {live_beyond} \
             pending event(s) behind it"
        ));
        lost = live_beyond;
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
    (what, lost)
}

/// The intact live records of a recovered ring, in id order.
pub(super) fn collect_live(data: &[u8], header: &Header, ring: &Ring) -> Vec<(u64, Vec<u8>)> {
    ring.live_in_id_order()
        .into_iter()
        .filter_map(|slot| {
            decode_record(data, slot.pos, header.data_size)
                .map(|(_, payload)| (slot.id, payload.to_vec()))
        })
        .collect()
}

/// Counts records in an unusable file that pass their checksum and say
/// they are live: what the report calls lost.
fn count_live_looking_records(file: &LockedFile, len: u64) -> u64 {
    use crate::journal::device::Device;
    if len <= DATA_OFFSET {
        return 0;
    }
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

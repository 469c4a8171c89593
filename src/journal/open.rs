//! Opening a journal: creation, recovery, and what happens to a damaged or
//! foreign file (set aside, salvaged into a new file by an atomic rewrite).

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::durability::SyncPolicy;
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{
    self, data_size_for, decode_record, record, record_len, Header, DATA_OFFSET, SLOT_LEN,
    SLOT_OFFSETS, STATE_LIVE, TYPE_DATA, VERSION,
};
use crate::journal::log::{Dirty, Journal, JournalConfig};
use crate::journal::mmap::MappedFile;
use crate::journal::recovery::{recover, End, Recovered};
use crate::journal::ring::Ring;
use crate::report::{Failure, FailureKind};

impl Journal {
    /// Opens the journal at `path`, creating it if absent, recovering and if
    /// needed salvaging it. The reports say what recovery found (a damaged
    /// file set aside, an interrupted write discarded).
    ///
    /// An existing file keeps its own capacity; see [`Journal::resize`].
    pub fn open(path: &Path, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        if config.capacity == 0 || config.capacity > 1 << 40 {
            return Err(Error::invalid(format!(
                "journal capacity {} is out of range",
                config.capacity
            )));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Error::Io {
                    context: format!(
                        "the directory {} does not exist or is not a directory",
                        dir.display()
                    ),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "create it, or choose an existing directory",
                    ),
                });
            }
        }
        file::remove_stale_temps(path);
        for _ in 0..4 {
            if let Some(existing) = file::open_locked(path)? {
                return Journal::open_existing(existing, config);
            }
            let temp = file::create_temp(path)?;
            let mut journal = Journal::format(temp, config, config.capacity, 1, &[])?;
            journal.sync_dirty()?;
            if file::publish_new(&mut journal.file, path)? {
                return Ok((journal, Vec::new()));
            }
        }
        Err(Error::Locked {
            path: path.to_path_buf(),
        })
    }

    /// A journal over a mapped file whose header is at `generation` with
    /// `meta`, and whose ring is `ring` (its tail is where the header's tail
    /// says, for a new file; the caller sets it otherwise). Nothing is
    /// written or pending yet.
    fn assemble(
        file: LockedFile,
        map: MappedFile,
        config: JournalConfig,
        generation: u64,
        meta: Vec<u8>,
        ring: Ring,
    ) -> Journal {
        Journal {
            map,
            policy: SyncPolicy::new(config.durability),
            config,
            generation,
            meta,
            persisted_tail: ring.tail(),
            ring,
            dirty: Dirty::default(),
            chain_unsynced: false,
            removals_wait: false,
            waiting_removals: Vec::new(),
            scratch: Vec::new(),
            file,
        }
    }

    /// Lays out an empty journal in the fresh file `file`.
    pub(super) fn format(
        file: LockedFile,
        config: &JournalConfig,
        capacity: u64,
        first_seq: u64,
        meta: &[u8],
    ) -> Result<Journal> {
        let data_size = data_size_for(capacity);
        let total = DATA_OFFSET + data_size;
        file.preallocate(total)?;
        let map = map_file(&file, total)?;
        let mut config = config.clone();
        config.capacity = capacity;
        let ring = Ring::new(data_size, 0, first_seq);
        let mut journal = Journal::assemble(file, map, config, 0, meta.to_vec(), ring);
        // Both slots, before the file is published: a file never exists
        // with one slot valid and the other blank.
        journal.write_header();
        journal.write_header();
        Ok(journal)
    }

    /// Writes a complete new journal holding `records` (id, payload) under
    /// a temporary name and renames it over `path`.
    pub(super) fn rebuild(
        path: &Path,
        config: &JournalConfig,
        first_seq: u64,
        meta: &[u8],
        records: &[(u64, Vec<u8>)],
    ) -> Result<Journal> {
        let temp = file::create_temp(path)?;
        let mut journal = Journal::format(temp, config, config.capacity, first_seq, meta)?;
        for (id, payload) in records {
            journal.write_at_head(payload, Some(*id))?;
        }
        journal.sync_dirty()?;
        file::publish_replacement(&mut journal.file, path)?;
        Ok(journal)
    }

    fn open_existing(file: LockedFile, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
        let len = file.len()?;
        let mut page = vec![0u8; DATA_OFFSET as usize];
        let readable = read_prefix(&file, &mut page)?;
        let header = match choose_header(&page[..readable]) {
            Ok(h) => h,
            Err(why) => return Journal::replace_foreign(file, config, &why, len),
        };
        if header.magic != config.magic {
            let why = format!(
                "it is not a {} (its magic is {:?})",
                describe_magic(&config.magic),
                String::from_utf8_lossy(&header.magic)
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        if header.version != VERSION {
            let why = format!(
                "it has format version {}, this library reads version {VERSION}",
                header.version
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        if header.owner != config.owner {
            let why = format!(
                "its owner uid is {}, not {} (another service or client wrote it)",
                header.owner, config.owner
            );
            return Journal::replace_foreign(file, config, &why, len);
        }
        let wanted = DATA_OFFSET + header.data_size;
        if len >= wanted && !file.fully_allocated(wanted)? {
            // A file copied or restored sparse: a write into a hole on a
            // full disk must be ENOSPC here, not SIGBUS later.
            file.preallocate(wanted)?;
        }
        let map = map_file(&file, wanted.min(len))?;
        let data = map.bytes().get(DATA_OFFSET as usize..).unwrap_or_default();
        let recovered = recover(data, header.data_size, header.tail_pos, header.tail_seq);
        if recovered.needs_salvage() {
            let live = collect_live(data, header.data_size, &recovered.ring);
            drop(map);
            return Journal::salvage(file, config, &header, &recovered, live);
        }
        let mut reports = Vec::new();
        if let End::Interrupted { pos } = recovered.end {
            reports.push(Failure {
                kind: FailureKind::InterruptedWrite,
                message: format!(
                    "{}: discarded an incomplete record at data offset {pos} where the log \
                     ends: the write a crash or power cut interrupted (its call never \
                     returned, so nothing stored was lost) or, if the store was closed \
                     cleanly before this open, a last record damaged on the medium (one \
                     event lost)",
                    path.display()
                ),
                events_lost: 0,
            });
        }
        let mut config = config.clone();
        // The file's own capacity. Live bytes may exceed it for a moment
        // (a crash between writing a record and retiring the one it
        // replaces); the owner settles that before appending anything.
        config.capacity = header.capacity;
        let mut journal = Journal::assemble(
            file,
            map,
            config,
            header.generation,
            header.meta,
            recovered.ring,
        );
        journal.persisted_tail = (header.tail_pos, header.tail_seq);
        Ok((journal, reports))
    }

    /// Sets a damaged file aside and rewrites it with every intact record
    /// that came before the damage.
    fn salvage(
        file: LockedFile,
        config: &JournalConfig,
        header: &Header,
        recovered: &Recovered,
        live: Vec<(u64, Vec<u8>)>,
    ) -> Result<(Journal, Vec<Failure>)> {
        let path = file.path().to_path_buf();
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
    fn replace_foreign(
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
                 journal was started ({lost} live record(s) in it are lost)",
                path.display(),
                aside.display()
            ),
            events_lost: lost,
        };
        Ok((journal, vec![report]))
    }
}

/// What kind of file a magic stands for, for messages.
fn describe_magic(magic: &[u8; 8]) -> &'static str {
    match magic {
        m if *m == format::SERVICE_MAGIC => "softnet service journal",
        m if *m == format::CLIENT_MAGIC => "softnet client persistence file",
        _ => "softnet journal of the expected kind",
    }
}

fn map_file(file: &LockedFile, len: u64) -> Result<MappedFile> {
    let len = usize::try_from(len).map_err(|_| Error::invalid("journal too large to map"))?;
    MappedFile::map(file, len).map_err(|e| Error::io("map", file.path(), e))
}

/// Reads up to `buf.len()` bytes from the start of the file.
fn read_prefix(file: &LockedFile, buf: &mut [u8]) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.file().read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", file.path(), e)),
        }
    }
    Ok(done)
}

/// The valid header slot with the higher generation, or why there is none.
fn choose_header(page: &[u8]) -> std::result::Result<Header, String> {
    let slots: Vec<_> = SLOT_OFFSETS
        .iter()
        .map(|&at| Header::decode(page.get(at..).unwrap_or_default()))
        .collect();
    let best = slots
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .max_by_key(|h| h.generation)
        .cloned();
    match best {
        Some(h) => Ok(h),
        None if page.len() < SLOT_OFFSETS[1] + SLOT_LEN => Err(format!(
            "it is too short ({} bytes) to hold a journal header",
            page.len()
        )),
        None if slots.iter().all(|s| *s == Err(format::SlotError::Blank)) => {
            Err("its header is blank (it was never completely written)".to_string())
        }
        None => Err("neither header slot passes its checksum".to_string()),
    }
}

fn collect_live(data: &[u8], ring_size: u64, ring: &Ring) -> Vec<(u64, Vec<u8>)> {
    ring.live_in_id_order()
        .into_iter()
        .filter_map(|slot| {
            decode_record(data, slot.pos, ring_size).map(|(_, payload)| (slot.id, payload.to_vec()))
        })
        .collect()
}

/// Counts records in an unusable file that pass their checksum and say
/// they are live: what the report calls lost.
fn count_live_looking_records(file: &LockedFile, len: u64) -> u64 {
    if len <= DATA_OFFSET {
        return 0;
    }
    let Ok(map) = map_file(file, len) else {
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

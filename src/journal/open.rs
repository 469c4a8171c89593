//! Opening a journal: finding or creating the file, recovery, and handing
//! damaged or foreign files to `salvage.rs`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::journal::create::map_file;
use crate::journal::file::{self, LockedFile};
use crate::journal::format::{
    self, check_capacity, check_mappable, Header, DATA_OFFSET, SLOT_LEN, SLOT_OFFSETS,
};
use crate::journal::log::{Journal, JournalConfig};
use crate::journal::recovery::{recover, End};
use crate::journal::salvage::collect_live;
use crate::report::{Failure, FailureKind};

/// Sequence numbers above this are renumbered from 1 at open: a file that
/// claims them (crafted, or damaged in a way that still validates) would
/// otherwise run out of numbers. No journal reaches it by appending.
const SEQ_RENUMBER: u64 = u64::MAX - (1 << 40);

impl Journal {
    /// Opens the journal at `path`, creating it if absent, recovering and if
    /// needed salvaging it. The reports say what recovery found (a damaged
    /// file set aside, an interrupted write discarded).
    ///
    /// An existing file keeps its own capacity; see [`Journal::resize`].
    pub fn open(path: &Path, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        check_capacity(path, config.capacity, usize::BITS)?;
        check_directory(path)?;
        file::remove_stale_temps(path);
        for _ in 0..4 {
            if let Some(existing) = file::open_locked(path)? {
                let (mut journal, reports) = Journal::open_existing(existing, config)?;
                if journal.ring.next_seq() > SEQ_RENUMBER {
                    journal.renumber()?;
                }
                return Ok((journal, reports));
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

    fn open_existing(file: LockedFile, config: &JournalConfig) -> Result<(Journal, Vec<Failure>)> {
        let len = file.len()?;
        let mut page = vec![0u8; DATA_OFFSET as usize];
        let readable = read_prefix(&file, &mut page)?;
        let header = match usable_here(&file, &page[..readable], config, len)? {
            Ok(h) => h,
            Err(why) => return Journal::replace_foreign(file, config, &why, len),
        };
        let wanted = DATA_OFFSET + header.data_size;
        if len >= wanted && !file.fully_allocated(wanted)? {
            // A file copied or restored sparse: a write into a hole on a
            // full disk must be ENOSPC here, not SIGBUS later.
            file.preallocate(wanted)?;
        }
        let device = map_file(&file, wanted.min(len), config)?;
        let data = device
            .bytes()
            .get(DATA_OFFSET as usize..)
            .unwrap_or_default();
        // 0 (a file of an earlier release) or below the tail: no hint.
        let hint = (header.head_seq >= header.tail_seq).then_some(header.head_seq);
        let recovered = recover(
            data,
            header.data_size,
            (header.tail_pos, header.tail_seq),
            hint,
        );
        if recovered.needs_salvage() {
            let live = collect_live(data, &header, &recovered);
            drop(device);
            return Journal::salvage(file, config, &header, &recovered, live);
        }
        let mut reports = Vec::new();
        if let End::Interrupted { pos } = recovered.end {
            reports.push(interrupted_write(file.path(), pos));
        }
        let mut config = config.clone();
        // The file's own capacity. Live bytes may exceed it for a moment
        // (a crash between writing a record and retiring the one it
        // replaces); the user settles that before appending anything.
        config.capacity = header.capacity;
        let mut journal = Journal::assemble(
            file,
            device,
            config,
            header.generation,
            header.meta,
            recovered.ring,
        );
        journal.persisted_tail = (header.tail_pos, header.tail_seq);
        if header.version < format::VERSION {
            // Its records will carry the durable watermark from now on: the
            // header says so before any is written (an earlier release then
            // refuses the file rather than misread them).
            journal.write_header();
            journal.sync_if_ordered()?;
        }
        Ok((journal, reports))
    }
}

/// A missing directory is an I/O error that says so (the store then falls
/// back to level 1 and reports it).
fn check_directory(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::Io {
        context: format!(
            "the directory {} does not exist or is not a directory",
            dir.display()
        ),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "create it, or choose an existing directory",
        ),
    })
}

/// The report of a partial record where the log ends.
fn interrupted_write(path: &Path, pos: u64) -> Failure {
    Failure {
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
    }
}

/// The header to use, or why the file of `len` bytes cannot be used as a
/// journal here (it is replaced), or the error that refuses it and leaves
/// it as it is (too large for this build's address space).
fn usable_here(
    file: &LockedFile,
    page: &[u8],
    config: &JournalConfig,
    len: u64,
) -> Result<std::result::Result<Header, String>> {
    let header = match usable_header(page, config) {
        Ok(h) => h,
        Err(why) => return Ok(Err(why)),
    };
    Ok(check_mappable(file.path(), &header, len)?.map(|()| header))
}

/// The header to use, or why the file is not a journal of this kind,
/// version and owner.
fn usable_header(page: &[u8], config: &JournalConfig) -> std::result::Result<Header, String> {
    let header = choose_header(page)?;
    if header.magic != config.magic {
        return Err(format!(
            "it is not a softnet {} (its magic is {:?})",
            config.kind,
            String::from_utf8_lossy(&header.magic)
        ));
    }
    if !(format::OLDEST_VERSION..=format::VERSION).contains(&header.version) {
        return Err(format!(
            "it has format version {}, this library reads versions {} to {}",
            header.version,
            format::OLDEST_VERSION,
            format::VERSION
        ));
    }
    if header.owner != config.owner {
        return Err(format!(
            "its owner uid is {}, not {} (another service or client wrote it)",
            header.owner, config.owner
        ));
    }
    Ok(header)
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
pub(super) fn choose_header(page: &[u8]) -> std::result::Result<Header, String> {
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

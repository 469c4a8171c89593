//! Reading a journal that a store may be writing, and getting an answer
//! that is true of the file at one instant, or saying it could not.
//!
//! The file is read with `pread` into memory, never mapped: a store that
//! replaces or a user who truncates the file while it is read gives a short
//! read here, not a `SIGBUS`. It is opened read-only and never locked (see
//! `locks.rs`), so the tool changes nothing and never stands in a store's
//! way. The header pages are read first, to learn how long the journal
//! is; then the whole journal is read twice, one read right after the
//! other, and each copy is parsed by the library's own recovery
//! (`softnet_persistence::inspect_journal`).
//!
//! Why two copies that agree are the file at an instant. A `pread` of a
//! file a store is writing through its map is not atomic: each byte is
//! whatever it held when the kernel copied it. Say the first copy A reads
//! byte x at time a(x) and the second copy B at b(x) > a(x), and let T be
//! the moment between the two reads. If x holds the same value at a(x) and
//! b(x), it held that value at T, unless it changed and changed back in
//! between. In a journal no byte does that: the header slots carry a
//! generation that grows with every header write; a record's bytes are
//! written once and then only its state byte changes, from `L` to a
//! removed state and never back; the ring past the head is zeroed and then
//! written once by the next record, and a byte that only happens to hold
//! the same value before and after makes at most a record caught mid-write
//! look as it did just after the write. Bytes are rewritten only on the
//! ring's next lap, which needs the header's tail to move, which needs a
//! header write. So when A and B agree on every byte the answer depends on
//! (`JournalInspection::same_state`: both header slots, every record from
//! the tail to the end of the log with its state byte, and the bytes where
//! the log ends; all of the ring when it is damaged), A is the file at T.
//! Two copies that disagree mean a write happened during the reads: the
//! reads are repeated, after a short pause, a few times, and then the
//! answer is "busy" (exit 3), never a mixture. This also covers a tail that
//! moves during a read (the header changes) and a file that a store
//! replaces by renaming a repaired or resized copy over it (checked by
//! device and inode after the reads: the answer is about the file at the
//! path).
//!
//! A store writes one record at a time, in log order, so at an instant the
//! only record that can be incomplete is the one at the head. A partial
//! record where the log ends is therefore a write in progress when a store
//! holds the file, unless it stays the same for longer than any write
//! takes (a store that opened a file after a crash keeps the partial record
//! of the interrupted write until its next write): it is reported only
//! once two agreeing copies at least [`SETTLE`] apart show it, otherwise
//! the reads are repeated. Damage in the middle of the log is never a
//! write in progress: two agreeing copies showing it show real damage.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use softnet_persistence::{inspect_journal, Error, JournalInspection};

use crate::locks::{self, Holder};

/// Rounds of two reads before the answer is "busy".
const ATTEMPTS: u32 = 40;
/// How long a partial record at the end must stay the same, while a store
/// holds the file, to be reported rather than taken for a write in
/// progress.
pub const SETTLE: Duration = Duration::from_millis(100);
/// Bytes of the two header pages.
const HEADER_PAGES: usize = 8192;

/// Why a file could not be read: each maps to an exit code.
#[derive(Debug)]
pub enum Failure {
    /// Missing, no permission, not a journal, truncated below its header
    /// (exit 2). One line: the cause and what to do.
    Unreadable(String),
    /// It kept changing while it was read (exit 3).
    Busy(String),
}

/// A consistent read of a journal.
pub struct Snapshot {
    /// What it holds.
    pub inspection: JournalInspection,
    /// Its bytes (what `salvage` copies from).
    pub bytes: Vec<u8>,
    /// Who holds its lock.
    pub holder: Holder,
}

/// Reads `path` consistently (see the module docs).
pub fn read(path: &Path) -> Result<Snapshot, Failure> {
    let mut settling: Option<(Instant, JournalInspection)> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // 1, 2, 3 ... 10 ms: about a quarter of a second in all.
            thread::sleep(Duration::from_millis(u64::from(attempt.min(10))));
        }
        let file = open(path)?;
        let holder = locks::holder(&metadata(&file, path)?);
        let len = journal_len(&file, path)?;
        let a = read_prefix(&file, path, len)?;
        let b = read_prefix(&file, path, len)?;
        let (Ok(first), Ok(second)) = (inspect_journal(&a), inspect_journal(&b)) else {
            continue;
        };
        if !first.same_state(&second) || !still_at(path, &file)? {
            continue;
        }
        if second.interrupted_at.is_some() && holder.held() {
            // A write in progress, or the partial record of an earlier
            // crash that the store has not overwritten yet: only a
            // settled one is reported.
            match &settling {
                Some((since, seen)) if seen.same_state(&second) => {
                    if since.elapsed() < SETTLE {
                        continue;
                    }
                }
                _ => {
                    settling = Some((Instant::now(), second));
                    continue;
                }
            }
        }
        return Ok(Snapshot {
            inspection: second,
            bytes: b,
            holder,
        });
    }
    Err(Failure::Busy(format!(
        "{}: busy: the file changed each time it was read ({ATTEMPTS} times; a store is \
         writing it); try again",
        path.display()
    )))
}

fn open(path: &Path) -> Result<File, Failure> {
    let file = File::open(path).map_err(|e| unreadable(path, &e))?;
    let meta = metadata(&file, path)?;
    if meta.is_dir() {
        return Err(Failure::Unreadable(format!(
            "{}: is a directory; give the journal file in it (softnet.service.persistence_<uid>.ssp \
             or softnet.client.persistence_<server>_<key>.scp)",
            path.display()
        )));
    }
    if !meta.is_file() {
        return Err(Failure::Unreadable(format!(
            "{}: not a regular file; give a journal file",
            path.display()
        )));
    }
    Ok(file)
}

fn metadata(file: &File, path: &Path) -> Result<fs::Metadata, Failure> {
    file.metadata().map_err(|e| unreadable(path, &e))
}

/// The one-line error for a file that cannot be opened or read.
pub fn unreadable(path: &Path, e: &io::Error) -> Failure {
    let what = match e.kind() {
        io::ErrorKind::NotFound => "no such file; check the path".to_string(),
        io::ErrorKind::PermissionDenied => {
            "permission denied; run snp as the user that owns the file (or as root)".to_string()
        }
        _ => format!("cannot read it: {e}"),
    };
    Failure::Unreadable(format!("{}: {what}", path.display()))
}

/// The error for bytes that are not a journal.
fn not_a_journal(path: &Path, e: &Error) -> Failure {
    Failure::Unreadable(format!(
        "{}: {e}; check that it is a softnet service journal (.ssp) or client file (.scp)",
        path.display()
    ))
}

/// How many bytes to read: the header pages and the ring the header in
/// force describes, or less if the file is shorter. A file that is not a
/// journal is refused from its header pages alone, however long it is.
fn journal_len(file: &File, path: &Path) -> Result<usize, Failure> {
    let pages = read_prefix(file, path, HEADER_PAGES)?;
    match inspect_journal(&pages) {
        Ok(header) => Ok(usize::try_from(header.data_size)
            .ok()
            .and_then(|d| d.checked_add(HEADER_PAGES))
            .unwrap_or(usize::MAX)),
        Err(e) => Err(not_a_journal(path, &e)),
    }
}

/// Up to `len` bytes from the start of the file (fewer at its end).
fn read_prefix(file: &File, path: &Path, len: usize) -> Result<Vec<u8>, Failure> {
    let size = metadata(file, path)?.len();
    let len = len.min(usize::try_from(size).unwrap_or(usize::MAX));
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(path, &e)),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// True when `path` still names the file that was read (a store may have
/// replaced it with a repaired or resized copy).
fn still_at(path: &Path, file: &File) -> Result<bool, Failure> {
    let ours = metadata(file, path)?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == ours.dev() && now.ino() == ours.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(unreadable(path, &e)),
    }
}

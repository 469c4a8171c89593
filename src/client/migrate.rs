//! Client files named by the old rule, found under the new name.
//!
//! The old name of a pair was `<server with ':' as '-'>_<key>` (see
//! `naming`), which two pairs could share; the header's owner uid told
//! them apart. Before a store opens its file:
//!
//! 1. If a file has the pair's new name but the header of another pair
//!    whose *old* name is this one (("--1", "k") now has the name ("::1",
//!    "k") used to have), that file moves to its owner's new name (when
//!    free), instead of being set aside as foreign by this pair's open.
//! 2. If no file has the new name and a file has the pair's old name, it is
//!    this pair's file exactly when its header's owner uid is the pair's:
//!    then it is renamed to the new name (and the directory synced). A file
//!    of another owner, or one whose header cannot be read, is left alone.
//!
//! A file is renamed under the exclusive `flock` the journal takes, so it
//! never moves under a store that has it open: when that store is this
//! pair's (an older version of the library), the open is `Locked`, as it
//! would be for the journal; another pair's store is left alone.

use std::fs::{self, File, TryLockError};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::client::file::CLIENT_MAGIC;
use crate::client::naming;
use crate::error::{Error, Result};

/// Header slots (docs/FORMAT.md): where each starts, its length, and the
/// fields read here.
const SLOT_OFFSETS: [u64; 2] = [0, 4096];
const SLOT_LEN: usize = 256;
const GENERATION: usize = 16;
const OWNER_UID: usize = 24;
const CRC: usize = 252;

/// Most `-` in an encoded server address for which step 1 tries every
/// pair (2^n of them) whose old name this could be.
const MAX_DASHES_TRIED: usize = 12;

/// Prepares `path`, the new name of (`server`, `key`), for opening (see the
/// module docs). Errors: `Locked` when the file to rename is held by a
/// store, I/O errors of the rename.
pub(crate) fn adopt_old_file(path: &Path, server: &str, key: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if exists(path) {
        release_others_file(dir, path, server, key)?;
        if exists(path) {
            return Ok(());
        }
    }
    let old = dir.join(naming::old_client_file_name(server, key));
    if old == path {
        return Ok(());
    }
    match lock_if_owned(&old, naming::owner_uid(server, key))? {
        Some(_locked) if !exists(path) => rename_synced(&old, path, dir),
        _ => Ok(()),
    }
}

/// Step 1: the file at `path` belongs to another pair whose old name is
/// this one: move it to that pair's new name, if no file has it.
fn release_others_file(dir: &Path, path: &Path, server: &str, key: &str) -> Result<()> {
    let (server_enc, key_enc) = (naming::encode_part(server), naming::encode_part(key));
    let dashes: Vec<usize> = server_enc.match_indices('-').map(|(i, _)| i).collect();
    let escaped = server_enc != server || key_enc != key;
    if dashes.len() > MAX_DASHES_TRIED || (dashes.is_empty() && !escaped) {
        // No other pair had this name.
        return Ok(());
    }
    let Some(found) = open_regular(path).and_then(|f| header_owner(&f)) else {
        return Ok(());
    };
    if found == naming::owner_uid(server, key) {
        return Ok(());
    }
    // The pairs whose old name is this one: the key as it is written, the
    // server with any of its `-` as `:`.
    let owner_server = (0..1u32 << dashes.len()).find_map(|mask| {
        let mut old_server = server_enc.clone().into_bytes();
        for (bit, &at) in dashes.iter().enumerate() {
            if mask & (1 << bit) != 0 {
                old_server[at] = b':';
            }
        }
        let old_server = String::from_utf8(old_server).ok()?;
        (naming::owner_uid(&old_server, &key_enc) == found).then_some(old_server)
    });
    let Some(owner_server) = owner_server else {
        return Ok(());
    };
    let Ok(theirs) = naming::client_file_path(dir, &owner_server, &key_enc) else {
        return Ok(());
    };
    match lock_if_owned(path, found)? {
        Some(_locked) if !exists(&theirs) => rename_synced(path, &theirs, dir),
        _ => Ok(()),
    }
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// The regular file at `path`, opened for reading; `None` when there is
/// none or it cannot be opened.
fn open_regular(path: &Path) -> Option<File> {
    fs::symlink_metadata(path).ok().filter(|m| m.is_file())?;
    File::open(path).ok()
}

/// The file at `path` under its exclusive `flock`, if its header says
/// `owner`; `None` when there is no such file, it cannot be read, or its
/// header names another owner (then it is left alone). `Locked` when a
/// store holds the file (one of `owner`'s, an older version of the
/// library): it is in use.
fn lock_if_owned(path: &Path, owner: Uuid) -> Result<Option<File>> {
    for _ in 0..8 {
        let Some(file) = open_regular(path) else {
            return Ok(None);
        };
        // Read without the lock first: a file held by another pair's store
        // is none of this pair's business. Each header write leaves one
        // slot valid, so the read sees the owner even during one.
        if header_owner(&file) != Some(owner) {
            return Ok(None);
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(_)) => return Ok(None),
        }
        // A store may have replaced the file between our open and our lock.
        match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(ours), Ok(now)) if ours.ino() == now.ino() && ours.dev() == now.dev() => {
                return Ok((header_owner(&file) == Some(owner)).then_some(file));
            }
            (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            _ => continue,
        }
    }
    Err(Error::Locked {
        path: path.to_path_buf(),
    })
}

/// The owner uid in the valid header slot (magic `SNPCLNT1`, CRC) with the
/// higher generation; `None` if neither slot is valid.
fn header_owner(file: &File) -> Option<Uuid> {
    let mut best: Option<(u64, Uuid)> = None;
    for at in SLOT_OFFSETS {
        let mut slot = [0u8; SLOT_LEN];
        if file.read_exact_at(&mut slot, at).is_err() {
            continue;
        }
        let crc = u32::from_le_bytes(slot[CRC..CRC + 4].try_into().ok()?);
        if slot[..8] != CLIENT_MAGIC || crc != crc32fast::hash(&slot[..CRC]) {
            continue;
        }
        let generation = u64::from_le_bytes(slot[GENERATION..GENERATION + 8].try_into().ok()?);
        let owner = Uuid::from_slice(&slot[OWNER_UID..OWNER_UID + 16]).ok()?;
        if best.is_none_or(|(g, _)| generation > g) {
            best = Some((generation, owner));
        }
    }
    best.map(|(_, owner)| owner)
}

/// Renames `from` to `to` (both in `dir`) and syncs the directory, so the
/// new name survives a power cut. A file already renamed by another
/// opener of the same pair is fine.
fn rename_synced(from: &Path, to: &Path, dir: &Path) -> Result<()> {
    match fs::rename(from, to) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("rename", from, e)),
    }
    let dir: PathBuf = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir.to_path_buf()
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", &dir, e))
}

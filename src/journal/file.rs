//! File-level pieces shared by every file-backed store: exclusive locking,
//! atomic creation and replacement, preallocation, setting damaged files
//! aside.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::journal::fork::{self, Detached};

/// An open file under its exclusive, non-blocking `flock`, held until drop.
///
/// The lock belongs to the file's open file description: it is released
/// when the last descriptor of it is closed. The descriptor is opened with
/// `O_CLOEXEC` (a program the process executes does not inherit it) and
/// detached in forked children (`fork.rs`), so only this handle holds it.
#[derive(Debug)]
pub(crate) struct LockedFile {
    /// Dropped before `file`: unregistered before the descriptor closes.
    detached: Detached,
    file: File,
    path: PathBuf,
    /// Not yet published under its final name: removed on drop.
    temporary: bool,
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        if !self.detached.in_owner() {
            // A forked child's copy: the file and its lock are the parent's.
            return;
        }
        if self.temporary {
            let _ = fs::remove_file(&self.path);
        }
        // Released explicitly rather than by closing: a child forked a
        // moment ago may still share the open file description (until its
        // fork handler detached it), and a lock lasts while any descriptor
        // of it is open. Unlocking releases it for every sharer at once, so
        // the parent can reopen the file at once.
        let _ = self.file.unlock();
    }
}

impl LockedFile {
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Grows the file to `len` bytes and reserves the disk blocks.
    pub(crate) fn preallocate(&self, len: u64) -> Result<()> {
        crate::journal::sys::preallocate(&self.file, len)
            .map_err(|e| Error::io("preallocate", &self.path, e))
    }

    /// True when the file has disk blocks for its first `len` bytes (no
    /// holes), judged by its allocated block count.
    pub(crate) fn fully_allocated(&self, len: u64) -> Result<bool> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?;
        Ok(meta.blocks() * 512 >= len)
    }

    pub(crate) fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io("stat", &self.path, e))
    }
}

/// Opens `path` read-write, never through a symbolic link (std opens
/// with `O_CLOEXEC`).
fn open_rw(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    if create_new {
        options.create_new(true);
    }
    options.open(path)
}

/// The error for a file that cannot be opened, with what to do about it.
fn open_error(path: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Error::Io {
            context: format!(
                "open {}: it is a symbolic link, and a journal is never opened through one \
                 (remove the link, or give the store the directory the file really is in)",
                path.display()
            ),
            source: e,
        };
    }
    if e.raw_os_error() == Some(libc::EISDIR) {
        return Error::Io {
            context: format!(
                "open {}: it is not a regular file (a directory is at the journal's name); \
                 remove it or give the store another directory",
                path.display()
            ),
            source: e,
        };
    }
    Error::io("open", path, e)
}

/// Refuses a file that is not a regular file or belongs to another user,
/// and makes the owner's file private (0600) if it is not.
fn check_ownership(file: &File, path: &Path) -> Result<()> {
    let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
    let refuse = |why: String| Error::Io {
        context: format!("open {}: {why}", path.display()),
        source: io::Error::from(io::ErrorKind::PermissionDenied),
    };
    if !meta.file_type().is_file() {
        return Err(refuse(
            "it is not a regular file (a directory, FIFO or device is at the journal's name); \
             remove it or give the store another directory"
                .to_string(),
        ));
    }
    let me = crate::journal::sys::effective_uid();
    if meta.uid() != me {
        return Err(refuse(format!(
            "it belongs to user {}, not to this process's user {me}: a journal must be \
             private to the service that writes it (chown it to this user, or remove it)",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("make private (chmod 0600)", path, e))?;
    }
    Ok(())
}

fn lock(file: File, path: &Path) -> Result<LockedFile> {
    match file.try_lock() {
        Ok(()) => Ok(LockedFile {
            detached: fork::detach_in_children(file.as_raw_fd()),
            file,
            path: path.to_path_buf(),
            temporary: false,
        }),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io("lock", path, e)),
    }
}

/// Opens and locks an existing file; `Ok(None)` if there is none.
///
/// After taking the lock it checks that the path still names the locked
/// inode: a store that replaced the file (salvage, resize) between our open
/// and our lock would otherwise leave us owning an orphan.
pub(crate) fn open_locked(path: &Path) -> Result<Option<LockedFile>> {
    for _ in 0..8 {
        let file = match open_rw(path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(open_error(path, e)),
        };
        check_ownership(&file, path)?;
        let locked = lock(file, path)?;
        let ours = locked
            .file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?;
        match fs::symlink_metadata(path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                return Ok(Some(locked))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", path, e)),
        }
    }
    Err(Error::Locked {
        path: path.to_path_buf(),
    })
}

const TEMP_MARK: &str = ".tmp-";

/// `<path>.tmp-<pid>-<random>`: the pid tells a crashed creator's leftover
/// from a live one's file (see `remove_stale_temps`).
fn temp_path(path: &Path) -> PathBuf {
    let n = fork::new_uid().as_u128() as u32;
    let mut name = path.as_os_str().to_owned();
    name.push(format!("{TEMP_MARK}{}-{n:08x}", std::process::id()));
    PathBuf::from(name)
}

/// The pid in a temporary file name, if it is one of ours.
fn temp_owner(name: &[u8], prefix: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let pid = rest.split(|&b| b == b'-').next()?;
    std::str::from_utf8(pid).ok()?.parse().ok()
}

/// Creates and locks a new empty file under a temporary name next to
/// `path`. Until it is published it is removed when dropped.
pub(crate) fn create_temp(path: &Path) -> Result<LockedFile> {
    let temp = temp_path(path);
    let file = open_rw(&temp, true).map_err(|e| open_error(&temp, e))?;
    let mut locked = lock(file, &temp)?;
    locked.temporary = true;
    Ok(locked)
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or_else(|| Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

fn sync_file(file: &LockedFile) -> Result<()> {
    file.file
        .sync_all()
        .map_err(|e| Error::io("sync", &file.path, e))
}

/// Makes a complete temporary file appear at `path`, atomically: it is
/// there whole or not at all. `Ok(false)` if another opener created `path`
/// first (the temporary is then removed).
pub(crate) fn publish_new(temp: &mut LockedFile, path: &Path) -> Result<bool> {
    sync_file(temp)?;
    let linked = fs::hard_link(&temp.path, path);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io("create", path, e)),
    }
    let _ = fs::remove_file(&temp.path);
    temp.path = path.to_path_buf();
    temp.temporary = false;
    sync_dir(path)?;
    Ok(true)
}

/// Replaces `path` atomically with a complete temporary file. The caller
/// holds the lock of the file being replaced.
pub(crate) fn publish_replacement(temp: &mut LockedFile, path: &Path) -> Result<()> {
    sync_file(temp)?;
    fs::rename(&temp.path, path).map_err(|e| Error::io("replace", path, e))?;
    temp.path = path.to_path_buf();
    temp.temporary = false;
    sync_dir(path)
}

/// Keeps a damaged file as evidence under `<name>.corrupt-<unix-seconds>`
/// (a hard link, so nothing is copied) before it is replaced. Returns the
/// evidence path.
pub(crate) fn set_aside(path: &Path) -> Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for n in 0..1000u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".corrupt-{secs}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let aside = PathBuf::from(name);
        match fs::hard_link(path, &aside) {
            Ok(()) => {
                sync_dir(path)?;
                return Ok(aside);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links on this file system: copy instead.
                let copy = open_rw(&aside, true).map_err(|e| Error::io("create", &aside, e))?;
                drop(copy);
                fs::copy(path, &aside).map_err(|e| Error::io("copy to", &aside, e))?;
                sync_dir(path)?;
                return Ok(aside);
            }
        }
    }
    Err(Error::invalid(format!(
        "too many damaged copies of {} already set aside",
        path.display()
    )))
}

/// Removes temporary files that crashed creators left next to `path`:
/// those whose creating process is gone and that nobody holds locked.
/// Removing a name never harms the file it may also link to.
pub(crate) fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = base.to_owned();
    prefix.push(TEMP_MARK);
    let prefix = prefix.as_encoded_bytes().to_vec();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = temp_owner(entry.file_name().as_encoded_bytes(), &prefix) else {
            continue;
        };
        // A live creator may be between creating its file and locking it:
        // only a dead process's leftovers go.
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let temp = entry.path();
        if let Ok(file) = File::open(&temp) {
            if file.try_lock().is_ok() {
                let _ = fs::remove_file(&temp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn temp_with_len(path: &Path, len: u64) -> LockedFile {
        let t = create_temp(path).unwrap();
        t.file().set_len(len).unwrap();
        t
    }

    #[test]
    fn create_lock_and_second_opener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut a = temp_with_len(&path, 10);
        assert!(publish_new(&mut a, &path).unwrap());
        assert_eq!(a.len().unwrap(), 10);
        assert_eq!(a.path(), path);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        match open_locked(&path) {
            Err(Error::Locked { path: p }) => assert_eq!(p, path),
            other => panic!("expected Locked, got {other:?}"),
        }
        let mut b = temp_with_len(&path, 5);
        assert!(!publish_new(&mut b, &path).unwrap());
        drop(b);
        drop(a);
        assert!(open_locked(&path).unwrap().is_some());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn replace_and_set_aside_keep_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::File::create(&path)
            .unwrap()
            .write_all(b"damaged")
            .unwrap();
        let old = open_locked(&path).unwrap().unwrap();
        let aside = set_aside(&path).unwrap();
        let mut new = temp_with_len(&path, 3);
        publish_replacement(&mut new, &path).unwrap();
        drop(old);
        assert_eq!(fs::read(&aside).unwrap(), b"damaged");
        assert_eq!(fs::read(&path).unwrap(), vec![0u8; 3]);
        assert!(aside.to_string_lossy().contains(".corrupt-"));
        assert!(matches!(open_locked(&path), Err(Error::Locked { .. })));
        drop(new);
        assert!(path.exists(), "a published file is not removed on drop");
    }

    #[test]
    fn stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // No process has pid 4194304 + 1 (above the kernel's pid limit).
        let stale = dir.path().join("f.tmp-4194305-0000abcd");
        fs::write(&stale, b"x").unwrap();
        let live = dir
            .path()
            .join(format!("f.tmp-{}-0000abcd", std::process::id()));
        fs::write(&live, b"x").unwrap();
        fs::write(dir.path().join("other.tmp-4194305-1"), b"x").unwrap();
        remove_stale_temps(&path);
        assert!(!stale.exists(), "a dead creator's file goes");
        assert!(live.exists(), "a live creator's file stays");
        assert!(dir.path().join("other.tmp-4194305-1").exists());
    }
}

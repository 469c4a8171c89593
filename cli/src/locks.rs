//! Whether another process holds a journal open, told from `/proc/locks`.
//!
//! A store holds an exclusive `flock` on its file for as long as it is
//! open. The obvious test, trying a non-blocking `flock` of our own on a
//! separate descriptor and releasing it at once, is not harmless: for the
//! moment the tool holds it (shared or exclusive), a store that opens the
//! file fails with `Locked` (its own non-blocking lock is refused) and the
//! application starts without its journal. Reading `/proc/locks` takes no
//! lock and changes nothing, so it is what this module does: the kernel
//! lists every `flock` with the holder's pid and the file's device and
//! inode.
//!
//! Limits, said in the output as "unknown": without `/proc` (not Linux, or
//! not mounted) nothing can be told; a lock whose holder is in a pid
//! namespace the tool cannot see (a store in another container) is not
//! listed to it.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// Who holds the file's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Locked by these processes: a store has the file open.
    Held(Vec<u32>),
    /// Nobody holds a lock on it.
    Free,
    /// It cannot be told; why.
    Unknown(String),
}

impl Holder {
    /// True when a store has the file open.
    pub fn held(&self) -> bool {
        matches!(self, Holder::Held(_))
    }

    /// In words, for the output.
    pub fn describe(&self) -> String {
        match self {
            Holder::Held(pids) => {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                format!(
                    "yes: locked by pid {} (a store has it open)",
                    pids.join(", ")
                )
            }
            Holder::Free => "no".to_string(),
            Holder::Unknown(why) => format!("unknown ({why})"),
        }
    }
}

/// Who holds a lock on the file whose metadata is `meta`.
pub fn holder(meta: &fs::Metadata) -> Holder {
    match fs::read_to_string("/proc/locks") {
        Ok(text) => holders_in(&text, meta.dev(), meta.ino()),
        Err(e) => Holder::Unknown(format!("cannot read /proc/locks: {e}")),
    }
}

/// The holders listed in `text` (the contents of `/proc/locks`) for the
/// file on device `dev` with inode `ino`.
fn holders_in(text: &str, dev: u64, ino: u64) -> Holder {
    let want = (major(dev), minor(dev), ino);
    let mut pids: Vec<u32> = text
        .lines()
        .filter_map(parse_line)
        .filter(|(_, file)| *file == want)
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if pids.is_empty() {
        Holder::Free
    } else {
        Holder::Held(pids)
    }
}

/// One lock held (not waited for): its pid and (major, minor, inode).
/// A line reads `1: FLOCK  ADVISORY  WRITE 1234 fe:00:10100987 0 EOF`,
/// the device numbers in hexadecimal; a waiter's has `->` after the
/// number.
fn parse_line(line: &str) -> Option<(u32, (u64, u64, u64))> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) == Some(&"->") || fields.len() < 6 {
        return None;
    }
    let pid = fields[4].parse().ok()?;
    let mut parts = fields[5].split(':');
    let major = u64::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u64::from_str_radix(parts.next()?, 16).ok()?;
    let ino = parts.next()?.parse().ok()?;
    Some((pid, (major, minor, ino)))
}

/// Linux's encoding of device numbers (`gnu_dev_major`).
fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000)
}

/// Linux's encoding of device numbers (`gnu_dev_minor`).
fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xffff_ff00)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_found_by_device_and_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 28883 fe:00:10100987 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 28900 fe:00:10100987 0 EOF\n\
                    2: POSIX  ADVISORY  READ 77 08:01:42 0 EOF\n";
        let dev = 0xfe << 8; // fe:00
        assert_eq!(holders_in(text, dev, 10100987), Holder::Held(vec![28883]));
        assert_eq!(holders_in(text, dev, 42), Holder::Free);
        assert_eq!(holders_in(text, 0x0801, 42), Holder::Held(vec![77]));
        assert_eq!(holders_in("garbage\n\n", dev, 1), Holder::Free);
    }

    #[test]
    fn device_numbers_split_as_linux_encodes_them() {
        // makedev(major, minor), as glibc encodes it.
        let (major_n, minor_n) = (0x1_0103u64, 70000u64);
        let dev = ((major_n & 0xfff) << 8)
            | ((major_n & !0xfff) << 32)
            | (minor_n & 0xff)
            | ((minor_n & !0xff) << 12);
        assert_eq!((major(dev), minor(dev)), (major_n, minor_n));
    }
}

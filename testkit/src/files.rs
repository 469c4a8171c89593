//! Scratch directories, file names and the byte layout of the files
//! (docs/FORMAT.md), as the tests see them from outside the library.

use std::path::Path;

use softnet_persistence::{Error, ErrorKind, Uuid};
use tempfile::TempDir;

/// A scratch directory, on tmpfs when there is one: the tests that open
/// thousands of files, or simulate the device themselves, need no real
/// syncs.
pub fn scratch_dir() -> TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

/// docs/BEHAVIOUR.md section 3: `softnet.service.persistence_<service-uuid>.ssp`.
pub fn journal_name(service: Uuid) -> String {
    format!("softnet.service.persistence_{}.ssp", service.hyphenated())
}

/// docs/FORMAT.md, "Client file": `softnet.client.persistence_<server>_<key>.scp`
/// with each part encoded: `A-Z a-z 0-9 . -` as they are, every other byte
/// as `%XX` (uppercase hex).
pub fn client_file_name(server: &str, key: &str) -> String {
    let encode = |part: &str| {
        part.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!(
        "softnet.client.persistence_{}_{}.scp",
        encode(server),
        encode(key)
    )
}

/// The name a client file had before the parts were encoded: the server
/// address's colons as dashes, the parts as they are (so two pairs could
/// share it). The library renames such a file when it opens its pair.
pub fn old_client_file_name(server: &str, key: &str) -> String {
    format!(
        "softnet.client.persistence_{}_{key}.scp",
        server.replace(':', "-")
    )
}

/// `err` is `Locked` and names `expected` (in the message and the variant).
pub fn assert_locked(err: Error, expected: &Path) {
    assert_eq!(err.kind(), ErrorKind::Locked, "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&expected.display().to_string()),
        "the message must name the file: {shown}"
    );
    match err {
        Error::Locked { path } => assert_eq!(path, expected),
        other => panic!("expected Locked, got {other:?}"),
    }
}

/// Where the data region starts (after the two header pages).
pub const DATA_OFFSET: usize = 8192;
/// Header slots: two of 256 bytes at 0 and 4096.
pub const SLOT_LEN: usize = 256;
pub const SLOT_OFFSETS: [usize; 2] = [0, 4096];
/// Record header length and the offset of its state byte.
pub const RECORD_HEADER: usize = 32;
pub const STATE: usize = 4;

/// The little-endian u32 at `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The little-endian u64 at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

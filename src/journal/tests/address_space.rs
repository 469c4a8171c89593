//! Journals too large for the address space: refused with an error that
//! names the file, its size and the pointer width, never mapped. The
//! limits are checked for a 32-bit build on any build; on a 32-bit build a
//! real file too large for it is opened as well.

use std::path::Path;

use uuid::Uuid;

use crate::error::{Error, ErrorKind};
use crate::journal::durability::Durability;
use crate::journal::format::*;
use crate::journal::log::{Journal, JournalConfig};

const GIB: u64 = 1 << 30;

fn config(capacity: u64) -> JournalConfig {
    JournalConfig {
        kind: "test journal",
        magic: *b"SNPTEST1",
        owner: Uuid::from_u128(32),
        capacity,
        durability: Durability::None,
        device_layer: None,
    }
}

#[test]
fn the_map_limit_is_what_a_slice_may_span() {
    assert_eq!(max_map_len(32), 2 * GIB - 1);
    assert_eq!(max_map_len(64), u64::MAX >> 1);
    assert_eq!(max_map_len(usize::BITS), u64::try_from(isize::MAX).unwrap());
}

#[test]
fn capacities_whose_file_a_32_bit_build_cannot_map_are_refused() {
    let path = Path::new("/data/journal.ssp");
    // The service's 32-bit limit (1 GiB) fits, with room to spare.
    check_capacity(path, GIB, 32).unwrap();
    let largest = 2 * GIB - DATA_OFFSET - data_size_for(0) - 4096;
    check_capacity(path, largest, 32).unwrap();
    for capacity in [2 * GIB - DATA_OFFSET, 2 * GIB, 3 * GIB, 1 << 40] {
        let err = check_capacity(path, capacity, 32).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let message = err.to_string();
        for part in ["/data/journal.ssp", &capacity.to_string(), "32-bit"] {
            assert!(message.contains(part), "{part}: {message}");
        }
        // The same capacities on a 64-bit build.
        check_capacity(path, capacity, 64).unwrap();
    }
    for bits in [32, 64] {
        for capacity in [0, (1 << 40) + 1, u64::MAX] {
            let err = check_capacity(path, capacity, bits).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{capacity}");
        }
    }
}

#[test]
fn files_a_32_bit_build_cannot_map_are_refused_as_too_large() {
    let path = Path::new("/data/journal.ssp");
    check_map_len(path, 2 * GIB - 1, 2 * GIB - 1, 32).unwrap();
    for (wanted, len) in [(2 * GIB, 2 * GIB), (3 * GIB, 3 * GIB), (3 * GIB, 8192)] {
        let err = check_map_len(path, wanted, len, 32).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        let Error::Io { source, .. } = &err else {
            unreachable!()
        };
        assert_eq!(source.kind(), std::io::ErrorKind::FileTooLarge);
        let message = err.to_string();
        for part in ["/data/journal.ssp", &wanted.to_string(), "32-bit"] {
            assert!(message.contains(part), "{part}: {message}");
        }
        check_map_len(path, wanted, len, 64).unwrap();
    }
}

#[test]
fn a_header_larger_than_a_32_bit_build_maps_is_damage_on_a_small_file() {
    let path = Path::new("/data/journal.ssp");
    let mut header = Header {
        magic: *b"SNPTEST1",
        version: VERSION,
        generation: 1,
        owner: Uuid::from_u128(32),
        data_offset: DATA_OFFSET,
        data_size: 1 << 40,
        capacity: 8192,
        tail_pos: 0,
        tail_seq: 1,
        meta: Vec::new(),
        head_seq: 1,
    };
    // A file of a few KiB whose header claims 1 TiB: replaced as damaged
    // on a 32-bit build, read (and salvaged) on a 64-bit one.
    let why = mappable_on(path, &header, 16384, 32).unwrap().unwrap_err();
    assert!(
        why.contains("1099511635968") && why.contains("32-bit"),
        "{why}"
    );
    mappable_on(path, &header, 16384, 64).unwrap().unwrap();
    // A file that large: refused, left as it is.
    let err = mappable_on(path, &header, DATA_OFFSET + (1 << 40), 32).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    // A journal a 32-bit build maps.
    header.data_size = data_size_for(GIB);
    header.capacity = GIB;
    let len = file_len_for(GIB);
    mappable_on(path, &header, len, 32).unwrap().unwrap();
    check_mappable(path, &header, len).unwrap().unwrap();
}

/// On a 32-bit build, for real: a journal written by a 64-bit build with
/// a 3 GiB ring is refused and left as it is.
#[cfg(target_pointer_width = "32")]
#[test]
fn a_32_bit_build_leaves_a_journal_too_large_for_it_untouched() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal");
    let config = config(8192);
    let header = Header {
        magic: config.magic,
        version: VERSION,
        generation: 1,
        owner: config.owner,
        data_offset: DATA_OFFSET,
        data_size: 3 * GIB,
        capacity: 3 * GIB - 16384,
        tail_pos: 0,
        tail_seq: 1,
        meta: Vec::new(),
        head_seq: 1,
    };
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&header.encode()).unwrap();
        // Sparse: the header pages and a hole.
        f.set_len(DATA_OFFSET + header.data_size).unwrap();
    }
    let err = Journal::open(&path, &config).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    let message = err.to_string();
    assert!(message.contains("32-bit"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    let after = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(after, 1, "nothing set aside or created");
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, DATA_OFFSET + header.data_size);

    // A new journal larger than a 32-bit build maps is refused before
    // anything is created.
    let other = dir.path().join("other");
    let err = Journal::open(
        &other,
        &JournalConfig {
            capacity: 2 * GIB,
            ..config
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(!other.exists());
}

#[test]
fn a_journal_at_the_32_bit_capacity_limit_is_within_the_map_limit() {
    // What the service allows on a 32-bit build (1 GiB) opens there.
    let dir = tempfile::tempdir().unwrap();
    let config = config(8192);
    let (journal, _) = Journal::open(&dir.path().join("j"), &config).unwrap();
    drop(journal);
    assert!(file_len_for(GIB) <= max_map_len(32));
}

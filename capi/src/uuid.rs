//! `snp_uuid`: event uids, storage uids and service uids.

use snp::Uuid;

/// A 16-byte uid (event uid, storage uid, service uid), big-endian as in
/// its text form.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct snp_uuid {
    /// The bytes.
    pub bytes: [u8; 16],
}

impl From<Uuid> for snp_uuid {
    fn from(u: Uuid) -> snp_uuid {
        snp_uuid {
            bytes: *u.as_bytes(),
        }
    }
}

impl From<snp_uuid> for Uuid {
    fn from(u: snp_uuid) -> Uuid {
        Uuid::from_bytes(u.bytes)
    }
}

//! What the two options structs share: the level and the durability.

use snp::{Durability, Error, Level, OpenPolicy};

/// Level 1: memory.
pub const SNP_LEVEL_MEMORY: i32 = 1;
/// Level 2: a file (or, with the `_open_custom` functions, user storage).
pub const SNP_LEVEL_FILE: i32 = 2;

/// Open policy: a level-2 store whose file cannot be opened or created
/// starts at level 1 and reports the fallback (the default).
pub const SNP_OPEN_FALLBACK: i32 = 0;
/// Open policy: a level-2 store whose file cannot be opened or created is
/// not opened: `SNP_ERR_IO` (or `SNP_ERR_LOCKED`), with a message naming
/// the file or directory, the cause and the fix.
pub const SNP_OPEN_STRICT: i32 = 1;

/// Durability: sync before every call returns (the default).
pub const SNP_DURABILITY_SYNC: i32 = 0;
/// Durability: sync after `batch_max_ops` operations or `batch_max_delay_ms`.
pub const SNP_DURABILITY_BATCH: i32 = 1;
/// Durability: never sync on our own (survives a process crash only).
pub const SNP_DURABILITY_NONE: i32 = 2;

// The header's levels are the library's.
const _: () = assert!(
    SNP_LEVEL_MEMORY == Level::Memory.number() as i32
        && SNP_LEVEL_FILE == Level::Persistent.number() as i32
);

/// The durability setting from its C fields.
pub(crate) fn durability_of(
    code: i32,
    max_ops: u32,
    max_delay_ms: u32,
) -> Result<Durability, Error> {
    match code {
        SNP_DURABILITY_SYNC => Ok(Durability::Sync),
        SNP_DURABILITY_BATCH => Ok(Durability::Batch {
            max_ops,
            max_delay: std::time::Duration::from_millis(u64::from(max_delay_ms)),
        }),
        SNP_DURABILITY_NONE => Ok(Durability::None),
        other => Err(Error::InvalidArgument(format!(
            "durability {other} is not SNP_DURABILITY_SYNC (0), BATCH (1) or NONE (2)"
        ))),
    }
}

// The header's open policies are the library's.
const _: () = assert!(
    SNP_OPEN_FALLBACK == OpenPolicy::Fallback as i32
        && SNP_OPEN_STRICT == OpenPolicy::Strict as i32
);

/// The open policy from its C field.
pub(crate) fn open_policy_of(code: i32) -> Result<OpenPolicy, Error> {
    match code {
        SNP_OPEN_FALLBACK => Ok(OpenPolicy::Fallback),
        SNP_OPEN_STRICT => Ok(OpenPolicy::Strict),
        other => Err(Error::InvalidArgument(format!(
            "open_policy {other} is not SNP_OPEN_FALLBACK (0) or SNP_OPEN_STRICT (1)"
        ))),
    }
}

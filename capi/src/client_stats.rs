//! `snp_client_stats`: what a client store reports about itself.

use snp::ClientStats;

/// State of a client store. Set `struct_size` to `sizeof(snp_client_stats)`
/// before `snp_client_get_stats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct snp_client_stats {
    /// `sizeof(snp_client_stats)` as the caller knows it.
    pub struct_size: u32,
    /// 1 or 2 (drops to 1 after a level-2 failure).
    pub level: i32,
    /// Subscriptions with a stored id.
    pub subscriptions: u64,
    /// Failure reports so far.
    pub failures: u64,
}

impl snp_client_stats {
    /// The C copy of the library's statistics.
    pub(crate) fn of(s: &ClientStats) -> snp_client_stats {
        snp_client_stats {
            struct_size: std::mem::size_of::<snp_client_stats>() as u32,
            level: i32::from(s.level.number()),
            subscriptions: s.subscriptions,
            failures: s.failures,
        }
    }
}

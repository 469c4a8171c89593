//! Test support for softnet-persistence, shared by the test groups of
//! `tests/`, the benchmarks and the delivery-quality example. Not part of
//! the product.
//!
//! - [`power_cut`]: a simulated power cut through the library's device seam;
//! - [`flaky`]: custom backends that fail on command;
//! - [`broker`] and [`sim`]: a broker model and the delivery simulator;
//! - the rest: reports, files, a seeded generator, sweeps, processes.

pub mod broker;
pub mod files;
pub mod flaky;
pub mod layout;
pub mod power_cut;
pub mod process;
pub mod reports;
pub mod rng;
pub mod sim;
pub mod stores;
pub mod sweep;

pub use files::{
    assert_locked, client_file_name, journal_name, old_client_file_name, scratch_dir, u32_at,
    u64_at, DATA_OFFSET, RECORD_HEADER, SLOT_LEN, SLOT_OFFSETS, STATE,
};
pub use flaky::{open_flaky, Control, Fault, FlakyLog};
pub use layout::{decode_event, Laid, Layout, Part};
pub use power_cut::PowerCut;
pub use process::{env_number, kill_at_random};
pub use reports::{client_options, collect_into, Reports};
pub use rng::Rng;
pub use stores::{at_both_levels_with, drain};
pub use sweep::{flip_random_bits, panic_message, Sweep};

use proptest::prelude::ProptestConfig;

/// `cases` cases, and no failure file written next to the tests.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        cases,
        ..ProptestConfig::default()
    }
}

//! The journal, seen from outside the library through the stores that use
//! it: its bytes on disk (docs/FORMAT.md), what it does with damaged,
//! truncated and foreign files, and what a power cut at any sync leaves.

mod client_corruption;
mod client_power_cut;
mod concurrent_power_cut;
mod corruption;
mod damage_sweeps;
mod format_offsets;
mod power_cut;
mod runtime_damage;
mod truncated_file;
mod version_1_fixture;

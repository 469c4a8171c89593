//! The service store's promises (docs/BEHAVIOUR.md section 3 and 5), one
//! module per invariant, at every level: memory, journal and custom
//! backends, including backends that fail at any call.

mod age_limit;
mod capacity_drops_oldest;
mod fault_injection;
mod hostile_files;
mod invalid_raises;
mod invalidate_ancient;
mod locked_file;
mod logging;
mod model_proptest;
mod no_loss_across_reopen;
mod order_kept;
mod readers;
mod reentrancy;
mod replacing_collapse;
mod storage_uid;
mod wrong_mode;

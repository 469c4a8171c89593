//! The client store's promises (docs/BEHAVIOUR.md section 4), one module
//! per invariant.

mod duplicates;
mod file_names;
mod ids_survive_reopen;
mod locked_and_fallback;
mod model_proptest;

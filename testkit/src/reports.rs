//! Failure reports, collected for the tests to look at.

use std::sync::{Arc, Mutex};

use softnet_persistence::{ClientOptions, Durability, Failure, FailureCallback};

/// The failure reports a store's callback collected.
pub type Reports = Arc<Mutex<Vec<Failure>>>;

/// An `on_failure` callback that appends every report to `reports`.
pub fn collect_into(reports: &Reports) -> FailureCallback {
    let sink = Arc::clone(reports);
    Arc::new(move |f: &Failure| sink.lock().unwrap().push(f.clone()))
}

/// Client options with `durability` whose reports go to `reports`.
pub fn client_options(durability: Durability, reports: &Reports) -> ClientOptions {
    ClientOptions {
        durability,
        on_failure: Some(collect_into(reports)),
        ..ClientOptions::default()
    }
}

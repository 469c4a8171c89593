//! Service stores: draining one, and running a check at both levels.

use softnet_persistence::{ServiceOptions, ServiceStore, Uuid};

/// Drains storage mode and returns the uids in delivery order.
pub fn drain(store: &ServiceStore) -> Vec<Uuid> {
    store.set_storage_mode().unwrap();
    let mut out = Vec::new();
    while let Some(e) = store.peek().unwrap() {
        store.ack(e.uid).unwrap();
        out.push(e.uid);
    }
    out
}

/// Runs `check` on a fresh memory store and on a fresh file store (a new
/// service in a temporary directory), both opened with `options`.
pub fn at_both_levels_with(options: &ServiceOptions, check: impl Fn(&ServiceStore)) {
    let memory = ServiceStore::open_memory(options).unwrap();
    check(&memory);
    let dir = tempfile::tempdir().unwrap();
    let file = ServiceStore::open_file(dir.path(), Uuid::new_v4(), options).unwrap();
    check(&file);
}

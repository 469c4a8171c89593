//! `snp salvage`: a repaired copy the library opens, the original never
//! changed.

mod common;

use std::fs;

use common::*;
use softnet_persistence::{ClientStore, ServiceStore};

#[test]
fn a_damaged_journal_is_salvaged_into_a_copy_the_library_opens() {
    let (dir, path, pending, storage) = service_journal();
    damage_live_record(&path, 2);
    let before = files_in(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    // The owner's file name, so that the store opens it.
    let out = journal_path(out_dir.path());

    let run = snp_on("salvage", &path, &[out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("with 5 intact pending record(s) (1 pending event(s) lost to damage)"),
        "{}",
        run.stdout
    );
    assert_eq!(files_in(dir.path()), before, "the original is not changed");

    let run = snp_on("verify", &out, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let reports = testkit::Reports::default();
    let options = softnet_persistence::ServiceOptions {
        on_failure: Some(testkit::collect_into(&reports)),
        ..service_options()
    };
    let store = ServiceStore::open_file(out_dir.path(), SERVICE, &options).unwrap();
    assert_eq!(store.level(), softnet_persistence::Level::Persistent);
    assert_eq!(store.storage_uid(), storage, "the same storage uid");
    let kept: Vec<_> = pending.into_iter().filter(|e| e.name != "Note").collect();
    assert_eq!(
        store.pending().unwrap(),
        kept,
        "every intact event, in order"
    );
    assert!(reports.lock().unwrap().is_empty(), "opened without repair");
    // And it goes on working.
    store
        .raise(softnet_persistence::EventKind::Queueing, "After", b"x")
        .unwrap();
    assert_eq!(store.pending().unwrap().len(), 6);
}

#[test]
fn salvage_never_replaces_a_file() {
    let (_dir, path, _, _) = service_journal();
    let out = path.with_extension("copy");
    fs::write(&out, b"keep me").unwrap();
    let run = snp_on("salvage", &path, &[out.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(fs::read(&out).unwrap(), b"keep me");

    let missing_dir = path.parent().unwrap().join("no/such/dir/out");
    let run = snp_on("salvage", &path, &[missing_dir.to_str().unwrap()]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("could not be written"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn a_client_file_is_salvaged_with_its_subscriptions() {
    let (_dir, path) = client_file();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join(path.file_name().unwrap());
    let run = snp_on("salvage", &path, &[out.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let options = softnet_persistence::ClientOptions::default();
    let store =
        ClientStore::open_file(out_dir.path(), "broker.example.com", "client-1", &options).unwrap();
    let mut entries = store.entries().unwrap();
    entries.sort();
    assert_eq!(
        entries,
        [("Door".to_string(), 7), ("Temperature".to_string(), 9)]
    );
}

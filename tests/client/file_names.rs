//! Invariant: every (server address, client key) pair has a file of its
//! own (docs/FORMAT.md, "Client file"): pairs that shared a name under the
//! old rule (`:` as `-`, `_` between the parts and inside them) each keep
//! their ids across reopens, with no report; a file a pair wrote under its
//! old name is found and renamed; another pair's old-named file is left as
//! it is; a server and key of only `A-Z a-z 0-9 . -` keep the name they
//! always had.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use softnet_persistence::{ClientOptions, ClientStore, Durability, ErrorKind, Level};
use testkit::{
    assert_locked, client_file_name, client_options, old_client_file_name, scratch_dir, Reports,
    SLOT_LEN, SLOT_OFFSETS,
};

const PREFIX: &str = "softnet.client.persistence_";

fn open(dir: &Path, server: &str, key: &str, options: &ClientOptions) -> ClientStore {
    let store = ClientStore::open_file(dir, server, key, options)
        .unwrap_or_else(|e| panic!("open {server:?} {key:?}: {e}"));
    assert_eq!(store.level(), Level::Persistent, "{server:?} {key:?}");
    store
}

fn entries(store: &ClientStore) -> BTreeMap<String, i64> {
    store.entries().unwrap().into_iter().collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_no_reports(reports: &Reports, context: &str) {
    let r = reports.lock().unwrap();
    assert!(r.is_empty(), "{context}: unexpected reports {:?}", *r);
}

/// Writes `ids` for the pair through the library, then moves its file to
/// the pair's old name: the file an older version left (the bytes do not
/// depend on the name). Returns the file's bytes.
fn write_old_file(dir: &Path, server: &str, key: &str, ids: &[(&str, i64)]) -> Vec<u8> {
    let reports = Reports::default();
    let store = open(
        dir,
        server,
        key,
        &client_options(Durability::Sync, &reports),
    );
    for &(name, id) in ids {
        store.put(name, id).unwrap();
    }
    let path = store.file_path().unwrap();
    drop(store);
    let old = dir.join(old_client_file_name(server, key));
    if path != old {
        fs::rename(&path, &old).unwrap();
    }
    assert_no_reports(&reports, "writing the old file");
    fs::read(&old).unwrap()
}

fn model(ids: &[(&str, i64)]) -> BTreeMap<String, i64> {
    ids.iter().map(|&(n, id)| (n.to_owned(), id)).collect()
}

/// (a) The pairs that shared a file under the old rule, opened in turns in
/// one directory, each keep their own ids. The old code gave both the
/// same file, so each open set the other pair's file aside (a Corruption
/// report) and started empty: its ids were lost and its handled events
/// handed to the application again.
#[test]
fn pairs_that_shared_a_name_each_keep_their_ids() {
    for [(s1, k1), (s2, k2)] in [[("a_b", "c"), ("a", "b_c")], [("::1", "k"), ("--1", "k")]] {
        let dir = tempfile::tempdir().unwrap();
        let reports = Reports::default();
        let opts = client_options(Durability::Sync, &reports);
        let ids1 = [("Temp", 1), ("Door", i64::MIN)];
        let ids2 = [("Temp", 2), ("Alarm", i64::MAX)];
        for round in 0..3 {
            for ((s, k), ids) in [((s1, k1), &ids1), ((s2, k2), &ids2)] {
                let store = open(dir.path(), s, k, &opts);
                let context = format!("{s:?} {k:?}, round {round}");
                if round == 0 {
                    assert!(entries(&store).is_empty(), "{context}: starts empty");
                    for &(name, id) in ids {
                        store.put(name, id).unwrap();
                    }
                } else {
                    assert_eq!(entries(&store), model(ids), "{context}: its own ids");
                    assert_eq!(
                        store.file_path().unwrap(),
                        dir.path().join(client_file_name(s, k)),
                        "{context}"
                    );
                }
            }
        }
        assert_no_reports(&reports, &format!("{s1:?}/{k1:?} and {s2:?}/{k2:?}"));
        let mut want = vec![client_file_name(s1, k1), client_file_name(s2, k2)];
        want.sort();
        assert_eq!(listing(dir.path()), want, "two files, nothing set aside");
    }
}

/// (b) A file the pair wrote under its old name (`fe80--1`) is renamed to
/// the new one (`fe80%3A%3A1`) and keeps its ids, with no report.
#[test]
fn a_file_under_the_old_name_is_renamed_and_keeps_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = ("fe80::1", "key");
    let ids = [("Temp", 41), ("Door", i64::MAX), ("Alarm", -7)];
    let bytes = write_old_file(dir.path(), server, key, &ids);
    assert_eq!(
        listing(dir.path()),
        ["softnet.client.persistence_fe80--1_key.scp"]
    );
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let store = open(dir.path(), server, key, &opts);
    let new_name = "softnet.client.persistence_fe80%3A%3A1_key.scp";
    assert_eq!(store.file_path().unwrap(), dir.path().join(new_name));
    assert_eq!(entries(&store), model(&ids), "the old file's ids");
    assert_eq!(listing(dir.path()), [new_name], "renamed, not copied");
    store.put("Temp", 42).unwrap();
    drop(store);
    let store = open(dir.path(), server, key, &opts);
    assert_eq!(store.get("Temp").unwrap(), Some(42));
    assert_eq!(store.get("Door").unwrap(), Some(i64::MAX));
    drop(store);
    assert_no_reports(&reports, "renamed old file");
    assert!(bytes.len() >= 8192, "a real client file was written");
}

/// (b') Of the two header slots one valid one is enough to recognise the
/// pair's file.
#[test]
fn an_old_file_with_one_damaged_header_slot_is_still_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = ("2001:db8::7", "gw_1");
    let ids = [("Temp", 5)];
    let mut bytes = write_old_file(dir.path(), server, key, &ids);
    bytes[SLOT_OFFSETS[0] + SLOT_LEN / 2] ^= 0x10;
    let old = dir.path().join(old_client_file_name(server, key));
    fs::write(&old, &bytes).unwrap();
    let reports = Reports::default();
    let store = open(
        dir.path(),
        server,
        key,
        &client_options(Durability::Sync, &reports),
    );
    assert_eq!(entries(&store), model(&ids));
    assert!(!old.exists(), "renamed");
    assert_eq!(listing(dir.path()), [client_file_name(server, key)]);
}

/// (c) An old-named file written for another pair with that old name is
/// left as it is, byte for byte, and the pair opening starts empty at its
/// own name with no report; the file's owner later finds its ids. The old
/// code opened the other pair's file, set it aside as foreign (reported)
/// and started over, so the owner's ids were gone.
#[test]
fn another_pairs_old_file_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (owner_server, owner_key) = ("a_b", "c");
    let ids = [("Theirs", 9)];
    let bytes = write_old_file(dir.path(), owner_server, owner_key, &ids);
    let old_name = old_client_file_name(owner_server, owner_key);
    assert_eq!(
        old_name,
        old_client_file_name("a", "b_c"),
        "the same old name"
    );

    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let store = open(dir.path(), "a", "b_c", &opts);
    assert!(entries(&store).is_empty(), "another pair's ids");
    store.put("Mine", 1).unwrap();
    drop(store);
    assert!(
        fs::read(dir.path().join(&old_name)).unwrap() == bytes,
        "untouched"
    );
    let mut want = vec![old_name.clone(), client_file_name("a", "b_c")];
    want.sort();
    assert_eq!(listing(dir.path()), want);

    let owner = open(dir.path(), owner_server, owner_key, &opts);
    assert_eq!(entries(&owner), model(&ids), "the owner's ids are kept");
    drop(owner);
    let mine = open(dir.path(), "a", "b_c", &opts);
    assert_eq!(entries(&mine), model(&[("Mine", 1)]));
    assert_no_reports(&reports, "another pair's old file");
}

/// (c') An old-named file whose header cannot be read is not taken for
/// the pair's: it stays where it is, and the pair starts a new file.
#[test]
fn an_old_file_with_no_valid_header_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = ("fe80::3", "k");
    let mut bytes = write_old_file(dir.path(), server, key, &[("Temp", 1)]);
    for at in SLOT_OFFSETS {
        bytes[at + SLOT_LEN / 2] ^= 0x10;
    }
    let old = dir.path().join(old_client_file_name(server, key));
    fs::write(&old, &bytes).unwrap();
    let reports = Reports::default();
    let store = open(
        dir.path(),
        server,
        key,
        &client_options(Durability::Sync, &reports),
    );
    assert!(entries(&store).is_empty());
    assert!(fs::read(&old).unwrap() == bytes, "untouched");
    assert_no_reports(&reports, "unreadable old file");
}

/// (a') After the upgrade the pair whose new name is another pair's old
/// name may open first: the file it finds is that pair's (its header says
/// so) and moves to that pair's new name instead of being set aside.
#[test]
fn a_file_at_the_new_name_written_for_the_pair_that_had_it_moves_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [("Temp", 3), ("Door", 4)];
    write_old_file(dir.path(), "::1", "k", &ids);
    assert_eq!(
        listing(dir.path()),
        [client_file_name("--1", "k")],
        "the old name of (::1, k) is the new name of (--1, k)"
    );
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let plain = open(dir.path(), "--1", "k", &opts);
    assert!(entries(&plain).is_empty(), "(--1, k) starts empty");
    plain.put("Mine", 1).unwrap();
    drop(plain);
    let owner = open(dir.path(), "::1", "k", &opts);
    assert_eq!(entries(&owner), model(&ids), "(::1, k) keeps its ids");
    drop(owner);
    let mut want = vec![client_file_name("--1", "k"), client_file_name("::1", "k")];
    want.sort();
    assert_eq!(listing(dir.path()), want, "nothing set aside");
    assert_no_reports(&reports, "a file at the new name of another pair");
}

/// An old-named file held by a store (an older version of the library in
/// another process) is not moved under it: the open is `Locked`, as for
/// the file itself; once released it is renamed.
#[test]
fn an_old_file_in_use_is_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = ("fe80::1", "in-use");
    write_old_file(dir.path(), server, key, &[("Temp", 8)]);
    let old = dir.path().join(old_client_file_name(server, key));
    let holder = fs::File::open(&old).unwrap();
    holder.lock().unwrap();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let err = ClientStore::open_file(dir.path(), server, key, &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert_locked(err, &old);
    assert!(old.exists(), "not moved while held");
    drop(holder);
    let store = open(dir.path(), server, key, &opts);
    assert_eq!(store.get("Temp").unwrap(), Some(8));
    assert!(!old.exists());
    assert_no_reports(&reports, "old file in use");
}

/// (d) Servers and keys of only `A-Z a-z 0-9 . -` keep the names they
/// always had; the others are encoded as docs/FORMAT.md says.
#[test]
fn common_names_are_unchanged_and_the_rest_encoded() {
    let dir = scratch_dir();
    let reports = Reports::default();
    let opts = client_options(Durability::None, &reports);
    for (server, key, part) in [
        (
            "broker.example.com",
            "client-1",
            "broker.example.com_client-1",
        ),
        ("10.0.0.7", "K", "10.0.0.7_K"),
        ("broker-1.local", "gw.7", "broker-1.local_gw.7"),
        ("fe80::1", "key", "fe80%3A%3A1_key"),
        ("a_b", "c", "a%5Fb_c"),
        ("[fe80::1]:7000", "100%", "%5Bfe80%3A%3A1%5D%3A7000_100%25"),
    ] {
        let store = open(dir.path(), server, key, &opts);
        let name = format!("{PREFIX}{part}.scp");
        assert_eq!(name, client_file_name(server, key), "testkit agrees");
        assert_eq!(store.file_path().unwrap(), dir.path().join(&name));
        store.put("Temp", 1).unwrap();
        drop(store);
        assert!(dir.path().join(&name).is_file(), "{name}");
    }
    // A common pair's file from before is the same file: opened as it is.
    let store = open(dir.path(), "broker.example.com", "client-1", &opts);
    assert_eq!(store.get("Temp").unwrap(), Some(1));
    assert_no_reports(&reports, "common names");
}

//! Invariant: at CPL-2 every subscription's last handled id survives closing
//! and reopening the client file, over the whole i64 range, however many
//! puts happen (the file stays bounded) and however many subscriptions there
//! are (the file grows); the file is named and protected as docs/BEHAVIOUR.md section 4
//! says.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use softnet_persistence::{ClientOptions, ClientStore, Durability, Error, ErrorKind, Level};
use testkit::{client_file_name, client_options, scratch_dir, Reports, Rng};

const SERVER: &str = "broker.example.com";
const KEY: &str = "client-key-1";

// `scratch_dir()` (tmpfs when there is one) serves the tests that only
// count bytes and names, not durability.

fn open(dir: &Path, options: &ClientOptions) -> ClientStore {
    let store = ClientStore::open_file(dir, SERVER, KEY, options).expect("open the client file");
    assert_eq!(store.level(), Level::Persistent, "opens at level 2");
    store
}

fn entries_of(store: &ClientStore) -> BTreeMap<String, i64> {
    let entries = store.entries().unwrap();
    let map: BTreeMap<String, i64> = entries.iter().cloned().collect();
    assert_eq!(map.len(), entries.len(), "each name once in entries()");
    map
}

/// Checks the store holds exactly `model`, through every read path.
fn assert_holds(store: &ClientStore, model: &BTreeMap<String, i64>, context: &str) {
    let got = entries_of(store);
    if got != *model {
        let missing: Vec<_> = model.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !model.contains_key(*k)).collect();
        let wrong: Vec<_> = model
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .map(|(k, v)| (k, v, got[k]))
            .collect();
        panic!(
            "{context}: entries differ: {} missing (e.g. {:?}), {} extra (e.g. {:?}), \
             {} wrong (e.g. name, want, got {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first(),
            wrong.len(),
            wrong.first()
        );
    }
    for (name, &id) in model {
        assert_eq!(store.get(name).unwrap(), Some(id), "{context}: get {name}");
        assert!(
            store.is_duplicate(name, id).unwrap(),
            "{context}: {name} {id} is a duplicate"
        );
    }
    assert_eq!(
        store.stats().subscriptions,
        model.len() as u64,
        "{context}: stats().subscriptions"
    );
}

/// Any i64, with the extremes and small values often.
fn random_id(rng: &mut Rng) -> i64 {
    match rng.below(8) {
        0 => [i64::MIN, i64::MAX, 0, -1, 1, i64::MIN + 1, i64::MAX - 1][rng.below(7) as usize],
        1 => rng.below(100) as i64 - 50,
        2 => (1i64 << 31) + rng.below(4) as i64 - 2,
        _ => rng.next_u64() as i64,
    }
}

/// A valid event name of varied length (up to the 256-character limit).
fn name_for(i: usize) -> String {
    match i % 7 {
        0 => format!("Temperature {i}"),
        1 => format!("s{i}"),
        2 => format!("Door/{i}.open_state#{i}"),
        3 => format!("{}{i}", "L".repeat(240)),
        4 => format!("a{i}_ .$*+()#@%&=':^[]-/!"),
        5 => format!(
            "Z{}",
            "x".repeat(255 - 1 - i.to_string().len()) + &i.to_string()
        ),
        _ => format!("Valve{i}"),
    }
}

fn no_reports(reports: &Reports, context: &str) {
    let r = reports.lock().unwrap();
    assert!(r.is_empty(), "{context}: unexpected reports {:?}", *r);
}

#[test]
fn ids_survive_close_and_reopen_for_many_names() {
    // Real disk, synchronous durability: the default configuration.
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x1234_5678_9abc_def1);

    let store = open(dir.path(), &opts);
    assert!(store.entries().unwrap().is_empty(), "a new file is empty");
    for i in 0..300 {
        let name = name_for(i);
        let id = random_id(&mut rng);
        store.put(&name, id).unwrap();
        model.insert(name, id);
    }
    assert_holds(&store, &model, "before close");
    store.close().unwrap();
    drop(store);

    for round in 0..4u32 {
        let store = open(dir.path(), &opts);
        assert_holds(&store, &model, &format!("reopen {round}"));
        // Update some, add some; then leave without close() (drop only):
        // Sync durability already put every put on the device.
        for _ in 0..100 {
            let i = rng.below(400) as usize;
            let id = random_id(&mut rng);
            store.put(&name_for(i), id).unwrap();
            model.insert(name_for(i), id);
        }
        assert_holds(&store, &model, &format!("after updates {round}"));
        if round.is_multiple_of(2) {
            store.close().unwrap();
        }
        drop(store);
    }
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "final reopen");
    assert_eq!(store.stats().failures, 0);
    no_reports(&reports, "ids_survive_close_and_reopen_for_many_names");
}

const EXTREMES: [i64; 14] = [
    i64::MIN,
    i64::MAX,
    0,
    -1,
    1,
    i64::MIN + 1,
    i64::MAX - 1,
    i32::MAX as i64,
    i32::MAX as i64 + 1, // the Java format corrupted ids >= 2^31
    i32::MIN as i64,
    i32::MIN as i64 - 1,
    u32::MAX as i64,
    u32::MAX as i64 + 1,
    -(1i64 << 53) - 1,
];

#[test]
fn i64_extremes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let mut model = BTreeMap::new();
    {
        let store = open(dir.path(), &opts);
        for (i, &id) in EXTREMES.iter().enumerate() {
            let name = format!("Extreme{i}");
            store.put(&name, id).unwrap();
            model.insert(name, id);
        }
        assert_holds(&store, &model, "before reopen");
    }
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "after reopen");
    drop(store);

    // One name walking through every extreme, with a reopen after each put:
    // the newest value is the one that comes back, whatever its sign.
    for (step, &id) in EXTREMES.iter().chain(EXTREMES.iter().rev()).enumerate() {
        let store = open(dir.path(), &opts);
        store.put("Walker", id).unwrap();
        model.insert("Walker".to_string(), id);
        drop(store);
        let store = open(dir.path(), &opts);
        assert_eq!(
            store.get("Walker").unwrap(),
            Some(id),
            "step {step}: {id} after reopen"
        );
        assert_holds(&store, &model, &format!("step {step}"));
        for &other in &EXTREMES {
            assert_eq!(
                store.is_duplicate("Walker", other).unwrap(),
                other == id,
                "step {step}: is_duplicate(Walker, {other}) with {id} stored"
            );
        }
    }
    no_reports(&reports, "i64_extremes_round_trip");
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn dir_listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `count` puts of random ids to random names of `names`.
fn put_random(
    store: &ClientStore,
    names: &[String],
    rng: &mut Rng,
    count: u64,
    model: &mut BTreeMap<String, i64>,
) {
    for _ in 0..count {
        let name = &names[rng.below(names.len() as u64) as usize];
        let id = random_id(rng);
        store.put(name, id).unwrap();
        model.insert(name.clone(), id);
    }
}

#[test]
fn many_puts_to_the_same_names_keep_the_file_bounded() {
    let dir = scratch_dir();
    let reports = Reports::default();
    // Durability does not change the layout, only when it is synced: None
    // keeps 100,000 puts quick.
    let opts = client_options(Durability::None, &reports);
    let names: Vec<String> = (0..50).map(name_for).collect();
    let mut model = BTreeMap::new();
    let store = open(dir.path(), &opts);
    let path = store.file_path().unwrap();
    for (i, name) in names.iter().enumerate() {
        store.put(name, i as i64).unwrap();
        model.insert(name.clone(), i as i64);
    }
    let size = file_len(&path);
    let listing = dir_listing(dir.path());
    assert_eq!(listing, vec![client_file_name(SERVER, KEY)]);
    let mut rng = Rng(77);

    put_random(&store, &names, &mut rng, 50_000, &mut model);
    assert_holds(&store, &model, "after 50,000 puts");
    assert_eq!(
        file_len(&path),
        size,
        "50,000 puts to 50 names grew the file"
    );
    assert_eq!(dir_listing(dir.path()), listing, "no other file appears");

    // Reopen in the middle: recovery finds the ring full of old records of
    // the same names and must not take them for room the subscriptions
    // need.
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "reopen after 50,000 puts");

    put_random(&store, &names, &mut rng, 50_000, &mut model);
    assert_eq!(store.level(), Level::Persistent, "still at level 2");
    assert_holds(&store, &model, "after 100,000 puts");
    assert_eq!(
        file_len(&path),
        size,
        "100,000 puts to 50 names grew the file"
    );
    assert_eq!(dir_listing(dir.path()), listing, "no other file appears");
    store.close().unwrap();
    drop(store);

    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "final reopen");
    assert_eq!(file_len(&path), size);
    no_reports(
        &reports,
        "many_puts_to_the_same_names_keep_the_file_bounded",
    );
}

#[test]
fn file_name_follows_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    for (server, key, file) in [
        (
            SERVER,
            KEY,
            "softnet.client.persistence_broker.example.com_client-key-1.scp",
        ),
        (
            "fe80::1",
            "key",
            "softnet.client.persistence_fe80%3A%3A1_key.scp",
        ),
        ("10.0.0.7", "K", "softnet.client.persistence_10.0.0.7_K.scp"),
        (
            "2001:db8::ff00:42:8329",
            "gw.7",
            "softnet.client.persistence_2001%3Adb8%3A%3Aff00%3A42%3A8329_gw.7.scp",
        ),
    ] {
        let store = ClientStore::open_file(dir.path(), server, key, &opts).unwrap();
        let expected: PathBuf = dir.path().join(file);
        assert_eq!(store.file_path().as_deref(), Some(expected.as_path()));
        store.put("Temp", 42).unwrap();
        assert!(expected.is_file(), "{file} exists");
        let mode = fs::metadata(&expected).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: mode {mode:o}");
        drop(store);
        let store = ClientStore::open_file(dir.path(), server, key, &opts).unwrap();
        assert_eq!(store.get("Temp").unwrap(), Some(42), "{file} reopened");
    }
    let before = dir_listing(dir.path());

    for (server, key, bad) in [
        ("broker/evil", KEY, '/'),
        (SERVER, "my key", ' '),
        (SERVER, "k/../x", '/'),
        ("a b", KEY, ' '),
        (SERVER, "k:1", ':'),
        (SERVER, "k\\x", '\\'),
        (SERVER, "k*", '*'),
        (SERVER, "k\u{e9}", '\u{e9}'),
        (SERVER, "tab\there", '\t'),
        (SERVER, "nul\0", '\0'),
    ] {
        let err = ClientStore::open_file(dir.path(), server, key, &opts).unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::InvalidArgument,
            "{server:?} {key:?}: {err}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains(&format!("{bad:?}")),
            "{server:?} {key:?}: the message must name {bad:?}: {shown}"
        );
        assert!(matches!(err, Error::InvalidArgument(_)));
    }
    for (server, key) in [("", KEY), (SERVER, "")] {
        let err = ClientStore::open_file(dir.path(), server, key, &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{server:?} {key:?}");
    }
    assert_eq!(
        dir_listing(dir.path()),
        before,
        "a refused name creates no file (nothing is silently mangled)"
    );
    no_reports(&reports, "file_name_follows_the_rules");
}

#[test]
fn many_subscriptions_grow_the_file_and_survive_reopen() {
    let dir = scratch_dir();
    let reports = Reports::default();
    let opts = client_options(Durability::None, &reports);
    let mut model = BTreeMap::new();
    let mut store = open(dir.path(), &opts);
    let path = store.file_path().unwrap();
    let initial = file_len(&path);
    let mut rng = Rng(5000);
    for i in 0..5000 {
        let name = name_for(i);
        let id = random_id(&mut rng);
        store.put(&name, id).unwrap();
        model.insert(name, id);
        if i % 1000 == 999 {
            // Reopen while growing, too.
            store.close().unwrap();
            drop(store);
            store = open(dir.path(), &opts);
            assert_holds(&store, &model, &format!("reopen after {} names", i + 1));
        }
    }
    assert_eq!(store.level(), Level::Persistent, "growth is not a failure");
    let grown = file_len(&path);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the grown (rewritten) file keeps mode 0600");
    assert!(
        grown > initial,
        "5,000 subscriptions fit in the initial {initial} bytes?"
    );
    // Update every subscription once more, then reopen twice.
    for (name, id) in model.iter_mut() {
        *id = id.wrapping_add(1);
        store.put(name, *id).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "after updating all 5,000");
    drop(store);
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "second reopen");
    assert_eq!(
        dir_listing(dir.path()),
        vec![client_file_name(SERVER, KEY)],
        "growth leaves no temporary file"
    );
    // Updating the same 5,000 names again does not grow it further.
    let size = file_len(&path);
    for (name, id) in model.iter_mut() {
        *id = id.wrapping_sub(7);
        store.put(name, *id).unwrap();
    }
    assert_eq!(
        file_len(&path),
        size,
        "updates of known names do not grow it"
    );
    assert_holds(&store, &model, "after a second update of all");
    no_reports(
        &reports,
        "many_subscriptions_grow_the_file_and_survive_reopen",
    );
}

/// Recovery finds every record of the ring between its tail and head, the
/// old records of a name included (only the newest counts). A file closed
/// with its ring full of such records must still grow when new
/// subscriptions need room, not fail and fall back to level 1.
#[test]
fn new_subscriptions_after_reopening_a_file_full_of_old_records_stay_at_level_2() {
    let long = "x".repeat(100);
    for old_puts in [120, 166, 180, 250, 380] {
        let dir = scratch_dir();
        let reports = Reports::default();
        let opts = client_options(Durability::None, &reports);
        let mut model = BTreeMap::new();
        let store = open(dir.path(), &opts);
        for id in 0..old_puts {
            store.put(&format!("Old{long}"), id).unwrap();
        }
        model.insert(format!("Old{long}"), old_puts - 1);
        store.close().unwrap();
        drop(store);
        let store = open(dir.path(), &opts);
        assert_holds(&store, &model, &format!("{old_puts} old puts: reopen"));
        for i in 0..400i64 {
            let name = format!("New{i:04}{long}");
            store.put(&name, i).unwrap();
            model.insert(name, i);
            assert_eq!(
                store.level(),
                Level::Persistent,
                "{old_puts} puts to one name, reopen, then new subscription #{i}: fell back \
                 to level 1 ({:?})",
                reports.lock().unwrap()
            );
        }
        store.close().unwrap();
        drop(store);
        let store = open(dir.path(), &opts);
        assert_holds(
            &store,
            &model,
            &format!("{old_puts} old puts: final reopen"),
        );
        no_reports(&reports, &format!("{old_puts} old puts"));
    }
}

/// docs/BEHAVIOUR.md section 4 fixes the file name; a server address and client key
/// that are each acceptable can still make a name longer than the file
/// system allows (255 bytes on Linux, and the file is first created under
/// a longer temporary name). `open_file` documents `InvalidArgument` for "a
/// server address or key that cannot be part of a file name": such a pair
/// must be refused as clearly as a bad character, never turn into an I/O
/// failure and a start at level 1 (where every restart loses the ids).
#[test]
fn a_file_name_too_long_for_the_file_system_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let mut wrong = Vec::new();
    for (server_len, key_len) in [
        (1, 1),
        (100, 100),
        (200, 1),
        (200, 20),
        (100, 150),
        (200, 200),
    ] {
        reports.lock().unwrap().clear();
        let server = "s".repeat(server_len);
        let key = "k".repeat(key_len);
        let name_len = client_file_name(&server, &key).len();
        match ClientStore::open_file(dir.path(), &server, &key, &opts) {
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            Ok(store) if store.level() == Level::Persistent && name_len <= 255 => {
                store.put("Temp", 1).unwrap();
                drop(store);
                let again = ClientStore::open_file(dir.path(), &server, &key, &opts).unwrap();
                assert_eq!(again.get("Temp").unwrap(), Some(1));
            }
            Ok(store) => wrong.push(format!(
                "server of {server_len} and key of {key_len} bytes ({name_len}-byte file \
                 name): accepted, the store runs at {:?}, reports {:?}",
                store.level(),
                reports
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|r| r.kind)
                    .collect::<Vec<_>>()
            )),
            Err(e) => wrong.push(format!(
                "server of {server_len} and key of {key_len} bytes: {e}"
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn puts_from_many_threads_all_survive_reopen() {
    let dir = scratch_dir();
    let reports = Reports::default();
    let opts = client_options(Durability::Sync, &reports);
    let store = Arc::new(open(dir.path(), &opts));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut last = BTreeMap::new();
                let mut rng = Rng(t + 1);
                for n in 0..3000 {
                    let name = format!("T{t}/{}", rng.below(20));
                    let id = (n as i64) * 8 + t as i64;
                    store.put(&name, id).unwrap();
                    last.insert(name, id);
                }
                last
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for t in threads {
        model.extend(t.join().unwrap());
    }
    assert_holds(&store, &model, "after the threads");
    drop(store);
    let store = open(dir.path(), &opts);
    assert_holds(&store, &model, "after reopen");
    no_reports(&reports, "puts_from_many_threads_all_survive_reopen");
}
